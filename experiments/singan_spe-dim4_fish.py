"""PE-SinGAN singan_spe-dim4_fish: SPE (embedding_dim 4, center_shift 200) added to the stage-0 noise;
zero padding 1.

Train on the reference's image (fish-crop.jpg, https://download.openmmlab.com/mmediting/dataset/singan/fish-crop.jpg):
    pegan train --config experiments/singan_spe-dim4_fish.py --workdir runs/singan_spe-dim4_fish \
        --config.data.image=fish-crop.jpg

Cost: 11 stages (long side 300 px) x 2000 iterations of 3 D + 3 G steps. Not yet
measured with pegan on a GPU; the built-in demo (a 64 px CSG model, 120 iterations per stage) takes
about 6 minutes on 2 CPU cores.
Result: no metrics were reported (qualitative results); look at random samples, wider ones too:
    pegan sample runs/singan_spe-dim4_fish --num 8 --width-factor 2 --out samples.png

The released weights (https://download.openmmlab.com/mmediting/pe_in_gans/singan_spe-dim4_fish_20210406_175933-f483a7e3.pth, with the fixed noises in https://download.openmmlab.com/mmediting/pe_in_gans/singan_spe-dim4_fish_20210406_175933-f483a7e3.pkl):
    pegan convert singan_spe-dim4_fish_20210406_175933-f483a7e3.pth ckpt/singan_spe-dim4_fish
    pegan sample ckpt/singan_spe-dim4_fish --num 8 --out samples.png

Try it small (the 'tiny' variant: widths 16 / 8, 4 scales, a 40 px image, 20 iterations per stage):
    pegan train --config experiments/singan_spe-dim4_fish.py:tiny --workdir runs/tiny --config.data.image=IMAGE
"""

from pegan.configs import base


def get_config(variant=None):
    c = base.singan()
    c.generator.update(
        first_stage_in_channels=8,
        interp_pad=False,
        noise_with_pad=False,
        num_scales=10,
        pad_at_head=False,
        padding=1,
        positional_encoding=dict(base.SPE, center_shift=200, div_half_dim=False, embedding_dim=4, init_size=512),
    )
    c.discriminator.num_scales = 10
    c.data.max_size = 300
    c.noise.fixed_noise_with_pad = False
    # the reference's config never sets first_fixed_noises_ch: the stage-0 noise keeps 1 channel,
    # broadcast onto the 8 SPE channels
    return base.finish(c, variant)
