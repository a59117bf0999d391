"""Tab.5 config-f, higher resolution: Config-f trained at 256/512/896 px (higher-resolution
experiment) from 1024 px FFHQ.

Train (FFHQ prepared at 1024 px; the reference used 8 GPUs x 3 images):
    pegan prepare ffhq/images1024x1024 --out data/ffhq-1024 --size 1024
    pegan train --config experiments/mspie-stylegan2-config-f_c2_8xb3-1100kiters_ffhq-256-896.py \
        --workdir runs/mspie-stylegan2-config-f_c2_8xb3-1100kiters_ffhq-256-896 --config.data.path=data/ffhq-1024

Cost: 1,100,002 steps of 24 images (26,400 kimg) at 256, 512, 896 px, uniformly drawn
(mean pixels per image 5.75x a 256 px image). Not yet measured with pegan on a GPU; at NVIDIA's
StyleGAN2 speed (2.47 s/kimg at 256 px on 8 A100, stylegan3 docs/configs.md) this is about
104 hours on 8 A100.
Result (the released model, FFHQ, at 896 px): FID50k 4.10   precision10k 72.21   recall10k 50.29

The released weights (https://download.openmmlab.com/mmediting/pe_in_gans/mspie-stylegan2_c2_config-f_ffhq_256-896_b3x8_1100k_20210406_144943-6c18ad5d.pth):
    pegan convert mspie-stylegan2_c2_config-f_ffhq_256-896_b3x8_1100k_20210406_144943-6c18ad5d.pth ckpt/mspie-stylegan2-config-f_c2_8xb3-1100kiters_ffhq-256-896
    pegan sample ckpt/mspie-stylegan2-config-f_c2_8xb3-1100kiters_ffhq-256-896 --chosen-scale 10 --num 16 --truncation 0.7 --out samples.png
    pegan evaluate ckpt/mspie-stylegan2-config-f_c2_8xb3-1100kiters_ffhq-256-896 --real data/ffhq-1024 --metrics fid50k,pr10k
Reference config: mmgeneration configs/positional_encoding_in_gans/mspie-stylegan2_c2_config-f_ffhq_256-896_b3x8_1100k.py

Try it small (the 'tiny' variant: the same switches at fixture widths, 32 px at scale 0, batch 4):
    pegan train --config experiments/mspie-stylegan2-config-f_c2_8xb3-1100kiters_ffhq-256-896.py:tiny --workdir runs/tiny \
        --config.data.path=IMAGE_FOLDER --config.train.total_iters=200
"""

from pegan.configs import base


def get_config(variant=None):
    c = base.stylegan2()
    c.scales = [0, 4, 10]
    c.generator.update(deconv2conv=True, head_pos_encoding=base.SPE, up_after_conv=True)
    c.discriminator.with_adaptive_pool = True
    c.train.scale_probs = [0.5, 0.25, 0.25]
    return base.finish(c, variant)
