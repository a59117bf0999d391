"""Tab.5 config-b: StyleGAN2 baseline, 512 px: learned 4x4 constant, zero padding, transposed-conv +
blur upsampling; one scale.

Train (FFHQ prepared at 512 px; the reference used 8 GPUs x 3 images):
    pegan prepare ffhq/images1024x1024 --out data/ffhq-512 --size 512
    pegan train --config experiments/stylegan2_c2_8xb3-1100kiters_ffhq-512x512.py \
        --workdir runs/stylegan2_c2_8xb3-1100kiters_ffhq-512x512 --config.data.path=data/ffhq-512

Cost: 1,100,002 steps of 24 images (26,400 kimg) at 512 px, uniformly drawn
(mean pixels per image 4.00x a 256 px image). Not yet measured with pegan on a GPU; at NVIDIA's
StyleGAN2 speed (2.47 s/kimg at 256 px on 8 A100, stylegan3 docs/configs.md) this is about
72 hours on 8 A100.
Result (the released model, FFHQ, at 512 px): FID50k 4.91   precision10k 75.65   recall10k 54.58

The released weights (https://download.openmmlab.com/mmediting/pe_in_gans/stylegan2_c2_config-b_ffhq_512x512_b3x8_1100k_20210406_145142-e85e5cf4.pth):
    pegan convert stylegan2_c2_config-b_ffhq_512x512_b3x8_1100k_20210406_145142-e85e5cf4.pth ckpt/stylegan2_c2_8xb3-1100kiters_ffhq-512x512
    pegan sample ckpt/stylegan2_c2_8xb3-1100kiters_ffhq-512x512 --chosen-scale 0 --num 16 --truncation 0.7 --out samples.png
    pegan evaluate ckpt/stylegan2_c2_8xb3-1100kiters_ffhq-512x512 --real data/ffhq-512 --metrics fid50k,pr10k
Reference config: mmgeneration configs/positional_encoding_in_gans/stylegan2_c2_ffhq_512_b3x8_1100k.py

Try it small (the 'tiny' variant: the same switches at fixture widths, 32 px at scale 0, batch 4):
    pegan train --config experiments/stylegan2_c2_8xb3-1100kiters_ffhq-512x512.py:tiny --workdir runs/tiny \
        --config.data.path=IMAGE_FOLDER --config.train.total_iters=200
"""

from pegan.configs import base


def get_config(variant=None):
    c = base.stylegan2()
    c.generator.out_size = 512
    c.discriminator.in_size = 512
    return base.finish(c, variant)
