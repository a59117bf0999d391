"""FID and precision/recall from features, with the reference's exact arithmetic (REFERENCE §5).

FID (mmgen ``FID.summary`` / ``_calc_fid``):

* ``mu = np.mean(feats, 0)`` in the features' dtype (float32 for network features);
  ``sigma = np.cov(feats, rowvar=False)`` in float64 (unbiased, N - 1);
* ``covmean = sqrtm(sigma_fake @ sigma_real)`` (SciPy); if it is not finite, again with 1e-6 added
  to both diagonals; imaginary parts are dropped when the diagonal's are below 1e-3 (an error
  otherwise);
* ``fid = |mu_f - mu_r|^2 + tr(sigma_f) + tr(sigma_r) - 2 tr(covmean)``, the mean term computed
  from the float32 difference as the reference does.

Precision / recall (mmgen ``PR`` with k = 3, NVIDIA's definition):

* radius of each manifold point = its (k+1)-th smallest float32 Euclidean distance to the manifold
  (the point itself counts), **rounded to float16**;
* a probe is inside when its float32 distance to at least one manifold point is **<=** that
  point's radius; precision = fakes inside the real manifold, recall = reals inside the fake one.

KID (Binkowski et al. 2018, with NVIDIA's subset estimator from their metrics code): the unbiased
squared MMD with the cubic polynomial kernel ``k(x, y) = (x.y / d + 1)^3`` on the same Inception
features as FID, averaged over ``subsets`` random subsets of ``subset_size`` fakes and reals each
(sizes capped by the smaller set), in float64.

Distances use the matmul form ``sqrt(max(|x|^2 + |y|^2 - 2 x.y, 0))`` at full float32 precision,
in row x column blocks (``row_batch`` x ``col_batch``) so 10k x 10k sets fit any device.
"""

from __future__ import annotations

import warnings
from functools import partial
from typing import Dict, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from pegan.errors import PeganError

__all__ = ["feature_stats", "fid_from_stats", "fid_from_features", "pr_radii", "pr_inside",
           "precision_recall", "kid", "FIDError"]


class FIDError(PeganError, ValueError):
    """The covariance product has no usable real square root."""


def feature_stats(feats) -> Tuple[np.ndarray, np.ndarray]:
    """(mean, covariance) as the reference computes them: mean in the features' dtype, cov float64."""
    feats = np.asarray(feats)
    if feats.ndim != 2 or feats.shape[0] < 2:
        raise ValueError(f"need [N >= 2, D] features for statistics, got shape {feats.shape}")
    return np.mean(feats, axis=0), np.cov(feats, rowvar=False)


def _sqrtm(a):
    from scipy import linalg

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = linalg.sqrtm(a)
    return out[0] if isinstance(out, tuple) else out


