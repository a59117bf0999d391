"""One-call API for the released StyleGAN2 / MS-PIE models.

    import pegan.api as pg
    g = pg.load("mspie-stylegan2_c2_config-f_ffhq_256-512_b3x8_1100k_20210406_144927-4f4d5391.pth")
    images = pg.sample(g, num=4, chosen_scale=4, truncation=0.7, seed=0)   # [4, 512, 512, 3] in [-1, 1]
    pg.convert("that.pth", "ckpt/config-f")     # a pegan checkpoint directory (pegan.checkpoint)
    g = pg.load("ckpt/config-f")                 # the same model, from the directory

``load`` accepts a reference ``.pth`` (mmgeneration 0.x or mmagic 1.x layout) or a pegan
checkpoint directory and returns ``Loaded(model, variables, config, info)``: ``model.apply(
variables, z, chosen_scale, rng=key)`` generates RGB images (BGR with ``keep_bgr=True``).
"""

from pegan.loading import (MEAN_LATENT_SAMPLES, MEAN_LATENT_SEED, WHICH, ConversionError, Loaded, convert,
                           convert_reference, convert_singan_reference, is_singan_state_dict, load, resolve_scale,
                           sample, singan_sample, singan_sizes)

__all__ = ["Loaded", "load", "convert", "convert_reference", "convert_singan_reference", "sample",
           "singan_sample", "singan_sizes", "resolve_scale", "is_singan_state_dict", "ConversionError",
           "MEAN_LATENT_SEED", "MEAN_LATENT_SAMPLES", "WHICH"]
