"""Starting a StyleGAN2 / MS-PIE run from another model (``train.init_from``): fine-tuning.

The parent is a pegan checkpoint directory (a converted release or any pegan run, its latest
step) or a reference ``.pth`` (converted on the fly, untrusted like every file). Its generator,
EMA generator, discriminator and mean latent replace the fresh ones of the new run; the
optimiser states, the step, the data position and the path-length means start fresh. A part
the parent lacks (a converted file without its discriminator, say) starts fresh too, and the
log says so. Shapes must fit the experiment: a mismatch is one error listing the differing
parameters. ``train.reinit`` names parts that start fresh instead of being copied ('mapping':
the mapping network of both generators; 'd_head': the discriminator's layers after the
minibatch-stddev feature), which also lets those parts change shape. MS-PIE may fine-tune at
other scales than the parent's (``scales``): the head is a positional encoding.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import numpy as np

from pegan import checkpoint as ckpt
from pegan.errors import InputError
from pegan import loading
from pegan.convert.mmgen import flatten, unflatten
from pegan.models.stylegan2 import abstract_variables, build_discriminator, build_generator

__all__ = ["REINIT", "check_reinit", "parent_models", "merge", "start_from"]

# the parts train.reinit may name, as (item, top-level parameter names) predicates
REINIT = {
    "mapping": ("generator", lambda name: name.startswith("style_mapping")),
    "d_head": ("discriminator", lambda name: name.startswith(("final_conv", "final_linear"))),
}
ITEMS = ("generator", "generator_ema", "discriminator")


def check_reinit(tcfg) -> Tuple[str, ...]:
    """``train.reinit`` as a tuple of known part names (a list or a comma string)."""
    names = tcfg.get("reinit") or ()
    if isinstance(names, str):
        names = [n for n in names.replace(" ", "").split(",") if n]
    names = tuple(str(n) for n in names)
    bad = [n for n in names if n not in REINIT]
    if bad:
        raise InputError(f"train.reinit names {', '.join(bad)}; it may name {', '.join(REINIT)}")
    if names and not tcfg.get("init_from"):
        raise InputError("train.reinit applies with train.init_from (--init-from CKPT): set both, or neither")
    return names


def parent_models(path, cfg) -> Tuple[Dict[str, Any], str]:
    """({item: variables as NumPy} of the items the parent holds, a one-line description)."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"train.init_from: {p} does not exist; give a pegan checkpoint directory (`pegan convert` "
                         "writes one from a released .pth) or the .pth itself")
    if p.is_dir():
        if not ckpt.is_checkpoint_dir(p):
            raise InputError(f"train.init_from: {p} is not a pegan checkpoint directory (no pegan.json); convert a "
                             "released model first: pegan convert FILE.pth DIR")
        info = ckpt.read_info(p)
        if info.get("family") != "stylegan2":
            raise InputError(f"train.init_from: {p} holds a {info.get('family')} model, not a StyleGAN2 / MS-PIE one")
        pcfg = ckpt.read_config(p)
        step = ckpt.check_step(p)
        held = [i for i in ITEMS if i in ckpt.items_at(p, step)]
        abstract = {i: abstract_variables(build_discriminator(pcfg) if i == "discriminator"
                                          else build_generator(pcfg)) for i in held}
        items = ckpt.restore(p, held, step, abstract)
        return items, f"{p} (step {step} of {pcfg.name})"
    try:
        pcfg, items, _ = loading.convert_reference(p, variant=cfg.variant)
    except loading.ConversionError as e:
        if "--experiment" not in str(e):
            raise
        # shapes that several released experiments share: the run's own experiment decides
        pcfg, items, _ = loading.convert_reference(p, experiment=cfg.name, variant=cfg.variant)
    return items, f"{p} (converted as {pcfg.name})"


