"""StyleGAN2 modulated convolution, NHWC, with the up-sampling paths of the PE models.

Math (REFERENCE §2.10): with effective weight ``W[kh, kw, i, o]`` (HWIO, equalized-lr scale
already applied) and style ``s[n, i]``:
``W'[n] = W * s[n, None, None, :, None]``; if ``demodulate``:
``W''[n, ..., o] = W'[n, ..., o] / sqrt(sum_{kh,kw,i} W'[n, ..., o]^2 + eps)``, eps = 1e-8;
then a per-sample convolution.

Three numerically equivalent forms (``impl``):

* ``'scale'`` (default): scale the activations by ``s``, one convolution with the shared
  weight, scale the output by the demodulation coefficients ``d[n, o] =
  rsqrt(sum_i s[n, i]^2 * sum_{kh,kw} W[kh, kw, i, o]^2 + eps)``. A plain convolution: the
  fastest form on CPUs, and the same FLOPs as the others.
* ``'grouped'``: the reference's form, batch folded into ``feature_group_count``.
* ``'vmap'``: one convolution per sample.

Up-sampling paths (``up``):

* ``None``: stride 1, ``padding`` (an int, or 'SAME' = k // 2).
* ``'transposed'``: the StyleGAN2 baselines: transposed conv, stride 2, no padding
  (2H + 1), then the [1,3,3,1] blur scaled by 4 with pad (1, 1) -> 2H.
* ``'after'``: deconv2conv with ``up_after_conv``: conv (``padding``), then bilinear
  align_corners=True x2 -> 2H.
* ``'before'``: deconv2conv without ``up_after_conv``: bilinear align_corners=True to
  (2H + interp_pad, 2W + interp_pad) (or 2H without interp_pad), then conv with ``padding``
  (0 in the no-pad configs) -> 2H + interp_pad - k + 1.
"""

from __future__ import annotations

from typing import Optional, Union

import jax
import jax.numpy as jnp
from jax import lax

from pegan.ops.conv import conv2d, conv_transpose2d
from pegan.ops.forms import MODCONV_IMPLS, check_impl
from pegan.ops.resize import resize_bilinear
from pegan.ops.upfirdn import fir_kernel, upfirdn2d

__all__ = ["modulated_conv2d", "conv2d", "conv_transpose2d", "modulate_weight"]


def modulate_weight(w, style, demodulate: bool = True, eps: float = 1e-8):
    """Per-sample weights [N, kh, kw, I, O] (the reference's fused form)."""
    wn = w[None] * style[:, None, None, :, None].astype(w.dtype)
    if demodulate:
        wn = wn * lax.rsqrt(jnp.sum(jnp.square(wn), axis=(1, 2, 3), keepdims=True) + eps)
    return wn


def _demod_coeff(w, style, eps: float):
    """d[n, o] = rsqrt(sum_i s[n,i]^2 * sum_{kh,kw} W^2 + eps)."""
    wsq = jnp.sum(jnp.square(w), axis=(0, 1))            # [I, O]
    return lax.rsqrt(jnp.square(style.astype(w.dtype)) @ wsq + eps)


def _conv_core(x, w, style, demodulate, eps, impl, op):
    """Apply ``op(x, w, groups)`` as a modulated conv in the chosen form."""
    n = x.shape[0]
    if impl == "scale":
        y = op(x * style[:, None, None, :].astype(x.dtype), w, 1)
        if demodulate:
            y = y * _demod_coeff(w, style, eps)[:, None, None, :].astype(y.dtype)
        return y
    wn = modulate_weight(w, style, demodulate, eps)       # [N, kh, kw, I, O]
    if impl == "vmap":
        return jax.vmap(lambda xi, wi: op(xi[None], wi, 1)[0])(x, wn)
    if impl == "grouped":
        _, h, wd, c = x.shape
        kh, kw, ci, co = wn.shape[1:]
        xg = x.transpose(1, 2, 0, 3).reshape(1, h, wd, n * c)            # channels (n, i)
        wg = wn.transpose(1, 2, 3, 0, 4).reshape(kh, kw, ci, n * co)      # groups by n
        y = op(xg, wg, n)
        return y.reshape(y.shape[1], y.shape[2], n, co).transpose(2, 0, 1, 3)
    raise AssertionError(impl)


def modulated_conv2d(x, w, style, *, demodulate: bool = True, padding: Union[int, str] = "SAME",
                     up: Optional[str] = None, interp_pad: Optional[int] = None,
                     eps: float = 1e-8, impl: str = "scale", conv_impl: str = "xla",
                     upfirdn_impl: str = "slices", resize_impl: str = "dense"):
    """Modulated convolution. ``x`` [N, H, W, I], ``w`` [k, k, I, O] (effective), ``style`` [N, I].

    See the module docstring for ``up`` and ``impl``; ``conv_impl``, ``upfirdn_impl`` and
    ``resize_impl`` are the forms of the plain convolutions, of the blur and of the bilinear
    upsampling (``pegan.ops.forms``).
    """
    check_impl("modulated conv", impl, MODCONV_IMPLS)

    def conv(a, b, g):
        return conv2d(a, b, padding, groups=g, impl=conv_impl)

    if up is None:
        return _conv_core(x, w, style, demodulate, eps, impl, conv)
    if up == "transposed":
        y = _conv_core(x, w, style, demodulate, eps, impl,
                       lambda a, b, g: conv_transpose2d(a, b, 2, groups=g, impl=conv_impl))
        return upfirdn2d(y, fir_kernel(gain=4.0), pad=(1, 1), impl=upfirdn_impl)
    if up == "after":
        y = _conv_core(x, w, style, demodulate, eps, impl, conv)
        return resize_bilinear(y, (2 * y.shape[1], 2 * y.shape[2]), align_corners=True, impl=resize_impl)
    if up == "before":
        p = interp_pad or 0
        x = resize_bilinear(x, (2 * x.shape[1] + p, 2 * x.shape[2] + p), align_corners=True, impl=resize_impl)
        return _conv_core(x, w, style, demodulate, eps, impl, conv)
    raise ValueError(f"unknown up mode {up!r}; use None, 'transposed', 'after' or 'before'")
