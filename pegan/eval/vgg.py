"""VGG16 up to fc7, as mmgen's precision/recall uses it (REFERENCE §5.2), NHWC, in Flax.

mmgen's ``PR`` metric prefers NVIDIA's TorchScript VGG16 when ``work_dirs/cache/vgg16.pt``
exists and otherwise falls back to torchvision's ImageNet ``vgg16``; pegan implements that
fallback, which needs only the torchvision weight file:

1. ``F.interpolate(x, (224, 224))`` with the default legacy **nearest** mode;
2. ``vgg16.features`` (13 3x3 convs with bias + ReLU, five 2x2 max pools) -> [N, 7, 7, 512];
3. flatten in PyTorch's (C, H, W) order (``avgpool`` is not called; pegan flattens NHWC and
   permutes fc6's input rows once at conversion instead);
4. ``classifier[:4]``: fc6, ReLU, Dropout (identity), fc7 -> 4096 features, **before** ReLU.

The input stays in [-1, 1]: there is no ImageNet mean/std normalisation.
"""

from __future__ import annotations

from typing import Dict, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from pegan.eval.weights import VGG16, WeightFileError, check_module, read_state_dict, weight_path
from pegan.ops.resize import resize_nearest

__all__ = ["VGG16Features", "convert_state_dict", "load_vgg16", "CFG", "INPUT_SIZE", "perceptual_maps",
           "perceptual_distance", "perceptual", "PERCEPTUAL_LAYERS", "PERCEPTUAL_SIDE"]

INPUT_SIZE = 224
CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
_DN = ("NHWC", "HWIO", "NHWC")


def _conv_indices():
    """torchvision's ``features.<i>`` index of each conv in CFG order."""
    out, i = [], 0
    for v in CFG:
        if v == "M":
            i += 1
        else:
            out.append(i)
            i += 2  # conv, ReLU
    return out


class VGG16Features(nn.Module):
    """``x`` [N, H, W, 3] in [-1, 1] -> fc7 features [N, 4096] (pre-ReLU)."""

    resize_input: bool = True

    @staticmethod
    def resize(x):
        """The network's input resize: PyTorch's legacy nearest to 224x224."""
        if x.shape[1:3] == (INPUT_SIZE, INPUT_SIZE):
            return x
        return resize_nearest(x, (INPUT_SIZE, INPUT_SIZE))

    @nn.compact
    def __call__(self, x, return_blocks: bool = False):
        x = x.astype(jnp.float32)
        if self.resize_input:
            x = self.resize(x)
        convs = iter(_conv_indices())
        for v in CFG:
            if v == "M":
                x = lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
                continue
            name = f"features_{next(convs)}"
            w = self.param(name + "_kernel", nn.initializers.lecun_normal(), (3, 3, x.shape[-1], v))
            b = self.param(name + "_bias", nn.initializers.zeros, (v,))
            x = jax.nn.relu(lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=_DN) + b)
        pool5 = x
        fc6 = nn.Dense(4096, name="fc6")(x.reshape(x.shape[0], -1))
        fc7 = nn.Dense(4096, name="fc7")(jax.nn.relu(fc6))
        return (fc7, {"pool5": pool5, "fc6_prerelu": fc6}) if return_blocks else fc7


