"""Resizing with PyTorch's exact semantics, NHWC.

``jax.image.resize`` uses half-pixel centres, antialiasing on downsampling and Keys a=-0.5
for cubic; the reference uses ``F.interpolate`` (REFERENCE pitfalls 6-7), so we implement:

* bilinear, ``align_corners=True``: ``src = dst * (in - 1) / (out - 1)`` (0 when out == 1);
* bilinear, ``align_corners=False``: ``src = max((dst + 0.5) * in / out - 0.5, 0)``;
* bicubic, ``align_corners=True``: same ``src`` as bilinear, Keys cubic with A = -0.75 on the
  four taps around ``floor(src)``, indices clamped to the border;
* legacy nearest: ``src = min(floor(dst * in / out), in - 1)``.

Source coordinates, indices and weights are computed once on the host in float32, exactly as
PyTorch's CPU kernels do. Two forms apply them, one axis at a time (``impl``, tests hold them
equal, first and second order):

* ``'dense'`` (the default): the taps and weights become a small ``[out, in]`` interpolation
  matrix per axis (built on the host with NumPy, the weights of repeated clamped indices added
  in float32), applied by a matmul along the axis at ``Precision.HIGHEST`` (no TF32 or bfloat16
  passes). The matrix is banded: the outputs are cut into blocks of ``DENSE_BLOCK`` and each
  block multiplies the static slice of inputs it reads (one batched matmul over the blocks), so
  the cost per output is about ``DENSE_BLOCK * in / out + taps`` multiply-adds, not ``in``.
  An axis whose matrix is the identity is skipped, nearest-neighbour resampling by an integer
  factor is a broadcast (up) or a strided slice (down). Forward, backward and every higher
  derivative are matmuls, slices, pads and sums: dense and deterministic.
* ``'gather'`` (the reference form): ``jnp.take`` of each tap plus a weighted sum. Its gradient
  is a scatter-add, slow on GPUs (float atomics, not deterministic) and serialised on TPUs.

The forms differ by float32 rounding only (the dense one sums the weights of a clamped index
before multiplying, and a matmul may order its sums differently); a non-finite input value
reaches every output of the blocks whose window holds it in the dense form (0 * inf is nan),
only the outputs that read it in the gather form.
"""

from __future__ import annotations

import functools
from typing import Sequence, Tuple

import jax.numpy as jnp
import numpy as np
from jax import lax

from pegan.ops.forms import RESIZE_IMPLS, check_impl

__all__ = ["resize_bilinear", "resize_bicubic", "resize_nearest", "resize", "bicubic_taps",
           "bilinear_taps", "nearest_index", "interp_matrix", "DENSE_BLOCK"]

CUBIC_A = -0.75  # PyTorch's bicubic coefficient
DENSE_BLOCK = 32  # outputs per block of the dense form's banded matmul


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


# -- the dense form ---------------------------------------------------------------------------

def _taps(kind: str, n_in: int, n_out: int, align_corners: bool):
    if kind == "bilinear":
        return bilinear_taps(n_in, n_out, align_corners)
    if kind == "bicubic":
        return bicubic_taps(n_in, n_out, align_corners)
    return (nearest_index(n_in, n_out),), (np.ones(n_out, np.float32),)


def interp_matrix(kind: str, n_in: int, n_out: int, align_corners: bool = True) -> np.ndarray:
    """The ``[n_out, n_in]`` float32 matrix of one axis: ``M[o, idx_k[o]] += w_k[o]`` over the
    taps ``k`` of ``kind`` ('bilinear', 'bicubic' or 'nearest'), added in tap order."""
    idx, weights = _taps(kind, n_in, n_out, align_corners)
    m = np.zeros((n_out, n_in), np.float32)
    rows = np.arange(n_out)
    for i, w in zip(idx, weights):
        np.add.at(m, (rows, np.asarray(i)), np.asarray(w, np.float32))
    return m


