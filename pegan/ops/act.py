"""Activations and small statistics ops, NHWC.

* ``bias_leaky_relu``: mmcv's fused bias + leaky ReLU, ``gain * lrelu(x + b, 0.2)``, gain sqrt(2).
* ``pixel_norm``: the reference's ``x / (||x||_2 / sqrt(C) + 1e-6)`` (eps on the RMS, pitfall 12).
* ``minibatch_stddev``: StyleGAN2's layer with the reference grouping (sample b -> group
  ``b % (N / G)``, population variance, eps 1e-8 inside the sqrt).
* ``adaptive_avg_pool2d``: PyTorch bins ``[floor(i*in/out), ceil((i+1)*in/out))``.
"""

from __future__ import annotations

import math
from typing import Tuple, Union

import jax.numpy as jnp
import numpy as np

__all__ = ["SQRT2", "leaky_relu", "bias_leaky_relu", "pixel_norm", "minibatch_stddev",
           "adaptive_pool_matrix", "adaptive_avg_pool2d"]

SQRT2 = math.sqrt(2.0)


def leaky_relu(x, negative_slope: float = 0.2):
    return jnp.where(x >= 0, x, x * negative_slope)


def bias_leaky_relu(x, bias=None, negative_slope: float = 0.2, gain: float = SQRT2):
    """``gain * leaky_relu(x + bias)``; ``bias`` [C] broadcasts over the last (channel) axis."""
    if bias is not None:
        x = x + bias.astype(x.dtype)
    return leaky_relu(x, negative_slope) * jnp.asarray(gain, x.dtype)


def pixel_norm(x, eps: float = 1e-6, axis: int = -1):
    """``x / (sqrt(sum x^2) / sqrt(C) + eps)`` along ``axis`` (eps added to the RMS)."""
    c = x.shape[axis]
    norm = jnp.sqrt(jnp.sum(jnp.square(x), axis=axis, keepdims=True))
    return x / (norm / jnp.sqrt(jnp.asarray(c, x.dtype)) + eps)


def minibatch_stddev(x, group_size: int = 4, channel_groups: int = 1, eps: float = 1e-8):
    """Append the minibatch standard deviation as extra channel(s): [N,H,W,C] -> [N,H,W,C+cg].

    ``G = min(N, group_size)``; N must be <= group_size or divisible by it (as the reference
    asserts). Statistics are over the batch this function sees: under ``jit`` with a sharded
    batch that is the global batch, so per-device statistics need ``shard_map`` around it.
    """
    n, h, w, c = x.shape
    if not (n <= group_size or n % group_size == 0):
        raise ValueError(f"minibatch_stddev: batch {n} must be <= {group_size} or a multiple of it")
    if c % channel_groups:
        raise ValueError(f"minibatch_stddev: {c} channels not divisible by {channel_groups} groups")
    g = min(n, group_size)
    m = n // g
    y = x.reshape(g, m, h, w, channel_groups, c // channel_groups).astype(jnp.float32)
    var = jnp.mean(jnp.square(y - jnp.mean(y, axis=0, keepdims=True)), axis=0)
    std = jnp.sqrt(var + eps)                         # [m, h, w, cg, c/cg]
    std = jnp.mean(std, axis=(1, 2, 4))               # [m, cg]
    std = jnp.tile(std, (g, 1)).astype(x.dtype)       # sample b -> std[b % m]
    std = jnp.broadcast_to(std[:, None, None, :], (n, h, w, channel_groups))
    return jnp.concatenate([x, std], axis=-1)


def adaptive_pool_matrix(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] averaging matrix of PyTorch's AdaptiveAvgPool along one axis."""
    mat = np.zeros((n_out, n_in), np.float32)
    for i in range(n_out):
        start = (i * n_in) // n_out
        end = -((-(i + 1) * n_in) // n_out)
        mat[i, start:end] = 1.0 / (end - start)
    return mat


def adaptive_avg_pool2d(x, output_size: Union[int, Tuple[int, int]]):
    """``nn.AdaptiveAvgPool2d(output_size)`` for NHWC ``x``."""
    oh, ow = (output_size, output_size) if isinstance(output_size, int) else output_size
    _, h, w, _ = x.shape
    if h % oh == 0 and w % ow == 0:  # equal, non-overlapping bins: a plain mean
        n, _, _, c = x.shape
        return x.reshape(n, oh, h // oh, ow, w // ow, c).mean(axis=(2, 4))
    ph = jnp.asarray(adaptive_pool_matrix(h, oh), x.dtype)
    pw = jnp.asarray(adaptive_pool_matrix(w, ow), x.dtype)
    return jnp.einsum("oh,nhwc,pw->nopc", ph, x, pw)
