"""Tab.5 config-f, higher resolution: Config-f with generator channel multiplier 1 trained at
256/512/1024 px from 1024 px FFHQ, batch 2x8; the name says 1600k but the config trains 1,500,002
iterations; the discriminator keeps channel multiplier 2.

Train (FFHQ prepared at 1024 px; the reference used 8 GPUs x 2 images):
    pegan prepare ffhq/images1024x1024 --out data/ffhq-1024 --size 1024
    pegan train --config experiments/mspie-stylegan2-config-f_c1_8xb2-1600kiters_ffhq-256-1024.py \
        --workdir runs/mspie-stylegan2-config-f_c1_8xb2-1600kiters_ffhq-256-1024 --config.data.path=data/ffhq-1024

Cost: 1,500,002 steps of 16 images (24,000 kimg) at 256, 512, 1024 px, uniformly drawn
(mean pixels per image 7.00x a 256 px image). Not yet measured with pegan on a GPU; at NVIDIA's
StyleGAN2 speed (2.47 s/kimg at 256 px on 8 A100, stylegan3 docs/configs.md) this is about
115 hours on 8 A100.
Result (the released model, FFHQ, at 1024 px): FID50k 6.24   precision10k 71.79   recall10k 49.92

The released weights (https://download.openmmlab.com/mmediting/pe_in_gans/mspie-stylegan2_c1_config-f_ffhq_256-1024_b2x8_1600k_20210406_144716-81cbdc96.pth):
    pegan convert mspie-stylegan2_c1_config-f_ffhq_256-1024_b2x8_1600k_20210406_144716-81cbdc96.pth ckpt/mspie-stylegan2-config-f_c1_8xb2-1600kiters_ffhq-256-1024
    pegan sample ckpt/mspie-stylegan2-config-f_c1_8xb2-1600kiters_ffhq-256-1024 --chosen-scale 12 --num 16 --truncation 0.7 --out samples.png
    pegan evaluate ckpt/mspie-stylegan2-config-f_c1_8xb2-1600kiters_ffhq-256-1024 --real data/ffhq-1024 --metrics fid50k,pr10k
Reference config: mmgeneration configs/positional_encoding_in_gans/mspie-stylegan2_c1_config-f_ffhq_256-1024_b2x8_1600k.py

Try it small (the 'tiny' variant: the same switches at fixture widths, 32 px at scale 0, batch 4):
    pegan train --config experiments/mspie-stylegan2-config-f_c1_8xb2-1600kiters_ffhq-256-1024.py:tiny --workdir runs/tiny \
        --config.data.path=IMAGE_FOLDER --config.train.total_iters=200
"""

from pegan.configs import base


def get_config(variant=None):
    c = base.stylegan2()
    c.scales = [0, 4, 12]
    c.generator.update(
        channel_multiplier=1,
        deconv2conv=True,
        head_pos_encoding=base.SPE,
        up_after_conv=True,
    )
    c.discriminator.with_adaptive_pool = True
    c.train.update(batch=16, scale_probs=[0.5, 0.25, 0.25], total_iters=1_500_002)
    return base.finish(c, variant)
