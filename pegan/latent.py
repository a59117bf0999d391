"""Latents of StyleGAN2 / MS-PIE generators: seeds, w and W+, style mixing, truncation, and the
``.npz`` latent files that ``pegan project`` writes and ``sample`` / ``mix`` / ``video`` read.

Conventions, chosen so that every image the tools show is one ``pegan sample`` command:

* **Seed s** draws what ``pegan sample --seed s --num N`` draws: z [N, S] and the per-layer
  noise maps at the chosen scale, from ``PRNGKey(s)`` (``seed_latents``). "The image of seed s"
  is image 0 of ``--seed s``.
* **w / W+**: ``to_w`` maps z to w [N, L, S] (one style per layer, all equal for a plain w),
  with truncation ``mean + psi (w - mean)`` against the stored mean latent, as ``sample`` does.
* **Mixing** ``mix(row, col, layers)``: the layers in ``layers`` take the column's style *and*
  its noise map (noise j is injected by the convolution that style j drives), the others the
  row's; so with no layer mixed a cell is the row's image and with every layer mixed it is the
  column's. NVIDIA's grid takes the column's styles for ``--styles`` and the const noise; at a
  scale other than 0 there is no const noise, which is why the noise follows the style here.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from pegan import checks
from pegan.errors import InputError, MissingFileError, brief
from pegan.models.stylegan2 import Generator, scale_pair
from pegan.nn.layers import random_noise

__all__ = ["Latents", "generator_of", "items", "compose", "truncate", "seed_latents", "to_w", "mix", "parse_layers", "parse_values", "render", "renderer",
           "save_latents", "load_latents", "latents_for", "noise_for_scale", "LATENT_FILE_LIMIT"]

MAX_LATENTS = 4096              # latents one file may hold (each is rendered: memory grows with them)
LATENT_FILE_LIMIT = 256 << 20        # bytes a latent .npz may hold once unpacked (hostile files)


@dataclass
class Latents:
    """Per-layer styles ``w`` [N, L, S] and the noise maps [N, h, w, 1] (one per injected noise) at
    ``scale``; ``settings``: how they were made (the projection's options, the seeds, ...)."""
    w: np.ndarray
    noises: List[np.ndarray]
    scale: Tuple[int, int]
    settings: Dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.w.shape[0])

    def take(self, idx) -> "Latents":
        idx = np.atleast_1d(np.asarray(idx))
        return Latents(self.w[idx], [n[idx] for n in self.noises], self.scale, dict(self.settings))


def generator_of(loaded) -> Generator:
    """The StyleGAN2 / MS-PIE generator of a loaded checkpoint, or one clear error."""
    model = loaded.model
    if not isinstance(model, Generator):
        raise InputError("the latent tools need a StyleGAN2 / MS-PIE generator (load with which='ema' or 'orig')")
    return model


def seed_latents(model: Generator, seed: int, num: int, scale) -> Tuple[jnp.ndarray, List[jnp.ndarray]]:
    """(z [num, S], noise maps at ``scale``) as ``pegan sample --seed seed --num num`` draws them."""
    kz, kn = jax.random.split(jax.random.PRNGKey(int(seed)))
    z = jax.random.normal(kz, (num, model.style_channels))
    return z, random_noise(kn, model.noise_shapes(scale), num)


_MAPPINGS: "OrderedDict[int, Tuple[Generator, Any]]" = OrderedDict()


def _mapping(model: Generator):
    """The jitted mapping network of ``model``, kept for the last few models (a Flax module is not
    hashable: kept by identity, with the module itself, so that its id stays its own)."""
    key = id(model)
    if key not in _MAPPINGS:
        _MAPPINGS[key] = (model, jax.jit(lambda v, z: model.apply(v, z, method=Generator.mapping)))
        while len(_MAPPINGS) > 8:
            _MAPPINGS.popitem(last=False)
    _MAPPINGS.move_to_end(key)
    return _MAPPINGS[key][1]


def to_w(loaded, z, truncation: float = 1.0) -> np.ndarray:
    """z [N, S] -> w [N, L, S]: the mapping network, then truncation towards the stored mean latent."""
    model = generator_of(loaded)
    w = _mapping(model)(loaded.variables, jnp.asarray(z))
    if truncation != 1.0:
        mean = jnp.asarray(loaded.variables["buffers"]["mean_latent"]).reshape(1, -1)
        w = mean + truncation * (w - mean)
    return np.asarray(jnp.broadcast_to(w[:, None], (w.shape[0], model.num_latents, w.shape[-1])))


def truncate(loaded, w: np.ndarray, truncation: float) -> np.ndarray:
    """Styles w [N, L, S] pulled towards the stored mean latent: ``mean + psi (w - mean)``."""
    if truncation == 1.0:
        return w
    mean = np.asarray(loaded.variables["buffers"]["mean_latent"], np.float32).reshape(1, 1, -1)
    return (mean + np.float32(truncation) * (np.asarray(w, np.float32) - mean)).astype(np.float32)


