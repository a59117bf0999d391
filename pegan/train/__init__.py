"""Training: StyleGAN2 / MS-PIE (``stylegan2``, ``stylegan2_loop``, ``sharded``), PE-SinGAN
(``singan``) and the metric writers (``writers``). Needs the 'train' extra."""

from pegan._extras import require

require("optax", extra="train", by=__name__)
