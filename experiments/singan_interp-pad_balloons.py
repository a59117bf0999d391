"""PE-SinGAN singan_interp-pad_balloons: no positional encoding; padding 0 with the block input padded by bicubic interpolation (interp_pad, noise_with_pad).

Discriminator with BatchNorm. Trained on balloons.png (long side 250 px, 9 stages,
2000 iterations per stage of 3 D + 3 G steps). No metrics were reported (qualitative results).
Weights: https://download.openmmlab.com/mmediting/pe_in_gans/singan_interp-pad_balloons_20210406_180014-96f51555.pth
Noises:  https://download.openmmlab.com/mmediting/pe_in_gans/singan_interp-pad_balloons_20210406_180014-96f51555.pkl

Use (download both files; the .pkl is found next to the .pth):
    pegan convert singan_interp-pad_balloons_20210406_180014-96f51555.pth ckpt/singan_interp-pad_balloons
    pegan sample ckpt/singan_interp-pad_balloons --num 8 --width-factor 2 --out samples.png
    pegan train --experiment singan_interp-pad_balloons --image balloons.png --out runs/singan_interp-pad_balloons

Variants: 'full' (default) and 'tiny' (base/min widths 16/8, 4 scales, 40 px, 20 iterations per stage):
    from pegan.configs import load_experiment
    cfg = load_experiment("singan_interp-pad_balloons", "tiny")
"""

from pegan.configs import singan_config


def get_config(variant=None):
    return singan_config("singan_interp-pad_balloons", variant)
