"""Ops against independent float64 NumPy computations (tests/np_reference.py), gradients too."""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).parent))

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import np_reference as R
from pegan import ops

RTOL, ATOL = 1e-5, 1e-5


def rand(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def close(a, b, rtol=RTOL, atol=ATOL, msg=""):
    np.testing.assert_allclose(np.asarray(a, np.float64), b, rtol=rtol, atol=atol, err_msg=msg)


@pytest.mark.parametrize("kind,ac", [("bilinear", True), ("bilinear", False), ("bicubic", True),
                                     ("bicubic", False), ("nearest", None)])
@pytest.mark.parametrize("src,dst", [((4, 4), (8, 8)), ((6, 7), (16, 9)), ((12, 16), (15, 20)),
                                     ((30, 40), (19, 25)), ((5, 1), (1, 3)), ((9, 9), (9, 9))])
def test_resize_matches_pytorch_formulas(kind, ac, src, dst):
    x = rand((2,) + src + (3,))
    got = ops.resize(jnp.asarray(x), dst, method=kind, align_corners=bool(ac))
    close(got, R.resize(x.astype(np.float64), dst, kind, bool(ac)), msg=f"{kind} {src}->{dst}")


def test_resize_gradients_are_transposed_interpolation():
    x = rand((1, 6, 7, 2))
    r = rand((1, 13, 10, 2), 1)
    for kind in ("bilinear", "bicubic"):
        g = jax.grad(lambda v: jnp.sum(ops.resize(v, (13, 10), kind) * r))(jnp.asarray(x))
        mh, mw = R.interp_matrix(6, 13, kind), R.interp_matrix(7, 10, kind)
        close(g, np.einsum("oh,nopc,pw->nhwc", mh, r.astype(np.float64), mw), msg=kind)


def test_nearest_index_matches_torch_fixture(fixtures):
    from pegan.ops.resize import nearest_index

    d = np.load(fixtures / "vgg16_features.npz")
    for key in d.files:
        if key.startswith("out.nearest_src_index."):
            a, b = key.rsplit(".", 1)[1].split("_to_")
            np.testing.assert_array_equal(nearest_index(int(a), int(b)), d[key], err_msg=key)


UPFIRDN_CASES = [
    (2, 1, ((2, 1), (2, 1)), 4.0),   # to_rgb skip upsample
    (1, 1, ((1, 1), (1, 1)), 4.0),   # blur after transposed conv
    (1, 2, ((2, 2), (2, 2)), 1.0),   # D blur before stride-2 3x3 (then the conv strides)
    (1, 1, ((1, 1), (1, 1)), 1.0),   # D blur before the 1x1 skip
    (3, 2, ((-1, 2), (0, 1)), 1.0),  # negative pad, odd up, decimation
]


@pytest.mark.parametrize("up,down,pad,gain", UPFIRDN_CASES)
def test_upfirdn2d_forms_match_numpy(up, down, pad, gain):
    x = rand((2, 7, 9, 3))
    k = ops.fir_kernel(gain=gain)
    expected = R.upfirdn2d(x.astype(np.float64), np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64 * gain,
                           up, down, pad)
    close(ops.upfirdn2d_ref(jnp.asarray(x), k, up, down, pad), expected)
    close(ops.upfirdn2d(jnp.asarray(x), k, up, down, pad), expected)
    close(ops.upfirdn2d_conv(jnp.asarray(x), k, up, down, pad), expected)


def test_upfirdn2d_nonseparable_and_gradients():
    x = jnp.asarray(rand((1, 6, 5, 2)))
    k = np.array([[1, 2, 0], [0, 1, 3], [2, 0, 1]], np.float32)
    expected = R.upfirdn2d(np.asarray(x, np.float64), k / k.sum(), 2, 1, ((1, 0), (0, 2)))
    close(ops.upfirdn2d(x, k / k.sum(), 2, 1, ((1, 0), (0, 2))), expected)
    close(ops.upfirdn2d_conv(x, k / k.sum(), 2, 1, ((1, 0), (0, 2))), expected)
    r = jnp.asarray(rand((1, 12, 10, 2), 3))
    f = lambda fn: jax.grad(lambda v: jnp.sum(fn(v, ops.fir_kernel(gain=4.0), 2, 1, (2, 1)) * r))(x)
    close(f(ops.upfirdn2d), np.asarray(f(ops.upfirdn2d_ref), np.float64))
    # upsample2d is the reference UpsampleUpFIRDn: x2 with pad (2, 1)
    close(ops.upsample2d(x), R.upfirdn2d(np.asarray(x, np.float64),
                                         np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 16, 2, 1, ((2, 1), (2, 1))))


def test_bias_leaky_relu_and_gradient():
    x, b = rand((2, 3, 4, 5)), rand((5,), 1)
    v = x.astype(np.float64) + b
    close(ops.bias_leaky_relu(jnp.asarray(x), jnp.asarray(b)), np.sqrt(2) * np.where(v >= 0, v, 0.2 * v))
    g = jax.grad(lambda t: jnp.sum(ops.bias_leaky_relu(t, jnp.asarray(b))))(jnp.asarray(x))
    close(g, np.sqrt(2) * np.where(v >= 0, 1.0, 0.2))


def test_pixel_norm():
    x = rand((4, 16))
    xd = x.astype(np.float64)
    close(ops.pixel_norm(jnp.asarray(x)),
          xd / (np.linalg.norm(xd, axis=1, keepdims=True) / np.sqrt(16) + 1e-6))


@pytest.mark.parametrize("n", [1, 2, 3, 4, 8, 12])
def test_minibatch_stddev_reference_grouping(n):
    x = rand((n, 5, 6, 7))
    expected = R.minibatch_stddev_nchw(np.transpose(x, (0, 3, 1, 2)).astype(np.float64))
    close(ops.minibatch_stddev(jnp.asarray(x)), np.transpose(expected, (0, 2, 3, 1)))
    g = jax.grad(lambda v: jnp.sum(ops.minibatch_stddev(v)[..., -1]))(jnp.asarray(x))
    assert np.all(np.isfinite(np.asarray(g)))


def test_minibatch_stddev_rejects_bad_batch():
    with pytest.raises(ValueError, match="batch 6"):
        ops.minibatch_stddev(jnp.zeros((6, 2, 2, 3)))


@pytest.mark.parametrize("hw,out", [((4, 4), (2, 2)), ((5, 5), (2, 2)), ((7, 6), (3, 4)), ((8, 6), (2, 2))])
def test_adaptive_avg_pool(hw, out):
    x = rand((2,) + hw + (3,))
    close(ops.adaptive_avg_pool2d(jnp.asarray(x), out), R.adaptive_avg_pool(x.astype(np.float64), out))


@pytest.mark.parametrize("up,pad,interp_pad,k", [(None, 1, None, 3), (None, 0, None, 3),
                                                  (None, 0, None, 1), ("transposed", 0, None, 3),
                                                  ("after", 1, None, 3), ("before", 0, 4, 3),
                                                  ("before", 1, None, 3)])
@pytest.mark.parametrize("demodulate", [True, False])
def test_modulated_conv_all_forms_match_numpy(up, pad, interp_pad, k, demodulate):
    x, w, s = rand((3, 5, 6, 4)), rand((k, k, 4, 5), 1), rand((3, 4), 2)
    expected = R.modulated_conv2d(x.astype(np.float64), w.astype(np.float64), s.astype(np.float64),
                                  demodulate, pad, up, interp_pad)
    for impl in ("scale", "grouped", "vmap"):
        got = ops.modulated_conv2d(jnp.asarray(x), jnp.asarray(w), jnp.asarray(s), demodulate=demodulate,
                                   padding=pad, up=up, interp_pad=interp_pad, impl=impl)
        close(got, expected, rtol=1e-4, atol=1e-5, msg=impl)


def test_modulated_conv_gradients_agree_across_forms():
    x, w, s = map(jnp.asarray, (rand((2, 6, 6, 3)), rand((3, 3, 3, 4), 1), rand((2, 3), 2)))
    r = jnp.asarray(rand((2, 12, 12, 4), 3))

    def grads(impl, up):
        f = lambda a, b, c: jnp.sum(ops.modulated_conv2d(a, b, c, up=up, impl=impl) * r)
        return jax.grad(f, argnums=(0, 1, 2))(x, w, s)

    for up in ("transposed", "after"):
        ref = grads("grouped", up)
        for impl in ("scale", "vmap"):
            for a, b in zip(grads(impl, up), ref):
                close(a, np.asarray(b, np.float64), rtol=1e-4, atol=1e-4, msg=f"{impl} {up}")


def test_padding_modes():
    x = rand((1, 4, 5, 2))
    for mode, np_mode in (("zero", "constant"), ("reflect", "reflect"), ("replicate", "edge")):
        close(ops.pad2d(jnp.asarray(x), (1, 2, 2, 1), mode),
              np.pad(x, ((0, 0), (1, 2), (2, 1), (0, 0)), mode=np_mode).astype(np.float64))
    assert ops.pad2d(jnp.asarray(x), 3, "none").shape == x.shape
    close(ops.pad2d(jnp.asarray(x), 5, "interp", "bicubic"), R.resize(x.astype(np.float64), (14, 15), "bicubic"))
    with pytest.raises(ValueError, match="unknown padding mode"):
        ops.pad2d(jnp.asarray(x), 1, "circular")
