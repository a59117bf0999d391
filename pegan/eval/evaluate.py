"""FID and precision/recall of a generator: the protocol, streaming sharded feature extraction,
cached real statistics.

The default protocol is mmgen 0.x's offline evaluation, which made the released numbers
(REFERENCE §5.1-5.2); every step is listed by :meth:`Protocol.describe` and printed with the
results, since mismatched protocols are the first cause of FID disputes:

* fakes: the EMA generator at the chosen scale, truncation 1, fresh noise, no style mixing;
  latent and noise of sample ``i`` drawn from ``fold_in(PRNGKey(seed), i)`` (so the set does not
  depend on the batch size or the number of devices or hosts); converted to 8-bit as mmgen's PNG
  round trip does (``floor(clip((x + 1) / 2, 0, 1) * 255 + 0.5)``, then back to [-1, 1]);
* FID: pytorch-fid's Inception, input RGB in [-1, 1] resized to 299x299 (bilinear,
  align_corners=False, no antialias), 2048-d pool features; real statistics from a dataset
  (the first N images in order) or a statistics file (pegan ``.npz`` or mmgen's ``.pkl``);
* P&R: torchvision VGG16 fc7 (mmgen's fallback network), nearest resize to 224, no ImageNet
  normalisation, k = 3, float16 radii; N fakes and the first N real images. mmgen feeds the
  reals to VGG in **BGR** (its val pipeline loads RGB and the metric flips both streams, see
  REFERENCE §5.2): ``pr_real_order='bgr'`` reproduces that, ``'rgb'`` is the consistent choice.

Features are extracted in batches over all local devices (the batch dimension sharded over a
``data`` mesh axis); with several hosts each host takes every ``process_count``-th batch and the
features are gathered.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from pegan.checks import MAX_SIDE
from pegan.configs import eval_scale
from pegan.errors import InputError, MissingFileError, brief
from pegan.imageio import decode_image
from pegan import checks, data, loading
from pegan.convert.torchpickle import load_pickle
from pegan.eval import metrics as M
from pegan.eval import weights as W
from pegan.eval.inception import load_inception
from pegan.eval.vgg import load_vgg16
from pegan.models.stylegan2 import Generator, image_size

__all__ = ["Protocol", "parse_metrics", "Evaluator", "RealImages", "load_real_stats", "save_real_stats",
           "quantize_8bit", "make_evaluator", "evaluate_checkpoint"]

NETWORK_OF = {"fid": "inception", "pr": "vgg16", "kid": "inception"}


@dataclasses.dataclass(frozen=True)
class Protocol:
    quantize_fakes: bool = True      # mmgen's 8-bit PNG round trip
    pr_real_order: str = "bgr"       # mmgen feeds reals to VGG in BGR; 'rgb' to feed them as RGB
    pr_k: int = 3
    truncation: float = 1.0
    seed: int = 0
    fid_method: str = "sqrtm"        # the reference's scipy sqrtm, or 'eigh' (same trace, faster)

    def __post_init__(self):
        if self.pr_real_order not in ("bgr", "rgb"):
            raise InputError(f"pr_real_order must be 'bgr' (the reference) or 'rgb', got {self.pr_real_order!r}")
        if self.fid_method not in ("sqrtm", "eigh"):
            raise InputError(f"fid_method must be 'sqrtm' (the reference) or 'eigh', got {self.fid_method!r}")

    def describe(self) -> Dict[str, str]:
        return {
            "fakes": (f"EMA generator, truncation {self.truncation}, fresh noise, no mixing, seed {self.seed}; "
                      + ("8-bit rounded like mmgen's PNG round trip" if self.quantize_fakes else "float, not quantised")),
            "fid_network": "pytorch-fid InceptionV3 (pt_inception-2015-12-05), pool3 2048-d",
            "fid_input": "RGB in [-1, 1], bilinear (align_corners=False, no antialias) to 299x299",
            "fid_stats": ("mean float32 of the features, covariance float64 (N-1); "
                          + ("scipy sqrtm with the 1e-6 retry" if self.fid_method == "sqrtm"
                             else "trace of the root from symmetric eigenvalues (not scipy sqrtm)")),
            "pr_network": "torchvision VGG16 fc7 (pre-ReLU), mmgen's fallback path",
            "pr_input": ("nearest to 224x224, [-1, 1], no ImageNet normalisation; fakes RGB, reals "
                         + ("BGR (as mmgen 0.x does)" if self.pr_real_order == "bgr" else "RGB")),
            "pr_math": f"k = {self.pr_k}, radii rounded to float16, inside when distance <= radius",
        }


MAX_METRIC_SAMPLES = 200_000     # a metric's images: their features are held in memory (2048 floats each)


def parse_metrics(spec) -> List[Tuple[str, str, int]]:
    """'fid50k,pr10k,kid5k' -> [('fid50k', 'fid', 50000), ('pr10k', 'pr', 10000), ('kid5k', 'kid', 5000)]."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out = []
    for item in items:
        item = item.strip()
        m = re.fullmatch(r"(fid|pr|kid)(\d+)(k?)", item.lower())
        if not m:
            raise InputError(f"unknown metric {item!r}: use fid<N>, pr<N> or kid<N>, e.g. fid50k, pr10k, kid50k")
        n = int(m.group(2)) * (1000 if m.group(3) else 1)
        if not 4 <= n <= MAX_METRIC_SAMPLES:
            raise InputError(f"{item}: needs 4 to {MAX_METRIC_SAMPLES} samples (the papers use 50k)")
        out.append((item.lower(), m.group(1), n))
    if not out:
        raise InputError("no metric given")
    return out


