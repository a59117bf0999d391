"""The networks: StyleGAN2 / MS-PIE (``stylegan2``) and PE-SinGAN (``singan``)."""
