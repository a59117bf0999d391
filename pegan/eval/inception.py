"""The FID InceptionV3 (pytorch-fid's ``fid_inception_v3``, 2048-d pool3 features), NHWC, in Flax.

This is the network mmgen's ``FID`` metric runs for the MS-PIE numbers (REFERENCE §5.1): the
TF-2015 Inception weights ported by pytorch-fid (``pt_inception-2015-12-05-6726825d.pth``),
with the FID variants of blocks 5b-5d, 6b-6e, 7b and 7c:

* every conv is ``BasicConv2d``: conv without bias, BatchNorm (eps 1e-3, running statistics),
  ReLU;
* the pooling branches of the A, C and E blocks average with ``count_include_pad=False``;
  ``Mixed_7c`` max-pools its pooling branch (3x3, stride 1, pad 1);
* the input, in [-1, 1] (``normalize_input=False``), is resized to 299x299 with bilinear
  ``align_corners=False`` without antialiasing, then the network runs up to the global average
  pool.

Parameters keep PyTorch's module names (``Mixed_6b/branch7x7_2/{conv,bn}``), so converting a
state dict is a rename plus an OIHW -> HWIO transpose (:func:`convert_state_dict`).
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from pegan.eval.weights import INCEPTION, WeightFileError, check_module, read_state_dict, weight_path
from pegan.ops.resize import resize_bilinear

__all__ = ["InceptionV3", "convert_state_dict", "load_inception", "BN_EPS", "INPUT_SIZE"]

BN_EPS = 1e-3
INPUT_SIZE = 299
_DN = ("NHWC", "HWIO", "NHWC")


def _pair(v) -> Tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


class BasicConv(nn.Module):
    """conv (no bias) -> BatchNorm(eps 1e-3, running statistics) -> ReLU."""

    features: int
    kernel: Tuple[int, int] | int
    stride: int = 1
    padding: Tuple[int, int] | int = 0

    @nn.compact
    def __call__(self, x):
        kh, kw = _pair(self.kernel)
        ph, pw = _pair(self.padding)
        cin = x.shape[-1]
        zeros, ones = nn.initializers.zeros, nn.initializers.ones
        w = self.param("kernel", nn.initializers.lecun_normal(), (kh, kw, cin, self.features))
        y = lax.conv_general_dilated(x, w, (self.stride, self.stride), ((ph, ph), (pw, pw)),
                                     dimension_numbers=_DN)
        scale = self.param("bn_scale", ones, (self.features,))
        bias = self.param("bn_bias", zeros, (self.features,))
        mean = self.param("bn_mean", zeros, (self.features,))
        var = self.param("bn_var", ones, (self.features,))
        y = (y - mean) * (scale * lax.rsqrt(var + BN_EPS)) + bias
        return jax.nn.relu(y)


def max_pool(x, k: int = 3, stride: int = 2, pad: int = 0):
    """``F.max_pool2d(x, k, stride, pad)`` (floor mode; padding never wins the max)."""
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, k, k, 1), (1, stride, stride, 1),
                             ((0, 0), (pad, pad), (pad, pad), (0, 0)))


def avg_pool_exclude_pad(x, k: int = 3, pad: int = 1):
    """``F.avg_pool2d(x, k, stride=1, padding=pad, count_include_pad=False)``."""
    pads = ((0, 0), (pad, pad), (pad, pad), (0, 0))
    total = lax.reduce_window(x, 0.0, lax.add, (1, k, k, 1), (1, 1, 1, 1), pads)
    ones = jnp.ones((1,) + x.shape[1:3] + (1,), x.dtype)
    count = lax.reduce_window(ones, 0.0, lax.add, (1, k, k, 1), (1, 1, 1, 1), pads)
    return total / count


class InceptionA(nn.Module):
    pool_features: int

    @nn.compact
    def __call__(self, x):
        b1 = BasicConv(64, 1, name="branch1x1")(x)
        b5 = BasicConv(48, 1, name="branch5x5_1")(x)
        b5 = BasicConv(64, 5, padding=2, name="branch5x5_2")(b5)
        b3 = BasicConv(64, 1, name="branch3x3dbl_1")(x)
        b3 = BasicConv(96, 3, padding=1, name="branch3x3dbl_2")(b3)
        b3 = BasicConv(96, 3, padding=1, name="branch3x3dbl_3")(b3)
        bp = BasicConv(self.pool_features, 1, name="branch_pool")(avg_pool_exclude_pad(x))
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
    @nn.compact
    def __call__(self, x):
        b3 = BasicConv(384, 3, stride=2, name="branch3x3")(x)
        bd = BasicConv(64, 1, name="branch3x3dbl_1")(x)
        bd = BasicConv(96, 3, padding=1, name="branch3x3dbl_2")(bd)
        bd = BasicConv(96, 3, stride=2, name="branch3x3dbl_3")(bd)
        return jnp.concatenate([b3, bd, max_pool(x)], axis=-1)


class InceptionC(nn.Module):
    channels_7x7: int

    @nn.compact
    def __call__(self, x):
        c7 = self.channels_7x7
        b1 = BasicConv(192, 1, name="branch1x1")(x)
        b7 = BasicConv(c7, 1, name="branch7x7_1")(x)
        b7 = BasicConv(c7, (1, 7), padding=(0, 3), name="branch7x7_2")(b7)
        b7 = BasicConv(192, (7, 1), padding=(3, 0), name="branch7x7_3")(b7)
        bd = BasicConv(c7, 1, name="branch7x7dbl_1")(x)
        bd = BasicConv(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(bd)
        bd = BasicConv(c7, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(bd)
        bd = BasicConv(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(bd)
        bd = BasicConv(192, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(bd)
        bp = BasicConv(192, 1, name="branch_pool")(avg_pool_exclude_pad(x))
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
    @nn.compact
    def __call__(self, x):
        b3 = BasicConv(192, 1, name="branch3x3_1")(x)
        b3 = BasicConv(320, 3, stride=2, name="branch3x3_2")(b3)
        b7 = BasicConv(192, 1, name="branch7x7x3_1")(x)
        b7 = BasicConv(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
        b7 = BasicConv(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
        b7 = BasicConv(192, 3, stride=2, name="branch7x7x3_4")(b7)
        return jnp.concatenate([b3, b7, max_pool(x)], axis=-1)


class InceptionE(nn.Module):
    pool: str  # 'avg' (FIDInceptionE_1, Mixed_7b) or 'max' (FIDInceptionE_2, Mixed_7c)

    @nn.compact
    def __call__(self, x):
        b1 = BasicConv(320, 1, name="branch1x1")(x)
        b3 = BasicConv(384, 1, name="branch3x3_1")(x)
        b3 = jnp.concatenate([BasicConv(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(b3),
                              BasicConv(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(b3)], -1)
        bd = BasicConv(448, 1, name="branch3x3dbl_1")(x)
        bd = BasicConv(384, 3, padding=1, name="branch3x3dbl_2")(bd)
        bd = jnp.concatenate([BasicConv(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(bd),
                              BasicConv(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(bd)], -1)
        pooled = avg_pool_exclude_pad(x) if self.pool == "avg" else max_pool(x, 3, 1, 1)
        bp = BasicConv(192, 1, name="branch_pool")(pooled)
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class InceptionV3(nn.Module):
    """``x`` [N, H, W, 3] RGB in [-1, 1] -> pool3 features [N, 2048].

    ``resize_input``: bilinear (align_corners=False, no antialias) to 299x299 first, as
    pytorch-fid and mmgen do. ``return_blocks=True`` also returns each named block's output
    (for debugging against the reference's forward hooks).
    """

    resize_input: bool = True

    @staticmethod
    def resize(x):
        """The network's input resize: bilinear, align_corners=False, no antialias, to 299x299."""
        if x.shape[1:3] == (INPUT_SIZE, INPUT_SIZE):
            return x
        return resize_bilinear(x, (INPUT_SIZE, INPUT_SIZE), align_corners=False)

    @nn.compact
    def __call__(self, x, return_blocks: bool = False):
        blocks: Dict[str, jnp.ndarray] = {}

        def keep(name, y):
            blocks[name] = y
            return y

        x = x.astype(jnp.float32)
        if self.resize_input:
            x = self.resize(x)
        x = keep("Conv2d_1a_3x3", BasicConv(32, 3, stride=2, name="Conv2d_1a_3x3")(x))
        x = keep("Conv2d_2a_3x3", BasicConv(32, 3, name="Conv2d_2a_3x3")(x))
        x = keep("Conv2d_2b_3x3", BasicConv(64, 3, padding=1, name="Conv2d_2b_3x3")(x))
        x = keep("maxpool1", max_pool(x))
        x = keep("Conv2d_3b_1x1", BasicConv(80, 1, name="Conv2d_3b_1x1")(x))
        x = keep("Conv2d_4a_3x3", BasicConv(192, 3, name="Conv2d_4a_3x3")(x))
        x = keep("maxpool2", max_pool(x))
        for name, pf in (("Mixed_5b", 32), ("Mixed_5c", 64), ("Mixed_5d", 64)):
            x = keep(name, InceptionA(pf, name=name)(x))
        x = keep("Mixed_6a", InceptionB(name="Mixed_6a")(x))
        for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
            x = keep(name, InceptionC(c7, name=name)(x))
        x = keep("Mixed_7a", InceptionD(name="Mixed_7a")(x))
        x = keep("Mixed_7b", InceptionE("avg", name="Mixed_7b")(x))
        x = keep("Mixed_7c", InceptionE("max", name="Mixed_7c")(x))
        feats = jnp.mean(x, axis=(1, 2))
        blocks["avgpool"] = feats
        return (feats, blocks) if return_blocks else feats


# -- conversion -------------------------------------------------------------------------------

_BN = {"weight": "bn_scale", "bias": "bn_bias", "running_mean": "bn_mean", "running_var": "bn_var"}


def convert_state_dict(sd: Dict[str, np.ndarray], source: str = "<state dict>"):
    """pt_inception / ``fid_inception_v3().state_dict()`` -> Flax variables ``{'params': ...}``.

    ``*.num_batches_tracked`` and the unused ``fc`` / ``AuxLogits`` entries are ignored; every
    parameter of the network must be present with the right shape, otherwise the error lists
    what is missing or mis-shaped.
    """
    params: Dict = {}
    for key, value in sd.items():
        parts = key.split(".")
        if parts[0] in ("fc", "AuxLogits") or parts[-1] == "num_batches_tracked":
            continue
        if len(parts) < 3 or parts[-2] not in ("conv", "bn"):
            raise WeightFileError(source, f"unexpected key {key!r}: not an Inception (pt_inception) state dict")
        *path, kind, leaf = parts
        node = params
        for p in path:
            node = node.setdefault(p, {})
        value = np.asarray(value, np.float32)
        if kind == "conv" and leaf == "weight":
            node["kernel"] = np.ascontiguousarray(value.transpose(2, 3, 1, 0))
        elif kind == "bn" and leaf in _BN:
            node[_BN[leaf]] = np.ascontiguousarray(value)
        else:
            raise WeightFileError(source, f"unexpected key {key!r}")
    check_module(InceptionV3(), INPUT_SIZE, params, source, "the pytorch-fid Inception (pt_inception-2015-12-05)")
    return {"params": params}


def load_inception(path: Optional[str] = None):
    """(module, variables) of the FID Inception from a pt_inception state dict file."""
    p = weight_path(INCEPTION, path)
    return InceptionV3(), convert_state_dict(read_state_dict(p), str(p))