def quantize_8bit(x):
    """[-1, 1] floats -> the values mmgen's 8-bit PNG round trip gives back (still in [-1, 1])."""
    u = jnp.floor(jnp.clip((x + 1.0) / 2.0, 0.0, 1.0) * 255.0 + 0.5)
    return (jnp.clip(u, 0.0, 255.0) - 127.5) / 127.5


def uint8_to_float(u):
    return (jnp.asarray(u, jnp.float32) - 127.5) / 127.5


# -- real images -------------------------------------------------------------------------------

class RealImages:
    """The real images of a dataset, in order, as uint8 RGB [H, W, 3]: a folder prepared by
    ``pegan prepare`` or a plain image folder (all images of one size)."""

    def __init__(self, path):

        self.path = Path(path)
        if not self.path.exists():
            raise MissingFileError(f"real data {self.path} does not exist: pass a dataset made by "
                                    "`pegan prepare`, an image folder, or a statistics file (.npz / .pkl)")
        self._prepared = data.find_prepared(self.path)
        if self._prepared is not None:
            self._ds = data.PreparedImages(self._prepared, process_index=0, process_count=1, prefetch=0, workers=0)
            self._files = None
            self.count = len(self._ds)
        else:
            self._files = data.list_images(self.path)
            self.count = len(self._files)

    def fingerprint(self) -> str:
        """Identifies the dataset's content cheaply (paths, sizes, modification times)."""
        h = hashlib.sha256(str(self.path.resolve()).encode())
        files = self._files if self._files is not None else sorted(p for p in self._prepared.rglob("*") if p.is_file())
        for p in files:
            st = p.stat()
            h.update(f"{p.name}:{st.st_size}:{int(st.st_mtime)}".encode())
        return h.hexdigest()[:16]

    def read(self, i: int) -> np.ndarray:
        if self._files is None:
            return np.asarray(self._ds.read(i))
        p = self._files[i]
        try:
            return decode_image(p)
        except ValueError as e:
            raise InputError(f"cannot read real image {p}: {e}; remove it or prepare the folder with "
                             "`pegan prepare --skip-bad`") from None

    def batches(self, num: int, batch: int, indices: Optional[Sequence[int]] = None) -> Iterator[np.ndarray]:
        if num > self.count:
            raise InputError(f"{self.path} holds {self.count} images, {num} are needed")
        idx = list(range(num)) if indices is None else list(indices)
        with ThreadPoolExecutor(max(1, min(8, os.cpu_count() or 1))) as pool:
            for i in range(0, len(idx), batch):
                imgs = list(pool.map(self.read, idx[i:i + batch]))
                shapes = {im.shape for im in imgs}
                if len(shapes) > 1:
                    raise InputError(f"real images of different sizes {sorted(shapes)} in {self.path}: "
                                     "make one size with `pegan prepare FOLDER --out DIR --size N`")
                yield np.stack(imgs)


# -- statistics files --------------------------------------------------------------------------

def save_real_stats(path, mu, sigma, num: int, meta: dict) -> Path:
    path = Path(path)
    with checks.writing_file(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, mu=mu, sigma=sigma, num=np.asarray(num), meta=np.asarray(json.dumps(meta)))
    return path


