"""Resizing with PyTorch's exact semantics, NHWC.

``jax.image.resize`` uses half-pixel centres, antialiasing on downsampling and Keys a=-0.5
for cubic; the reference uses ``F.interpolate`` (REFERENCE pitfalls 6-7), so we implement:

* bilinear, ``align_corners=True``: ``src = dst * (in - 1) / (out - 1)`` (0 when out == 1);
* bilinear, ``align_corners=False``: ``src = max((dst + 0.5) * in / out - 0.5, 0)``;
* bicubic, ``align_corners=True``: same ``src`` as bilinear, Keys cubic with A = -0.75 on the
  four taps around ``floor(src)``, indices clamped to the border;
* legacy nearest: ``src = min(floor(dst * in / out), in - 1)``.

Source coordinates, indices and weights are computed once on the host in float32, exactly as
PyTorch's CPU kernels do, and the interpolation is a gather plus a weighted sum per axis.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import jax.numpy as jnp
import numpy as np

__all__ = ["resize_bilinear", "resize_bicubic", "resize_nearest", "resize", "bicubic_taps",
           "bilinear_taps", "nearest_index"]

CUBIC_A = -0.75  # PyTorch's bicubic coefficient


def _scale(n_in: int, n_out: int, align_corners: bool) -> np.float32:
    if align_corners:
        return np.float32(n_in - 1) / np.float32(n_out - 1) if n_out > 1 else np.float32(0)
    return np.float32(n_in) / np.float32(n_out)


def _src(n_in: int, n_out: int, align_corners: bool, cubic: bool = False) -> np.ndarray:
    scale = _scale(n_in, n_out, align_corners)
    dst = np.arange(n_out, dtype=np.float32)
    if align_corners:
        return scale * dst
    src = scale * (dst + np.float32(0.5)) - np.float32(0.5)
    return src if cubic else np.maximum(src, np.float32(0))


def bilinear_taps(n_in: int, n_out: int, align_corners: bool = True):
    """Indices (i0, i1) and weights (w0, w1) of PyTorch's bilinear along one axis."""
    src = _src(n_in, n_out, align_corners)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    lam = (src - i0.astype(np.float32)).astype(np.float32)
    return (i0, i1), (np.float32(1) - lam, lam)


def _cubic1(x, a):  # |x| <= 1
    return ((a + 2) * x - (a + 3)) * x * x + 1


def _cubic2(x, a):  # 1 < |x| < 2
    return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a


def bicubic_taps(n_in: int, n_out: int, align_corners: bool = True):
    """Four clamped indices and weights of PyTorch's bicubic (A = -0.75) along one axis."""
    src = _src(n_in, n_out, align_corners, cubic=True)
    fl = np.floor(src)
    t = (src - fl).astype(np.float32)
    a = np.float32(CUBIC_A)
    one, two = np.float32(1), np.float32(2)
    weights = (_cubic2(t + one, a), _cubic1(t, a), _cubic1(one - t, a), _cubic2(two - t, a))
    base = fl.astype(np.int64)
    idx = tuple(np.clip(base + k, 0, n_in - 1) for k in (-1, 0, 1, 2))
    return idx, tuple(w.astype(np.float32) for w in weights)


def nearest_index(n_in: int, n_out: int) -> np.ndarray:
    """PyTorch's legacy 'nearest' source index: ``min(floor(dst * (in / out)), in - 1)``."""
    if n_in == n_out:
        return np.arange(n_out)
    if n_out == 2 * n_in:
        return np.arange(n_out) >> 1
    scale = np.float32(n_in) / np.float32(n_out)
    return np.minimum(np.floor(np.arange(n_out, dtype=np.float32) * scale).astype(np.int64), n_in - 1)


def _apply_taps(x, axis: int, idx, weights):
    out = None
    for i, w in zip(idx, weights):
        shape = [1] * x.ndim
        shape[axis] = -1
        term = jnp.take(x, jnp.asarray(i), axis=axis) * jnp.asarray(w, x.dtype).reshape(shape)
        out = term if out is None else out + term
    return out


def _size(size) -> Tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def resize_bilinear(x, size, align_corners: bool = True):
    """``F.interpolate(x, size, mode='bilinear', align_corners=...)`` for NHWC ``x``."""
    oh, ow = _size(size)
    _, h, w, _ = x.shape
    if (oh, ow) == (h, w) and align_corners:
        return x
    if oh != h or not align_corners:
        x = _apply_taps(x, 1, *bilinear_taps(h, oh, align_corners))
    if ow != w or not align_corners:
        x = _apply_taps(x, 2, *bilinear_taps(w, ow, align_corners))
    return x


def resize_bicubic(x, size, align_corners: bool = True):
    """``F.interpolate(x, size, mode='bicubic', align_corners=...)`` (A = -0.75) for NHWC ``x``."""
    oh, ow = _size(size)
    _, h, w, _ = x.shape
    if (oh, ow) == (h, w) and align_corners:
        return x
    if oh != h or not align_corners:
        x = _apply_taps(x, 1, *bicubic_taps(h, oh, align_corners))
    if ow != w or not align_corners:
        x = _apply_taps(x, 2, *bicubic_taps(w, ow, align_corners))
    return x


def resize_nearest(x, size):
    """``F.interpolate(x, size, mode='nearest')`` (legacy nearest) for NHWC ``x``."""
    oh, ow = _size(size)
    _, h, w, _ = x.shape
    x = jnp.take(x, jnp.asarray(nearest_index(h, oh)), axis=1)
    return jnp.take(x, jnp.asarray(nearest_index(w, ow)), axis=2)


def resize(x, size: Sequence[int] | int, method: str = "bilinear", align_corners: bool = True):
    """Dispatch: ``method`` in {'bilinear', 'bicubic', 'nearest'} (PyTorch semantics)."""
    if method == "bilinear":
        return resize_bilinear(x, size, align_corners)
    if method == "bicubic":
        return resize_bicubic(x, size, align_corners)
    if method == "nearest":
        return resize_nearest(x, size)
    raise ValueError(f"unknown resize method {method!r}; use 'bilinear', 'bicubic' or 'nearest'")
