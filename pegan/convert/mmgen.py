"""OpenMMLab (mmgeneration 0.x / mmagic 1.x) state dicts -> pegan variables, as tables of key
patterns; every target variable must be matched and every source key used or explicitly
ignored, else ``ConversionError`` lists the missing, unexpected and mis-shaped keys.

Array-level API: ``convert_stylegan2_generator(sd)``, ``convert_stylegan2_discriminator(sd)``
take a flat ``{key: np.ndarray}`` without prefix. ``split_prefixes`` separates a checkpoint's
``generator.*``, ``generator_ema.*`` / ``generator_ema.module.*`` and ``discriminator.*``.

Colour: the released models were trained on BGR data. With ``to_rgb=True`` (default) the
ToRGB outputs of G and the input channels of D's first conv are reversed, so pegan models
speak RGB. ``to_rgb=False`` keeps the reference's BGR.
"""

from __future__ import annotations

import re
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import jax
import numpy as np

__all__ = ["ConversionError", "split_prefixes", "convert_stylegan2_generator",
           "convert_stylegan2_discriminator", "check_against", "flatten", "unflatten",
           "GENERATOR_RULES", "DISCRIMINATOR_RULES"]


class ConversionError(ValueError):
    """Keys or shapes of a checkpoint do not fit the model."""


def flatten(tree, prefix=()) -> Dict[Tuple[str, ...], np.ndarray]:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict) or hasattr(v, "items"):
            out.update(flatten(v, prefix + (k,)))
        else:
            out[prefix + (k,)] = v
    return out


def unflatten(flat: Dict[Tuple[str, ...], np.ndarray]) -> dict:
    tree: dict = {}
    for path, v in flat.items():
        node = tree
        for p in path[:-1]:
            node = node.setdefault(p, {})
        node[path[-1]] = v
    return tree


# ----------------------------------------------------------------------------------------
# transforms (reference layout -> pegan layout)

def _t_linear(a):          # [out, in] -> [in, out]
    return np.ascontiguousarray(a.T)


def _t_modconv(a):         # [1, O, I, k, k] -> [k, k, I, O]
    return np.ascontiguousarray(a[0].transpose(2, 3, 1, 0))


def _t_conv(a):            # [O, I, k, k] -> [k, k, I, O]
    return np.ascontiguousarray(a.transpose(2, 3, 1, 0))


def _t_nchw(a):            # [1, C, H, W] -> [1, H, W, C]
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1))


def _t_rgb_bias(a):        # [1, 3, 1, 1] -> [3]
    return np.ascontiguousarray(a.reshape(-1))


def _same(a):
    return np.asarray(a)


Rule = Tuple[str, Callable[[re.Match], Tuple[str, ...]], Callable]

# (regex on the reference key, target path builder, array transform); None target = ignore
GENERATOR_RULES: List[Rule] = [
    (r"style_mapping\.(\d+)\.linear\.weight_orig", lambda m: ("params", f"style_mapping_{int(m[1]) - 1}", "kernel"), _t_linear),
    (r"style_mapping\.(\d+)\.bias", lambda m: ("params", f"style_mapping_{int(m[1]) - 1}", "bias"), _same),
    (r"constant_input\.input", lambda m: ("params", "constant_input"), _t_nchw),
    (r"(conv1|to_rgb1|convs\.\d+|to_rgbs\.\d+)\.conv\.weight_orig", lambda m: ("params", _mod(m[1]), "conv", "weight"), _t_modconv),
    (r"(conv1|to_rgb1|convs\.\d+|to_rgbs\.\d+)\.conv\.style_modulation\.linear\.weight_orig",
     lambda m: ("params", _mod(m[1]), "conv", "style_modulation", "kernel"), _t_linear),
    (r"(conv1|to_rgb1|convs\.\d+|to_rgbs\.\d+)\.conv\.style_modulation\.bias",
     lambda m: ("params", _mod(m[1]), "conv", "style_modulation", "bias"), _same),
    (r"(conv1|convs\.\d+)\.noise_injector\.weight", lambda m: ("params", _mod(m[1]), "noise_injector", "weight"), _same),
    (r"(conv1|convs\.\d+)\.activate\.bias", lambda m: ("params", _mod(m[1]), "bias"), _same),
    (r"(to_rgb1|to_rgbs\.\d+)\.bias", lambda m: ("params", _mod(m[1]), "bias"), _t_rgb_bias),
    (r"injected_noise_(\d+)", lambda m: ("buffers", f"injected_noise_{m[1]}"), _t_nchw),
    # constants and placeholders: recomputed (blur kernels) or meaningless (SPE dtype dummy)
    (r"convs\.\d+\.conv\.blur\.kernel", None, None),
    (r"to_rgbs\.\d+\.upsample\.kernel", None, None),
    (r"head_pos_enc\._float_tensor", None, None),
]

