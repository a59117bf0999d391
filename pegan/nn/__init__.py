"""Flax layers: equalized-lr dense / conv, modulated convs, noise injection, SinGAN blocks."""
