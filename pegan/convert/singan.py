"""PE-SinGAN checkpoints: reference ``.pth`` (weights, BN statistics) + ``.pkl`` (fixed noises,
noise amplitudes, stage count) -> pegan variables and noise state.

Key tables as in ``pegan.convert.mmgen``: every target variable must be matched and every
source key used or explicitly ignored (``num_batches_tracked``, the SPE ``_float_tensor``).
Colour: with ``to_rgb=True`` the image-space channels are reversed (each block's tail output
and, where the block input is an image, its head input; the discriminators' head input).
"""

from __future__ import annotations

import re
from typing import Dict, List, Optional, Tuple

import numpy as np

from pegan.convert.mmgen import (ConversionError, Rule, _apply_rules, _check, _same, _t_conv,
                                 choose_experiment, fact_mismatch, unflatten)

__all__ = ["GENERATOR_RULES", "DISCRIMINATOR_RULES", "convert_singan_generator",
           "convert_singan_discriminator", "noise_state_from_pkl", "singan_facts", "config_facts",
           "identify_singan"]

MAX_STAGES = 64          # a released PE-SinGAN has 9-11 stages
MAX_NOISE_SIDE = 8192    # px of one fixed noise map (with its padding)
_LAYER = r"blocks\.(\d+)\.(head|body\.block[123]|tail)"


def _layer(m) -> Tuple[str, str]:
    return f"blocks_{m[1]}", m[2].replace("body.", "")


GENERATOR_RULES: List[Rule] = [
    (_LAYER + r"\.conv\.weight", lambda m: ("params", *_layer(m), "kernel"), _t_conv),
    (_LAYER + r"\.conv\.bias", lambda m: ("params", *_layer(m), "bias"), _same),
    (_LAYER + r"\.bn\.weight", lambda m: ("params", *_layer(m), "bn", "scale"), _same),
    (_LAYER + r"\.bn\.bias", lambda m: ("params", *_layer(m), "bn", "bias"), _same),
    (_LAYER + r"\.bn\.running_mean", lambda m: ("batch_stats", *_layer(m), "bn", "mean"), _same),
    (_LAYER + r"\.bn\.running_var", lambda m: ("batch_stats", *_layer(m), "bn", "var"), _same),
    (_LAYER + r"\.bn\.num_batches_tracked", None, None),   # momentum is fixed: unused
    (r"head_position_encode\._float_tensor", None, None),   # SPE dtype placeholder
]
DISCRIMINATOR_RULES = GENERATOR_RULES[:-1]


def _flip_rgb(flat, kinds):
    for path in list(flat):
        if path[0] != "params" or path[-1] not in ("kernel", "bias"):
            continue
        layer = path[2]
        if "tail_out" in kinds and layer == "tail":
            arr = flat[path]
            flat[path] = np.ascontiguousarray(arr[..., ::-1])
        if "head_in" in kinds and layer == "head" and path[-1] == "kernel" and flat[path].shape[2] == 3:
            flat[path] = np.ascontiguousarray(flat[path][:, :, ::-1, :])


def convert_singan_generator(sd: Dict[str, np.ndarray], to_rgb: bool = True, abstract=None,
                             image_input_stage0: bool = True) -> dict:
    """Reference ``SinGANMSGeneratorPE`` state dict (no prefix) -> {'params', 'batch_stats'}.

    ``image_input_stage0``: whether stage 0's 3 input channels are image channels (no PE);
    a PE stage-0 head (2, 8 or 16 channels) is never permuted."""
    flat, unexpected = _apply_rules(sd, GENERATOR_RULES, "generator")
    _check(flat, unexpected, abstract, "SinGAN generator")
    if to_rgb:
        keep = {}
        if not image_input_stage0:
            keep = {p: v for p, v in flat.items() if p[1] == "blocks_0" and p[2] == "head"}
        _flip_rgb(flat, ("tail_out", "head_in"))
        flat.update(keep)
    return unflatten(flat)


def convert_singan_discriminator(sd: Dict[str, np.ndarray], to_rgb: bool = True, abstract=None) -> dict:
    flat, unexpected = _apply_rules(sd, DISCRIMINATOR_RULES, "discriminator")
    _check(flat, unexpected, abstract, "SinGAN discriminator")
    if to_rgb:
        _flip_rgb(flat, ("head_in",))
    return unflatten(flat)