STATS_FILE_LIMIT = 1 << 30       # bytes a statistics .npz may unpack to (8192 features: 512 MiB)


def load_real_stats(path) -> Tuple[np.ndarray, np.ndarray, int, dict]:
    """(mu, sigma, num, meta) from a pegan ``.npz`` or an mmgen ``inception_stat.py`` pickle."""
    p = Path(path)
    if not p.is_file():
        raise MissingFileError(f"statistics file {p} does not exist")
    kinds = "pegan .npz with mu/sigma/num/meta, or mmgen .pkl with mean/cov"
    try:
        if p.suffix == ".npz":
            f = checks.read_npz(p, "statistics file", STATS_FILE_LIMIT, hint=f"give a {kinds}")
            mu, sigma, num, meta = f["mu"], f["sigma"], int(f["num"]), json.loads(str(f["meta"]))
        else:
            d = load_pickle(p)
            if not isinstance(d, dict) or "mean" not in d or "cov" not in d:
                raise InputError("no 'mean' and 'cov' entries")
            mu, sigma, num = np.asarray(d["mean"]), np.asarray(d["cov"]), int(d.get("size", -1))
            meta = {"source": f"mmgen statistics {str(d.get('name', p.name))[:200]}"}
    except InputError:
        raise
    except (KeyError, ValueError, TypeError, OSError, RecursionError) as e:
        raise InputError(f"{p} is not a statistics file ({kinds}): {type(e).__name__}: {brief(e, 200)}") from None
    if (mu.dtype.kind not in "fiu" or sigma.dtype.kind not in "fiu" or mu.ndim != 1 or not 1 <= mu.shape[0] <= 8192
            or sigma.shape != (mu.shape[0], mu.shape[0])):
        raise InputError(f"statistics file {p}: mean and covariance must be real [D] and [D, D] (D at most 8192), "
                         f"got {mu.dtype} {mu.shape} and {sigma.dtype} {sigma.shape}")
    mu, sigma = mu.astype(np.float64), sigma.astype(np.float64)
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise InputError(f"statistics file {p} holds a non-finite mean or covariance value: a damaged file")
    return mu, sigma, num, meta if isinstance(meta, dict) else {}


