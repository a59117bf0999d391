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


def test_cpu_compile_resolves_per_variant_and_reaches_xla():
    """compute.cpu_compile: lean on CPU, quick for tiny variants, nothing off the CPU; its options
    are XLA's own (an option XLA does not know fails the compile, so they are passed through) and
    change no number of a second-order convolution gradient."""
    from pegan import compute
    from pegan.configs import stylegan2_config

    tiny = stylegan2_config("mspie-stylegan2-config-f_c2_8xb3-1100kiters_ffhq-256-512", "tiny")
    full = stylegan2_config("mspie-stylegan2-config-f_c2_8xb3-1100kiters_ffhq-256-512")
    assert compute.resolve(tiny, "cpu")["cpu_compile"] == "quick"
    assert compute.resolve(full, "cpu")["cpu_compile"] == "lean"
    assert compute.resolve(full, "gpu")["cpu_compile"] == "default" == compute.resolve(tiny, "tpu")["cpu_compile"]
    assert compute.resolve({}, "cpu")["cpu_compile"] == "lean"          # a bare section: not tiny
    quick = compute.compiler_options(compute.resolve(tiny, "cpu"), "cpu")
    assert quick == {"xla_cpu_use_fusion_emitters": False, "xla_backend_optimization_level": 0}
    assert compute.compiler_options(compute.resolve(full, "cpu"), "gpu") == {}
    assert compute.compiler_options({}, "cpu") == {}
    with pytest.raises(ValueError, match="compute.cpu_compile"):
        compute.resolve({"conv_impl": "auto", "cpu_compile": "fastest"}, "cpu")
    x, w = rand((2, 9, 9, 3)), rand((3, 3, 3, 4))

    def r1(w):
        g = jax.grad(lambda x: jnp.sum(jnp.tanh(C.conv2d(x, w, impl="taps")) ** 2))(x)
        return jnp.sum(g ** 2)

    plain = jax.jit(jax.grad(r1))(w)
    fast = jax.jit(jax.grad(r1), compiler_options=quick)(w)
    np.testing.assert_allclose(np.asarray(fast), np.asarray(plain), rtol=1e-5, atol=1e-6)
    with pytest.raises(Exception, match="no_such_option"):
        jax.jit(jax.grad(r1), compiler_options={"xla_no_such_option": 1})(w)

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


def _convs(jaxpr, acc):
    """Every ``conv_general_dilated`` in ``jaxpr`` and its sub-jaxprs: (kernel shape, lhs dilation)."""
    for e in jaxpr.eqns:
        if e.primitive.name == "conv_general_dilated":
            acc.append((tuple(e.invars[1].aval.shape), tuple(e.params["lhs_dilation"])))
        for v in e.params.values():
            for sub in v if isinstance(v, (list, tuple)) else [v]:
                inner = getattr(sub, "jaxpr", sub)
                inner = getattr(inner, "jaxpr", inner)
                if hasattr(inner, "eqns"):
                    _convs(inner, acc)
    return acc


TWO_LAYERS = [  # (H, W, k, stride, padding) of the first layer; the second is 3x3, stride 1, SAME
    (12, 12, 3, 2, 1), (13, 10, 3, 2, 0), (9, 11, 3, 1, 1), (10, 10, 3, 1, 0), (12, 9, 4, 2, ((2, 1), (0, 2))),
    (8, 8, 1, 1, 0),
]


def _two_layer_d(impl, k, s, p):
    """A small discriminator: conv(k, s, p) -> lrelu -> conv 3x3 -> a nonlinear head (so the input
    gradient depends on the activations and the R1 term reaches the forward convolutions with
    tangents in both their input and their weights)."""
    def d(x, w1, w2):
        h = C.conv2d(x, w1, p, s, impl=impl)
        h = jax.nn.leaky_relu(h, 0.2) + 0.1 * jnp.square(h)
        h = C.conv2d(h, w2, 1, 1, impl=impl)
        return jnp.sum(jnp.tanh(h) * jnp.linspace(-1, 1, h.shape[-1]), axis=(1, 2, 3))
    return d