def noise_state_from_pkl(pkl: dict) -> dict:
    """The ``.pkl`` dict -> {'fixed_noises': [1, H, W, C] float32 list, 'noise_weights': float32
    [stages], 'curr_stage': int}; errors name what is wrong."""
    if not isinstance(pkl, dict):
        raise ConversionError(f"the SinGAN .pkl should hold a dict, found {type(pkl).__name__}")
    missing = [k for k in ("fixed_noises", "noise_weights", "curr_stage") if k not in pkl]
    if missing:
        raise ConversionError(f"the SinGAN .pkl lacks {', '.join(missing)} (has {sorted(pkl)})")
    noises, weights, stage = pkl["fixed_noises"], pkl["noise_weights"], pkl["curr_stage"]
    # types and sizes first: a hostile file must not make us expand shared or nested structures
    if not isinstance(stage, (int, np.integer)) or isinstance(stage, bool) or not 0 <= stage < MAX_STAGES:
        raise ConversionError(f"the SinGAN .pkl's curr_stage must be an int in [0, {MAX_STAGES}), got {stage!r:.80}")
    stage = int(stage)
    if not isinstance(noises, (list, tuple)) or len(noises) != stage + 1:
        raise ConversionError(f"the SinGAN .pkl's fixed_noises must be a list of {stage + 1} arrays "
                              f"(curr_stage {stage}), got {type(noises).__name__} of "
                              f"{len(noises) if isinstance(noises, (list, tuple)) else '?'}")
    if not isinstance(weights, (list, tuple, np.ndarray)) or np.ndim(weights) != 1 \
            or not stage + 1 <= len(weights) <= MAX_STAGES:
        raise ConversionError(f"the SinGAN .pkl's noise_weights must be a list of {stage + 1} numbers")
    for i, n in enumerate(noises):
        if not isinstance(n, np.ndarray) or n.ndim != 4 or n.shape[0] != 1 or n.dtype.kind not in "fiu":
            raise ConversionError(f"fixed_noises[{i}] must be a [1, C, H, W] numeric array, got "
                                  f"{type(n).__name__} {getattr(n, 'shape', '')}")
        if n.shape[1] > 64 or max(n.shape[2:]) > MAX_NOISE_SIDE:
            raise ConversionError(f"fixed_noises[{i}] has shape {n.shape}: more than 64 channels or a side "
                                  f"over {MAX_NOISE_SIDE} px (a damaged or hostile .pkl)")
    if not all(isinstance(w, (int, float, np.number)) and not isinstance(w, bool) for w in weights):
        raise ConversionError("the SinGAN .pkl's noise_weights must hold numbers")
    with np.errstate(over="ignore", invalid="ignore"):
        try:
            weights = np.asarray([float(w) for w in weights], np.float32)
        except OverflowError:                      # an int beyond any float
            weights = np.asarray([np.inf])
        noises = [np.asarray(n, np.float32) for n in noises]
    if not np.isfinite(weights).all():
        raise ConversionError("the SinGAN .pkl's noise_weights hold a value that is not a finite float32 "
                              "(a damaged file)")
    for i, n in enumerate(noises):
        if not np.isfinite(n).all():
            raise ConversionError(f"the SinGAN .pkl's fixed_noises[{i}] holds NaN or infinite values (a damaged file)")
    if len(noises) != stage + 1 or len(weights) < stage + 1:
        raise ConversionError(f"the .pkl holds {len(noises)} noises and {len(weights)} noise weights "
                              f"for curr_stage {stage}: expected {stage + 1} of each")
    return {"fixed_noises": [np.ascontiguousarray(n.transpose(0, 2, 3, 1)) for n in noises],
            "noise_weights": weights[: stage + 1], "curr_stage": stage}


def singan_facts(gsd: Dict[str, np.ndarray], dsd: Optional[Dict[str, np.ndarray]],
                 noise: Optional[dict]) -> Dict[str, object]:
    """What the shapes tell: stage count, stage-0 input channels, D BatchNorm, widths, pyramid."""
    stages = sorted({int(m[1]) for k in gsd for m in [re.match(r"blocks\.(\d+)\.", k)] if m})
    if not stages or "blocks.0.head.conv.weight" not in gsd:
        raise ConversionError("not a SinGAN generator state dict (no blocks.0.head.conv.weight)")
    facts: Dict[str, object] = {
        "num_scales": stages[-1],
        "stage0_in_channels": int(gsd["blocks.0.head.conv.weight"].shape[1]),
        "base_channels": int(gsd["blocks.0.head.conv.weight"].shape[0]),
        "min_feat_channels": int(gsd["blocks.0.body.block3.conv.weight"].shape[0]),
        "spe_placeholder": "head_position_encode._float_tensor" in gsd,
    }
    if dsd:
        facts["discriminator_bn"] = any(k.endswith("bn.weight") for k in dsd)
    if noise is not None:
        facts["stage0_noise_channels"] = int(noise["fixed_noises"][0].shape[-1])
    return facts


def config_facts(cfg) -> Dict[str, object]:
    g = cfg.generator
    pe = g.positional_encoding.to_dict() if hasattr(g.positional_encoding, "to_dict") else g.positional_encoding
    return {"num_scales": g.num_scales,
            "stage0_in_channels": g.first_stage_in_channels or 3,
            "base_channels": g.base_channels,
            "min_feat_channels": g.min_feat_channels,
            "spe_placeholder": bool(pe and pe["type"].startswith("SPE")),
            "discriminator_bn": cfg.discriminator.use_bn,
            "stage0_noise_channels": cfg.noise.first_fixed_noises_ch}


def identify_singan(facts: Dict[str, object], filename: Optional[str] = None,
                    experiment: Optional[str] = None, variant: Optional[str] = None):
    """(config, how, notes): the named experiment, else the released file name, else the one
    experiment the shapes fit. An SPE embedding size is always read from the shapes (the
    released 'spe-dim8' file: REFERENCE pitfall 23)."""

    def adapt(cfg):
        notes = []
        pe = cfg.generator.positional_encoding
        if pe is not None and pe.type.startswith("SPE") and facts["stage0_in_channels"] != cfg.generator.first_stage_in_channels:
            dim = int(facts["stage0_in_channels"]) // 2
            notes.append(f"SPE embedding_dim {pe.embedding_dim} -> {dim}, read from the checkpoint's "
                         f"blocks.0.head.conv.weight (REFERENCE pitfall 23)")
            pe.embedding_dim = dim
            cfg.generator.first_stage_in_channels = 2 * dim
            if cfg.noise.first_fixed_noises_ch != 1:   # dim-4 fish keeps its 1-channel noise
                cfg.noise.first_fixed_noises_ch = facts.get("stage0_noise_channels", 2 * dim)
        return cfg, notes

    return choose_experiment("singan", lambda cfg: fact_mismatch(facts, config_facts(cfg)), filename, experiment, variant, adapt=adapt, facts=facts,
                             ambiguity="SinGAN experiments (they differ in the training image)")
