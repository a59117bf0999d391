"""Plain convolutions, NHWC x HWIO, with a backward pass that is fast on CPUs.

XLA's CPU backend runs padded stride-1 convolutions well, but the convolutions autodiff makes
for the backward pass are slow there: weight gradients (a convolution whose "kernel" is the
whole output map) run at 1/4 to 1/8 of the forward speed, the second-order terms of R1 and
WGAN-GP (weight gradients of a transposed convolution, with a reversed kernel) fall back to a
naive loop (15 s for one 128-channel layer of the PE-SinGAN discriminator), strided forward
convolutions run at half speed, and unpadded ("valid") ones at 1/3 (docs/PERF_NOTES.md).

``conv2d`` therefore has two forms behind one signature (its ``impl`` argument):

* ``'xla'``: ``lax.conv_general_dilated`` and its own autodiff.
* ``'taps'``: a ``custom_vjp`` convolution. Forward: ``lax.conv_general_dilated`` at stride 1
  (a valid convolution gets one row and column of padding, and the extra output is cropped);
  at stride s > 1 the sum over the s**2 input phases of stride-1 convolutions of
  ``x[a::s, b::s]`` with the taps ``w[a::s, b::s]``.
  Input gradient: a stride-1 convolution of the output gradient with the flipped kernel, split
  into ``stride**2`` phases (sub-pixel convolutions) at stride > 1, so no zero is multiplied.
  Weight gradient: one matmul per tap, (output gradient)^T @ (strided slice of the input).
  Both gradients are again ``conv2d`` / matmuls, so differentiating the backward rule (the
  second-order terms of R1, WGAN-GP, path length) stays on the fast paths. A gradient of a
  gradient also differentiates the *forward* rule with JAX's own rules; so that this does not
  bring back ``lax``'s weight-gradient convolutions, the stride-1 convolutions of the forward
  rule are ``_conv1``, a ``custom_jvp`` convolution whose tangent is conv(dx, w) (its transpose:
  a stride-1 convolution with the flipped kernel) + the per-tap matmuls of ``_weight_tangent``
  in dw (their transpose: the per-tap weight gradient above). First-order gradients never run
  that rule (the ``custom_vjp`` backward rule is used). Forward-mode (``jax.jvp``) of the
  'taps' form is not supported (a ``custom_vjp``).
``pegan.compute`` picks one per backend for the models ('taps' on CPU, 'xla' elsewhere); the
function default is ``'xla'``.

The forms are equal up to float32 rounding (tests/test_conv.py holds them together, first and
second order). Grouped convolutions (``groups > 1``) always use ``lax``.
"""

from __future__ import annotations

from functools import partial
from typing import Tuple, Union

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero

from pegan.ops.forms import CONV_IMPLS, check_impl

__all__ = ["conv2d", "conv_transpose2d"]

_DN = ("NHWC", "HWIO", "NHWC")

Pad2 = Tuple[Tuple[int, int], Tuple[int, int]]


def _pad_arg(padding, kh: int, kw: int) -> Pad2:
    if padding == "SAME":
        return ((kh // 2, kh // 2), (kw // 2, kw // 2))
    if isinstance(padding, int):
        return ((padding, padding), (padding, padding))
    (a, b), (c, d) = padding
    return ((int(a), int(b)), (int(c), int(d)))


def _crop_negative(x, pad: Pad2):
    """Negative padding crops: do it as a slice so the custom convolution sees pads >= 0."""
    (a, b), (c, d) = pad
    if min(a, b, c, d) >= 0:
        return x, pad
    h, w = x.shape[1], x.shape[2]
    x = x[:, max(-a, 0):h - max(-b, 0), max(-c, 0):w - max(-d, 0)]
    return x, ((max(a, 0), max(b, 0)), (max(c, 0), max(d, 0)))


def _out_len(n: int, k: int, s: int, lo: int, hi: int) -> int:
    return (n + lo + hi - k) // s + 1


def _tap_slice(xp, i: int, j: int, ho: int, wo: int, s: int):
    """xp[:, i + s*oh, j + s*ow, :] for oh < ho, ow < wo."""
    n, _, _, c = xp.shape
    return lax.slice(xp, (0, i, j, 0), (n, i + s * (ho - 1) + 1, j + s * (wo - 1) + 1, c), (1, s, s, 1))


def _after(x, y):
    """``x``, but computed after ``y``: adds 0 * (an entry of y). XLA would otherwise make every
    slice of a tap / phase loop first and keep them all (9x an activation in memory); an
    ``optimization_barrier`` does not survive XLA's CPU passes. The add fuses into the slice."""
    return x + (y.reshape(-1)[0] * 0).astype(x.dtype)


def _lax_conv(x, w, stride: int, pad: Pad2):
    if stride == 1 and max(w.shape[:2]) > 1 and pad == ((0, 0), (0, 0)):
        # XLA's CPU convolution runs an unpadded ("valid") convolution 2.5-3x slower than a
        # padded one: pad one row and column at the end and crop the extra output
        y = lax.conv_general_dilated(x, w, (1, 1), ((0, 1), (0, 1)), dimension_numbers=_DN)
        return y[:, :-1, :-1]
    return lax.conv_general_dilated(x, w, (stride, stride), pad, dimension_numbers=_DN)


def _weight_tangent(x, dw, pad: Pad2):
    """conv(x, dw, 1, pad) (linear in ``dw``) as one matmul per tap, written
    dw[i, j]^T [O, I] @ (slice of x)^T [I, K] so that its transpose (what a gradient of a
    gradient computes) is the per-tap weight gradient of ``_weight_grad``,
    dy^T [O, K] @ (slice of x) [K, I], with dy transposed once for all taps."""
    kh, kw, cin, cout = dw.shape
    n = x.shape[0]
    ho = _out_len(x.shape[1], kh, 1, *pad[0])
    wo = _out_len(x.shape[2], kw, 1, *pad[1])
    xp = lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), pad[0] + (0,), pad[1] + (0,), (0, 0, 0)))
    acc = None
    for i in range(kh):
        for j in range(kw):
            xs = _tap_slice(xp, i, j, ho, wo, 1).reshape(n * ho * wo, cin)
            t = lax.dot_general(dw[i, j], xs, (((0,), (1,)), ((), ())))        # [O, K]
            acc = t if acc is None else acc + t
    return acc.T.reshape(n, ho, wo, cout)


