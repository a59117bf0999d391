"""PE-SinGAN singan_spe-dim4_fish: SPE (embedding_dim 4, center_shift 200) added to the stage-0 noise; zero padding 1.

Discriminator with BatchNorm. Trained on fish-crop.jpg (long side 300 px, 11 stages,
2000 iterations per stage of 3 D + 3 G steps). No metrics were reported (qualitative results).
Note: the config never sets first_fixed_noises_ch: the stage-0 noise has 1 channel, broadcast onto the 8 SPE channels.

Weights: https://download.openmmlab.com/mmediting/pe_in_gans/singan_spe-dim4_fish_20210406_175933-f483a7e3.pth
Noises:  https://download.openmmlab.com/mmediting/pe_in_gans/singan_spe-dim4_fish_20210406_175933-f483a7e3.pkl

Use (download both files; the .pkl is found next to the .pth):
    pegan convert singan_spe-dim4_fish_20210406_175933-f483a7e3.pth ckpt/singan_spe-dim4_fish
    pegan sample ckpt/singan_spe-dim4_fish --num 8 --width-factor 2 --out samples.png
    pegan train --experiment singan_spe-dim4_fish --image fish-crop.jpg --out runs/singan_spe-dim4_fish

Variants: 'full' (default) and 'tiny' (base/min widths 16/8, 4 scales, 40 px, 20 iterations per stage):
    from pegan.configs import load_experiment
    cfg = load_experiment("singan_spe-dim4_fish", "tiny")
"""

from pegan.configs import singan_config


def get_config(variant=None):
    return singan_config("singan_spe-dim4_fish", variant)
