"""PE-SinGAN singan_interp-pad_disc-nobn_fish: no positional encoding; padding 0 with the block input padded by bicubic interpolation (interp_pad, noise_with_pad).

Discriminator without BatchNorm (conv biases). Trained on fish-crop.jpg (long side 300 px, 11 stages,
2000 iterations per stage of 3 D + 3 G steps). No metrics were reported (qualitative results).
Weights: https://download.openmmlab.com/mmediting/pe_in_gans/singan_interp-pad_disc-nobn_fis_20210406_175720-9428517a.pth
Noises:  https://download.openmmlab.com/mmediting/pe_in_gans/singan_interp-pad_disc-nobn_fis_20210406_175720-9428517a.pkl

Use (download both files; the .pkl is found next to the .pth):
    pegan convert singan_interp-pad_disc-nobn_fis_20210406_175720-9428517a.pth ckpt/singan_interp-pad_disc-nobn_fish
    pegan sample ckpt/singan_interp-pad_disc-nobn_fish --num 8 --width-factor 2 --out samples.png
    pegan train --experiment singan_interp-pad_disc-nobn_fish --image fish-crop.jpg --out runs/singan_interp-pad_disc-nobn_fish

Variants: 'full' (default) and 'tiny' (base/min widths 16/8, 4 scales, 40 px, 20 iterations per stage):
    from pegan.configs import load_experiment
    cfg = load_experiment("singan_interp-pad_disc-nobn_fish", "tiny")
"""

from pegan.configs import singan_config


def get_config(variant=None):
    return singan_config("singan_interp-pad_disc-nobn_fish", variant)