@partial(jax.custom_jvp, nondiff_argnums=(2,))
def _conv1(x, w, pad: Pad2):
    """Stride-1 ``lax`` convolution (pads >= 0) whose derivative stays on fast forms: the
    tangent is conv1(dx, w) (transposed by ``lax`` into a stride-1 convolution of the cotangent
    with the flipped kernel) + ``_weight_tangent(x, dw)`` (transposed into per-tap matmuls),
    never ``lax``'s own weight-gradient convolution."""
    return _lax_conv(x, w, 1, pad)


def _conv1_jvp(pad, primals, tangents):
    x, w = primals
    dx, dw = tangents
    y = _conv1(x, w, pad)
    parts = []
    if not isinstance(dx, SymbolicZero):
        parts.append(_conv1(dx, w, pad))
    if not isinstance(dw, SymbolicZero):
        parts.append(_weight_tangent(x, dw, pad).astype(y.dtype))
    if not parts:
        return y, SymbolicZero(jax.typeof(y))
    return y, parts[0] if len(parts) == 1 else parts[0] + parts[1]


_conv1.defjvp(_conv1_jvp, symbolic_zeros=True)


def _forward(x, w, stride: int, pad: Pad2):
    if stride == 1:
        return _conv1(x, w, pad)
    # stride s: the sum over the s*s input phases (a, b) of a stride-1 convolution of
    # x[a::s, b::s] with the taps w[a::s, b::s] (no output computed and thrown away)
    kh, kw = w.shape[:2]
    ho = _out_len(x.shape[1], kh, stride, *pad[0])
    wo = _out_len(x.shape[2], kw, stride, *pad[1])
    xp = lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), pad[0] + (0,), pad[1] + (0,), (0, 0, 0)))
    n, c = xp.shape[0], xp.shape[3]
    out = None
    for a in range(min(stride, kh)):
        for b in range(min(stride, kw)):
            sub = w[a::stride, b::stride]
            mh, mw = sub.shape[:2]
            src = xp if out is None else _after(xp, out)
            xs = lax.slice(src, (0, a, b, 0), (n, a + stride * (ho + mh - 2) + 1, b + stride * (wo + mw - 2) + 1, c),
                           (1, stride, stride, 1))
            t = _conv1(xs, sub, ((0, 0), (0, 0)))
            out = t if out is None else out + t
    return out


def _phases(n_in: int, n_out: int, k: int, s: int, lo: int):
    """Per output phase a (input rows a, a + s, ...): (taps t of the phase, their order for the
    flipped sub-kernel, padding (lo, hi) of the output gradient, number of rows)."""
    out = []
    for a in range(s):
        rows = len(range(a, n_in, s))
        taps = [t for t in range(k) if (t - a - lo) % s == 0]
        if not taps or rows == 0:
            out.append((None, None, rows))
            continue
        m = len(taps)
        c0 = (a + lo - taps[0]) // s
        plo = m - 1 - c0
        phi = rows - n_out - plo + m - 1
        out.append((taps[::-1], (plo, phi), rows))
    return out


def _taps_slice(taps):
    """The descending, evenly spaced tap list ``taps`` as a slice (static, no gather)."""
    step = taps[1] - taps[0] if len(taps) > 1 else -1
    stop = taps[-1] + (-1 if step < 0 else 1)
    return slice(taps[0], stop if stop >= 0 else None, step)


