"""Tab.5 config-a: StyleGAN2 baseline, 256 px: learned 4x4 constant, zero padding, transposed-conv +
blur upsampling; one scale.

Train (FFHQ prepared at 256 px; the reference used 8 GPUs x 3 images):
    pegan prepare ffhq/images1024x1024 --out data/ffhq-256 --size 256
    pegan train --config experiments/stylegan2_c2_8xb3-1100kiters_ffhq-256x256.py \
        --workdir runs/stylegan2_c2_8xb3-1100kiters_ffhq-256x256 --config.data.path=data/ffhq-256

Cost: 1,100,002 steps of 24 images (26,400 kimg) at 256 px, uniformly drawn
(mean pixels per image 1.00x a 256 px image). Not yet measured with pegan on a GPU; at NVIDIA's
StyleGAN2 speed (2.47 s/kimg at 256 px on 8 A100, stylegan3 docs/configs.md) this is about
18 hours on 8 A100.
Result (the released model, FFHQ, at 256 px): FID50k 5.56   precision10k 75.92   recall10k 51.24

The released weights (https://download.openmmlab.com/mmediting/pe_in_gans/stylegan2_c2_config-a_ffhq_256x256_b3x8_1100k_20210406_145127-71d9634b.pth):
    pegan convert stylegan2_c2_config-a_ffhq_256x256_b3x8_1100k_20210406_145127-71d9634b.pth ckpt/stylegan2_c2_8xb3-1100kiters_ffhq-256x256
    pegan sample ckpt/stylegan2_c2_8xb3-1100kiters_ffhq-256x256 --chosen-scale 0 --num 16 --truncation 0.7 --out samples.png
    pegan evaluate ckpt/stylegan2_c2_8xb3-1100kiters_ffhq-256x256 --real data/ffhq-256 --metrics fid50k,pr10k
Reference config: mmgeneration configs/positional_encoding_in_gans/stylegan2_c2_ffhq_256_b3x8_1100k.py

Try it small (the 'tiny' variant: the same switches at fixture widths, 32 px at scale 0, batch 4):
    pegan train --config experiments/stylegan2_c2_8xb3-1100kiters_ffhq-256x256.py:tiny --workdir runs/tiny \
        --config.data.path=IMAGE_FOLDER --config.train.total_iters=200
"""

from pegan.configs import base


def get_config(variant=None):
    c = base.stylegan2()

    return base.finish(c, variant)
