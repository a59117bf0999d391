"""PE-SinGAN singan-csg_fish: CSG (2 channels) added to the stage-0 noise; zero padding 1 inside the
blocks.

Train on the reference's image (fish-crop.jpg, https://download.openmmlab.com/mmediting/dataset/singan/fish-crop.jpg):
    pegan train --config experiments/singan-csg_fish.py --workdir runs/singan-csg_fish \
        --config.data.image=fish-crop.jpg

Cost: 11 stages (long side 300 px) x 2000 iterations of 3 D + 3 G steps. Not yet
measured with pegan on a GPU; the built-in demo (a 64 px CSG model, 120 iterations per stage) takes
about 6 minutes on 2 CPU cores.
Result: no metrics were reported (qualitative results); look at random samples, wider ones too:
    pegan sample runs/singan-csg_fish --num 8 --width-factor 2 --out samples.png

The released weights (https://download.openmmlab.com/mmediting/pe_in_gans/singan_csg_fis_20210406_175532-f0ec7b61.pth, with the fixed noises in https://download.openmmlab.com/mmediting/pe_in_gans/singan_csg_fis_20210406_175532-f0ec7b61.pkl):
    pegan convert singan_csg_fis_20210406_175532-f0ec7b61.pth ckpt/singan-csg_fish
    pegan sample ckpt/singan-csg_fish --num 8 --out samples.png

Try it small (the 'tiny' variant: widths 16 / 8, 4 scales, a 40 px image, 20 iterations per stage):
    pegan train --config experiments/singan-csg_fish.py:tiny --workdir runs/tiny --config.data.image=IMAGE
"""

from pegan.configs import base


def get_config(variant=None):
    c = base.singan()
    c.generator.update(
        first_stage_in_channels=2,
        interp_pad=False,
        noise_with_pad=False,
        num_scales=10,
        pad_at_head=False,
        padding=1,
        positional_encoding=base.CSG,
    )
    c.discriminator.num_scales = 10
    c.data.max_size = 300
    c.noise.update(first_fixed_noises_ch=2, fixed_noise_with_pad=False)
    return base.finish(c, variant)
