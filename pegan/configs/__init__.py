"""Experiment configs as ml_collections ConfigDicts: one file per experiment.

``experiments/<name>.py`` defines ``get_config(variant=None)``: the family's base config
(``pegan.configs.base``, every field documented there) plus the experiment's own values. A
config is found by file path (``path.py`` or ``path.py:tiny``), or by name: an experiment name,
the mmgeneration config name or the stem of a released checkpoint file (``release``), looked up
in ``experiments_dir()``. ``apply_overrides`` sets fields from ``key=value`` text
(``pegan train --config.train.batch=8``), each value checked against the type of the field it
replaces.

The release facts (file names, URLs, FID50k, P&R10k) are ``pegan.configs.release``; no config
holds them, so an experiment of your own needs none.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import sysconfig
from pathlib import Path
from typing import List, Optional, Tuple

from pegan._extras import require
require("ml_collections", extra="convert", by=__name__)
import ml_collections

from pegan.configs import base
from pegan.configs.release import recognise_filename, release_url
from pegan.errors import InputError, PeganError
from pegan.models._config import module_kwargs

__all__ = ["load_experiment", "apply_overrides", "split_variant", "experiment_names", "experiments_dir",
           "stylegan2_config", "singan_config", "recognise_filename", "release_url", "module_kwargs",
           "scale_for_size", "eval_scale", "ExperimentError", "check_stored", "changed_fields", "changes_line", "base"]


class ExperimentError(PeganError, ValueError):
    """Unknown experiment or a config that does not fit."""


def experiments_dir() -> Optional[Path]:
    """Where experiments are looked up by name: $PEGAN_EXPERIMENTS, else the source checkout's
    ``experiments/``, else the copy an install puts under ``<prefix>/share/pegan/experiments``."""
    env = os.environ.get("PEGAN_EXPERIMENTS")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parents[2] / "experiments"
    if here.is_dir():
        return here
    # an install: <prefix>/lib/pythonX.Y/site-packages/pegan/configs/__init__.py, data in <prefix>/share
    up = Path(__file__).resolve().parents
    for prefix in ([up[5]] if len(up) > 5 else []) + [sysconfig.get_paths()["data"], sys.prefix]:
        d = Path(prefix) / "share" / "pegan" / "experiments"
        if d.is_dir():
            return d
    return None


def experiment_names(family: Optional[str] = None) -> List[str]:
    """The experiments in ``experiments_dir()`` (the released ones and any added there), all or
    those of one family ('stylegan2' or 'singan')."""
    d = experiments_dir()
    found = sorted(p.stem for p in d.glob("*.py") if not p.stem.startswith("_")) if d else []
    if family is None:
        return found
    return [n for n in found if _from_file(d / f"{n}.py", None).family == family]


def split_variant(text: str) -> Tuple[str, Optional[str]]:
    """'experiments/x.py:tiny' -> ('experiments/x.py', 'tiny') (config_flags' argument form)."""
    text = str(text)
    head, sep, tail = text.rpartition(":")
    if sep and tail in base.VARIANTS and head:
        return head, tail
    return text, None


def _import_file(path: Path):
    spec = importlib.util.spec_from_file_location(f"pegan_experiment_{path.stem.replace('-', '_')}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    if not hasattr(mod, "get_config"):
        raise ExperimentError(f"experiment file {path} defines no get_config(variant=None)")
    return mod


def _from_file(path: Path, variant: Optional[str]) -> ml_collections.ConfigDict:
    cfg = _import_file(path).get_config(variant)
    if not isinstance(cfg, ml_collections.ConfigDict) or cfg.get("family") not in ("stylegan2", "singan"):
        raise ExperimentError(f"{path}: get_config must return a pegan config (pegan.configs.base.stylegan2() "
                              "or .singan() plus the experiment's values)")
    if cfg.name is None:
        cfg.name = path.stem          # the experiment is named after its file
    return cfg


def load_experiment(name_or_path: str, variant: Optional[str] = None) -> ml_collections.ConfigDict:
    """A config from an experiment file (``path.py``, or ``path.py:tiny``) or by name (experiment
    name, mmgeneration config name, or the released file's stem) from ``experiments_dir()``."""
    text, v = split_variant(name_or_path)
    variant = variant or v
    p = Path(text)
    if p.suffix == ".py":
        if not p.is_file():
            raise ExperimentError(f"experiment file {p} does not exist")
        return _from_file(p, variant)
    name = recognise_filename(text) or text
    d = experiments_dir()
    if d is not None and (d / f"{name}.py").is_file():
        return _from_file(d / f"{name}.py", variant)
    if d is None:
        raise ExperimentError(f"unknown experiment {text!r}: no experiments folder was found; pass the "
                              "experiment file (experiments/<name>.py) or set $PEGAN_EXPERIMENTS")
    known = experiment_names()
    close = [n for n in known if text.lower() in n.lower()]
    hint = f" Did you mean: {', '.join(close)}?" if close else f" Known: {', '.join(known)}."
    raise ExperimentError(f"unknown experiment {text!r}.{hint}")


def _family_config(family: str, name: str, variant: Optional[str]) -> ml_collections.ConfigDict:
    cfg = load_experiment(name, variant)
    if cfg.family != family:
        raise ExperimentError(f"{name} is a {cfg.family} experiment, not a {family} one")
    return cfg


def stylegan2_config(name: str, variant: Optional[str] = None) -> ml_collections.ConfigDict:
    """The config of StyleGAN2 / MS-PIE experiment ``name`` ('full' or 'tiny' variant)."""
    return _family_config("stylegan2", name, variant)


def singan_config(name: str, variant: Optional[str] = None) -> ml_collections.ConfigDict:
    """The config of PE-SinGAN experiment ``name`` ('full' or 'tiny' variant)."""
    return _family_config("singan", name, variant)


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


# the kind of value each field that is unset (None) in a base config takes, as a value of that
# kind for ``_fit`` (null unsets it again); unknown fields' None takes any value, as before
_UNSET_AS = {"data.path": "", "data.image": "", "eval.inception": "", "eval.real": "", "eval.vgg16": "",
             "train.init_from": "", "eval.scale": 0, "generator.interp_pad": 0, "train.batch_gpu": 0,
             "generator.first_stage_in_channels": 0, "generator.channels": [], "discriminator.channels": [],
             "train.scale_probs": [0.0], "train.batch_per_scale": {}, "generator.head_pos_encoding": {},
             "generator.positional_encoding": {}}


def changed_fields(held, cfg, may_change=()) -> List[tuple]:
    """(field, stored, now) of each leaf field whose value differs between the config ``held``
    (a run's stored one) and ``cfg``, compared as the JSON they are saved as; fields named in
    ``may_change`` (and the fields under them) and fields one side lacks (an older run) aside."""
    def flat(d, prefix=""):
        out = {}
        for k, v in d.items():
            name = prefix + k
            if any(name == f or name.startswith(f + ".") for f in may_change):
                continue
            if isinstance(v, dict):
                out.update(flat(v, name + "."))
            else:
                out[name] = json.dumps(v, sort_keys=True)
        return out

    norm = lambda c: json.loads(json.dumps(c.to_dict() if hasattr(c, "to_dict") else dict(c), sort_keys=True))
    a, b = flat(norm(held)), flat(norm(cfg))
    return [(k, a[k], b[k]) for k in sorted(set(a) & set(b)) if a[k] != b[k]]


def changes_line(changed: List[tuple], most: int = 4) -> str:
    """'field stored -> now, ...' of ``changed_fields``, the first ``most`` and how many more."""
    return ", ".join(f"{k} {a[:60]} -> {b[:60]}" for k, a, b in changed[:most]) + \
        (f" and {len(changed) - most} more" if len(changed) > most else "")


def apply_overrides(cfg, pairs, flag: str = "--config.") -> ml_collections.ConfigDict:
    """Set ``key.path=value`` overrides (``pegan train --config.key.path=value``) on ``cfg``, in
    order; ``flag`` is how error lines name them. The value is
    JSON when it parses as JSON, else the text itself; it must fit the type of the field it
    replaces (``_fit``: whole numbers for int fields, numbers for float fields, true / false for
    bool fields, a JSON list for a list), else an InputError names the field and its type."""
    for item in pairs or []:
        if "=" not in item:
            raise InputError(f"{flag} takes key=value, got {item!r}")
        key, raw = item.split("=", 1)
        if key in ("family", "name", "variant"):
            raise InputError(f"{flag}{key}: the {key} is the experiment's own (its file and :variant), not an override")
        parts = key.split(".")
        node = cfg
        for i, p in enumerate(parts):
            if not isinstance(node, (dict, ml_collections.ConfigDict)):
                raise InputError(f"{flag}{key}: {'.'.join(parts[:i])} is a value, not a section")
            if p not in node:
                raise InputError(f"{flag}{key}: the config has no {'.'.join(parts[:i + 1])!r}")
            if i < len(parts) - 1:
                node = node[p]
        last, current = parts[-1], node[parts[-1]]
        if isinstance(current, ml_collections.ConfigDict) and key not in _UNSET_AS:   # (an encoding: replaced whole)
            first = next(iter(current.keys()), "FIELD")
            raise InputError(f"{flag}{key}: {key} is a section; set its fields one by one, e.g. "
                             f"{flag}{key}.{first}=...")
        if key in _UNSET_AS:
            if raw.strip() == "null":
                node[last] = None                  # unset (again)
                continue
            if current is None:
                current = _UNSET_AS[key]           # an unset field takes the values of its kind
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
            raise InputError(f"{flag}{key}={raw}: {key} takes {e}{now}") from None
    return cfg


_MODEL_SECTIONS = {"stylegan2": ("generator", "discriminator"), "singan": ("generator", "discriminator", "noise")}


def check_stored(raw, where: str) -> ml_collections.ConfigDict:
    """A config read back from a checkpoint's config.json (``raw``: parsed JSON) as a
    ConfigDict, checked against its family's base config: an object naming a known family,
    each field the base has of the base's type (``_fit``), sections as objects, and the
    sections the networks are built from complete. Fields the base lacks are left alone (no
    code reads them); a missing train / data / eval field is left missing as before (older
    runs). Anything else raises ``ExperimentError`` naming ``where`` and the field."""
    if not isinstance(raw, dict):
        raise ExperimentError(f"{where} holds a JSON {type(raw).__name__}, not a config object")
    family = raw.get("family")
    if family not in _MODEL_SECTIONS:
        raise ExperimentError(f"{where} names family {str(family)[:40]!r}; pegan has {', '.join(_MODEL_SECTIONS)}")
    ref = base.stylegan2() if family == "stylegan2" else base.singan()

    def walk(node: dict, want, path: str) -> None:
        for key, current in want.items():
            if key not in node:
                continue
            value, name = node[key], f"{path}{key}"
            if isinstance(current, ml_collections.ConfigDict) and key not in _UNSET_AS:   # (an encoding: replaced whole)
                if not isinstance(value, dict):
                    raise ExperimentError(f"{where}: {name} is a JSON {type(value).__name__}, not a section")
                walk(value, current, name + ".")
                continue
            try:
                _fit(current, value)
            except TypeError as e:
                raise ExperimentError(f"{where}: {name} should be {e}, it is {json.dumps(value)[:60]}") from None

    walk(raw, ref, "")
    for sec in _MODEL_SECTIONS[family]:
        missing = [k for k in ref[sec] if k not in raw.get(sec, {})]
        if missing:
            raise ExperimentError(f"{where}: the {sec} section lacks {', '.join(missing[:5])}")
    return ml_collections.ConfigDict(raw)


def eval_scale(cfg) -> int:
    """The chosen scale metrics default to: ``eval.scale``, else the largest of ``scales`` (where
    the paper reports them); configs stored before the ``eval`` section existed get the latter."""
    ev = cfg.get("eval", None)
    s = ev.get("scale", None) if ev is not None else None
    return int(max(cfg.scales)) if s is None else int(s)


def scale_for_size(out_size: int, size: Tuple[int, int]) -> Tuple[int, int]:
    """The chosen-scale offsets (s_h, s_w) that give a (H, W) image; error if not whole."""
    f = out_size // 4
    out = []
    for v in size:
        if v < f:
            raise ExperimentError(f"size {v} is too small: image sides are (4 + s) * {f} px (out_size {out_size} / 4) "
                                  f"for a whole scale offset s >= -3, so at least {f}")
        if v % f:
            raise ExperimentError(f"size {v} is not a multiple of {f} (out_size {out_size} / 4): "
                                  f"image sides are (4 + s) * {f} for a whole scale offset s")
        out.append(v // f - 4)
    return out[0], out[1]