@functools.lru_cache(maxsize=512)
def _plan(kind: str, n_in: int, n_out: int, align_corners: bool, block: int):
    """How the dense form does one axis: ('identity',), ('repeat', f), ('slice', start, stride)
    or ('band', starts, width, mats [blocks, block, width]) (host values, cached)."""
    m = interp_matrix(kind, n_in, n_out, align_corners)
    if n_in == n_out and np.array_equal(m, np.eye(n_in, dtype=np.float32)):
        return ("identity",)
    if kind == "nearest":
        idx = nearest_index(n_in, n_out)
        if n_out % n_in == 0 and np.array_equal(idx, np.arange(n_out) // (n_out // n_in)):
            return ("repeat", n_out // n_in)
        step = int(idx[1] - idx[0]) if n_out > 1 else 1
        if step > 0 and np.array_equal(idx, idx[0] + step * np.arange(n_out)):
            return ("slice", int(idx[0]), step)
    nb = -(-n_out // block) if n_out > block else 1
    rows = np.zeros((nb * (block if nb > 1 else n_out), n_in), np.float32)
    rows[:n_out] = m
    rows = rows.reshape(nb, -1, n_in)
    support = [np.nonzero(r.any(axis=0))[0] for r in rows]
    lo = [int(s[0]) if s.size else 0 for s in support]
    hi = [int(s[-1]) if s.size else 0 for s in support]
    width = max(h - l + 1 for l, h in zip(lo, hi))
    starts = tuple(min(l, n_in - width) for l in lo)
    mats = np.stack([r[:, s:s + width] for r, s in zip(rows, starts)]).astype(np.float32)
    return ("band", starts, width, mats)


_LETTERS = "abcdefghijklmnopq"


def _dense_axis(x, axis: int, kind: str, n_out: int, align_corners: bool, block: int = DENSE_BLOCK):
    """Resample ``x`` along ``axis`` to ``n_out`` with the dense form."""
    n_in = x.shape[axis]
    plan = _plan(kind, n_in, n_out, bool(align_corners), block)
    if plan[0] == "identity":
        return x
    if plan[0] == "repeat":
        f = plan[1]
        y = jnp.broadcast_to(jnp.expand_dims(x, axis + 1), x.shape[:axis + 1] + (f,) + x.shape[axis + 1:])
        return y.reshape(x.shape[:axis] + (n_in * f,) + x.shape[axis + 1:])
    if plan[0] == "slice":
        _, start, step = plan
        return lax.slice_in_dim(x, start, start + step * (n_out - 1) + 1, step, axis)
    _, starts, width, mats = plan
    mats = jnp.asarray(mats, x.dtype)
    before, after = _LETTERS[:axis], _LETTERS[axis:x.ndim - 1]
    hi = lax.Precision.HIGHEST
    if len(starts) == 1:
        xs = x if width == n_in else lax.slice_in_dim(x, starts[0], starts[0] + width, axis=axis)
        return jnp.einsum(f"zw,{before}w{after}->{before}z{after}", mats[0], xs, precision=hi)
    xs = jnp.stack([lax.slice_in_dim(x, s, s + width, axis=axis) for s in starts], axis=axis)
    y = jnp.einsum(f"yzw,{before}yw{after}->{before}yz{after}", mats, xs, precision=hi)
    y = y.reshape(x.shape[:axis] + (mats.shape[0] * mats.shape[1],) + x.shape[axis + 1:])
    return lax.slice_in_dim(y, 0, n_out, axis=axis)


def _size(size) -> Tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def _interp(x, size, kind: str, align_corners: bool, impl: str):
    check_impl("resize", impl, RESIZE_IMPLS)
    oh, ow = _size(size)
    _, h, w, _ = x.shape
    taps = bilinear_taps if kind == "bilinear" else bicubic_taps
    for axis, n_in, n_out in ((1, h, oh), (2, w, ow)):
        if n_out == n_in and align_corners:
            continue
        if impl == "dense":
            x = _dense_axis(x, axis, kind, n_out, align_corners)
        else:
            x = _apply_taps(x, axis, *taps(n_in, n_out, align_corners))
    return x


def resize_bilinear(x, size, align_corners: bool = True, impl: str = "dense"):
    """``F.interpolate(x, size, mode='bilinear', align_corners=...)`` for NHWC ``x``; ``impl``:
    'dense' | 'gather' (the module doc)."""
    return _interp(x, size, "bilinear", align_corners, impl)


def resize_bicubic(x, size, align_corners: bool = True, impl: str = "dense"):
    """``F.interpolate(x, size, mode='bicubic', align_corners=...)`` (A = -0.75) for NHWC ``x``."""
    return _interp(x, size, "bicubic", align_corners, impl)


def resize_nearest(x, size, impl: str = "dense"):
    """``F.interpolate(x, size, mode='nearest')`` (legacy nearest) for NHWC ``x``."""
    check_impl("resize", impl, RESIZE_IMPLS)
    oh, ow = _size(size)
    _, h, w, _ = x.shape
    if impl == "dense":
        return _dense_axis(_dense_axis(x, 1, "nearest", oh, False), 2, "nearest", ow, False)
    x = jnp.take(x, jnp.asarray(nearest_index(h, oh)), axis=1)
    return jnp.take(x, jnp.asarray(nearest_index(w, ow)), axis=2)


def resize(x, size: Sequence[int] | int, method: str = "bilinear", align_corners: bool = True,
           impl: str = "dense"):
    """Dispatch: ``method`` in {'bilinear', 'bicubic', 'nearest'} (PyTorch semantics); ``impl``:
    'dense' | 'gather'."""
    if method == "bilinear":
        return resize_bilinear(x, size, align_corners, impl)
    if method == "bicubic":
        return resize_bicubic(x, size, align_corners, impl)
    if method == "nearest":
        return resize_nearest(x, size, impl)
    raise ValueError(f"unknown resize method {method!r}; use 'bilinear', 'bicubic' or 'nearest'")
