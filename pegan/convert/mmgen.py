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

from pegan.configs import load_experiment
from pegan.configs.release import names as released_names, recognise_filename
from pegan.encodings import encoding_channels
from pegan.errors import PeganError
from pegan.models.stylegan2 import channel_table

__all__ = ["ConversionError", "split_prefixes", "convert_stylegan2_generator",
           "convert_stylegan2_discriminator", "check_against", "flatten", "unflatten",
           "GENERATOR_RULES", "DISCRIMINATOR_RULES", "generator_facts", "discriminator_facts",
           "config_facts", "identify_experiment", "choose_experiment", "IGNORED_OTHER_KEYS"]


class ConversionError(PeganError, ValueError):
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
    if not (out["generator"] or out["generator_ema"] or out["discriminator"]):
        # an unprefixed state dict of one module (as some tools save them)
        if "conv1.conv.weight_orig" in out["other"]:
            out["generator_ema"], out["other"] = out["other"], {}
        elif "convs.0.0.conv.weight_orig" in out["other"]:
            out["discriminator"], out["other"] = out["other"], {}
    return out


# training state in the wrapper's state dict that a model does not use
IGNORED_OTHER_KEYS = (r"gen_auxiliary_losses\.\d+\.mean_path_length", r"mean_path_length",
                      r"generator_ema\.steps", r"disc_auxiliary_losses\..*")


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


def convert_stylegan2_generator(sd: Dict[str, np.ndarray], to_rgb: bool = True, abstract=None) -> dict:
    """Reference generator state dict (no prefix) -> {'params': ..., 'buffers': ...} (NumPy).

    With ``abstract`` (``jax.eval_shape`` of the model's variables) every missing, unexpected
    and mis-shaped key is listed in one ``ConversionError``; ``buffers/mean_latent`` is not in
    reference checkpoints and may be absent.
    """
    flat, unexpected = _apply_rules(sd, GENERATOR_RULES, "generator")
    _check(flat, unexpected, abstract, "generator", optional=[("buffers", "mean_latent")])
    if to_rgb:
        for path in list(flat):
            if path[1].startswith("to_rgb") and (path[-1] == "bias" and len(path) == 3 or path[-2:] == ("conv", "weight")):
                flat[path] = np.ascontiguousarray(flat[path][..., ::-1])
    return unflatten(flat)


def convert_stylegan2_discriminator(sd: Dict[str, np.ndarray], to_rgb: bool = True, abstract=None) -> dict:
    """Reference discriminator state dict (no prefix) -> {'params': ...} (NumPy)."""
    flat, unexpected = _apply_rules(sd, DISCRIMINATOR_RULES, "discriminator")
    _check(flat, unexpected, abstract, "discriminator")
    if to_rgb:
        path = ("params", "convs_0", "weight")
        if path in flat:
            flat[path] = np.ascontiguousarray(flat[path][:, :, ::-1, :])
    return unflatten(flat)


def _check(flat, unexpected, abstract, what, optional=()):
    if abstract is not None:
        check_against(flat, abstract, what, unexpected, optional)
    elif unexpected:
        raise ConversionError(f"checkpoint does not fit the {what}:\n  unexpected checkpoint keys "
                              f"({len(unexpected)}): " + ", ".join(unexpected[:20]))


# -- what the shapes tell ---------------------------------------------------------------------

def _shape(sd, key):
    return tuple(sd[key].shape) if key in sd else None


def generator_facts(sd: Dict[str, np.ndarray]) -> Dict[str, object]:
    """Architecture facts readable from a reference generator state dict (no prefix)."""
    if "conv1.conv.weight_orig" not in sd or "style_mapping.1.linear.weight_orig" not in sd:
        raise ConversionError("not a StyleGAN2 generator state dict (no conv1 / style_mapping keys)")
    n_rgb = len({k.split(".")[1] for k in sd if k.startswith("to_rgbs.")})
    facts: Dict[str, object] = {
        "out_size": 2 ** (n_rgb + 2),
        "style_channels": _shape(sd, "style_mapping.1.linear.weight_orig")[0],
        "num_mlps": len({k.split(".")[1] for k in sd if k.startswith("style_mapping.")}),
        "transposed_conv_upsampling": "convs.0.conv.blur.kernel" in sd,
    }
    c_in = _shape(sd, "conv1.conv.weight_orig")[2]
    if "constant_input.input" in sd:
        facts["head"] = f"constant {_shape(sd, 'constant_input.input')[-1]}x{_shape(sd, 'constant_input.input')[-1]}"
    elif c_in == 2:
        facts["head"] = "CSG"
    else:
        facts["head"] = f"SPE embedding_dim {c_in // 2}"
    n0, n1 = _shape(sd, "injected_noise_0"), _shape(sd, "injected_noise_1")
    facts["no_pad"] = bool(n0 and n1 and n1[-1] == 2 * n0[-1] + 2)
    ch = {4: _shape(sd, "conv1.conv.weight_orig")[1]}
    for k in range(n_rgb):
        ch[2 ** (k + 3)] = _shape(sd, f"convs.{2 * k}.conv.weight_orig")[1]
    facts["channels"] = ch
    return facts