def merge(fresh: Dict[str, Any], parent: Dict[str, Any], keep_fresh: Callable[[str], bool], what: str,
          problems: List[str]):
    """``fresh`` (variables of the new model) with every leaf the parent holds copied in, except
    the top-level parameter groups ``keep_fresh`` names. Leaves missing from, added to or
    shaped otherwise in the parent go to ``problems``."""
    f, p = flatten(fresh), flatten(parent)

    def kept(path):      # a leaf of a parameter group that starts fresh
        return path[0] == "params" and len(path) > 1 and keep_fresh(path[1])

    out = {}
    for path, leaf in f.items():
        if kept(path):
            out[path] = leaf
            continue
        if path not in p:
            if path[-1] == "mean_latent":
                out[path] = leaf
                continue
            problems.append(f"{what} {'/'.join(path[1:])}: not in the parent")
            continue
        if tuple(np.shape(p[path])) != tuple(np.shape(leaf)):
            problems.append(f"{what} {'/'.join(path[1:])}: parent {tuple(np.shape(p[path]))}, "
                            f"experiment {tuple(np.shape(leaf))}")
            continue
        out[path] = np.asarray(p[path]).astype(np.asarray(leaf).dtype)
    for path in p:
        if path not in f and not kept(path):
            problems.append(f"{what} {'/'.join(path[1:])}: in the parent, not in the experiment")
    return unflatten(out)


def start_from(host_state, cfg, log: Callable[[str], None] = print):
    """The fresh host train state ``host_state`` with the parent's (``train.init_from``) models
    copied in (``merge``); one InputError lists every parameter that does not fit."""
    t = cfg.train
    reinit = check_reinit(t)
    parent, described = parent_models(t.init_from, cfg)

    def fresh_of(item):
        return lambda name: any(REINIT[r][0] == item and REINIT[r][1](name) for r in reinit)

    problems: List[str] = []
    g_fresh = {"params": host_state.g_params, "buffers": host_state.g_buffers}
    ema_fresh = {"params": host_state.ema_params, "buffers": host_state.g_buffers}
    src_g = parent.get("generator") or parent.get("generator_ema")
    src_ema = parent.get("generator_ema") or parent.get("generator")
    notes = []
    if src_g is None:
        notes.append("no generator in the parent: both generators start fresh")
        g_new, ema_new = g_fresh, ema_fresh
    else:
        if "generator" not in parent:
            notes.append("the parent has no raw generator: it starts as the parent's EMA generator")
        g_new = merge(g_fresh, src_g, fresh_of("generator"), "generator", problems)
        ema_new = merge(ema_fresh, src_ema, fresh_of("generator"), "generator_ema", problems)
        if "mapping" in reinit:     # the mapping starts fresh: the same fresh one in G and G_ema
            ema_new = {**ema_new, "params": {**ema_new["params"],
                                             **{k: v for k, v in g_new["params"].items() if k.startswith("style_mapping")}}}
    if "discriminator" in parent:
        d_new = merge({"params": host_state.d_params}, parent["discriminator"], fresh_of("discriminator"),
                      "discriminator", problems)
    else:
        notes.append("no discriminator in the parent: it starts fresh")
        d_new = {"params": host_state.d_params}
    if problems:
        shown = "; ".join(problems[:12]) + (f"; and {len(problems) - 12} more" if len(problems) > 12 else "")
        raise InputError(f"train.init_from: {described} does not fit {cfg.name} ({cfg.variant}): {len(problems)} "
                         f"parameters differ: {shown}. Fine-tune with the parent's experiment, or start the "
                         f"differing parts fresh with train.reinit ({', '.join(REINIT)})")
    # the state holds one set of buffers (noise constants and mean latent) for both generators: the
    # EMA generator's, which the samples and the truncation use
    buffers = dict(ema_new["buffers"])
    state = host_state.replace(g_params=g_new["params"], ema_params=ema_new["params"], g_buffers=buffers,
                               d_params=d_new["params"])
    fresh = ", ".join(reinit) if reinit else "nothing"
    log(f"starting from {described}: G, G_ema, D and the mean latent copied (fresh: {fresh}); optimiser states, "
        f"step, data position and path-length means start fresh" + "".join(f"; {n}" for n in notes))
    return state

