"""PE-SinGAN singan_spe-dim4_bohemian: SPE (embedding_dim 4, center_shift 200) added to the stage-0 noise; zero padding 1.

Discriminator with BatchNorm. Trained on bohemian.png (long side 500 px, 11 stages,
2000 iterations per stage of 3 D + 3 G steps). No metrics were reported (qualitative results).
Weights: https://download.openmmlab.com/mmediting/pe_in_gans/singan_spe-dim4_bohemian_20210406_175820-6e484a35.pth
Noises:  https://download.openmmlab.com/mmediting/pe_in_gans/singan_spe-dim4_bohemian_20210406_175820-6e484a35.pkl

Use (download both files; the .pkl is found next to the .pth):
    pegan convert singan_spe-dim4_bohemian_20210406_175820-6e484a35.pth ckpt/singan_spe-dim4_bohemian
    pegan sample ckpt/singan_spe-dim4_bohemian --num 8 --width-factor 2 --out samples.png
    pegan train --experiment singan_spe-dim4_bohemian --image bohemian.png --out runs/singan_spe-dim4_bohemian

Variants: 'full' (default) and 'tiny' (base/min widths 16/8, 4 scales, 40 px, 20 iterations per stage):
    from pegan.configs import load_experiment
    cfg = load_experiment("singan_spe-dim4_bohemian", "tiny")
"""

from pegan.configs import singan_config


def get_config(variant=None):
    return singan_config("singan_spe-dim4_bohemian", variant)
