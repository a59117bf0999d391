"""Tab.5 config-b: StyleGAN2 baseline, 512 px: learned 4x4 constant, zero padding, transposed-conv + blur upsampling; one scale.

Released model (FFHQ), metrics reported at the largest scale (512 px):
    FID50k 4.91   precision10k 75.65   recall10k 54.58
Chosen scales (offset -> px): 0 -> 512
Weights: https://download.openmmlab.com/mmediting/pe_in_gans/stylegan2_c2_config-b_ffhq_512x512_b3x8_1100k_20210406_145142-e85e5cf4.pth
Reference config: configs/positional_encoding_in_gans/stylegan2_c2_ffhq_512_b3x8_1100k.py (mmgeneration)

Use (the released file name identifies this experiment):
    pegan convert stylegan2_c2_config-b_ffhq_512x512_b3x8_1100k_20210406_145142-e85e5cf4.pth ckpt/stylegan2_c2_8xb3-1100kiters_ffhq-512x512
    pegan sample ckpt/stylegan2_c2_8xb3-1100kiters_ffhq-512x512 --chosen-scale 0 --num 16 --truncation 0.7 --seed 0 --out samples.png

Variants: 'full' (default, the released model) and 'tiny' (fixture-size widths, same flags):
    from pegan.configs import load_experiment
    cfg = load_experiment("stylegan2_c2_8xb3-1100kiters_ffhq-512x512", "tiny")
"""

from pegan.configs import stylegan2_config


def get_config(variant=None):
    return stylegan2_config("stylegan2_c2_8xb3-1100kiters_ffhq-512x512", variant)
