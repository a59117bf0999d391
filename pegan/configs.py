"""Experiment configs: the released models of the paper, as ml_collections ConfigDicts.

``experiments/<name>.py`` holds one file per released model (names as in the seed table); each
calls a builder here, so the numbers live in one place (``RELEASED``) and the files carry the
documentation. ``load_experiment`` finds an experiment by name, by file path, by its
mmgeneration config name or by the stem of its released checkpoint file; ``apply_overrides``
sets fields from ``key=value`` text (``pegan train --set``), each value checked against the
type of the field it replaces.

A StyleGAN2 / MS-PIE config has the fields

* ``name``, ``family`` ('stylegan2'), ``paper`` (e.g. 'Tab.5 config-f'), ``variant`` ('full'|'tiny')
* ``generator``: keyword arguments of ``pegan.models.stylegan2.Generator``
* ``discriminator``: keyword arguments of ``pegan.models.stylegan2.Discriminator``
* ``scales``: the chosen-scale offsets trained on (``multi_input_scales``); ``eval_scale`` the
  largest, where the reported metrics were measured
* ``train``: the reference's hyper-parameters (REFERENCE §1.2-1.3)
* ``release``: reported FID50k / P&R10k, download URL, reference config and file names

The ``tiny`` variant keeps every flag of the real config but shrinks the widths to the fixture
sizes (out_size 32, style 16, channels {4: 16, 8: 16, 16: 12, 32: 8}, SPE dim 8): it is what the
tests and quick experiments use.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import ml_collections

from pegan.compute import DEFAULTS as COMPUTE_DEFAULTS
from pegan.errors import InputError, PeganError
from pegan.models._config import module_kwargs

__all__ = ["RELEASED", "SINGAN_RELEASED", "singan_config", "stylegan2_config", "builtin_config",
           "module_kwargs", "load_experiment", "apply_overrides", "experiment_names",
           "experiments_dir", "recognise_filename", "release_url", "ExperimentError", "TINY_CHANNELS"]

URL = "https://download.openmmlab.com/mmediting/pe_in_gans/"
TINY_CHANNELS = [[4, 16], [8, 16], [16, 12], [32, 8]]
SPE = {"type": "SPE", "embedding_dim": 256, "padding_idx": 0, "init_size": 256, "center_shift": 100}
CSG = {"type": "CSG"}


class ExperimentError(PeganError, ValueError):
    """Unknown experiment or a config that does not fit."""


def _ms(letter, head, size, interp, no_pad, cm=2, scales=(0, 2, 4), **kw):
    g = dict(head_pos_encoding=head, head_pos_size=[size, size], interp_head=interp, no_pad=no_pad,
             interp_pad=4 if no_pad else None, up_after_conv=not no_pad, deconv2conv=True,
             channel_multiplier=cm)
    d = dict(with_adaptive_pool=True, channel_multiplier=kw.pop("d_cm", cm))
    return dict(paper=f"Tab.5 config-{letter}", generator=g, discriminator=d, scales=list(scales),
                **kw)


def _base(letter, size):
    return dict(paper=f"Tab.5 config-{letter}", out_size=size, scales=[0], data_size=size,
                generator=dict(deconv2conv=False, head_pos_encoding=None, channel_multiplier=2),
                discriminator=dict(with_adaptive_pool=False, channel_multiplier=2))


# The seed table (SEED_TABLE.md) and REFERENCE §1.1: one entry per released model.
RELEASED: Dict[str, dict] = {
    "stylegan2_c2_8xb3-1100kiters_ffhq-256x256": dict(
        _base("a", 256), fid50k=5.56, precision10k=75.92, recall10k=51.24,
        mmgen_config="stylegan2_c2_ffhq_256_b3x8_1100k",
        file="stylegan2_c2_config-a_ffhq_256x256_b3x8_1100k_20210406_145127-71d9634b.pth"),
    "stylegan2_c2_8xb3-1100kiters_ffhq-512x512": dict(
        _base("b", 512), fid50k=4.91, precision10k=75.65, recall10k=54.58,
        mmgen_config="stylegan2_c2_ffhq_512_b3x8_1100k",
        file="stylegan2_c2_config-b_ffhq_512x512_b3x8_1100k_20210406_145142-e85e5cf4.pth"),
    "mspie-stylegan2-config-c_c2_8xb3-1100kiters_ffhq-256-512": dict(
        _ms("c", None, 4, True, False), fid50k=3.35, precision10k=73.84, recall10k=55.77,
        file="mspie-stylegan2_c2_config-c_ffhq_256-512_b3x8_1100k_20210406_144824-9f43b07d.pth"),
    "mspie-stylegan2-config-d_c2_8xb3-1100kiters_ffhq-256-512": dict(
        _ms("d", CSG, 4, False, False), fid50k=3.50, precision10k=73.28, recall10k=56.16,
        file="mspie-stylegan2_c2_config-d_ffhq_256-512_b3x8_1100k_20210406_144840-dbefacf6.pth"),
    "mspie-stylegan2-config-e_c2_8xb3-1100kiters_ffhq-256-512": dict(
        _ms("e", SPE, 4, True, False), fid50k=3.15, precision10k=74.13, recall10k=56.88,
        file="mspie-stylegan2_c2_config-e_ffhq_256-512_b3x8_1100k_20210406_144906-98d5a42a.pth"),
    "mspie-stylegan2-config-f_c2_8xb3-1100kiters_ffhq-256-512": dict(
        _ms("f", SPE, 4, False, False), fid50k=2.93, precision10k=73.51, recall10k=57.32,
        file="mspie-stylegan2_c2_config-f_ffhq_256-512_b3x8_1100k_20210406_144927-4f4d5391.pth"),
    "mspie-stylegan2-config-g_c1_8xb3-1100kiters_ffhq-256-512": dict(
        _ms("g", SPE, 4, False, False, cm=1), fid50k=3.40, precision10k=73.05, recall10k=56.45,
        file="mspie-stylegan2_c1_config-g_ffhq_256-512_b3x8_1100k_20210406_144758-2df61752.pth"),
    "mspie-stylegan2-config-h_c2_8xb3-1100kiters_ffhq-256-512": dict(
        _ms("h", None, 6, True, True), fid50k=4.01, precision10k=72.81, recall10k=54.35,
        file="mspie-stylegan2_c2_config-h_ffhq_256-512_b3x8_1100k_20210406_145006-84cf3f48.pth"),
    "mspie-stylegan2-config-i_c2_8xb3-1100kiters_ffhq-256-512": dict(
        _ms("i", CSG, 6, False, True), fid50k=3.76, precision10k=73.26, recall10k=54.71,
        file="mspie-stylegan2_c2_config-i_ffhq_256-512_b3x8_1100k_20210406_145023-c2b0accf.pth"),
    "mspie-stylegan2-config-j_c2_8xb3-1100kiters_ffhq-256-512": dict(
        _ms("j", SPE, 6, True, True), fid50k=4.23, precision10k=73.11, recall10k=54.63,
        file="mspie-stylegan2_c2_config-j_ffhq_256-512_b3x8_1100k_20210406_145044-c407481b.pth"),
    "mspie-stylegan2-config-k_c2_8xb3-1100kiters_ffhq-256-512": dict(
        _ms("k", SPE, 6, False, True), fid50k=4.17, precision10k=73.05, recall10k=51.07,
        file="mspie-stylegan2_c2_config-k_ffhq_256-512_b3x8_1100k_20210406_145105-6d8cc39f.pth"),
    "mspie-stylegan2-config-f_c2_8xb3-1100kiters_ffhq-256-896": dict(
        _ms("f", SPE, 4, False, False, scales=(0, 4, 10), data_size=1024),
        paper_note="higher resolution", fid50k=4.10, precision10k=72.21, recall10k=50.29,
        file="mspie-stylegan2_c2_config-f_ffhq_256-896_b3x8_1100k_20210406_144943-6c18ad5d.pth"),
    "mspie-stylegan2-config-f_c1_8xb2-1600kiters_ffhq-256-1024": dict(
        _ms("f", SPE, 4, False, False, cm=1, d_cm=2, scales=(0, 4, 12), data_size=1024,
            batch_per_device=2, total_iters=1_500_002),
        paper_note="higher resolution; the name says 1600k but the config trains 1,500,002 "
                   "iterations, and its discriminator keeps channel multiplier 2",
        fid50k=6.24, precision10k=71.79, recall10k=49.92,
        file="mspie-stylegan2_c1_config-f_ffhq_256-1024_b2x8_1600k_20210406_144716-81cbdc96.pth"),
}

SINGAN_IMAGES = {
    "balloons": ("balloons.png", "https://download.openmmlab.com/mmediting/dataset/singan/balloons.png", 250),
    "fish": ("fish-crop.jpg", "https://download.openmmlab.com/mmediting/dataset/singan/fish-crop.jpg", 300),
    "bohemian": ("bohemian.png", "https://download.openmmlab.com/mmediting/dataset/singan/bohemian.png", 500),
}
_INTERP = dict(padding=0, pad_at_head=True, interp_pad=True, noise_with_pad=True,
               positional_encoding=None, first_stage_in_channels=None)
_PE = dict(padding=1, pad_at_head=False, interp_pad=False, noise_with_pad=False)
_SPE4 = {"type": "SPE", "embedding_dim": 4, "padding_idx": 0, "init_size": 512, "div_half_dim": False,
         "center_shift": 200}

# REFERENCE §1.4 and the seed table: the 8 released PE-SinGAN models.
SINGAN_RELEASED: Dict[str, dict] = {
    "singan_interp-pad_balloons": dict(
        image="balloons", num_scales=8, g=_INTERP, noise_ch=1, noise_pad=True, d_bn=True,
        file="singan_interp-pad_balloons_20210406_180014-96f51555"),
    "singan_interp-pad_disc-nobn_balloons": dict(
        image="balloons", num_scales=8, g=_INTERP, noise_ch=1, noise_pad=True, d_bn=False,
        file="singan_interp-pad_disc-nobn_balloons_20210406_180059-7d63e65d"),
    "singan_interp-pad_disc-nobn_fish": dict(
        image="fish", num_scales=10, g=_INTERP, noise_ch=1, noise_pad=True, d_bn=False,
        file="singan_interp-pad_disc-nobn_fis_20210406_175720-9428517a"),
    "singan-csg_fish": dict(
        image="fish", num_scales=10, g=dict(_PE, positional_encoding={"type": "CSG"}, first_stage_in_channels=2),
        noise_ch=2, noise_pad=False, d_bn=True, mmgen_config="singan_csg_fish",
        file="singan_csg_fis_20210406_175532-f0ec7b61"),
    "singan-csg_bohemian": dict(
        image="bohemian", num_scales=10, g=dict(_PE, positional_encoding={"type": "CSG"}, first_stage_in_channels=2),
        noise_ch=2, noise_pad=False, d_bn=True, mmgen_config="singan_csg_bohemian",
        file="singan_csg_bohemian_20210407_195455-5ed56db2"),
    "singan_spe-dim4_fish": dict(
        image="fish", num_scales=10, g=dict(_PE, positional_encoding=_SPE4, first_stage_in_channels=8),
        noise_ch=1, noise_pad=False, d_bn=True, note="the config never sets first_fixed_noises_ch: "
        "the stage-0 noise has 1 channel, broadcast onto the 8 SPE channels",
        file="singan_spe-dim4_fish_20210406_175933-f483a7e3"),
    "singan_spe-dim4_bohemian": dict(
        image="bohemian", num_scales=10, g=dict(_PE, positional_encoding=_SPE4, first_stage_in_channels=8),
        noise_ch=8, noise_pad=False, d_bn=True, file="singan_spe-dim4_bohemian_20210406_175820-6e484a35"),
    "singan_spe-dim8_bohemian": dict(
        image="bohemian", num_scales=10,
        g=dict(_PE, positional_encoding=dict(_SPE4, embedding_dim=8), first_stage_in_channels=16),
        noise_ch=16, noise_pad=False, d_bn=True, note="mmgeneration's config file sets embedding_dim 4 "
        "(a copy of dim4), mmagic's 8: the converter reads the size from the checkpoint's shapes",
        file="singan_spe-dim8_bohemian_20210406_175858-7faa50f3"),
}


def singan_config(name: str, variant: Optional[str] = None) -> ml_collections.ConfigDict:
    """The config of released PE-SinGAN model ``name``: 'full', or 'tiny' (the fixtures' widths,
    4 scales, a 40 px image and a short schedule)."""
    variant = variant or "full"
    if name not in SINGAN_RELEASED:
        raise ExperimentError(f"unknown PE-SinGAN experiment {name!r}")
    if variant not in ("full", "tiny"):
        raise ExperimentError(f"unknown variant {variant!r} of {name}; use 'full' or 'tiny'")
    e = SINGAN_RELEASED[name]
    tiny = variant == "tiny"
    num_scales = 4 if tiny else e["num_scales"]
    widths = dict(base_channels=16, min_feat_channels=8) if tiny else dict(base_channels=32, min_feat_channels=32)
    g = dict(num_scales=num_scales, **widths)
    g.update({k: (dict(v) if isinstance(v, dict) else v) for k, v in e["g"].items()})
    d = dict(num_scales=num_scales, use_bn=e["d_bn"], **widths)
    image, url, max_size = SINGAN_IMAGES[e["image"]]
    iters = 2000
    cfg = dict(
        name=name, family="singan", variant=variant, paper="PE-SinGAN (Sec. 5)",
        generator=g, discriminator=d,
        data=dict(image=image, url=url, max_size=40 if tiny else max_size, min_size=12 if tiny else 25,
                  scale_factor=0.75, num_scales=num_scales),
        noise=dict(first_fixed_noises_ch=e["noise_ch"], fixed_noise_with_pad=e["noise_pad"],
                   noise_weight_init=0.1, amplitude="first_iteration"),
        train=dict(iters_per_scale=20 if tiny else iters, d_steps=3, g_steps=3, lr_g=5e-4, lr_d=5e-4,
                   betas=[0.5, 0.999], lr_milestones=[16 if tiny else 1600], lr_gamma=0.1,
                   gp_weight=0.1, rec_weight=10.0, batch=1),
        compute=dict(COMPUTE_DEFAULTS),
        release=dict(url=URL + e["file"] + ".pth", pkl_url=URL + e["file"] + ".pkl", file=e["file"] + ".pth",
                     stem=e["file"][: -len("_20210406_180014-96f51555")], mmgen_config=e.get("mmgen_config", name),
                     color_order="BGR", note=e.get("note", "")),
    )
    return ml_collections.ConfigDict(cfg)


_FILE_STAMP = re.compile(r"_\d{8}_\d{6}(-[0-9a-f]{8})?$")   # date stamp, then the SHA-256 digits


def _stem(filename: str) -> str:
    base = os.path.basename(str(filename))
    for ext in (".pth", ".pkl", ".pt", ".ckpt", ".py"):
        if base.endswith(ext):
            base = base[: -len(ext)]
    return _FILE_STAMP.sub("", base)


def _mmgen_name(entry: dict) -> str:
    return entry.get("mmgen_config") or _stem(entry["file"])


def stylegan2_config(name: str, variant: Optional[str] = None) -> ml_collections.ConfigDict:
    """The config of released StyleGAN2 / MS-PIE model ``name`` ('full' or 'tiny' variant)."""
    variant = variant or "full"
    if name not in RELEASED or "generator" not in RELEASED[name]:
        raise ExperimentError(f"unknown StyleGAN2/MS-PIE experiment {name!r}")
    if variant not in ("full", "tiny"):
        raise ExperimentError(f"unknown variant {variant!r} of {name}; use 'full' or 'tiny'")
    e = RELEASED[name]
    tiny = variant == "tiny"
    out_size = 32 if tiny else e.get("out_size", 256)
    style = 16 if tiny else 512
    g = dict(out_size=out_size, style_channels=style, num_mlps=8, lr_mlp=0.01, channels=None,
             head_pos_encoding=None, head_pos_size=[4, 4], interp_head=False, no_pad=False,
             deconv2conv=False, up_after_conv=False, interp_pad=None)
    g.update(e["generator"])
    if tiny:
        g["channels"] = TINY_CHANNELS
        if g["head_pos_encoding"] and g["head_pos_encoding"]["type"] == "SPE":
            g["head_pos_encoding"] = dict(g["head_pos_encoding"], embedding_dim=8)
    d = dict(in_size=out_size, channels=TINY_CHANNELS if tiny else None, pool_size=[2, 2],
             mbstd_group_size=4, mbstd_channel_groups=1)
    d.update(e["discriminator"])
    batch = e.get("batch_per_device", 3)
    data_size = e.get("data_size", 512)
    train = dict(
        # REFERENCE §1.2: non-saturating logistic loss, lazy R1 and path-length regularisation
        num_devices=8, batch_per_device=batch, global_batch=8 * batch,
        batch=4 if tiny else 8 * batch,   # images per step on this machine (all devices together)
        batch_per_scale=None,             # {scale: batch} overrides per chosen scale
        scale_probs=[0.5, 0.25, 0.25] if len(e["scales"]) == 3 else None,   # configured, ignored by the
        # reference (its draw is uniform); used with scale_sampling='configured'
        seed=0,
        total_iters=e.get("total_iters", 1_100_002),
        g_lr=0.002 * 4 / 5, g_betas=[0.0, 0.99 ** (4 / 5)],
        d_lr=0.002 * 16 / 17, d_betas=[0.0, 0.99 ** (16 / 17)], adam_eps=1e-8,
        r1_gamma=10.0, r1_interval=16, r1_weight=10.0 / 2 * 16,
        pl_weight=2.0 * 4, pl_interval=4, pl_batch_shrink=2, pl_decay=0.01,
        mix_prob=0.9, ema_momentum=0.5 ** (32 / (10 * 1000)), ema_start=0,
        scale_sampling="uniform",   # the reference's draw (pitfall: its probabilities are ignored)
        pl_scale=0,                 # path length always at chosen scale 0 (REFERENCE §1.3)
        pl_at_current_scale=False,  # True: path length at the scale of the step
        pl_detach_mean=False,       # the reference lets the gradient flow through the new running mean
        regularisation="joint",     # 'joint': R1 / PL in the loss of the same Adam step (the reference);
        #                             'separate': a second Adam step on the regulariser (NVIDIA)
        statistics="per_device",    # minibatch-stddev groups and PL mean per device (the reference), or 'global'
        data=dict(name="ffhq", stored_size=data_size if not tiny else out_size * 2, hflip=True),
        checkpoint_every=10_000, keep_checkpoints=40, log_every=100,
    )
    release = dict(url=URL + e["file"], file=e["file"], stem=_stem(e["file"]),
                   mmgen_config=_mmgen_name(e), fid50k=e["fid50k"], precision10k=e["precision10k"],
                   recall10k=e["recall10k"], color_order="BGR", note=e.get("paper_note", ""))
    scales = list(e["scales"])
    cfg = dict(name=name, family="stylegan2", variant=variant, paper=e["paper"], generator=g,
               discriminator=d, scales=scales, eval_scale=max(scales), train=train,
               compute=dict(COMPUTE_DEFAULTS), release=release)
    return ml_collections.ConfigDict(cfg)


# -- finding experiments ----------------------------------------------------------------------

def experiments_dir() -> Optional[Path]:
    """The repository's ``experiments/`` folder ($PEGAN_EXPERIMENTS overrides), if present."""
    env = os.environ.get("PEGAN_EXPERIMENTS")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent.parent / "experiments"
    return here if here.is_dir() else None


