"""PE-SinGAN singan-csg_bohemian: CSG (2 channels) added to the stage-0 noise; zero padding 1 inside the blocks.

Discriminator with BatchNorm. Trained on bohemian.png (long side 500 px, 11 stages,
2000 iterations per stage of 3 D + 3 G steps). No metrics were reported (qualitative results).
Weights: https://download.openmmlab.com/mmediting/pe_in_gans/singan_csg_bohemian_20210407_195455-5ed56db2.pth
Noises:  https://download.openmmlab.com/mmediting/pe_in_gans/singan_csg_bohemian_20210407_195455-5ed56db2.pkl

Use (download both files; the .pkl is found next to the .pth):
    pegan convert singan_csg_bohemian_20210407_195455-5ed56db2.pth ckpt/singan-csg_bohemian
    pegan sample ckpt/singan-csg_bohemian --num 8 --width-factor 2 --out samples.png
    pegan train --experiment singan-csg_bohemian --image bohemian.png --out runs/singan-csg_bohemian

Variants: 'full' (default) and 'tiny' (base/min widths 16/8, 4 scales, 40 px, 20 iterations per stage):
    from pegan.configs import load_experiment
    cfg = load_experiment("singan-csg_bohemian", "tiny")
"""

from pegan.configs import singan_config


def get_config(variant=None):
    return singan_config("singan-csg_bohemian", variant)