def _file_digest(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def default_cache_dir() -> Path:
    return Path(os.environ.get("PEGAN_CACHE_DIR", Path.home() / ".cache" / "pegan")) / "real_features"


# -- the evaluator -----------------------------------------------------------------------------

def _at_highest(fn, *args):
    """``fn(*args)`` traced with float32 matmuls and convolutions at full precision: the metric
    networks (Inception, VGG16) never run in TF32 or bf16 passes, whatever the training's
    ``compute.matmul_precision``."""
    with jax.default_matmul_precision("highest"):
        return fn(*args)


class Evaluator:
    """Computes the metrics of a generator against one real dataset / statistics file.

    ``nets``: {'inception': (module, variables), 'vgg16': (module, variables)} as needed by the
    metrics (see :mod:`pegan.eval.weights`); ``weight_ids``: a digest per network, part of the
    cache key of the real features.
    """

    def __init__(self, metric_spec, nets: Dict, real=None, real_stats=None, protocol: Protocol = Protocol(),
                 batch: int = 16, cache_dir=None, weight_ids: Optional[Dict[str, str]] = None,
                 log: Callable[[str], None] = print):
        self.metrics = parse_metrics(metric_spec)
        self.protocol, self.log = protocol, log
        self.nets = nets
        for _, kind, _ in self.metrics:
            if NETWORK_OF[kind] not in nets:
                raise InputError(f"metric {kind} needs the {NETWORK_OF[kind]} network")
        self.num_fakes = max(n for _, _, n in self.metrics)
        self.real = RealImages(real) if real is not None else None
        self.real_stats = real_stats
        # read and checked now, not after the fakes' features took their minutes
        self._stats = load_real_stats(real_stats) if real_stats is not None else None
        if self.real is None and (real_stats is None or any(k == "pr" for _, k, _ in self.metrics)):
            raise InputError("precision/recall needs real images (--real DATASET); FID needs real images "
                             "or a statistics file (--real-stats FILE)")
        # checked now (a file there raised FileExistsError once the real features were computed)
        self.cache_dir = checks.output_dir(Path(cache_dir) if cache_dir else default_cache_dir(), "--cache-dir")
        self.weight_ids = weight_ids or {}
        self.devices = jax.local_devices()
        self.mesh = Mesh(np.asarray(self.devices), ("data",))
        nd = len(self.devices)
        self.batch = max(nd, -(-batch // nd) * nd)   # a multiple of the local device count
        self._fns: Dict = {}

    # -- sharded feature functions ---------------------------------------------------------
    def _shard(self, x):
        return jax.device_put(x, NamedSharding(self.mesh, P("data")))

    def _replicate(self, tree):
        return jax.device_put(tree, NamedSharding(self.mesh, P()))

    # Three kinds of compiled pieces, so the deep networks compile once per batch size and are
    # shared by reals and fakes of any image size: the generator (keys -> images), the input
    # preparation (uint8 -> float, channel flip, the network's resize) and the network proper.
    def _jit(self, key, make):
        if key not in self._fns:
            self._fns[key] = jax.jit(make())
        return self._fns[key]

    def _features(self, images, netvars, which, flip=False, from_uint8=False):
        out = {}
        for w in which:
            mod = self.nets[w][0]

            def prep(x, mod=mod):
                x = uint8_to_float(x) if from_uint8 else x
                return type(mod).resize(x[..., ::-1] if flip else x)

            x = self._jit(("prep", w, flip, from_uint8), lambda: prep)(images)
            core = self._jit(("core", w), lambda mod=mod: lambda v, x: _at_highest(mod.clone(resize_input=False).apply,
                                                                                  v, x))
            out[w] = core(netvars[w], x)
        return out

    def _feature_fn(self, which: Tuple[str, ...], flip: bool):
        return lambda netvars, u8: self._features(u8, netvars, which, flip=flip, from_uint8=True)

    def _images(self, G, scale):
        shapes = G.noise_shapes(scale)
        proto = self.protocol

        def one(k):
            z = jax.random.normal(jax.random.fold_in(k, 0), (G.style_channels,))
            kn = jax.random.fold_in(k, 1)
            return z, [jax.random.normal(jax.random.fold_in(kn, j), tuple(s) + (1,)) for j, s in enumerate(shapes)]

        def fn(gvars, keys):
            z, noise = jax.vmap(one)(keys)
            img = G.apply(gvars, z, scale, noise=noise, truncation=proto.truncation)
            return quantize_8bit(img) if proto.quantize_fakes else img

        return fn

    def _fake_fn(self, G, scale, need: Dict[str, int]):
        """Features of the fakes of one batch; a network runs only on the fakes its metrics use."""
        gen = self._jit(("gen", id(G), scale), lambda: self._images(G, scale))

        span = self.batch * jax.process_count()   # hosts decide per round of batches, alike

        def fn(gvars, netvars, keys, start):
            which = tuple(w for w in sorted(need) if start // span * span < need[w])
            return self._features(gen(gvars, keys), netvars, which)

        return fn

    def _run_batches(self, total: int, make_input: Callable[[int, int], np.ndarray], fn, netvars, extra=(),
                     limits: Optional[Dict[str, int]] = None):
        """Features of items 0..total-1 (network ``w`` only of items below ``limits[w]``, when
        ``fn`` takes the batch start); this host takes every process_count-th batch."""
        pi, pc = jax.process_index(), jax.process_count()
        starts = list(range(0, total, self.batch))
        feats: Dict[str, List[np.ndarray]] = {}
        for s in starts[pi::pc]:
            n = min(self.batch, total - s)
            x = make_input(s, n)
            if n < self.batch:  # pad the last batch to the compiled shape
                x = np.concatenate([x, np.repeat(x[-1:], self.batch - n, axis=0)])
            out = fn(*extra, netvars, self._shard(x), *((s,) if limits is not None else ()))
            for w, v in out.items():
                feats.setdefault(w, []).append(np.asarray(v)[:n])
        result = {w: np.concatenate(v) for w, v in feats.items()}
        if pc > 1:
            names = sorted(limits) if limits is not None else sorted(result)
            span = self.batch * pc
            result = {w: _gather_by_batch(result.get(w, np.zeros((0, self._feature_dim(w)), np.float32)), starts,
                                          pc, min(total, -(-(limits or {}).get(w, total) // span) * span),
                                          self.batch) for w in names}
        if limits is not None:
            result = {w: v[:limits[w]] for w, v in result.items()}
        return result

    def _feature_dim(self, w: str) -> int:
        mod, v = self.nets[w]
        x = jax.ShapeDtypeStruct((1, 8, 8, 3), jnp.float32)
        return int(jax.eval_shape(lambda v, x: mod.apply(v, x), v, x).shape[-1])

    def _netvars(self, which):
        return self._replicate({w: self.nets[w][1] for w in which})

    # -- fakes --------------------------------------------------------------------------------
    def fake_features(self, G, gvars, scale) -> Dict[str, np.ndarray]:
        need: Dict[str, int] = {}
        for _, kind, n in self.metrics:
            need[NETWORK_OF[kind]] = max(n, need.get(NETWORK_OF[kind], 0))
        fn = self._fake_fn(G, scale, need)
        base = jax.random.PRNGKey(self.protocol.seed)
        keys = np.asarray(jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.arange(self.num_fakes)))
        gvars = self._replicate(gvars)
        return self._run_batches(self.num_fakes, lambda s, n: keys[s:s + n], fn, self._netvars(tuple(need)),
                                 (gvars,), limits=need)

    # -- reals --------------------------------------------------------------------------------
    def _real_cache_path(self, net: str, num: int, order: str) -> Path:
        key = f"{self.real.fingerprint()}-{net}-{self.weight_ids.get(net, 'unknown')}-{num}-{order}"
        return self.cache_dir / f"{self.real.path.name}-{key}.npy"

    def real_features(self, net: str, num: int, order: str) -> np.ndarray:
        """Features of the first ``num`` real images (cached on disk per dataset, network and order)."""
        path = self._real_cache_path(net, num, order)
        if path.is_file():
            try:
                feats = np.load(path, allow_pickle=False)
                ok = feats.ndim == 2 and feats.shape[0] == num and feats.dtype.kind == "f" and np.isfinite(feats).all()
            except (ValueError, OSError, EOFError) as e:
                ok, why = False, brief(e, 120)
            else:
                why = f"{feats.dtype} {feats.shape}, not {num} finite feature rows"
            if ok:
                self.log(f"real {net} features: cached {path}")
                return feats
            self.log(f"real {net} features: the cached {path} is damaged ({why}); computing them again")
        t0 = time.time()
        fn = self._feature_fn((net,), order == "bgr")
        feats = self._run_batches(num, self._read_range, fn, self._netvars((net,)))[net]
        if jax.process_index() == 0:
            with checks.writing_file(path) as tmp, open(tmp, "wb") as f:
                np.save(f, feats)
            self.log(f"real {net} features of {num} images in {time.time() - t0:.0f} s, cached at {path}")
        return feats

    def _read_range(self, s, n):
        return next(self.real.batches(s + n, n, indices=range(s, s + n)))

    def _fid_real(self, num: int):
        if self.real_stats is not None:
            mu, sigma, n, meta = self._stats
            if n >= 0 and n < num:
                self.log(f"note: the real statistics hold {n} images, fewer than the {num} fakes")
            return mu, sigma, {"real": str(self.real_stats), "real_count": n, **meta}
        feats = self.real_features("inception", num, "rgb")
        mu, sigma = M.feature_stats(feats)
        return mu, sigma, {"real": str(self.real.path), "real_count": num}

    # -- all metrics ---------------------------------------------------------------------------
    def __call__(self, G, gvars, scale) -> Dict[str, dict]:
        t0 = time.time()
        fakes = self.fake_features(G, gvars, scale)
        t_fake = time.time() - t0
        results = {}
        for name, kind, n in self.metrics:
            if kind == "fid":
                mu_r, sig_r, src = self._fid_real(n)
                mu_f, sig_f = M.feature_stats(fakes["inception"][:n])
                if mu_r.shape != mu_f.shape:
                    raise InputError(f"the real statistics {src['real']} have {mu_r.shape[0]} features, the "
                                     f"FID network {mu_f.shape[0]}: statistics of another network")
                fid = M.fid_from_stats(mu_f, sig_f, mu_r, sig_r, method=self.protocol.fid_method)
                results[name] = {**fid, "num_fakes": n, **src}
            elif kind == "kid":
                if self.real is None:
                    raise InputError(f"{name} needs real images (--real DATASET), not only FID statistics")
                real = self.real_features("inception", n, "rgb")
                results[name] = {**M.kid(real, fakes["inception"][:n], seed=self.protocol.seed), "num_fakes": n,
                                 "num_reals": len(real), "real": str(self.real.path)}
            else:
                real = self.real_features("vgg16", n, self.protocol.pr_real_order)
                pr = M.precision_recall(real, fakes["vgg16"][:n], k=self.protocol.pr_k)
                results[name] = {**pr, "num_fakes": n, "num_reals": n, "real": str(self.real.path)}
        results["_timing"] = {"fake_features_s": round(t_fake, 2), "total_s": round(time.time() - t0, 2)}
        return results


def _gather_by_batch(local, starts, pc, total, bsz):
    """Reassemble one network's per-host features into item order: host h ran batches h, h + pc,
    ... of ``starts``; only the batches starting below ``total`` produced features."""
    from jax.experimental import multihost_utils

    used = [s for s in starts if s < total]
    per = -(-len(used) // pc)
    padded = np.zeros((per * bsz,) + local.shape[1:], local.dtype)
    padded[:len(local)] = local
    allg = np.asarray(multihost_utils.process_allgather(padded))   # [pc, per * bsz, D]
    rows = []
    for b, s in enumerate(used):
        h, j = b % pc, b // pc
        rows.append(allg[h, j * bsz:j * bsz + min(bsz, total - s)])
    return np.concatenate(rows)


# -- one call from a checkpoint ----------------------------------------------------------------

def make_evaluator(metrics="fid50k,pr10k", real=None, real_stats=None, inception=None, vgg16=None,
                   batch: int = 16, protocol: Protocol = Protocol(), cache_dir=None,
                   log: Callable[[str], None] = print) -> Evaluator:
    """An :class:`Evaluator` with the networks its metrics need, loaded from the weight files
    (arguments or ``$PEGAN_INCEPTION_WEIGHTS`` / ``$PEGAN_VGG16_WEIGHTS``)."""

    kinds = {k for _, k, _ in parse_metrics(metrics)}
    if real is None and (real_stats is None or "pr" in kinds or "kid" in kinds):
        raise InputError("precision/recall and KID need real images (--real DATASET); FID needs real images "
                         "or a statistics file (--real-stats FILE)")
    nets, ids = {}, {}
    if "fid" in kinds or "kid" in kinds:
        p = W.weight_path(W.INCEPTION, inception)
        nets["inception"], ids["inception"] = load_inception(str(p)), _file_digest(p)
    if "pr" in kinds:
        p = W.weight_path(W.VGG16, vgg16)
        nets["vgg16"], ids["vgg16"] = load_vgg16(str(p)), _file_digest(p)
    return Evaluator(metrics, nets, real=real, real_stats=real_stats, protocol=protocol, batch=batch,
                     cache_dir=cache_dir, weight_ids=ids, log=log)


def evaluate_checkpoint(path, metrics="fid50k,pr10k", chosen_scale=None, size=None, real=None,
                        real_stats=None, inception=None, vgg16=None, batch: int = 16,
                        protocol: Protocol = Protocol(), cache_dir=None, experiment=None, step=None,
                        log: Callable[[str], None] = print, max_side: Optional[int] = MAX_SIDE,
                        compute: Optional[dict] = None) -> dict:
    """Evaluate a pegan checkpoint directory (or a reference ``.pth``) and return the report (no
    side of the evaluated images may exceed ``max_side`` px). Without ``chosen_scale`` and
    ``size``, at the experiment's evaluation scale (``configs.eval_scale``: its largest scale,
    where the paper reports). ``compute`` overrides the compute section (``loading.with_compute``)."""

    loaded = loading.load(path, which="ema", experiment=experiment, step=step, compute=compute)
    if not isinstance(loaded.model, Generator):
        raise InputError(f"{path} is not a StyleGAN2 / MS-PIE generator: FID and P&R evaluate those "
                         "(SinGAN models are single-image models)")
    if chosen_scale is None and size is None:
        chosen_scale = eval_scale(loaded.config)
    loading.announce_compute(loaded, log)     # matmul precision, compile cache: before tracing
    scale = loading.resolve_scale(loaded.model, chosen_scale, size, max_side)
    ev = make_evaluator(metrics, real=real, real_stats=real_stats, inception=inception, vgg16=vgg16,
                        batch=batch, protocol=protocol, cache_dir=cache_dir, log=log)
    h, w = image_size(loaded.model.out_size, scale)
    results = ev(loaded.model, loaded.variables, scale)
    return {
        "checkpoint": str(path), "experiment": loaded.config.get("name"),
        "chosen_scale": list(scale), "image_size": [h, w],
        "devices": f"{jax.process_count()} host(s), {jax.device_count()} {jax.devices()[0].platform} device(s)",
        "batch": ev.batch, "protocol": protocol.describe(), "compute": loaded.compute, "metrics": results,
    }