def latents_for(loaded, seed: int, num: int, scale, truncation: float = 1.0) -> Latents:
    """The latents of ``pegan sample --seed seed --num num --truncation psi`` at ``scale``."""
    model = generator_of(loaded)
    scale = scale_pair(scale)
    z, noises = seed_latents(model, seed, num, scale)
    return Latents(to_w(loaded, z, truncation), [np.asarray(n) for n in noises], scale,
                   {"seed": int(seed), "truncation": float(truncation)})


def parse_layers(text: str, num_latents: int) -> List[int]:
    """'A-B' (inclusive), 'A,B,C' or a mix of both -> sorted style indices in [0, L-1]."""
    out = set()
    shown = repr(str(text)[:80])
    if len(str(text)) > 1000:
        raise InputError(f"layers {shown}...: give style indices as A-B or A,B,C (e.g. 0-6), at most 1000 characters")
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            a, b = (int(v) for v in part.split("-", 1)) if "-" in part[1:] else (int(part),) * 2
            if a > b:
                raise ValueError
        except ValueError:
            raise InputError(f"layers {shown}: give style indices as A-B or A,B,C (e.g. 0-6)") from None
        for v in (a, b):            # both ends checked before the range is made (0-10**15 held every integer)
            if not 0 <= v < num_latents:
                raise InputError(f"layers {shown}: this generator has styles 0-{num_latents - 1}, not {v}")
        out.update(range(a, b + 1))
    return sorted(out)