def _trace_sqrt_product(cov_fake, cov_real, method: str) -> float:
    """tr(sqrtm(cov_fake @ cov_real)) by the reference's route or by symmetric eigenvalues."""
    if method == "eigh":
        # eig(A B) = eig(A^1/2 B A^1/2), symmetric PSD for covariances: no complex parts, and a
        # 2048-d product takes seconds where SciPy's sqrtm takes a minute on a small CPU.
        w, v = np.linalg.eigh(cov_fake)
        root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
        ev = np.linalg.eigvalsh(root @ cov_real @ root)
        return float(np.sum(np.sqrt(np.clip(ev, 0, None))))
    if method != "sqrtm":
        raise ValueError(f"unknown FID method {method!r}: 'sqrtm' (the reference) or 'eigh'")
    covmean = _sqrtm(cov_fake @ cov_real)
    if not np.isfinite(covmean).all():
        offset = np.eye(cov_fake.shape[0]) * 1e-6
        covmean = _sqrtm((cov_fake + offset) @ (cov_real + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            m = float(np.max(np.abs(covmean.imag)))
            raise FIDError(f"sqrtm(cov_fake @ cov_real) has imaginary component {m:.3g}: "
                           "too few samples for the feature size? (method='eigh' avoids complex roots)")
        covmean = covmean.real
    return float(np.trace(covmean))


def fid_from_stats(mu_fake, cov_fake, mu_real, cov_real, method: str = "sqrtm") -> Dict[str, float]:
    """{'fid', 'fid_mean', 'fid_cov'}: the Frechet distance and its mean and covariance terms.

    method: 'sqrtm' (the reference: SciPy's matrix square root with its fallbacks) or 'eigh'
    (the same trace from symmetric eigenvalues; agrees to about 1e-9 relative, much faster).
    """
    mu_fake, mu_real = np.asarray(mu_fake), np.asarray(mu_real)
    cov_fake, cov_real = np.asarray(cov_fake, np.float64), np.asarray(cov_real, np.float64)
    if mu_fake.shape != mu_real.shape or cov_fake.shape != cov_real.shape:
        raise ValueError(f"feature sizes differ: fake {mu_fake.shape}, real {mu_real.shape} "
                         "(were the real statistics made with another network?)")
    diff = mu_fake - mu_real
    mean = diff @ diff
    trace = np.trace(cov_fake) + np.trace(cov_real) - 2 * _trace_sqrt_product(cov_fake, cov_real, method)
    return {"fid": float(mean + trace), "fid_mean": float(mean), "fid_cov": float(trace)}


def fid_from_features(fake, real, method: str = "sqrtm") -> Dict[str, float]:
    return fid_from_stats(*feature_stats(fake), *feature_stats(real), method=method)


@partial(jax.jit, static_argnums=(2,))
def _kth_block(rows, manifold, k: int):
    d = _dist(rows, manifold)
    return -lax.top_k(-d, k + 1)[0][:, k]


@jax.jit
def _inside_block(probes, manifold, radii):
    return jnp.any(_dist(probes, manifold) <= radii[None, :], axis=1)


def _dist(x, y):
    xx = jnp.sum(jnp.square(x), axis=1)[:, None]
    yy = jnp.sum(jnp.square(y), axis=1)[None, :]
    xy = jnp.matmul(x, y.T, precision=lax.Precision.HIGHEST)
    return jnp.sqrt(jnp.maximum(xx + yy - 2.0 * xy, 0.0))


def _blocks(n: int, size: int):
    return [(i, min(i + size, n)) for i in range(0, n, size)]


def pr_radii(manifold, k: int = 3, row_batch: int = 10000, col_batch: int = 10000) -> np.ndarray:
    """float16 radius of each manifold point: its (k+1)-th smallest distance to the manifold."""
    m = jnp.asarray(np.asarray(manifold, np.float32))
    n = m.shape[0]
    if n < k + 1:
        raise ValueError(f"need more than k = {k} points for the k-NN radii, got {n}")
    out = []
    for r0, r1 in _blocks(n, row_batch):
        if col_batch >= n:
            kth = _kth_block(m[r0:r1], m, k)
        else:  # the k+1 smallest of each column block, then of their union
            cand = jnp.concatenate([-lax.top_k(-_dist(m[r0:r1], m[c0:c1]), min(k + 1, c1 - c0))[0]
                                    for c0, c1 in _blocks(n, col_batch)], axis=1)
            kth = -lax.top_k(-cand, k + 1)[0][:, k]
        out.append(np.asarray(kth))
    return np.concatenate(out).astype(np.float16)


def pr_inside(probes, manifold, radii, row_batch: int = 10000, col_batch: int = 10000) -> np.ndarray:
    """bool per probe: within (<=) the float16 radius of at least one manifold point."""
    p = jnp.asarray(np.asarray(probes, np.float32))
    m = jnp.asarray(np.asarray(manifold, np.float32))
    r = jnp.asarray(np.asarray(radii, np.float16).astype(np.float32))
    out = []
    for r0, r1 in _blocks(p.shape[0], row_batch):
        hit = None
        for c0, c1 in _blocks(m.shape[0], col_batch):
            h = _inside_block(p[r0:r1], m[c0:c1], r[c0:c1])
            hit = h if hit is None else hit | h
        out.append(np.asarray(hit))
    return np.concatenate(out)


def _fraction(pred: np.ndarray) -> float:
    """The reference's float32 mean of 0/1, as a Python float."""
    return float(np.float32(np.count_nonzero(pred)) / np.float32(pred.size))


def precision_recall(real, fake, k: int = 3, row_batch: int = 10000, col_batch: int = 10000,
                     return_details: bool = False):
    """{'precision', 'recall'} of fake features against real ones (NVIDIA / mmgen, k = 3)."""
    real = np.asarray(real, np.float32)
    fake = np.asarray(fake, np.float32)
    out, details = {}, {}
    for name, manifold, probes in (("precision", real, fake), ("recall", fake, real)):
        radii = pr_radii(manifold, k, row_batch, col_batch)
        pred = pr_inside(probes, manifold, radii, row_batch, col_batch)
        out[name] = _fraction(pred)
        details[name] = {"radii": radii, "pred": pred}
    return (out, details) if return_details else out


def kid(real, fake, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> Dict[str, float]:
    """{'kid', 'kid_std', 'kid_subset_size', 'kid_subsets'}: the kernel inception distance of
    fake against real features (see the module docstring); ``kid_std`` is the standard
    deviation of the subset estimates. Subsets are drawn without replacement from ``seed``."""
    real = np.asarray(real, np.float64)
    fake = np.asarray(fake, np.float64)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"kid: features must be [N, d] of one width, got {real.shape} and {fake.shape}")
    d = real.shape[1]
    m = min(len(real), len(fake), int(subset_size))
    if m < 2 or subsets < 1:
        raise ValueError("kid needs at least 2 samples per set and one subset")
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(int(subsets)):
        x = fake[rng.choice(len(fake), m, replace=False)]
        y = real[rng.choice(len(real), m, replace=False)]
        kxx, kyy, kxy = (x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3
        within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        vals.append(within - 2.0 * kxy.mean())
    vals = np.asarray(vals)
    return {"kid": float(vals.mean()), "kid_std": float(vals.std()), "kid_subset_size": int(m),
            "kid_subsets": int(subsets)}
