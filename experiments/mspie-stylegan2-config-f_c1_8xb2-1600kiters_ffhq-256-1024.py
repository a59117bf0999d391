"""Tab.5 config-f: Config-f with generator channel multiplier 1 trained at 256/512/1024 px from 1024 px FFHQ, batch 2x8; the name says 1600k but the config trains 1,500,002 iterations; the discriminator keeps channel multiplier 2.

Released model (FFHQ), metrics reported at the largest scale (1024 px):
    FID50k 6.24   precision10k 71.79   recall10k 49.92
Chosen scales (offset -> px): 0 -> 256, 4 -> 512, 12 -> 1024
Weights: https://download.openmmlab.com/mmediting/pe_in_gans/mspie-stylegan2_c1_config-f_ffhq_256-1024_b2x8_1600k_20210406_144716-81cbdc96.pth
Reference config: configs/positional_encoding_in_gans/mspie-stylegan2_c1_config-f_ffhq_256-1024_b2x8_1600k.py (mmgeneration)

Use (the released file name identifies this experiment):
    pegan convert mspie-stylegan2_c1_config-f_ffhq_256-1024_b2x8_1600k_20210406_144716-81cbdc96.pth ckpt/mspie-stylegan2-config-f_c1_8xb2-1600kiters_ffhq-256-1024
    pegan sample ckpt/mspie-stylegan2-config-f_c1_8xb2-1600kiters_ffhq-256-1024 --chosen-scale 12 --num 16 --truncation 0.7 --seed 0 --out samples.png

Variants: 'full' (default, the released model) and 'tiny' (fixture-size widths, same flags):
    from pegan.configs import load_experiment
    cfg = load_experiment("mspie-stylegan2-config-f_c1_8xb2-1600kiters_ffhq-256-1024", "tiny")
"""

from pegan.configs import stylegan2_config


def get_config(variant=None):
    return stylegan2_config("mspie-stylegan2-config-f_c1_8xb2-1600kiters_ffhq-256-1024", variant)
