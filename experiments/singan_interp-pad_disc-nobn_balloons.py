"""PE-SinGAN singan_interp-pad_disc-nobn_balloons: no positional encoding; padding 0 with the block
input padded by bicubic interpolation (interp_pad, noise_with_pad).

Train on the reference's image (balloons.png, https://download.openmmlab.com/mmediting/dataset/singan/balloons.png):
    pegan train --config experiments/singan_interp-pad_disc-nobn_balloons.py --workdir runs/singan_interp-pad_disc-nobn_balloons \
        --config.data.image=balloons.png

Cost: 9 stages (long side 250 px) x 2000 iterations of 3 D + 3 G steps. Not yet
measured with pegan on a GPU; the built-in demo (a 64 px CSG model, 120 iterations per stage) takes
about 6 minutes on 2 CPU cores.
Result: no metrics were reported (qualitative results); look at random samples, wider ones too:
    pegan sample runs/singan_interp-pad_disc-nobn_balloons --num 8 --width-factor 2 --out samples.png

The released weights (https://download.openmmlab.com/mmediting/pe_in_gans/singan_interp-pad_disc-nobn_balloons_20210406_180059-7d63e65d.pth, with the fixed noises in https://download.openmmlab.com/mmediting/pe_in_gans/singan_interp-pad_disc-nobn_balloons_20210406_180059-7d63e65d.pkl):
    pegan convert singan_interp-pad_disc-nobn_balloons_20210406_180059-7d63e65d.pth ckpt/singan_interp-pad_disc-nobn_balloons
    pegan sample ckpt/singan_interp-pad_disc-nobn_balloons --num 8 --out samples.png

Try it small (the 'tiny' variant: widths 16 / 8, 4 scales, a 40 px image, 20 iterations per stage):
    pegan train --config experiments/singan_interp-pad_disc-nobn_balloons.py:tiny --workdir runs/tiny --config.data.image=IMAGE
"""

from pegan.configs import base


def get_config(variant=None):
    c = base.singan()
    c.discriminator.use_bn = False
    return base.finish(c, variant)