def experiment_names(family: Optional[str] = None) -> List[str]:
    """Built-in experiment names, all or of one family ('stylegan2' or 'singan')."""
    names = {"stylegan2": list(RELEASED), "singan": list(SINGAN_RELEASED)}
    return names[family] if family else names["stylegan2"] + names["singan"]


def builtin_config(name: str, variant: Optional[str] = None) -> ml_collections.ConfigDict:
    """The registry's config of a released experiment (no experiments/ file involved)."""
    return (stylegan2_config if name in RELEASED else singan_config)(name, variant)


def recognise_filename(filename: str) -> Optional[str]:
    """Experiment name for a released checkpoint file name (with or without its date stamp),
    an mmgeneration config name or an experiment name; None if it is none of them."""
    stem = _stem(filename)
    for name, e in RELEASED.items():
        if stem in (name, _stem(e["file"]), _mmgen_name(e)):
            return name
    for name, e in SINGAN_RELEASED.items():
        if stem in (name, _stem(e["file"]), e.get("mmgen_config", name)):
            return name
    return None


def release_url(filename: str) -> Optional[str]:
    """The download URL of a released checkpoint recognised by its file name, else None."""
    name = recognise_filename(filename)
    if name in RELEASED:
        return URL + RELEASED[name]["file"]
    if name in SINGAN_RELEASED:
        return URL + SINGAN_RELEASED[name]["file"] + ".pth"
    return None