def parse_values(text: str, what: str, lo: Optional[float] = None, hi: Optional[float] = None) -> List[float]:
    """'0,0.25,0.5' -> floats, each finite and within [lo, hi] where given."""
    try:
        vals = [float(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise InputError(f"{what} {text!r}: give comma-separated numbers, e.g. 0,0.5,1") from None
    if not vals:
        raise InputError(f"{what} is empty: give comma-separated numbers, e.g. 0,0.5,1")
    for v in vals:
        if not np.isfinite(v) or (lo is not None and v < lo) or (hi is not None and v > hi):
            raise InputError(f"{what}: {v} is outside [{lo}, {hi}]")
    return vals


def mix(row: Latents, col: Latents, layers: Sequence[int]) -> Latents:
    """Row styles with the styles ``layers`` (and the noise maps those styles drive) of ``col``."""
    if row.scale != col.scale or len(row) != len(col):
        raise InputError("mix: row and column latents must have the same count and scale")
    L = row.w.shape[1]
    sel = np.zeros((L,), bool)
    sel[list(layers)] = True
    w = np.where(sel[None, :, None], col.w, row.w)
    noises = [c if sel[j] else r for j, (r, c) in enumerate(zip(row.noises, col.noises))]
    return Latents(w, noises, row.scale, {"mixed_layers": list(map(int, layers))})


def items(loaded, text: str, what: str, scale, truncation: float, seed: int, num: int = 1) -> Latents:
    """``--rows`` / ``--cols`` / ``--latent`` of the latent tools: comma-separated seeds (each:
    ``num`` images of ``pegan sample --seed S``) and latent .npz files (all their latents; their
    noise when they are at ``scale``, else noise from ``seed``), in order, as one ``Latents``."""
    parts = [v.strip() for v in str(text).split(",")]
    if not any(parts):
        raise InputError(f"{what} is empty: give seeds (e.g. 1,2,3) or latent .npz files")
    if not all(parts):
        raise InputError(f"{what} {text!r} has an empty item: give comma-separated seeds or latent .npz files")
    got = []
    for part in parts:
        if part.lower().endswith(".npz"):
            lat = load_latents(part, loaded.model)
            got.append(Latents(truncate(loaded, lat.w, truncation), noise_for_scale(loaded.model, lat, scale, seed),
                               scale_pair(scale), lat.settings))
        else:
            try:
                s = int(part)
            except ValueError:
                raise InputError(f"{what}: {part!r} is neither a seed (an integer) nor a latent .npz file") from None
            checks.seed(s, f"{what}: the seed {part}")
            got.append(latents_for(loaded, s, num, scale, truncation))
    return Latents(np.concatenate([g.w for g in got]),
                   [np.concatenate([g.noises[j] for g in got]) for j in range(len(got[0].noises))], scale_pair(scale),
                   {"items": parts})


def compose(loaded, scale, truncation: float, seed: int, num: int = 1, latent: Optional[str] = None,
            mix_seed: Optional[int] = None, layers: Optional[Sequence[int]] = None) -> Latents:
    """The latents ``pegan sample`` renders with --latent / --mix-seed / --mix-layers: those of
    ``latent`` (a file, as ``items`` reads it) or of ``seed`` (``num`` images), the styles
    ``layers`` taken from ``mix_seed``'s (when given), all truncated by ``truncation``."""
    lat = items(loaded, latent, "--latent", scale, truncation, seed) if latent else \
        latents_for(loaded, seed, num, scale, truncation)
    if mix_seed is not None and layers is not None:
        lat = mix(lat, latents_for(loaded, mix_seed, len(lat), scale, truncation), layers)
    return lat


def renderer(loaded, scale):
    """A jitted ``(w [n, L, S], noises) -> images [n, H, W, 3]`` at ``scale``: one compiled
    program per (scale, n)."""
    model = generator_of(loaded)
    scale = scale_pair(scale)

    @jax.jit
    def run(variables, w, noises):
        return model.apply(variables, w, scale, noise=list(noises), input_is_latent=True)

    return lambda w, noises: run(loaded.variables, jnp.asarray(w), [jnp.asarray(n) for n in noises])


def render(loaded, latents: Latents, batch: int = 4) -> np.ndarray:
    """Images [N, H, W, 3] in [-1, 1] of ``latents`` (batches of ``batch``, the last one padded so
    that every call has one shape)."""
    fn = renderer(loaded, latents.scale)
    n = len(latents)
    b = max(1, min(batch, n))
    out = []
    for i in range(0, n, b):
        idx = np.arange(i, i + b) % n             # pad the last batch with repeats
        part = latents.take(idx)
        out.append(np.asarray(fn(part.w, part.noises))[: min(b, n - i)])
    return np.concatenate(out)


def noise_for_scale(model: Generator, latents: Latents, scale, seed: int) -> List[np.ndarray]:
    """The latents' noise maps if they are at ``scale``, else fresh maps drawn from ``seed``."""
    scale = scale_pair(scale)
    if tuple(latents.scale) == scale and latents.noises:
        return latents.noises
    return [np.asarray(n) for n in random_noise(jax.random.split(jax.random.PRNGKey(int(seed)))[1],
                                                model.noise_shapes(scale), len(latents))]


# -- files --------------------------------------------------------------------------------------

def save_latents(path, latents: Latents) -> str:
    """Write ``latents`` as an ``.npz`` (``w``, ``noise_0`` ..., ``scale``, ``settings`` as JSON text)."""
    path = os.fspath(path)
    arrays = {"w": np.asarray(latents.w, np.float32), "scale": np.asarray(latents.scale, np.int64),
              "settings": np.asarray(json.dumps(latents.settings, sort_keys=True))}
    for j, n in enumerate(latents.noises):
        arrays[f"noise_{j}"] = np.asarray(n, np.float32)
    with checks.storage_errors(path):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        np.savez(path, **arrays)
    return path


def load_latents(path, model: Optional[Generator] = None) -> Latents:
    """Read a latent ``.npz`` (no pickles, bounded size), checked against ``model`` when given:
    styles [N, L, S] (or w [N, S]) of its widths, finite values, noise maps of its layers."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MissingFileError(f"latent file {path} does not exist (write one with pegan project)")
    bad = InputError
    f = checks.read_npz(path, "latent file", LATENT_FILE_LIMIT, hint="write one with pegan project")
    names = set(f)
    if "w" not in names:
        raise bad(f"latent file {path} has no array 'w': not a pegan latent file (pegan project writes one)")
    w = f["w"]
    if w.dtype.kind not in "fiu":
        raise bad(f"latent file {path}: w holds {w.dtype} values; real numbers are read")
    w = np.asarray(w, np.float32)
    try:
        scale = tuple(int(v) for v in np.asarray(f["scale"]).reshape(-1)) if "scale" in names else (0, 0)
        settings = json.loads(str(f["settings"])) if "settings" in names else {}
        noises, j = [], 0
        while f"noise_{j}" in names:
            noises.append(np.asarray(f[f"noise_{j}"], np.float32))
            j += 1
    except (ValueError, TypeError, RecursionError) as e:
        raise bad(f"latent file {path} is not a readable .npz ({type(e).__name__}: {brief(e, 200)}); "
                  "write one with pegan project") from None
    if w.ndim == 2:
        w = w[:, None]
    if w.ndim != 3 or len(scale) != 2 or not np.isfinite(w).all():
        raise bad(f"latent file {path}: w must be finite [N, S] or [N, L, S] with a scale pair; got {w.shape}")
    if not 1 <= w.shape[0] <= MAX_LATENTS:
        raise bad(f"latent file {path} holds {w.shape[0]} latents; pegan reads 1 to {MAX_LATENTS} from one file")
    if model is not None:
        L, S = model.num_latents, model.style_channels
        if w.shape[2] != S or w.shape[1] not in (1, L):
            raise bad(f"latent file {path} holds styles {tuple(w.shape[1:])}; this generator takes [{L}, {S}] "
                      f"(or [1, {S}])")
        w = np.broadcast_to(w, (w.shape[0], L, S)).copy()
        shapes = model.noise_shapes(scale)
        if noises and [tuple(n.shape[1:3]) for n in noises] != [tuple(s) for s in shapes]:
            raise bad(f"latent file {path}: its noise maps do not fit chosen scale {scale} of this generator")
    for n in noises:
        if n.ndim != 4 or n.shape[0] != w.shape[0] or n.shape[-1] != 1 or not np.isfinite(n).all():
            raise bad(f"latent file {path}: noise maps must be finite [N, h, w, 1] with N = {w.shape[0]}")
    return Latents(w, noises, scale, settings if isinstance(settings, dict) else {})
