"""Loading, converting and sampling the released and trained models (the machinery behind the
``pegan.api`` facade; the evaluation, the demo and the command line use it from here, since
nothing inside pegan imports ``pegan.api``)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from pegan.errors import InputError
from pegan import checkpoint as ckpt
from pegan import checks, compute as compute_mod, ops
from pegan.configs import release_url, scale_for_size
from pegan.convert import mmgen
from pegan.convert.mmgen import ConversionError
from pegan.convert import singan as sconv
from pegan.convert.torchpickle import load_pickle, load_pth, state_dict_of
from pegan.latent import seed_latents
from pegan.models import singan as sm
from pegan.models.stylegan2 import (Generator, abstract_variables, build_discriminator,
                                    build_generator, checked_scale, compute_mean_latent, image_size, scale_pair)

__all__ = ["Loaded", "load", "with_compute", "announce_compute", "convert", "convert_reference", "convert_singan_reference", "sample", "sample_program",
           "singan_sample", "singan_inputs", "singan_sizes", "singan_noise_shapes", "singan_runner", "resolve_scale", "is_singan_state_dict", "ConversionError",
           "MEAN_LATENT_SEED", "MEAN_LATENT_SAMPLES", "WHICH"]

MEAN_LATENT_SEED = 0          # the reference never saves its mean latent: fixed seed, recorded
MEAN_LATENT_SAMPLES = 4096    # as in the reference's get_mean_latent
WHICH = {"ema": "generator_ema", "generator_ema": "generator_ema", "orig": "generator",
         "generator": "generator", "discriminator": "discriminator", "disc": "discriminator"}


@dataclass
class Loaded:
    model: Any                      # pegan.models.stylegan2.Generator or Discriminator
    variables: Dict[str, Any]
    config: Any                     # the experiment ConfigDict
    info: Dict[str, Any] = field(default_factory=dict)   # color_order, source, ...
    state: Dict[str, Any] = field(default_factory=dict)  # SinGAN: fixed_noises, noise_weights, curr_stage
    compute: Dict[str, Any] = field(default_factory=dict)  # the compute section as resolved here
    compute_changes: List[str] = field(default_factory=list)  # vs the resolution stored with the run

    def __iter__(self):             # model, variables, config = pegan.api.load(...)
        return iter((self.model, self.variables, self.config))


def _read_reference(path):
    """(state dict, meta) of a reference ``.pth``."""
    obj = load_pth(path, url=release_url(os.path.basename(str(path))))
    return state_dict_of(obj), (obj.get("meta", {}) if isinstance(obj, dict) else {})


def _check_no_stray_keys(parts, path):
    """Keys outside the model parts must be known training state, else they are listed."""
    stray = [k for k in parts["other"] if not any(re.fullmatch(p, k) for p in mmgen.IGNORED_OTHER_KEYS)]
    if stray:
        raise ConversionError(f"{path}: unexpected checkpoint keys ({len(stray)}): " + ", ".join(stray[:20]))


def _basename(path) -> Optional[str]:
    return None if path is None else os.path.basename(str(path))


def _which(which: str) -> str:
    if which not in WHICH:
        raise InputError(f"which must be one of {sorted(set(WHICH))}, got {which!r}")
    return WHICH[which]


def _check_finite(path, item: str, variables) -> None:
    """A converted network holding NaN or inf came from a damaged file: said here, naming the
    file, rather than later as a damaged pegan checkpoint."""
    bad = ckpt.first_non_finite(variables)
    if bad is not None:
        raise ConversionError(f"{_basename(path) or 'the state dict'}: its {item} holds a non-finite value at {bad}: a damaged "
                              "file; download it again")


def convert_reference(path, experiment: Optional[str] = None, variant: Optional[str] = None,
                      keep_bgr: bool = False, items: Sequence[str] = ("generator_ema", "generator", "discriminator"),
                      state_dict: Optional[Dict[str, np.ndarray]] = None, meta: Optional[dict] = None):
    """Read a reference checkpoint and convert the requested ``items`` that it holds.

    Returns (config, {item: variables}, info). ``state_dict`` (a flat ``{key: array}``) may be
    given instead of reading ``path``; ``path`` is then only used to recognise the file name.
    """
    if state_dict is None:
        sd, meta = _read_reference(path)
    else:
        sd, meta = dict(state_dict), dict(meta or {})
    parts = mmgen.split_prefixes(sd)
    _check_no_stray_keys(parts, path)
    cfg, how = mmgen.identify_experiment(parts, filename=_basename(path), experiment=experiment, variant=variant)
    out: Dict[str, Any] = {}
    for item in items:
        src = parts[item]
        if not src:
            continue
        if item == "discriminator":
            d = build_discriminator(cfg)
            out[item] = mmgen.convert_stylegan2_discriminator(src, not keep_bgr, abstract_variables(d))
            _check_finite(path, item, out[item])
        else:
            g = build_generator(cfg)
            v = mmgen.convert_stylegan2_generator(src, not keep_bgr, abstract_variables(g))
            _check_finite(path, item, v)
            v["buffers"]["mean_latent"] = np.asarray(compute_mean_latent(
                g, v, jax.random.PRNGKey(MEAN_LATENT_SEED), MEAN_LATENT_SAMPLES))
            out[item] = v
    if not out:
        raise ConversionError(f"{path} holds none of {list(items)}")
    it = meta.get("iter") if isinstance(meta, dict) else None
    if not (type(it) is int and 0 <= it < 2**53):        # a damaged or odd record: the step is unknown (0)
        it = None
    info = {"family": cfg.family, "experiment": cfg.name, "variant": cfg.variant,
            "color_order": "BGR" if keep_bgr else "RGB",
            "source": {"file": _basename(path),
                       "layout": "mmagic" if any(k.startswith("generator_ema.module.") for k in sd) else "mmgen",
                       "experiment_chosen_by": how, "iteration": it},
            "mean_latent": {"seed": MEAN_LATENT_SEED, "num_samples": MEAN_LATENT_SAMPLES}}
    return cfg, out, info


def convert(path, out_dir, experiment: Optional[str] = None, variant: Optional[str] = None,
            keep_bgr: bool = False, overwrite: bool = False, pkl=None) -> Path:
    """Convert a reference ``.pth`` (+ its ``.pkl`` for SinGAN) into a pegan checkpoint
    directory (see ``pegan.checkpoint``). ``out_dir`` must be new or empty; with
    ``overwrite=True`` it may also be a pegan checkpoint directory holding only what pegan
    writes (``checkpoint.owns_checkpoint_dir``), and nothing else. The checkpoint is written into a temporary directory beside ``out_dir``
    that replaces it only when complete, so a failed conversion leaves ``out_dir`` as it was."""
    with checks.replacing_dir(out_dir, "out_dir", "pegan checkpoint directory", ckpt.owns_checkpoint_dir,
                              overwrite) as tmp:
        sd, meta = _read_reference(path)
        if is_singan_state_dict(sd):
            cfg, items, info = convert_singan_reference(path, pkl, experiment, variant, keep_bgr, state_dict=sd)
            step = 0
        else:
            cfg, items, info = convert_reference(path, experiment, variant, keep_bgr, state_dict=sd, meta=meta)
            step = info["source"]["iteration"] or 0
        ckpt.save(tmp, int(step), items, cfg, info)
    return Path(out_dir)


def with_compute(cfg, compute: Optional[Dict[str, Any]] = None):
    """``cfg`` with the ``compute`` overrides (field -> value, e.g. ``{'conv_impl': 'xla'}``) set,
    checked (unknown fields and values are an InputError); returns (cfg, resolved, changes), the
    changes being those from the resolution stored with a run (``compute_resolved``)."""
    for k, v in (compute or {}).items():
        if k not in compute_mod.DEFAULTS:
            raise InputError(f"the compute section has no field {k!r}; it has {', '.join(compute_mod.DEFAULTS)}")
    if compute:
        cfg.compute = {**compute_mod.compute_section(cfg), **compute}
    resolved = compute_mod.resolve(cfg)
    return cfg, resolved, compute_mod.changes_since(cfg, resolved)


def announce_compute(loaded: Loaded, log=print) -> None:
    """Before a loaded model runs (``pegan sample`` / ``evaluate``): apply the process-wide
    settings of its resolved compute section (matmul precision, compile cache), then log the
    section and what resolves otherwise than in the run that wrote it."""
    compute_mod.apply_process_settings(loaded.compute)
    log(compute_mod.describe(compute_mod.compute_section(loaded.config), loaded.compute))
    if loaded.compute_changes:
        log(compute_mod.change_note(loaded.compute_changes))


def _loaded(model, variables, cfg, info, resolved, changes, state=None) -> Loaded:
    return Loaded(model, variables, cfg, info, state or {}, resolved, changes)


def load(path, which: str = "ema", experiment: Optional[str] = None, variant: Optional[str] = None,
         keep_bgr: bool = False, step: Optional[int] = None, pkl=None,
         compute: Optional[Dict[str, Any]] = None) -> Loaded:
    """A ready model from a reference ``.pth`` or a pegan checkpoint directory.

    which: 'ema' (the EMA generator, what the papers sample from), 'orig' (the raw generator)
    or 'discriminator' (a SinGAN has one generator: 'ema' and 'orig' both give it; its ``.pkl``
    is found next to the ``.pth`` or given as ``pkl``). ``experiment``/``variant`` name the config of a ``.pth`` whose file name
    and shapes do not identify it. ``keep_bgr`` keeps the reference's BGR output order.
    ``compute`` overrides fields of the config's compute section (``with_compute``); 'auto' is
    resolved for the backend this runs on, and ``Loaded.compute_changes`` lists the fields that
    resolve otherwise than when the run was trained.
    """
    item = _which(which)
    p = Path(path)
    if p.is_dir() and ckpt.is_checkpoint_dir(p) and ckpt.read_info(p).get("family") == "singan":
        return _load_singan_dir(p, item, step, compute)
    if not p.is_dir():     # a reference .pth (a missing path fails in the reader, naming it)
        sd, meta = _read_reference(p)
        if is_singan_state_dict(sd):
            cfg, items, info = convert_singan_reference(p, pkl, experiment, variant, keep_bgr, state_dict=sd)
            return _singan_loaded(cfg, items, info, "discriminator" if item == "discriminator" else "generator",
                                  compute)
        cfg, items, info = convert_reference(p, experiment, variant, keep_bgr, items=(item,), state_dict=sd, meta=meta)
        if item not in items:
            raise ConversionError(f"{p} holds no {item}")
        cfg, resolved, changes = with_compute(cfg, compute)
        model = build_discriminator(cfg) if item == "discriminator" else build_generator(cfg)
        return _loaded(model, jax.tree.map(jnp.asarray, items[item]), cfg, info, resolved, changes)
    if keep_bgr:
        raise InputError("keep_bgr applies when converting a .pth; a pegan checkpoint keeps the "
                         "colour order it was written with (see its pegan.json)")
    info = ckpt.read_info(p)
    cfg, resolved, changes = with_compute(ckpt.read_config(p), compute)
    model = build_discriminator(cfg) if item == "discriminator" else build_generator(cfg)
    variables = ckpt.restore(p, [item], step, {item: abstract_variables(model)})[item]
    return _loaded(model, variables, cfg, info, resolved, changes)


# -- PE-SinGAN ------------------------------------------------------------------------------

def is_singan_state_dict(sd) -> bool:
    return any(k.startswith(("generator.blocks.", "blocks.", "discriminator.blocks.")) for k in sd)


def _pkl_for(path) -> Path:
    """The companion .pkl: same name with .pkl (``x.pth`` -> ``x.pkl``; ``x.mmgen.pth`` -> ``x.pkl``)."""
    p = Path(path)
    first = p.with_suffix(".pkl")
    if first.is_file():
        return first
    alt = p.parent / (p.name.split(".")[0] + ".pkl")
    return alt if alt.is_file() else first


def convert_singan_reference(path, pkl=None, experiment: Optional[str] = None, variant: Optional[str] = None,
                             keep_bgr: bool = False, state_dict=None, pkl_data=None):
    """A released PE-SinGAN ``.pth`` + ``.pkl`` -> (config, items, info).

    items: 'generator' {params, batch_stats}, 'discriminator' (when present) and 'singan':
    {'fixed_noises': [1, H, W, C] per stage, 'noise_weights', 'curr_stage', 'sizes'}.
    ``pkl`` defaults to the ``.pkl`` next to the ``.pth``.
    """
    sd = _read_reference(path)[0] if state_dict is None else dict(state_dict)
    if pkl_data is None:
        pkl = _pkl_for(path) if pkl is None else Path(pkl)
        if not pkl.is_file():
            raise ConversionError(f"a SinGAN checkpoint needs its .pkl (fixed noises and noise weights): "
                                  f"{pkl} not found; pass it with --pkl")
        pkl_data = load_pickle(pkl)
    noise = sconv.noise_state_from_pkl(pkl_data)
    parts = mmgen.split_prefixes(sd)
    if not parts["generator"] and "blocks.0.head.conv.weight" in parts["other"]:
        parts["generator"], parts["other"] = parts["other"], {}
    _check_no_stray_keys(parts, path)
    gsd = parts["generator"] or parts["generator_ema"]
    facts = sconv.singan_facts(gsd, parts["discriminator"], noise)
    cfg, how, notes = sconv.identify_singan(facts, _basename(path), experiment, variant)
    pad = 2 * sm.PAD_HEAD if cfg.noise.fixed_noise_with_pad else 0
    sizes = [(int(n.shape[1]) - pad, int(n.shape[2]) - pad) for n in noise["fixed_noises"]]
    if len(sizes) != cfg.generator.num_scales + 1:
        raise ConversionError(f"the .pkl has {len(sizes)} stages, the checkpoint {cfg.generator.num_scales + 1}")
    G, D = sm.build_generator(cfg), sm.build_discriminator(cfg)
    pe = cfg.generator.positional_encoding
    items = {"generator": sconv.convert_singan_generator(
        gsd, not keep_bgr, sm.abstract_variables(G, cfg, sizes), image_input_stage0=pe is None)}
    if parts["discriminator"]:
        items["discriminator"] = sconv.convert_singan_discriminator(
            parts["discriminator"], not keep_bgr, sm.abstract_variables(D, cfg, sizes))
    for item in ("generator", "discriminator"):
        if item in items:
            _check_finite(path, item, items[item])
    items["singan"] = dict(noise, sizes=np.asarray(sizes, np.int32), curr_stage=np.asarray(noise["curr_stage"]),
                           next_stage=np.asarray(noise["curr_stage"] + 1),
                           num_noise_weights=np.asarray(len(noise["noise_weights"])))
    info = {"family": "singan", "experiment": cfg.name, "variant": cfg.variant,
            "color_order": "BGR" if keep_bgr else "RGB",
            "source": {"file": _basename(path), "experiment_chosen_by": how, "notes": notes}}
    return cfg, items, info


def _singan_loaded(cfg, items, info, which, compute=None):
    cfg, resolved, changes = with_compute(cfg, compute)
    st = items["singan"]
    stage = int(np.asarray(st["curr_stage"]))
    if stage < 0:
        raise ConversionError("this SinGAN checkpoint has no trained stage yet")
    state = {"fixed_noises": [jnp.asarray(n) for n in st["fixed_noises"]],
             "noise_weights": np.asarray(st["noise_weights"], np.float32)[: stage + 1],
             "curr_stage": stage,
             "sizes": [tuple(int(v) for v in s) for s in np.asarray(st["sizes"])]}
    if which == "discriminator":
        if "discriminator" not in items:
            raise ConversionError("this checkpoint holds no discriminator")
        return _loaded(sm.build_discriminator(cfg), jax.tree.map(jnp.asarray, items["discriminator"]), cfg, info,
                       resolved, changes, state)
    return _loaded(sm.build_generator(cfg), jax.tree.map(jnp.asarray, items["generator"]), cfg, info, resolved,
                   changes, state)


def singan_sizes(loaded: Loaded, size: Optional[Tuple[int, int]] = None, width_factor: float = 1.0,
                 height_factor: float = 1.0, max_side: Optional[int] = checks.MAX_SIDE) -> List[Tuple[int, int]]:
    """Per-stage image sizes for an output of ``size`` (H, W) or of the native size scaled by
    the factors: every stage's native size is scaled alike (rounded half up). No side of the
    output may exceed ``max_side`` px (None: no bound)."""
    native = loaded.state["sizes"][: loaded.state["curr_stage"] + 1]
    H, W = native[-1]
    if size is None:
        checks.number_in(width_factor, "the width factor", 0, lo_open=True)
        checks.number_in(height_factor, "the height factor", 0, lo_open=True)
    fy, fx = (size[0] / H, size[1] / W) if size is not None else (height_factor, width_factor)
    out = [(int(h * fy + 0.5), int(w * fx + 0.5)) for h, w in native]
    pad = 0 if loaded.config.generator.padding else 10   # valid convs: each block needs > 10 px
    if min(min(s) for s in out) <= pad:
        raise InputError(f"output size too small: stage 0 would be {out[0]}")
    checks.image_size(out[-1], "the output size" if size is None else f"size {size[0]},{size[1]}", max_side)
    return out


def singan_noise_shapes(loaded: Loaded, sizes: Sequence[Tuple[int, int]]) -> List[Tuple[int, int, int]]:
    """The (H, W, C) of each stage's noise map for stage images of ``sizes``: the image size
    (plus the 2 * 5 px that the interp-pad configs draw their noise with) by the channels of the
    stored fixed noise (stage 0 of a PE model draws more than one)."""
    st, cfg = loaded.state, loaded.config
    pad = 2 * sm.PAD_HEAD if cfg.generator.noise_with_pad else 0
    return [(int(h) + pad, int(w) + pad, int(st["fixed_noises"][t].shape[-1])) for t, (h, w) in enumerate(sizes)]


def singan_runner(loaded: Loaded, start_stage: int = 0):
    """A jitted ``(noises, x0) -> images [n, H, W, 3]`` running the loaded SinGAN's stages
    ``start_stage..curr_stage`` (eval-mode BN); ``x0`` is the image entering ``start_stage``
    (None from stage 0). Shared by ``singan_sample`` and ``pegan.video``'s random walk, so both
    run one forward pass; jit compiles one program per noise shapes."""
    G, v, st = loaded.model, loaded.variables, loaded.state
    last = st["curr_stage"]
    nw = [float(x) for x in st["noise_weights"][: last + 1]]

    @jax.jit
    def run(noises, x0):
        return G.apply(v, noises, nw, last, input_sample=x0, start_stage=start_stage)

    return run


def singan_inputs(loaded: Loaded, num: int = 4, seed: int = 0, mode: str = "rand",
                  size: Optional[Tuple[int, int]] = None, width_factor: float = 1.0,
                  height_factor: float = 1.0, start_image=None, start_stage: int = 0,
                  max_side: Optional[int] = checks.MAX_SIDE):
    """(noises, x0, num) that ``singan_sample`` runs ``singan_runner(loaded, first)`` on, where
    ``first`` is ``start_stage`` with a ``start_image`` and 0 without (its doc)."""
    G, st = loaded.model, loaded.state
    last = st["curr_stage"]
    if not 0 <= start_stage <= last:
        raise InputError(f"start_stage must be in 0..{last}")
    if mode == "recon":
        if size is not None or width_factor != 1.0 or height_factor != 1.0:
            raise InputError("reconstruction uses the stored noises: native size only")
        noises = [st["fixed_noises"][t] for t in range(last + 1)]
        num = 1 if start_image is None else num
        sizes = st["sizes"][: last + 1]
    elif mode == "rand":
        sizes = singan_sizes(loaded, size, width_factor, height_factor, max_side)
        noises = sm.draw_noises(jax.random.PRNGKey(seed), singan_noise_shapes(loaded, sizes), num)
        if start_stage and start_image is None:      # SinGAN's gen_start_scale: stored noise below it
            if [tuple(map(int, s)) for s in sizes] != [tuple(map(int, s)) for s in st["sizes"][: last + 1]]:
                raise InputError(f"start stage {start_stage} without a start image keeps the stored noise of "
                                 f"stages 0-{start_stage - 1}: native size only")
            noises = [st["fixed_noises"][t] if t < start_stage else noises[t] for t in range(last + 1)]
    else:
        raise InputError(f"mode must be 'rand' or 'recon', got {mode!r}")
    x0 = None
    if start_image is not None:
        img = np.asarray(start_image)
        if img.dtype == np.uint8:
            img = img.astype(np.float32) / 127.5 - 1.0
        if img.ndim == 3:
            img = img[None]
        x0 = jnp.asarray(img, jnp.float32)
        if x0.shape[-1] != 3:
            raise InputError("start_image must have 3 channels")
        x0 = ops.resize_bicubic(x0, sizes[start_stage], align_corners=True, impl=G.forms.resize)
        x0 = jnp.broadcast_to(x0, (num,) + x0.shape[1:])
    return noises, x0, num


def singan_sample(loaded: Loaded, num: int = 4, seed: int = 0, mode: str = "rand",
                  size: Optional[Tuple[int, int]] = None, width_factor: float = 1.0,
                  height_factor: float = 1.0, start_image=None, start_stage: int = 0,
                  batch: int = 4, max_side: Optional[int] = checks.MAX_SIDE, runners=None) -> np.ndarray:
    """PE-SinGAN samples [num, H, W, 3] in [-1, 1] (eval-mode BN, as the reference samples).

    mode 'rand': fresh noise from ``seed`` (any output size); 'recon': the stored fixed noises
    (native size, reproduces the training image). ``start_image`` ([H, W, 3] in [-1, 1] or
    uint8) enters at ``start_stage`` resized to that stage's size, and the finer stages add
    detail: SinGAN's editing / harmonisation use. Without a ``start_image``, a ``start_stage``
    K > 0 of mode 'rand' is SinGAN's ``gen_start_scale``: stages below K take the stored
    (reconstruction) noise, K and above fresh noise (native size). ``runners``: a
    ``first stage -> singan_runner`` to reuse compiled programs (``pegan.explore``).
    """
    noises, x0, num = singan_inputs(loaded, num, seed, mode, size, width_factor, height_factor, start_image,
                                    start_stage, max_side)
    first = start_stage if start_image is not None else 0
    run = singan_runner(loaded, first) if runners is None else runners(first)
    outs = []
    for i in range(0, num, batch):
        nz = [n if n.shape[0] == 1 else n[i:i + batch] for n in noises]
        outs.append(np.asarray(run(nz, None if x0 is None else x0[i:i + batch])))
    return np.concatenate(outs)[:num]


def resolve_scale(model: Generator, chosen_scale=None, size: Optional[Tuple[int, int]] = None,
                  max_side: Optional[int] = checks.MAX_SIDE):
    """(s_h, s_w) from a scale offset (int or pair) or from an image size in pixels; an
    InputError unless every offset is at least -3 and no side exceeds ``max_side`` px."""
    if size is not None:
        return checked_scale(model.out_size, scale_for_size(model.out_size, size), max_side,
                             f"size {size[0]},{size[1]}")
    return checked_scale(model.out_size, 0 if chosen_scale is None else chosen_scale, max_side)


def sample_program(model: Generator, scale):
    """The jitted ``(variables, z, noises or None, truncation) -> (images, latents)`` of
    ``sample`` at ``scale`` (None noises: the stored ones); the truncation is an input, so one
    compiled program serves every value (one per batch and noise kind)."""
    scale = scale_pair(scale)

    @jax.jit
    def run(variables, z, nz, psi):
        return model.apply(variables, z, scale, noise="const" if nz is None else nz,
                           truncation=psi, return_latents=True)

    return run


def sample(loaded: Loaded, num: int, chosen_scale=0, truncation: float = 1.0, seed: int = 0,
           batch: int = 4, noise: str = "random", size: Optional[Tuple[int, int]] = None,
           return_latents: bool = False, max_side: Optional[int] = checks.MAX_SIDE, programs=None):
    """``num`` images [num, H, W, 3] in [-1, 1] (float32 NumPy).

    Latents and noise come from ``seed`` only, so the images do not depend on ``batch``.
    noise: 'random' (drawn from the seed) or 'const' (the stored noise, chosen scale 0 only).
    truncation < 1 pulls w towards the stored mean latent. No image side may exceed
    ``max_side`` px (None: no bound). ``programs``: a ``scale -> sample_program`` to reuse
    compiled programs (``pegan.explore`` keeps a few); by default one is made for this call.
    """
    model = loaded.model
    if not isinstance(model, Generator):
        raise InputError("sample needs a generator (load with which='ema' or 'orig')")
    if num < 1 or batch < 1:
        raise InputError("num and batch must be positive")
    scale = resolve_scale(model, chosen_scale, size, max_side)
    h, w = image_size(model.out_size, scale)
    checks.held_images(num, h, w, "num")
    z, noises = seed_latents(model, seed, num, scale)      # the seed convention of every latent tool
    if noise == "random":
        pass
    elif noise == "const":
        if tuple(scale) != (0, 0):
            raise InputError(f"the stored (const) noise exists only at chosen_scale 0, not {tuple(scale)}; "
                             "use --noise random")
        noises = None
    else:
        raise InputError(f"noise must be 'random' or 'const', got {noise!r}")

    run = sample_program(model, scale) if programs is None else programs(scale)
    psi = jnp.float32(truncation)
    imgs, lats = [], []
    for i in range(0, num, batch):
        nz = None if noises is None else [n[i:i + batch] for n in noises]
        img, lat = run(loaded.variables, z[i:i + batch], nz, psi)
        imgs.append(np.asarray(img))
        lats.append(np.asarray(lat))
    imgs = np.concatenate(imgs)
    return (imgs, np.concatenate(lats)) if return_latents else imgs


def _load_singan_dir(p: Path, item: str, step=None, compute=None) -> Loaded:
    info = ckpt.read_info(p)
    cfg = ckpt.read_config(p)
    name = "discriminator" if item == "discriminator" else "generator"
    model = sm.build_discriminator(cfg) if name == "discriminator" else sm.build_generator(cfg)
    # the shapes the config builds (every stage's; a run initialises all of them at its start)
    got = ckpt.restore(p, [name, "singan"], step, {name: sm.abstract_variables(model, cfg)})
    return _singan_loaded(cfg, got, info, name, compute)