DISCRIMINATOR_RULES: List[Rule] = [
    (r"convs\.0\.0\.conv\.weight_orig", lambda m: ("params", "convs_0", "weight"), _t_conv),
    (r"convs\.0\.1\.bias", lambda m: ("params", "convs_0", "bias"), _same),
    (r"convs\.(\d+)\.conv1\.0\.conv\.weight_orig", lambda m: ("params", f"convs_{m[1]}", "conv1", "weight"), _t_conv),
    (r"convs\.(\d+)\.conv1\.1\.bias", lambda m: ("params", f"convs_{m[1]}", "conv1", "bias"), _same),
    (r"convs\.(\d+)\.conv2\.1\.conv\.weight_orig", lambda m: ("params", f"convs_{m[1]}", "conv2", "weight"), _t_conv),
    (r"convs\.(\d+)\.conv2\.2\.bias", lambda m: ("params", f"convs_{m[1]}", "conv2", "bias"), _same),
    (r"convs\.(\d+)\.skip\.1\.conv\.weight_orig", lambda m: ("params", f"convs_{m[1]}", "skip", "weight"), _t_conv),
    (r"final_conv\.0\.conv\.weight_orig", lambda m: ("params", "final_conv", "weight"), _t_conv),
    (r"final_conv\.1\.bias", lambda m: ("params", "final_conv", "bias"), _same),
    (r"final_linear\.(\d+)\.linear\.weight_orig", lambda m: ("params", f"final_linear_{m[1]}", "kernel"), _t_linear),
    (r"final_linear\.(\d+)\.bias", lambda m: ("params", f"final_linear_{m[1]}", "bias"), _same),
    (r"convs\.\d+\.(conv2|skip)\.0\.kernel", None, None),
]


def _mod(name: str) -> str:
    return name.replace(".", "_")


def split_prefixes(sd: Dict[str, np.ndarray]) -> Dict[str, Dict[str, np.ndarray]]:
    """{'generator', 'generator_ema', 'discriminator', 'other'} sub-dicts, prefixes removed.
    Both the mmgen 0.x (``generator_ema.*``) and mmagic 1.x (``generator_ema.module.*``,
    ``generator_ema.steps``) layouts are accepted."""
    out: Dict[str, Dict[str, np.ndarray]] = {"generator": {}, "generator_ema": {}, "discriminator": {}, "other": {}}
    for k, v in sd.items():
        if k.startswith("generator_ema.module."):
            out["generator_ema"][k[len("generator_ema.module."):]] = v
        elif k == "generator_ema.steps":
            out["other"][k] = v
        elif k.startswith("generator_ema."):
            out["generator_ema"][k[len("generator_ema."):]] = v
        elif k.startswith("generator."):
            out["generator"][k[len("generator."):]] = v
        elif k.startswith("discriminator."):
            out["discriminator"][k[len("discriminator."):]] = v
        else:
            out["other"][k] = v
    return out


def _apply_rules(sd: Dict[str, np.ndarray], rules: Sequence[Rule], what: str):
    flat: Dict[Tuple[str, ...], np.ndarray] = {}
    unexpected: List[str] = []
    for key, arr in sd.items():
        for pattern, target, transform in rules:
            m = re.fullmatch(pattern, key)
            if m:
                if target is not None:
                    flat[target(m)] = transform(np.asarray(arr))
                break
        else:
            unexpected.append(key)
    return flat, unexpected


def check_against(flat: Dict[Tuple[str, ...], np.ndarray], abstract, what: str,
                  unexpected_src: Sequence[str] = (), optional: Sequence[Tuple[str, ...]] = ()):
    """Compare converted arrays with ``jax.eval_shape`` output; raise listing every problem."""
    want = {k: v for k, v in flatten(jax.tree.map(lambda x: x, abstract)).items()}
    missing = [k for k in want if k not in flat and k not in optional]
    unexpected = [k for k in flat if k not in want]
    misshaped = [(k, tuple(flat[k].shape), tuple(want[k].shape)) for k in flat
                 if k in want and tuple(flat[k].shape) != tuple(want[k].shape)]
    if missing or unexpected or misshaped or unexpected_src:
        lines = [f"checkpoint does not fit the {what}:"]
        if missing:
            lines.append(f"  missing ({len(missing)}): " + ", ".join("/".join(k) for k in missing[:20]))
        if unexpected_src:
            lines.append(f"  unexpected checkpoint keys ({len(unexpected_src)}): " + ", ".join(list(unexpected_src)[:20]))
        if unexpected:
            lines.append(f"  unexpected ({len(unexpected)}): " + ", ".join("/".join(k) for k in unexpected[:20]))
        if misshaped:
            lines.append(f"  mis-shaped ({len(misshaped)}): " + ", ".join(
                f"{'/'.join(k)} {a} vs model {b}" for k, a, b in misshaped[:20]))
        raise ConversionError("\n".join(lines))


def convert_stylegan2_generator(sd: Dict[str, np.ndarray], to_rgb: bool = True) -> dict:
    """Reference generator state dict (no prefix) -> {'params': ..., 'buffers': ...} (NumPy)."""
    flat, unexpected = _apply_rules(sd, GENERATOR_RULES, "generator")
    if unexpected:
        raise ConversionError("checkpoint does not fit the generator:\n  unexpected keys: " + ", ".join(unexpected))
    if to_rgb:
        for path in list(flat):
            if path[1].startswith("to_rgb") and (path[-1] == "bias" and len(path) == 3 or path[-2:] == ("conv", "weight")):
                flat[path] = np.ascontiguousarray(flat[path][..., ::-1])
    return unflatten(flat)


def convert_stylegan2_discriminator(sd: Dict[str, np.ndarray], to_rgb: bool = True) -> dict:
    """Reference discriminator state dict (no prefix) -> {'params': ...} (NumPy)."""
    flat, unexpected = _apply_rules(sd, DISCRIMINATOR_RULES, "discriminator")
    if unexpected:
        raise ConversionError("checkpoint does not fit the discriminator:\n  unexpected keys: " + ", ".join(unexpected))
    if to_rgb:
        path = ("params", "convs_0", "weight")
        if path in flat:
            flat[path] = np.ascontiguousarray(flat[path][:, :, ::-1, :])
    return unflatten(flat)
