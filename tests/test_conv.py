"""The two convolution forms (pegan.ops.conv): 'taps' (custom backward, the CPU default) equals
lax's own convolution and autodiff, forward, first and second order."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pegan import ops
from pegan.ops import conv as C


def rand(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


def both(fn):
    """``fn(impl)`` in both forms (the form is an argument: each traces its own program)."""
    return jax.jit(lambda: fn("xla"))(), jax.jit(lambda: fn("taps"))()


def close(a, b, tol=2e-4):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        scale = max(np.abs(x).max(), 1e-6)
        np.testing.assert_allclose(x / scale, y / scale, atol=tol, rtol=0)


CASES = [  # (H, W, k, stride, padding)
    (9, 11, 3, 1, 1), (8, 8, 3, 1, 0), (10, 7, 3, 2, 0), (11, 9, 3, 2, 0), (8, 8, 1, 2, 0),
    (9, 9, 3, 2, 1), (7, 8, 1, 1, 0), (12, 10, 4, 2, ((2, 1), (0, 2))), (9, 9, 3, 1, ((-1, 2), (1, 0))),
]


@pytest.mark.parametrize("h,w,k,s,p", CASES)
def test_conv_forms_agree_to_second_order(h, w, k, s, p):
    x, wt = rand((2, h, w, 3)), rand((k, k, 3, 4), 1) * 0.3
    r = rand(jax.eval_shape(lambda: C.conv2d(x, wt, p, s)).shape, 2)

    def fn(impl):
        y = C.conv2d(x, wt, p, s, impl=impl)
        loss = lambda a, b: jnp.sum(jnp.tanh(C.conv2d(a, b, p, s, impl=impl)) * r)
        gx, gw = jax.grad(loss, (0, 1))(x, wt)
        # R1-like: gradient wrt the weights of the squared input gradient
        r1 = jax.grad(lambda b: jnp.sum(jnp.square(jax.grad(loss)(x, b))))(wt)
        r1x = jax.grad(lambda a: jnp.sum(jnp.square(jax.grad(loss, 1)(a, wt))))(x)
        return y, gx, gw, r1, r1x

    close(*both(fn))


@pytest.mark.parametrize("h,w,k", [(5, 6, 3), (4, 4, 4), (3, 5, 1)])
def test_conv_transpose_forms_agree(h, w, k):
    x, wt = rand((2, h, w, 3)), rand((k, k, 3, 5), 1)

    def fn(impl):
        y = C.conv_transpose2d(x, wt, 2, impl=impl)
        g = jax.grad(lambda a, b: jnp.sum(jnp.sin(C.conv_transpose2d(a, b, 2, impl=impl))), (0, 1))(x, wt)
        return y, g

    close(*both(fn))


def test_the_form_is_an_argument_and_auto_resolves_per_backend():
    from pegan import compute

    assert compute.resolve({}, "cpu")["conv_impl"] == "taps"
    assert compute.resolve({}, "gpu")["conv_impl"] == "xla" == compute.resolve({}, "tpu")["conv_impl"]
    assert compute.resolve({"conv_impl": "xla"}, "cpu")["conv_impl"] == "xla"
    with pytest.raises(ValueError, match="unknown conv impl"):
        C.conv2d(rand((1, 4, 4, 1)), rand((3, 3, 1, 1)), impl="fast")
    with pytest.raises(ValueError, match="compute.conv_impl"):
        compute.resolve({"conv_impl": "fast"}, "cpu")


def test_the_models_take_their_forms_from_the_config_compute_section():
    from pegan import compute
    from pegan.configs import stylegan2_config, singan_config
    from pegan.models import singan as sm
    from pegan.models.stylegan2 import build_discriminator, build_generator

    cfg = stylegan2_config("mspie-stylegan2-config-f_c2_8xb3-1100kiters_ffhq-256-512", "tiny")
    assert build_generator(cfg).forms == compute.forms_for(cfg)
    cfg.compute.conv_impl, cfg.compute.upfirdn_impl, cfg.compute.modconv_impl = "xla", "conv", "grouped"
    cfg.compute.dtype = "bfloat16"
    g, d = build_generator(cfg), build_discriminator(cfg)
    assert g.forms == d.forms == ops.Forms(conv="xla", upfirdn="conv", modconv="grouped")
    assert g.dtype == d.dtype == "bfloat16"
    assert build_generator(cfg, ops.Forms(conv="taps")).forms.conv == "taps"     # explicit wins
    s = singan_config("singan-csg_fish", "tiny")
    s.compute.conv_impl = "xla"
    assert sm.build_generator(s).forms.conv == "xla" == sm.build_discriminator(s).forms.conv


def test_a_bad_compute_value_is_one_line_before_anything_runs(tmp_path, capsys):
    from pegan.cli import main

    exp = "experiments/mspie-stylegan2-config-f_c2_8xb3-1100kiters_ffhq-256-512.py"
    root = __import__("pathlib").Path(__file__).resolve().parents[1]
    rc = main(["train", str(root / exp), "--variant", "tiny", "--data", str(tmp_path / "none"), "--steps", "1",
               "--workdir", str(tmp_path / "w"), "--set", "compute.conv_impl=fast"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "compute.conv_impl" in err[0] and "taps" in err[0]
    assert not (tmp_path / "w").exists()
