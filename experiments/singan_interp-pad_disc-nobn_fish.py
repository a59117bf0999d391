"""PE-SinGAN singan_interp-pad_disc-nobn_fish: no positional encoding; padding 0 with the block input
padded by bicubic interpolation (interp_pad, noise_with_pad).

Train on the reference's image (fish-crop.jpg, https://download.openmmlab.com/mmediting/dataset/singan/fish-crop.jpg):
    pegan train --config experiments/singan_interp-pad_disc-nobn_fish.py --workdir runs/singan_interp-pad_disc-nobn_fish \
        --config.data.image=fish-crop.jpg

Cost: 11 stages (long side 300 px) x 2000 iterations of 3 D + 3 G steps. Not yet
measured with pegan on a GPU; the built-in demo (a 64 px CSG model, 120 iterations per stage) takes
about 6 minutes on 2 CPU cores.
Result: no metrics were reported (qualitative results); look at random samples, wider ones too:
    pegan sample runs/singan_interp-pad_disc-nobn_fish --num 8 --width-factor 2 --out samples.png

The released weights (https://download.openmmlab.com/mmediting/pe_in_gans/singan_interp-pad_disc-nobn_fis_20210406_175720-9428517a.pth, with the fixed noises in https://download.openmmlab.com/mmediting/pe_in_gans/singan_interp-pad_disc-nobn_fis_20210406_175720-9428517a.pkl):
    pegan convert singan_interp-pad_disc-nobn_fis_20210406_175720-9428517a.pth ckpt/singan_interp-pad_disc-nobn_fish
    pegan sample ckpt/singan_interp-pad_disc-nobn_fish --num 8 --out samples.png

Try it small (the 'tiny' variant: widths 16 / 8, 4 scales, a 40 px image, 20 iterations per stage):
    pegan train --config experiments/singan_interp-pad_disc-nobn_fish.py:tiny --workdir runs/tiny --config.data.image=IMAGE
"""

from pegan.configs import base


def get_config(variant=None):
    c = base.singan()
    c.generator.num_scales = 10
    c.discriminator.update(num_scales=10, use_bn=False)
    c.data.max_size = 300
    return base.finish(c, variant)
