"""KID (kernel inception distance) against independent float64 NumPy computations."""

import numpy as np
import pytest

from pegan.eval import metrics as M
from pegan.eval.evaluate import parse_metrics


def unbiased_mmd2(x, y):
    """Squared MMD, unbiased, cubic polynomial kernel: the kernel matrices built entry by entry."""
    d = x.shape[1]
    kern = np.vectorize(lambda i, j, a, b: (a[i] @ b[j] / d + 1) ** 3, excluded={2, 3})
    n, m = len(x), len(y)
    ii, jj = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    kxx = kern(ii, jj, x, x)
    ii, jj = np.meshgrid(np.arange(m), np.arange(m), indexing="ij")
    kyy = kern(ii, jj, y, y)
    ii, jj = np.meshgrid(np.arange(n), np.arange(m), indexing="ij")
    kxy = kern(ii, jj, x, y)
    off = lambda k: k[~np.eye(len(k), dtype=bool)].mean()
    return off(kxx) + off(kyy) - 2 * kxy.mean()


def test_kid_of_whole_sets_is_the_unbiased_mmd():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 8)), rng.normal(0.3, 1.2, size=(40, 8))
    got = M.kid(y, x, subsets=3, subset_size=1000)        # subsets of 40 of 40: the whole sets
    assert got["kid_subset_size"] == 40
    np.testing.assert_allclose(got["kid"], unbiased_mmd2(x, y), rtol=1e-10)


def test_kid_subsets_average_the_subset_estimates():
    rng = np.random.default_rng(1)
    fake, real = rng.normal(size=(60, 5)), rng.normal(size=(50, 5))
    got = M.kid(real, fake, subsets=4, subset_size=20, seed=7)
    draw = np.random.default_rng(7)                       # the same subsets, drawn the same way
    want = []
    for _ in range(4):
        xs = fake[draw.choice(60, 20, replace=False)]
        ys = real[draw.choice(50, 20, replace=False)]
        want.append(unbiased_mmd2(xs, ys))
    np.testing.assert_allclose(got["kid"], np.mean(want), rtol=1e-10)
    np.testing.assert_allclose(got["kid_std"], np.std(want), rtol=1e-8)


def test_kid_on_known_distributions():
    """Same distribution: about 0 (the estimator is unbiased); a shifted one: clearly positive,
    growing with the shift."""
    rng = np.random.default_rng(2)
    real = rng.normal(size=(2000, 16))
    same = M.kid(real, rng.normal(size=(2000, 16)), subsets=20, subset_size=500)
    near = M.kid(real, rng.normal(0.2, 1, size=(2000, 16)), subsets=20, subset_size=500)
    far = M.kid(real, rng.normal(0.6, 1, size=(2000, 16)), subsets=20, subset_size=500)
    assert abs(same["kid"]) < 3 * same["kid_std"] / np.sqrt(20) + 1e-3
    assert far["kid"] > near["kid"] > 10 * abs(same["kid"])


def test_kid_metric_names():
    assert parse_metrics("kid50k,fid1000") == [("kid50k", "kid", 50000), ("fid1000", "fid", 1000)]
    with pytest.raises(Exception, match="kid<N>"):
        parse_metrics("kid")
