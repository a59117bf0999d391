"""Padding modes used by the PE models, NHWC: zero, none, reflect, replicate, interp-pad.

``interp-pad`` (the paper's padding-free alternative) enlarges a feature map by resizing it
(PyTorch ``align_corners=True`` bilinear or bicubic) instead of adding constant borders, so no
border value tells a later convolution where the edge is.
"""

from __future__ import annotations

from typing import Tuple, Union

import jax.numpy as jnp

from pegan.ops.resize import resize

__all__ = ["PADDING_MODES", "pad2d", "interp_pad", "as_pad4"]

PADDING_MODES = ("zero", "none", "reflect", "replicate", "interp")

Pad = Union[int, Tuple[int, int], Tuple[int, int, int, int]]


def as_pad4(pad: Pad) -> Tuple[int, int, int, int]:
    """int p -> (p, p, p, p); (ph, pw) -> (ph, ph, pw, pw); 4-tuple = (top, bottom, left, right)."""
    if isinstance(pad, int):
        return (pad,) * 4
    pad = tuple(int(p) for p in pad)
    if len(pad) == 2:
        return (pad[0], pad[0], pad[1], pad[1])
    if len(pad) == 4:
        return pad  # type: ignore[return-value]
    raise ValueError(f"padding must be an int, (ph, pw) or (top, bottom, left, right); got {pad}")


def interp_pad(x, pad: Pad, method: str = "bilinear", impl: str = "dense"):
    """Grow [N, H, W, C] to [N, H + top + bottom, W + left + right, C] by align_corners resizing;
    ``impl``: the resize's form ('dense' | 'gather', ``pegan.ops.resize``)."""
    t, b, l, r = as_pad4(pad)
    _, h, w, _ = x.shape
    return resize(x, (h + t + b, w + l + r), method=method, align_corners=True, impl=impl)


def pad2d(x, pad: Pad, mode: str = "zero", interp_method: str = "bilinear", resize_impl: str = "dense"):
    """Pad the spatial axes of NHWC ``x``. ``mode='none'`` returns ``x`` unchanged; ``resize_impl``:
    the form of the resize of ``mode='interp'``."""
    if mode == "none":
        return x
    t, b, l, r = as_pad4(pad)
    if mode == "interp":
        return interp_pad(x, (t, b, l, r), interp_method, resize_impl)
    widths = ((0, 0), (t, b), (l, r), (0, 0))
    if mode == "zero":
        return jnp.pad(x, widths)
    if mode == "reflect":
        return jnp.pad(x, widths, mode="reflect")
    if mode == "replicate":
        return jnp.pad(x, widths, mode="edge")
    raise ValueError(f"unknown padding mode {mode!r}; use one of {PADDING_MODES}")
