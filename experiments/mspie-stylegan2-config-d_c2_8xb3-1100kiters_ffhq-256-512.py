"""Tab.5 config-d: MS-PIE with a CSG head (2 channels) built at 4+s, zero padding, conv-then-upsample.

Train (FFHQ prepared at 512 px; the reference used 8 GPUs x 3 images):
    pegan prepare ffhq/images1024x1024 --out data/ffhq-512 --size 512
    pegan train --config experiments/mspie-stylegan2-config-d_c2_8xb3-1100kiters_ffhq-256-512.py \
        --workdir runs/mspie-stylegan2-config-d_c2_8xb3-1100kiters_ffhq-256-512 --config.data.path=data/ffhq-512

Cost: 1,100,002 steps of 24 images (26,400 kimg) at 256, 384, 512 px, uniformly drawn
(mean pixels per image 2.42x a 256 px image). Not yet measured with pegan on a GPU; at NVIDIA's
StyleGAN2 speed (2.47 s/kimg at 256 px on 8 A100, stylegan3 docs/configs.md) this is about
44 hours on 8 A100.
Result (the released model, FFHQ, at 512 px): FID50k 3.50   precision10k 73.28   recall10k 56.16

The released weights (https://download.openmmlab.com/mmediting/pe_in_gans/mspie-stylegan2_c2_config-d_ffhq_256-512_b3x8_1100k_20210406_144840-dbefacf6.pth):
    pegan convert mspie-stylegan2_c2_config-d_ffhq_256-512_b3x8_1100k_20210406_144840-dbefacf6.pth ckpt/mspie-stylegan2-config-d_c2_8xb3-1100kiters_ffhq-256-512
    pegan sample ckpt/mspie-stylegan2-config-d_c2_8xb3-1100kiters_ffhq-256-512 --chosen-scale 4 --num 16 --truncation 0.7 --out samples.png
    pegan evaluate ckpt/mspie-stylegan2-config-d_c2_8xb3-1100kiters_ffhq-256-512 --real data/ffhq-512 --metrics fid50k,pr10k
Reference config: mmgeneration configs/positional_encoding_in_gans/mspie-stylegan2_c2_config-d_ffhq_256-512_b3x8_1100k.py

Try it small (the 'tiny' variant: the same switches at fixture widths, 32 px at scale 0, batch 4):
    pegan train --config experiments/mspie-stylegan2-config-d_c2_8xb3-1100kiters_ffhq-256-512.py:tiny --workdir runs/tiny \
        --config.data.path=IMAGE_FOLDER --config.train.total_iters=200
"""

from pegan.configs import base


def get_config(variant=None):
    c = base.stylegan2()
    c.scales = [0, 2, 4]
    c.generator.update(deconv2conv=True, head_pos_encoding=base.CSG, up_after_conv=True)
    c.discriminator.with_adaptive_pool = True
    c.train.scale_probs = [0.5, 0.25, 0.25]
    return base.finish(c, variant)
