"""PE-SinGAN singan_spe-dim8_bohemian: SPE (embedding_dim 8, center_shift 200) added to the stage-0 noise; zero padding 1.

Discriminator with BatchNorm. Trained on bohemian.png (long side 500 px, 11 stages,
2000 iterations per stage of 3 D + 3 G steps). No metrics were reported (qualitative results).
Note: mmgeneration's config file sets embedding_dim 4 (a copy of dim4), mmagic's 8: the converter reads the size from the checkpoint's shapes.

Weights: https://download.openmmlab.com/mmediting/pe_in_gans/singan_spe-dim8_bohemian_20210406_175858-7faa50f3.pth
Noises:  https://download.openmmlab.com/mmediting/pe_in_gans/singan_spe-dim8_bohemian_20210406_175858-7faa50f3.pkl

Use (download both files; the .pkl is found next to the .pth):
    pegan convert singan_spe-dim8_bohemian_20210406_175858-7faa50f3.pth ckpt/singan_spe-dim8_bohemian
    pegan sample ckpt/singan_spe-dim8_bohemian --num 8 --width-factor 2 --out samples.png
    pegan train --experiment singan_spe-dim8_bohemian --image bohemian.png --out runs/singan_spe-dim8_bohemian

Variants: 'full' (default) and 'tiny' (base/min widths 16/8, 4 scales, 40 px, 20 iterations per stage):
    from pegan.configs import load_experiment
    cfg = load_experiment("singan_spe-dim8_bohemian", "tiny")
"""

from pegan.configs import singan_config


def get_config(variant=None):
    return singan_config("singan_spe-dim8_bohemian", variant)