def _input_grad(dy, w, in_hw, stride: int, pad: Pad2):
    """d/dx of conv(x, w, stride, pad) applied to ``dy``: stride-1 convolutions of ``dy`` with
    the flipped, in/out-swapped kernel, one per output phase at stride > 1."""
    h, wd = in_hw
    kh, kw = w.shape[:2]
    ho, wo = dy.shape[1], dy.shape[2]
    ph = _phases(h, ho, kh, stride, pad[0][0])
    pw = _phases(wd, wo, kw, stride, pad[1][0])
    wt = jnp.swapaxes(w, 2, 3)                       # [kh, kw, O, I]
    n, cin = dy.shape[0], w.shape[2]
    if stride == 1:
        (th, padh, _), (tw, padw, _) = ph[0], pw[0]
        return conv2d(dy, wt[::-1, ::-1], (padh, padw), impl="taps")
    rows_max, cols_max = -(-h // stride), -(-wd // stride)
    grid = []
    for th, padh, rows in ph:
        line = []
        for tw, padw, cols in pw:
            if th is None or tw is None:
                part = jnp.zeros((n, rows, cols, cin), dy.dtype)
            else:
                sub = wt[_taps_slice(th)][:, _taps_slice(tw)]
                part = conv2d(dy, sub, (padh, padw), impl="taps")
            part = jnp.pad(part, ((0, 0), (0, rows_max - rows), (0, cols_max - cols), (0, 0)))
            line.append(part)
        grid.append(jnp.stack(line, axis=3))          # [n, R, C, s_w, cin]
    full = jnp.stack(grid, axis=2)                    # [n, R, s_h, C, s_w, cin]
    full = full.reshape(n, rows_max * stride, cols_max * stride, cin)
    return full[:, :h, :wd]


def _weight_grad(x, dy, kh: int, kw: int, stride: int, pad: Pad2):
    """d/dw of conv(x, w, stride, pad) applied to ``dy``: one matmul per tap,
    dy^T [O, K] @ (strided slice of x) [K, I] with K = N * Ho * Wo (dy transposed once: a
    transposed slice per tap costs 3x the matmuls on XLA's CPU backend)."""
    n, ho, wo, cout = dy.shape
    cin = x.shape[3]
    xp = lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), pad[0] + (0,), pad[1] + (0,), (0, 0, 0)))
    dyt = dy.reshape(n * ho * wo, cout).T
    taps = []
    for i in range(kh):
        for j in range(kw):
            src = _after(xp, taps[-1]) if taps else xp       # one input slice alive at a time
            taps.append(lax.dot(dyt, _tap_slice(src, i, j, ho, wo, stride).reshape(n * ho * wo, cin),
                                preferred_element_type=jnp.float32))    # [O, I]
    return jnp.stack(taps).reshape(kh, kw, cout, cin).transpose(0, 1, 3, 2)


@partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_taps(x, w, stride: int, pad: Pad2):
    return _forward(x, w, stride, pad)


def _conv_taps_fwd(x, w, stride, pad):
    return _forward(x, w, stride, pad), (x, w)


def _conv_taps_bwd(stride, pad, res, dy):
    x, w = res
    dx = _input_grad(dy, w, x.shape[1:3], stride, pad)
    dw = _weight_grad(x, dy, w.shape[0], w.shape[1], stride, pad)
    return dx.astype(x.dtype), dw.astype(w.dtype)


_conv_taps.defvjp(_conv_taps_fwd, _conv_taps_bwd)


def conv2d(x, w, padding: Union[int, str, Pad2] = "SAME", stride: int = 1, groups: int = 1,
           impl: str = "xla"):
    """Plain NHWC x HWIO cross-correlation (PyTorch ``F.conv2d`` semantics); ``padding`` is an
    int, 'SAME' (k // 2) or ((top, bottom), (left, right)), negative values crop. ``impl``:
    'xla' or 'taps' (the module doc)."""
    check_impl("conv", impl, CONV_IMPLS)
    w = w.astype(x.dtype)
    pad = _pad_arg(padding, w.shape[0], w.shape[1])
    if groups != 1 or impl == "xla":
        return lax.conv_general_dilated(x, w, (stride, stride), pad, dimension_numbers=_DN,
                                        feature_group_count=groups)
    x, pad = _crop_negative(x, pad)
    return _conv_taps(x, w, int(stride), pad)


def conv_transpose2d(x, w, stride: int = 2, groups: int = 1, impl: str = "xla"):
    """PyTorch ``F.conv_transpose2d(x, w_t, stride, padding=0)`` where ``w`` is the HWIO kernel
    of the forward conv (in -> out). Output: (H - 1) * stride + k. In the 'taps' form this is
    the input gradient of a strided convolution (stride-1 phase convolutions, no zero
    multiplied); in the 'xla' form a convolution over the zero-dilated input."""
    check_impl("conv", impl, CONV_IMPLS)
    k = w.shape[0]
    w = w.astype(x.dtype)
    if groups != 1 or impl == "xla":
        return lax.conv_general_dilated(x, w[::-1, ::-1], (1, 1), ((k - 1, k - 1), (k - 1, k - 1)),
                                        lhs_dilation=(stride, stride), dimension_numbers=_DN,
                                        feature_group_count=groups)
    h, wd = x.shape[1], x.shape[2]
    out_hw = ((h - 1) * stride + k, (wd - 1) * stride + w.shape[1])
    # conv_transpose(x, w) = d/dz conv(z, w^T, stride, 0) applied to x, w^T: in <-> out swapped
    return _input_grad(x, jnp.swapaxes(w, 2, 3), out_hw, stride, ((0, 0), (0, 0)))