def discriminator_facts(sd: Dict[str, np.ndarray]) -> Dict[str, object]:
    if "convs.0.0.conv.weight_orig" not in sd or "final_linear.0.linear.weight_orig" not in sd:
        raise ConversionError("not a StyleGAN2 discriminator state dict (no convs.0 / final_linear keys)")
    n_blocks = len({k.split(".")[1] for k in sd if k.startswith("convs.")}) - 1
    in_size = 2 ** (n_blocks + 2)
    ch = {in_size: _shape(sd, "convs.0.0.conv.weight_orig")[0]}
    for j in range(1, n_blocks + 1):
        ch[in_size // 2 ** j] = _shape(sd, f"convs.{j}.conv2.1.conv.weight_orig")[0]
    flat = _shape(sd, "final_linear.0.linear.weight_orig")[1]
    return {"in_size": in_size, "channels": ch, "flatten_features": flat}


def config_facts(cfg) -> Tuple[Dict[str, object], Dict[str, object]]:
    """The same facts computed from an experiment config (no tracing)."""
    g, d = cfg.generator, cfg.discriminator
    gch = channel_table(g.channel_multiplier, g.channels)
    enc = g.head_pos_encoding.to_dict() if hasattr(g.head_pos_encoding, "to_dict") else g.head_pos_encoding
    if enc is None:
        s = 6 if g.no_pad else 4
        head = f"constant {s}x{s}"
    elif enc["type"].startswith("CSG"):
        head = "CSG"
    else:
        head = f"SPE embedding_dim {encoding_channels(enc) // 2}"
    log = int(np.log2(g.out_size))
    gf = {"out_size": g.out_size, "style_channels": g.style_channels, "num_mlps": g.num_mlps,
          "transposed_conv_upsampling": not g.deconv2conv, "head": head,
          "no_pad": bool(g.no_pad and g.deconv2conv and not g.up_after_conv),
          "channels": {2 ** i: gch[2 ** i] for i in range(2, log + 1)}}
    dch = channel_table(d.channel_multiplier, d.channels)
    dlog = int(np.log2(d.in_size))
    pool = tuple(d.pool_size) if d.with_adaptive_pool else (4, 4)
    df = {"in_size": d.in_size, "channels": {2 ** i: dch[2 ** i] for i in range(2, dlog + 1)},
          "flatten_features": dch[4] * pool[0] * pool[1]}
    return gf, df


def fact_mismatch(found: Dict[str, object], want: Dict[str, object]) -> List[str]:
    return [f"{k}: checkpoint has {found[k]!r}, experiment wants {want[k]!r}"
            for k in want if k in found and found[k] != want[k]]


def choose_experiment(family: str, problems: Callable, filename: Optional[str] = None,
                      experiment: Optional[str] = None, variant: Optional[str] = None,
                      adapt: Optional[Callable] = None, facts=None, ambiguity: str = ""):
    """The experiment config of a reference checkpoint, checked against what its shapes tell.

    Order: the named ``experiment``; else the released ``filename``; else the shapes, which
    must fit exactly one built-in experiment of ``family`` (never a silent guess).
    ``problems(cfg)`` lists the differences between the checkpoint and a config; ``adapt(cfg)``
    may first fill in what the shapes decide, returning (cfg, notes).
    Returns (config, how, notes) with ``how`` one of 'named', 'file name', 'shapes'.
    """
    adapt = adapt or (lambda cfg: (cfg, []))
    how = "named"
    if experiment is None and filename is not None:
        experiment = recognise_filename(filename)
        how = "file name"
    if experiment is not None:
        cfg = load_experiment(experiment, variant)
        if cfg.family != family:
            raise ConversionError(f"experiment {cfg.name} is a {cfg.family} experiment, but the checkpoint "
                                  f"holds a {family} model: name a {family} experiment (--experiment)")
        cfg, notes = adapt(cfg)
        bad = problems(cfg)
        if bad:
            chosen = "named by --experiment" if how == "named" else "recognised from the file name"
            raise ConversionError(
                f"checkpoint does not fit experiment {cfg.name} ({cfg.variant}, {chosen}): " + "; ".join(bad)
                + (": name the experiment it was trained with (--experiment)" if how == "named" else
                   ": the file was renamed or is another model; name the experiment it was trained with (--experiment)"))
        return cfg, how, notes
    fits = []
    for name in released_names(family):
        cfg, notes = adapt(load_experiment(name, variant))
        if not problems(cfg):
            fits.append((name, cfg, notes))
    if len(fits) == 1:
        return fits[0][1], "shapes", fits[0][2]
    if not fits:
        raise ConversionError(
            f"no {variant or 'full'} {family} experiment fits this checkpoint's shapes ({facts}); "
            "name the experiment and variant it was trained with (--experiment, --variant)")
    raise ConversionError(
        f"the shapes of this checkpoint fit several {ambiguity}: {', '.join(n for n, _, _ in fits)}. "
        "Name one with --experiment (or keep the released file name, which identifies it).")


def identify_experiment(parts: Dict[str, Dict[str, np.ndarray]], filename: Optional[str] = None,
                        experiment: Optional[str] = None, variant: Optional[str] = None):
    """Pick the StyleGAN2 / MS-PIE experiment of a reference checkpoint (``choose_experiment``;
    e/f/f-896 and j/k have the same shapes and need a name). Returns (config, how)."""
    gsd = parts["generator_ema"] or parts["generator"]
    if not gsd and not parts["discriminator"]:
        raise ConversionError("checkpoint holds neither a generator (generator_ema.*, generator.*) "
                              "nor a discriminator (discriminator.*)")
    gf = generator_facts(gsd) if gsd else {}
    df = discriminator_facts(parts["discriminator"]) if parts["discriminator"] else {}

    def problems(cfg):
        wg, wd = config_facts(cfg)
        return fact_mismatch(gf, wg) + [f"discriminator {p}" for p in fact_mismatch(df, wd)]

    cfg, how, _ = choose_experiment(
        "stylegan2", problems, filename, experiment, variant, facts=gf or df,
        ambiguity="experiments, which differ only in settings that shapes do not show")
    return cfg, how