def _import_file(path: Path):
    spec = importlib.util.spec_from_file_location(f"pegan_experiment_{path.stem.replace('-', '_')}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def load_experiment(name_or_path: str, variant: Optional[str] = None) -> ml_collections.ConfigDict:
    """A config by experiment name (seed-table name, mmgen config name or released file stem),
    or from a ``.py`` file defining ``get_config(variant=None)``."""
    p = Path(str(name_or_path))
    if p.suffix == ".py":
        if not p.is_file():
            raise ExperimentError(f"experiment file {p} does not exist")
        return _import_file(p).get_config(variant)
    name = recognise_filename(str(name_or_path)) or str(name_or_path)
    d = experiments_dir()
    if d is not None and (d / f"{name}.py").is_file():
        return _import_file(d / f"{name}.py").get_config(variant)
    if name in RELEASED or name in SINGAN_RELEASED:
        return builtin_config(name, variant)
    known = experiment_names()
    close = [n for n in known if str(name_or_path).lower() in n.lower()]
    hint = f" Did you mean: {', '.join(close)}?" if close else f" Known: {', '.join(known)}."
    raise ExperimentError(f"unknown experiment {name_or_path!r}.{hint}")


def _fit(current, value):
    """``value`` (parsed JSON) as the type of a field that holds ``current``; a TypeError says
    what the field takes. An unset (None) field takes any value; a list whose items share one
    plain type takes a list of such items; a section takes a JSON object or null."""
    if current is None:
        return value
    if isinstance(current, bool):
        if isinstance(value, bool):
            return value
        raise TypeError("true or false")
    if isinstance(current, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise TypeError("a whole number")
    if isinstance(current, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise TypeError("a number")
    if isinstance(current, str):
        if isinstance(value, str):
            return value
        raise TypeError("a string")
    if isinstance(current, (list, tuple)):
        if value is None:
            return None
        if not isinstance(value, list):
            raise TypeError("a JSON list, e.g. [0, 2, 4]")
        kinds = {type(x) for x in current}
        if len(kinds) == 1 and kinds <= {bool, int, float, str}:
            try:
                return [_fit(current[0], x) for x in value]
            except TypeError as e:
                raise TypeError(f"a JSON list whose items are each {e}") from None
        return value
    if isinstance(current, (dict, ml_collections.ConfigDict)):
        if value is None or isinstance(value, dict):
            return value
        raise TypeError("a JSON object or null")
    return value


def apply_overrides(cfg, pairs) -> ml_collections.ConfigDict:
    """Set ``key.path=value`` overrides (``pegan train --set``) on ``cfg``, in order. The value is
    JSON when it parses as JSON, else the text itself; it must fit the type of the field it
    replaces (``_fit``: whole numbers for int fields, numbers for float fields, true / false for
    bool fields, a JSON list for a list), else an InputError names the field and its type."""
    for item in pairs or []:
        if "=" not in item:
            raise InputError(f"--set takes key=value, got {item!r}")
        key, raw = item.split("=", 1)
        parts = key.split(".")
        node = cfg
        for i, p in enumerate(parts):
            if not isinstance(node, (dict, ml_collections.ConfigDict)):
                raise InputError(f"--set {key}: {'.'.join(parts[:i])} is a value, not a section")
            if p not in node:
                raise InputError(f"--set {key}: the config has no {'.'.join(parts[:i + 1])!r}")
            if i < len(parts) - 1:
                node = node[p]
        last, current = parts[-1], node[parts[-1]]
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw                       # a bare word: a string
        if isinstance(current, str) and not isinstance(value, str):
            value = raw                       # text that happens to parse as JSON, e.g. 1 or null
        if isinstance(current, bool) and isinstance(value, str) and value.lower() in ("true", "false"):
            value = value.lower() == "true"
        try:
            node[last] = _fit(current, value)
        except TypeError as e:
            now = f" (it is {json.dumps(current)} now)" if isinstance(current, (bool, int, float, str, list)) else ""
            raise InputError(f"--set {key}={raw}: {key} takes {e}{now}") from None
    return cfg


def scale_for_size(out_size: int, size: Tuple[int, int]) -> Tuple[int, int]:
    """The chosen-scale offsets (s_h, s_w) that give a (H, W) image; error if not whole."""
    f = out_size // 4
    out = []
    for v in size:
        if v % f or v // f < 1:
            raise ExperimentError(f"size {v} is not a multiple of {f} (out_size {out_size} / 4): "
                                  f"image sides are (4 + s) * {f} for a whole scale offset s")
        out.append(v // f - 4)
    if min(out) < -3:
        raise ExperimentError(f"size {size} is too small")
    return out[0], out[1]

