"""Tab.5 config-f: Config-f trained at 256/512/896 px (higher-resolution experiment) from 1024 px FFHQ.

Released model (FFHQ), metrics reported at the largest scale (896 px):
    FID50k 4.10   precision10k 72.21   recall10k 50.29
Chosen scales (offset -> px): 0 -> 256, 4 -> 512, 10 -> 896
Weights: https://download.openmmlab.com/mmediting/pe_in_gans/mspie-stylegan2_c2_config-f_ffhq_256-896_b3x8_1100k_20210406_144943-6c18ad5d.pth
Reference config: configs/positional_encoding_in_gans/mspie-stylegan2_c2_config-f_ffhq_256-896_b3x8_1100k.py (mmgeneration)

Use (the released file name identifies this experiment):
    pegan convert mspie-stylegan2_c2_config-f_ffhq_256-896_b3x8_1100k_20210406_144943-6c18ad5d.pth ckpt/mspie-stylegan2-config-f_c2_8xb3-1100kiters_ffhq-256-896
    pegan sample ckpt/mspie-stylegan2-config-f_c2_8xb3-1100kiters_ffhq-256-896 --chosen-scale 10 --num 16 --truncation 0.7 --seed 0 --out samples.png

Variants: 'full' (default, the released model) and 'tiny' (fixture-size widths, same flags):
    from pegan.configs import load_experiment
    cfg = load_experiment("mspie-stylegan2-config-f_c2_8xb3-1100kiters_ffhq-256-896", "tiny")
"""

from pegan.configs import stylegan2_config


def get_config(variant=None):
    return stylegan2_config("mspie-stylegan2-config-f_c2_8xb3-1100kiters_ffhq-256-896", variant)