def convert_state_dict(sd: Dict[str, np.ndarray], source: str = "<state dict>"):
    """torchvision ``vgg16().state_dict()`` -> Flax variables. ``classifier.6`` (the 1000-class
    layer) is unused and ignored."""
    params: Dict = {}
    for key, value in sd.items():
        value = np.asarray(value, np.float32)
        parts = key.split(".")
        if len(parts) != 3 or parts[2] not in ("weight", "bias"):
            raise WeightFileError(source, f"unexpected key {key!r}: not a torchvision vgg16 state dict")
        group, idx, leaf = parts[0], int(parts[1]), parts[2]
        if group == "features":
            if leaf == "weight":
                params[f"features_{idx}_kernel"] = np.ascontiguousarray(value.transpose(2, 3, 1, 0))
            else:
                params[f"features_{idx}_bias"] = value
        elif group == "classifier" and idx in (0, 3):
            name = "fc6" if idx == 0 else "fc7"
            node = params.setdefault(name, {})
            if leaf == "bias":
                node["bias"] = value
            elif idx == 0 and value.ndim == 2 and value.shape[1] == 512 * 7 * 7:
                # torch flattens (C, H, W); pegan flattens (H, W, C): permute the input rows.
                o = value.shape[0]
                node["kernel"] = np.ascontiguousarray(
                    value.reshape(o, 512, 7, 7).transpose(2, 3, 1, 0).reshape(7 * 7 * 512, o))
            else:
                node["kernel"] = np.ascontiguousarray(value.T)
        elif group == "classifier" and idx == 6:
            continue
        else:
            raise WeightFileError(source, f"unexpected key {key!r}: not a torchvision vgg16 state dict")
    check_module(VGG16Features(), INPUT_SIZE, params, source, "torchvision's vgg16 (features + classifier[:4])")
    return {"params": params}


def load_vgg16(path: Optional[str] = None):
    """(module, variables) of the P&R VGG16 (up to fc7) from a torchvision vgg16 state dict file."""
    p = weight_path(VGG16, path)
    return VGG16Features(), convert_state_dict(read_state_dict(p), str(p))


# -- the projector's perceptual distance ---------------------------------------------------------

PERCEPTUAL_LAYERS = (2, 7, 14, 21, 28)   # torchvision features.<i> of conv1_2, 2_2, 3_3, 4_3, 5_3 (LPIPS's)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PERCEPTUAL_SIDE = 256                   # images with a longer side are downsampled to it first


def perceptual_maps(params, x):
    """The ReLU outputs of conv1_2, conv2_2, conv3_3, conv4_3 and conv5_3 of torchvision's VGG16
    (the layers LPIPS reads) for ``x`` [N, H, W, 3] in [-1, 1]: an image whose longer side exceeds
    ``PERCEPTUAL_SIDE`` is first resized to it (antialiased linear, aspect kept), then normalised
    with ImageNet's mean and std as torchvision's weights expect."""
    x = x.astype(jnp.float32)
    n, h, w, _ = x.shape
    if max(h, w) > PERCEPTUAL_SIDE:
        f = PERCEPTUAL_SIDE / max(h, w)
        x = jax.image.resize(x, (n, max(1, round(h * f)), max(1, round(w * f)), 3), "linear", antialias=True)
    x = ((x + 1.0) / 2.0 - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)
    out, convs, last = [], iter(_conv_indices()), max(PERCEPTUAL_LAYERS)
    for v in CFG:
        if v == "M":
            x = lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
            continue
        idx = next(convs)
        w_, b = params[f"features_{idx}_kernel"], params[f"features_{idx}_bias"]
        x = jax.nn.relu(lax.conv_general_dilated(x, w_, (1, 1), ((1, 1), (1, 1)), dimension_numbers=_DN,
                                                 precision=lax.Precision.HIGHEST) + b)
        if idx in PERCEPTUAL_LAYERS:
            out.append(x)
        if idx == last:
            break
    return out


def perceptual_distance(maps_a, maps_b):
    """Per-image distance [N] between two lists of ``perceptual_maps``: LPIPS's form with equal
    weights for every channel (its learned per-channel weights are not available here): each map
    unit-normalised along channels, the squared difference summed over channels and averaged over
    positions, summed over the five layers."""
    total = 0.0
    for a, b in zip(maps_a, maps_b):
        a = a / (jnp.sqrt(jnp.sum(jnp.square(a), -1, keepdims=True)) + 1e-10)
        b = b / (jnp.sqrt(jnp.sum(jnp.square(b), -1, keepdims=True)) + 1e-10)
        total = total + jnp.mean(jnp.sum(jnp.square(a - b), -1), axis=(1, 2))
    return total


def perceptual(variables):
    """(maps, distance, params) of the perceptual distance for ``pegan.project.project``, from
    ``load_vgg16()``'s variables."""
    return perceptual_maps, perceptual_distance, variables["params"]
