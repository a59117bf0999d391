"""upfirdn2d (upsample, FIR filter, downsample) and its FIR kernels, NHWC.

Semantics (REFERENCE §2.8, mmcv 1.x / rosinality): (1) insert ``up - 1`` zeros after every
sample on both axes; (2) pad ``p0`` before and ``p1`` after (negative crops); (3) *true*
convolution with the 2-D kernel (flipped, then correlated); (4) keep every ``down``-th sample.
Output size: ``(H * up + p0 + p1 - K) // down + 1``.

Three forms behind one signature (``upfirdn2d(..., impl=)``), tests hold them equal: 'ref'
(``upfirdn2d_ref``) does the four steps literally; 'conv' (``upfirdn2d_conv``) folds them into
one dilated, strided depthwise convolution per axis (separable kernels) or one 2-D one;
'slices' (``upfirdn2d_slices``, the default) does the zero insertion and the pads as one
``lax.pad`` and the filter as a weighted sum of strided slices, one axis at a time for a
separable kernel. Depthwise (grouped) convolutions are ~30x slower than the slices
on XLA's CPU backend (the blurs of the MS-PIE discriminator; docs/PERF_NOTES.md), and the sum of
slices fuses into one loop, on accelerators too.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import jax.numpy as jnp
import numpy as np
from jax import lax

from pegan.ops.forms import UPFIRDN_IMPLS, check_impl

__all__ = ["fir_kernel", "fir_kernel_1d", "upfirdn2d", "upfirdn2d_ref", "upfirdn2d_conv", "upfirdn2d_slices",
           "blur", "upsample2d", "downsample2d"]

BLUR_TAPS = (1, 3, 3, 1)

Pads = Union[int, Tuple[int, int], Tuple[Tuple[int, int], Tuple[int, int]]]


def fir_kernel(taps: Sequence[float] = BLUR_TAPS, gain: float = 1.0) -> np.ndarray:
    """2-D kernel ``outer(taps, taps) / sum * gain`` (float32); 2-D input is normalised as is."""
    t = np.asarray(taps, dtype=np.float32)
    k = np.outer(t, t) if t.ndim == 1 else t
    return (k / k.sum() * np.float32(gain)).astype(np.float32)


def fir_kernel_1d(taps: Sequence[float] = BLUR_TAPS, gain: float = 1.0) -> np.ndarray:
    """1-D factor of ``fir_kernel(taps, gain)``: ``outer(k1, k1) == fir_kernel``."""
    t = np.asarray(taps, dtype=np.float32)
    return (t / t.sum() * np.float32(np.sqrt(gain))).astype(np.float32)


def _pads(pad: Pads) -> Tuple[Tuple[int, int], Tuple[int, int]]:
    """-> ((y0, y1), (x0, x1)). An int or (p0, p1) applies to both axes, as in mmgen."""
    if isinstance(pad, int):
        return (pad, pad), (pad, pad)
    if len(pad) == 2 and all(isinstance(p, (int, np.integer)) for p in pad):
        return (int(pad[0]), int(pad[1])), (int(pad[0]), int(pad[1]))
    (y0, y1), (x0, x1) = pad
    return (int(y0), int(y1)), (int(x0), int(x1))


def _depthwise(x, kernel_hw, strides=(1, 1), padding=((0, 0), (0, 0)), lhs_dilation=(1, 1)):
    c = x.shape[-1]
    k = jnp.asarray(kernel_hw, x.dtype)
    k = jnp.broadcast_to(k[:, :, None, None], k.shape + (1, c))
    return lax.conv_general_dilated(
        x, k, window_strides=strides, padding=padding, lhs_dilation=lhs_dilation,
        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=c)


def upfirdn2d_ref(x, kernel, up: int = 1, down: int = 1, pad: Pads = (0, 0)):
    """The four steps done literally (reference form). ``x``: [N, H, W, C]."""
    kernel = np.asarray(kernel, np.float32)
    (py0, py1), (px0, px1) = _pads(pad)
    n, h, w, c = x.shape
    if up > 1:
        x = x.reshape(n, h, 1, w, 1, c)
        x = jnp.pad(x, ((0, 0), (0, 0), (0, up - 1), (0, 0), (0, up - 1), (0, 0)))
        x = x.reshape(n, h * up, w * up, c)
    x = jnp.pad(x, ((0, 0), (max(py0, 0), max(py1, 0)), (max(px0, 0), max(px1, 0)), (0, 0)))
    x = x[:, max(-py0, 0):x.shape[1] - max(-py1, 0), max(-px0, 0):x.shape[2] - max(-px1, 0)]
    x = _depthwise(x, kernel[::-1, ::-1])  # true convolution = correlation with the flip
    return x[:, ::down, ::down]


def _separable_factors(kernel: np.ndarray) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    u, s, vt = np.linalg.svd(kernel.astype(np.float64))
    if s.size > 1 and s[1] > 1e-7 * s[0]:
        return None
    ky = u[:, 0] * np.sqrt(s[0])
    kx = vt[0] * np.sqrt(s[0])
    if ky.sum() < 0:
        ky, kx = -ky, -kx
    return ky.astype(np.float32), kx.astype(np.float32)


def _fir_axis(x, taps, axis: int, down: int):
    """Correlation of ``x`` with the 1-D ``taps`` along ``axis`` (valid), keeping every
    ``down``-th output: a weighted sum of strided slices."""
    n_out = (x.shape[axis] - len(taps)) // down + 1
    out = None
    for j, t in enumerate(taps):
        if t == 0:
            continue
        sl = lax.slice_in_dim(x, j, j + down * (n_out - 1) + 1, down, axis)
        term = sl * jnp.asarray(t, x.dtype)
        out = term if out is None else out + term
    if out is None:
        shape = list(x.shape)
        shape[axis] = n_out
        out = jnp.zeros(shape, x.dtype)
    return out


def upfirdn2d(x, kernel, up: int = 1, down: int = 1, pad: Pads = (0, 0), impl: str = "slices"):
    """upsample by ``up``, pad, FIR-filter with ``kernel``, keep every ``down``-th sample; ``impl``:
    'slices' | 'conv' | 'ref' (the module doc)."""
    fn = {"slices": upfirdn2d_slices, "conv": upfirdn2d_conv, "ref": upfirdn2d_ref}[
        check_impl("upfirdn", impl, UPFIRDN_IMPLS)]
    return fn(x, kernel, up, down, pad)


def upfirdn2d_slices(x, kernel, up: int = 1, down: int = 1, pad: Pads = (0, 0)):
    """Fast form: zero insertion and pads (negative too) as one ``lax.pad``, the filter as a
    sum of (strided, for ``down``) slices; a rank-1 kernel runs as two 1-D passes."""
    kernel = np.asarray(kernel, np.float32)
    (py0, py1), (px0, px1) = _pads(pad)
    zero = jnp.zeros((), x.dtype)
    # zero insertion puts up-1 zeros after the last sample too
    x = lax.pad(x, zero, ((0, 0, 0), (py0, py1 + up - 1, up - 1), (px0, px1 + up - 1, up - 1), (0, 0, 0)))
    factors = _separable_factors(kernel)
    if factors is None:
        kf = kernel[::-1, ::-1]                       # true convolution = correlation with the flip
        kh, kw = kf.shape
        ho = (x.shape[1] - kh) // down + 1
        wo = (x.shape[2] - kw) // down + 1
        out = None
        for i in range(kh):
            for j in range(kw):
                if kf[i, j] == 0:
                    continue
                sl = lax.slice(x, (0, i, j, 0), (x.shape[0], i + down * (ho - 1) + 1, j + down * (wo - 1) + 1,
                                                 x.shape[3]), (1, down, down, 1))
                term = sl * jnp.asarray(kf[i, j], x.dtype)
                out = term if out is None else out + term
        return out if out is not None else jnp.zeros((x.shape[0], ho, wo, x.shape[3]), x.dtype)
    ky, kx = factors
    x = _fir_axis(x, [float(v) for v in ky[::-1]], 1, down)
    return _fir_axis(x, [float(v) for v in kx[::-1]], 2, down)


def upfirdn2d_conv(x, kernel, up: int = 1, down: int = 1, pad: Pads = (0, 0)):
    """Depthwise-convolution form: zero insertion as ``lhs_dilation``, pads (negative too) and
    ``down`` as the convolution's padding and stride; a rank-1 kernel runs as two 1-D passes."""
    kernel = np.asarray(kernel, np.float32)
    (py0, py1), (px0, px1) = _pads(pad)
    # zero insertion puts up-1 zeros after the last sample too; lhs_dilation does not
    pady = (py0, py1 + up - 1)
    padx = (px0, px1 + up - 1)
    factors = _separable_factors(kernel)
    if factors is None:
        return _depthwise(x, kernel[::-1, ::-1], (down, down), (pady, padx), (up, up))
    ky, kx = factors
    x = _depthwise(x, ky[::-1, None], (down, 1), (pady, (0, 0)), (up, 1))
    return _depthwise(x, kx[None, ::-1], (1, down), ((0, 0), padx), (1, up))


def blur(x, pad: Pads, taps: Sequence[float] = BLUR_TAPS, gain: float = 1.0, impl: str = "slices"):
    """FIR blur without resampling (the reference's ``Blur`` module)."""
    return upfirdn2d(x, fir_kernel(taps, gain), pad=pad, impl=impl)


def upsample2d(x, factor: int = 2, taps: Sequence[float] = BLUR_TAPS, impl: str = "slices"):
    """Upsample by ``factor`` with the FIR kernel scaled by factor**2; for the [1,3,3,1] kernel
    and factor 2 this is the reference's ``UpsampleUpFIRDn`` (pad (2, 1))."""
    k = len(taps)
    p = k - factor
    return upfirdn2d(x, fir_kernel(taps, factor ** 2), up=factor,
                     pad=((p + 1) // 2 + factor - 1, p // 2), impl=impl)


def downsample2d(x, factor: int = 2, taps: Sequence[float] = BLUR_TAPS, impl: str = "slices"):
    """Blur then keep every ``factor``-th sample (same size convention as NVIDIA's)."""
    k = len(taps)
    p = k - factor
    return upfirdn2d(x, fir_kernel(taps), down=factor, pad=((p + 1) // 2, p // 2), impl=impl)
