"""ADA's augmentation pipeline (pegan.train.augment) against independent computations: the
identity at p = 0 bit for bit, determinism, the geometry of each transform against the analytic
transform of a smooth image, the exact pixel moves against NumPy, the colour transforms against
their NumPy formulas, gradients through R1's second order, and the adjustment of p."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pegan.errors import InputError
from pegan.train import augment as A

NAMES = sorted(A.BGC)


def images(n=4, h=16, w=16, seed=0):
    return jnp.asarray(np.random.default_rng(seed).uniform(-1, 1, (n, h, w, 3)), jnp.float32)


def with_params(n, **values):
    return {**A.identity_params(n), **{k: jnp.full((n,), float(v)) for k, v in values.items()}}


def only(name):
    return {k: (1.0 if k == name else 0.0) for k in A.BGC}


@pytest.mark.parametrize("shape", [(4, 16, 16), (3, 12, 20)])
def test_p_zero_is_the_identity_bit_for_bit(shape):
    x = images(*shape)
    fn = jax.jit(lambda x, k: A.augment(x, k, 0.0))
    for seed in range(3):
        np.testing.assert_array_equal(np.asarray(fn(x, jax.random.PRNGKey(seed))), np.asarray(x))


def test_deterministic_given_the_key_and_each_transform_acts_at_p_one():
    x = images(8)
    fn = jax.jit(lambda x, k, p: A.augment(x, k, p))
    a, b = fn(x, jax.random.PRNGKey(1), 0.7), fn(x, jax.random.PRNGKey(1), 0.7)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert float(jnp.max(jnp.abs(a - fn(x, jax.random.PRNGKey(2), 0.7)))) > 0.1
    one = jax.jit(lambda x, k, p, probs: A.augment(x, k, p, probs=probs))     # the weights traced: one program
    for name in NAMES:          # alone at p = 1: some image changes; at p = 0: none
        w = {k: jnp.float32(v) for k, v in only(name).items()}
        moved = np.asarray(jnp.max(jnp.abs(one(x, jax.random.PRNGKey(3), 1.0, w) - x), axis=(1, 2, 3)))
        assert moved.max() > 1e-3, name
        np.testing.assert_array_equal(np.asarray(one(x, jax.random.PRNGKey(3), 0.0, w)), np.asarray(x))


def test_probability_of_each_transform_is_weight_times_p():
    n = 4000
    prm = A.draw(jax.random.PRNGKey(0), n, (16, 16), 0.3)
    scale_on = float(np.mean(np.asarray(prm["scale"]) != 1.0))
    assert abs(scale_on - 0.3) < 0.03
    # either rotation: 1 - (1 - p_rot)^2 = p
    rot = np.mean((np.asarray(prm["theta_pre"]) != 0) | (np.asarray(prm["theta_post"]) != 0))
    assert abs(rot - 0.3) < 0.03
    # a flip is drawn with 0.3 and flips half of those
    assert abs(float(np.mean(np.asarray(prm["xflip"]))) - 0.15) < 0.03
    assert np.abs(np.asarray(prm["tx_int"])).max() <= round(0.125 * 16)


def test_pixel_moves_are_exact():
    x = images(2, 16, 16)
    xn = np.asarray(x)
    aug = jax.jit(lambda x, prm: A.augment(x, None, 0.0, params=prm))
    np.testing.assert_array_equal(np.asarray(aug(x, with_params(2, xflip=1))), xn[:, :, ::-1])
    for k in range(4):
        np.testing.assert_array_equal(np.asarray(aug(x, with_params(2, rotate90=k))),
                                      np.rot90(xn, k, axes=(1, 2)))
    twice = aug(aug(x, with_params(2, xflip=1)), with_params(2, xflip=1))
    np.testing.assert_array_equal(np.asarray(twice), xn)
    # an integer translation by (+3, -2) px: reflected at the border, as NumPy's 'reflect' pad
    got = np.asarray(aug(x, with_params(2, tx_int=3, ty_int=-2)))
    padded = np.pad(xn, ((0, 0), (4, 4), (4, 4), (0, 0)), mode="reflect")
    np.testing.assert_array_equal(got, padded[:, 4 + 2:4 + 2 + 16, 4 - 3:4 - 3 + 16])
    # a wider range of integer translation (ranges=) moves as far as it says: 6 px of 16
    wide = A.augment(x, None, 0.0, ranges={"xint_max": 0.375}, params=with_params(2, tx_int=6))
    padded = np.pad(xn, ((0, 0), (0, 0), (6, 6), (0, 0)), mode="reflect")
    np.testing.assert_array_equal(np.asarray(wide), padded[:, :, :16])


def _smooth(h, w):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    u, v = xx - (w - 1) / 2, yy - (h - 1) / 2
    f = lambda a, b: np.sin(0.35 * a + 0.2 * b + 0.3) * np.cos(0.1 * b - 0.15 * a)
    return f, u, v


@pytest.mark.parametrize("case", ["rotate", "scale", "aniso", "xfrac", "rotate90-by-general", "composed"])
def test_resampled_geometry_matches_the_analytic_transform(case):
    """out(u) = in(G_inv u) in pixels from the centre (x right, y down), on a smooth image, in the
    interior: a wrong direction, centre or half-pixel offset costs far more than the bound."""
    h = w = 32
    f, u, v = _smooth(h, w)
    x = jnp.asarray(np.stack([f(u, v)] * 3, -1)[None], jnp.float32)
    vals = {"rotate": dict(theta_pre=0.7), "scale": dict(scale=1.3), "aniso": dict(aniso=0.8),
            "xfrac": dict(tx_frac=1.4, ty_frac=-0.6), "rotate90-by-general": dict(theta_post=math.pi / 2),
            "composed": dict(scale=0.9, theta_pre=-0.4, aniso=1.2, theta_post=0.25, tx_frac=0.5)}[case]
    prm = with_params(1, **vals)
    g = np.asarray(A.geometry(prm), np.float64)[0]
    # the same matrix from NumPy: each factor the inverse of its transform, in NVIDIA's order
    def rot(t):
        return np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    p = {k: float(np.asarray(val)[0]) for k, val in prm.items()}
    ref = (np.diag([1 / p["scale"], 1 / p["scale"], 1]) @ rot(p["theta_pre"]) @ np.diag([1 / p["aniso"], p["aniso"], 1])
           @ rot(p["theta_post"]) @ np.array([[1, 0, -p["tx_frac"]], [0, 1, -p["ty_frac"]], [0, 0, 1]]))
    np.testing.assert_allclose(g, ref, atol=1e-6)
    src = g @ np.stack([u.ravel(), v.ravel(), np.ones(u.size)])
    want = f(src[0], src[1]).reshape(h, w)
    got = np.asarray(A.augment(x, None, 0.0, params=prm))[0, ..., 0]
    err = np.abs(got - want)[8:-8, 8:-8].max()
    assert err < 0.012, err


def test_colour_transforms_match_their_formulas():
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.uniform(-1, 1, (1, 6, 6, 3)), jnp.float32)
    xn = np.asarray(x, np.float64)
    luma = xn.mean(-1, keepdims=True)              # projection on the luma axis (1, 1, 1)/sqrt(3)

    def aug(**v):
        return np.asarray(A.augment(x, None, 0.0, params=with_params(1, **v)), np.float64)

    np.testing.assert_allclose(aug(brightness=0.3), xn + 0.3, atol=1e-6)
    np.testing.assert_allclose(aug(contrast=1.7), xn * 1.7, atol=1e-6)
    np.testing.assert_allclose(aug(lumaflip=1), xn - 2 * luma, atol=1e-6)          # Householder about luma
    np.testing.assert_allclose(aug(saturation=0.4), luma + 0.4 * (xn - luma), atol=1e-6)
    th = 0.9
    k = np.array([[0, -1, 1], [1, 0, -1], [-1, 1, 0]]) / np.sqrt(3)             # cross product with the luma axis
    r = np.eye(3) + np.sin(th) * k + (1 - np.cos(th)) * k @ k                   # Rodrigues
    np.testing.assert_allclose(aug(hue=th), xn @ r.T, atol=1e-6)
    # the order: brightness, then contrast (NVIDIA's)
    np.testing.assert_allclose(aug(brightness=0.2, contrast=2.0), (xn + 0.2) * 2.0, atol=1e-6)


def test_second_order_gradients_through_the_augmentation_are_finite():
    """R1's penalty (a gradient w.r.t. the augmented reals) differentiated w.r.t. D's parameters,
    through every transform at p = 1."""
    from pegan.models.stylegan2 import Discriminator
    from pegan.train.stylegan2 import r1_penalty

    D = Discriminator(in_size=16, channels={4: 8, 8: 8, 16: 8}, mbstd_group_size=2)
    x = images(2, 16, 16)
    params = D.init(jax.random.PRNGKey(0), x)["params"]
    see = lambda im: A.augment(im, jax.random.PRNGKey(4), 1.0)
    val, grads = jax.jit(jax.value_and_grad(lambda p: r1_penalty(p, D, x, see)))(params)
    leaves = jax.tree.leaves(grads)
    assert np.isfinite(float(val)) and float(val) > 0
    assert all(np.isfinite(np.asarray(g)).all() for g in leaves)
    assert sum(float(jnp.sum(jnp.abs(g))) for g in leaves) > 0
    # and the first-order gradient w.r.t. the image is the transpose of the (linear) warp
    prm = with_params(2, theta_pre=0.5, scale=1.1)
    lin = lambda im: A.augment(im, None, 0.0, params=prm)
    y = images(2, 16, 16, seed=5)
    lhs = float(jnp.sum(lin(x) * y))
    rhs = float(jnp.sum(x * jax.grad(lambda im: jnp.sum(lin(im) * y))(x)))
    assert abs(lhs - rhs) < 1e-4 * abs(lhs) + 1e-5


def test_sym6_is_an_orthonormal_wavelet_filter_with_six_vanishing_moments():
    h = np.asarray(A.SYM6, np.float64)
    assert abs(h.sum() - np.sqrt(2)) < 1e-12
    for shift in range(1, 6):                      # orthogonal to its even shifts
        assert abs(np.dot(h[2 * shift:], h[:-2 * shift])) < 1e-10
    assert abs(np.dot(h, h) - 1) < 1e-10
    g = h[::-1] * (-1.0) ** np.arange(h.size)      # the high-pass: moments 0..5 vanish
    k = np.arange(h.size, dtype=np.float64)
    for m in range(6):
        assert abs(np.sum(g * k ** m)) < 1e-6 * max(1.0, np.sum(np.abs(g) * k ** m))


def test_adjust_moves_p_towards_the_target():
    st = A.init_ada(0.0)
    # a discriminator that is sure of every real (sign +1): r_t = 1 > 0.6, p rises by
    # images / (kimg * 1000) at each due step, and only then
    up = A.adjust(st, 8.0, 8.0, False, target=0.6, kimg=0.1)
    assert float(up["p"]) == 0.0 and float(up["count"]) == 8.0
    up = A.adjust(up, 8.0, 8.0, True, target=0.6, kimg=0.1)
    assert abs(float(up["p"]) - 16 / 100) < 1e-7 and float(up["rt"]) == 1.0 and float(up["count"]) == 0.0
    # reals mostly below zero: r_t = -0.5, p falls, floored at 0
    down = A.adjust(up, -4.0, 8.0, True, target=0.6, kimg=0.1)
    assert abs(float(down["p"]) - (0.16 - 0.08)) < 1e-7 and float(down["rt"]) == -0.5
    down = A.adjust(down, -8.0, 8.0, True, target=0.6, kimg=0.01)
    assert float(down["p"]) == 0.0
    # NVIDIA's speed: at most 4 steps x batch 64 / 500k images per adjustment
    slow = A.adjust(A.init_ada(0.0), 256.0, 256.0, True, target=0.6, kimg=500)
    assert abs(float(slow["p"]) - 256 / 500_000) < 1e-9
    fixed = A.adjust(A.init_ada(0.3), 8.0, 8.0, True, target=0.6, kimg=0.1, adaptive=False)
    assert float(fixed["p"]) == np.float32(0.3) and float(fixed["rt"]) == 1.0


def test_parse_augment():
    assert A.parse_augment("none") == ("none", 0.0) and A.parse_augment("ada") == ("ada", 0.0)
    assert A.parse_augment("fixed:0.25") == ("fixed", 0.25)
    for bad in ("fixed:2", "fixed:x", "bgc", ""):
        with pytest.raises(InputError, match="train.augment"):
            A.parse_augment(bad)
