"""Tab.5 config-g: Config-f with channel multiplier 1 (generator and discriminator).

Released model (FFHQ), metrics reported at the largest scale (512 px):
    FID50k 3.40   precision10k 73.05   recall10k 56.45
Chosen scales (offset -> px): 0 -> 256, 2 -> 384, 4 -> 512
Weights: https://download.openmmlab.com/mmediting/pe_in_gans/mspie-stylegan2_c1_config-g_ffhq_256-512_b3x8_1100k_20210406_144758-2df61752.pth
Reference config: configs/positional_encoding_in_gans/mspie-stylegan2_c1_config-g_ffhq_256-512_b3x8_1100k.py (mmgeneration)

Use (the released file name identifies this experiment):
    pegan convert mspie-stylegan2_c1_config-g_ffhq_256-512_b3x8_1100k_20210406_144758-2df61752.pth ckpt/mspie-stylegan2-config-g_c1_8xb3-1100kiters_ffhq-256-512
    pegan sample ckpt/mspie-stylegan2-config-g_c1_8xb3-1100kiters_ffhq-256-512 --chosen-scale 4 --num 16 --truncation 0.7 --seed 0 --out samples.png

Variants: 'full' (default, the released model) and 'tiny' (fixture-size widths, same flags):
    from pegan.configs import load_experiment
    cfg = load_experiment("mspie-stylegan2-config-g_c1_8xb3-1100kiters_ffhq-256-512", "tiny")
"""

from pegan.configs import stylegan2_config


def get_config(variant=None):
    return stylegan2_config("mspie-stylegan2-config-g_c1_8xb3-1100kiters_ffhq-256-512", variant)