@pytest.mark.parametrize("h,w,k,s,p", TWO_LAYERS)
def test_r1_through_two_layers_matches_xla(h, w, k, s, p):
    """d/d(w1, w2) of mean ||dD/dx||^2 (the R1 penalty, exactly as the D step takes it), a
    vector-Jacobian product of the input gradient with an arbitrary cotangent, and d/dx of the
    squared weight gradient."""
    x, w1, w2 = rand((2, h, w, 3)), rand((k, k, 3, 5), 1) * 0.4, rand((3, 3, 5, 4), 2) * 0.3
    v = rand(x.shape, 3)

    def fn(impl):
        d = _two_layer_d(impl, k, s, p)

        def r1(a, b):
            g = jax.grad(lambda z: jnp.sum(d(z, a, b)))(x)
            return jnp.mean(jnp.sum(g * g, axis=(1, 2, 3)))
        val, grads = jax.value_and_grad(r1, (0, 1))(w1, w2)
        gx = lambda a, b: jax.grad(lambda z: jnp.sum(d(z, a, b)))(x)
        vjp = jax.grad(lambda a, b: jnp.sum(gx(a, b) * v), (0, 1))(w1, w2)
        hx = jax.grad(lambda z: sum(jnp.sum(jnp.square(g)) for g in
                                    jax.grad(lambda a, b: jnp.sum(d(z, a, b)), (0, 1))(w1, w2)))(x)
        return val, grads, vjp, hx

    close(*both(fn))


@pytest.mark.parametrize("s,p", [(1, 1), (1, 0), (2, 0), (2, 1)])
def test_the_r1_double_gradient_has_no_xla_weight_gradient_convolution(s, p):
    """The second-order program of 'taps' holds only convolutions with (sub-)kernels of the layer
    (no window the size of a feature map: XLA's weight gradient) and no lhs dilation."""
    x, w1, w2 = rand((2, 12, 12, 3)), rand((3, 3, 3, 5), 1), rand((3, 3, 5, 4), 2)
    d = _two_layer_d("taps", 3, s, p)
    r1 = lambda a, b: jnp.sum(jnp.square(jax.grad(lambda z: jnp.sum(d(z, a, b)))(x)))
    found = _convs(jax.make_jaxpr(jax.grad(r1, (0, 1)))(w1, w2).jaxpr, [])
    assert found
    for kernel, dil in found:
        assert max(kernel[:2]) <= 3 and dil == (1, 1), (kernel, dil)


def test_second_order_runs_in_bfloat16():
    x, wt = rand((2, 10, 10, 3)).astype(jnp.bfloat16), rand((3, 3, 3, 4), 1) * 0.3

    def fn(impl):
        loss = lambda a, b: jnp.sum(jnp.tanh(C.conv2d(C.conv2d(a, b, 1, 2, impl=impl), b[:, :, :1, :].repeat(4, 2),
                                                      1, 1, impl=impl)).astype(jnp.float32))
        return jax.grad(lambda b: jnp.sum(jnp.square(jax.grad(loss)(x, b).astype(jnp.float32))))(wt)

    a, b = both(fn)
    assert a.dtype == b.dtype == jnp.float32
    close(a, b, tol=5e-2)


@pytest.mark.parametrize("h,w,k,p", [(9, 11, 3, ((1, 1), (1, 1))), (8, 8, 3, ((0, 0), (0, 0))),
                                     (10, 7, 4, ((2, 1), (0, 2))), (6, 6, 1, ((0, 0), (0, 0)))])
def test_the_stride1_rule_tangent_is_the_convolution_tangent(h, w, k, p):
    """The custom JVP of the stride-1 convolution inside the 'taps' forward rule, run forward
    (gradients only ever run its transpose): equal to lax's, in the input and the weights."""
    x, wt, dx, dw = rand((2, h, w, 3)), rand((k, k, 3, 4), 1), rand((2, h, w, 3), 2), rand((k, k, 3, 4), 3)
    ref = lambda a, b: jax.lax.conv_general_dilated(a, b, (1, 1), p, dimension_numbers=C._DN)
    for tangents in ((dx, dw), (dx, jnp.zeros_like(dw)), (jnp.zeros_like(dx), dw)):
        close(jax.jit(lambda t: jax.jvp(ref, (x, wt), t))(tangents),
              jax.jit(lambda t: jax.jvp(lambda a, b: C._conv1(a, b, p), (x, wt), t))(tangents))
    close(jax.jvp(lambda b: ref(x, b), (wt,), (dw,)), jax.jvp(lambda b: C._conv1(x, b, p), (wt,), (dw,)))
