"""The dense form of the resizes and of interp padding (pegan.ops.resize, impl='dense', the
default) against the gather form (the reference form) and float64 NumPy, values, gradients and
gradients of gradients; and no gather or scatter left in the training programs (issue 15)."""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).parent))

import collections
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend import core as jcore

import np_reference as R
from pegan import compute, ops

rs = importlib.import_module("pegan.ops.resize")   # (the name pegan.ops.resize is also the function)

# the float64 NumPy comparisons on the sizes of tests/test_ops.py (float32 source coordinates
# drift from float64 ones as sizes grow, in PyTorch as here)
RTOL, ATOL = 1e-5, 1e-5


def form_tol(ref):
    """float32 rounding between the forms and against float64 of the same taps: 1e-6 of the
    largest value (about 8 float32 ulps of it; a second-order term sums many products)."""
    return dict(rtol=0, atol=1e-6 * float(np.abs(ref).max()))

KINDS = [("bilinear", True), ("bilinear", False), ("bicubic", True), ("bicubic", False), ("nearest", False)]
SMALL = [((4, 4), (8, 8)), ((6, 7), (16, 9)), ((30, 40), (19, 25)), ((5, 1), (1, 3)), ((9, 9), (9, 9)),
         ((13, 11), (4, 3))]
# more than DENSE_BLOCK outputs (several blocks of the banded matmul, a partial last one), x2 + 4
# (config-h's up-blocks), exact x2 / /2 (nearest's broadcast and strided slice), downsampling
LARGE = [((37, 50), (78, 104)), ((70, 64), (33, 129)), ((32, 20), (64, 44)), ((64, 70), (32, 35))]


def rand(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def close(a, b, rtol=RTOL, atol=ATOL, msg=""):
    np.testing.assert_allclose(np.asarray(a, np.float64), b, rtol=rtol, atol=atol, err_msg=msg)


def taps_matrix(kind, n_in, n_out, ac):
    """float64 [n_out, n_in] from the gather form's own float32 taps (bilinear_taps /
    bicubic_taps / nearest_index), added in float64: the exact operator both forms apply."""
    if kind == "nearest":
        idx, w = (rs.nearest_index(n_in, n_out),), (np.ones(n_out),)
    else:
        idx, w = (rs.bilinear_taps if kind == "bilinear" else rs.bicubic_taps)(n_in, n_out, ac)
    m = np.zeros((n_out, n_in))
    for i, wk in zip(idx, w):
        np.add.at(m, (np.arange(n_out), np.asarray(i)), np.asarray(wk, np.float64))
    return m


def skip_same(kind, ac, n_in, n_out):
    """The axes both forms leave alone (align_corners at the same size: the identity)."""
    return kind != "nearest" and ac and n_in == n_out


def operator(kind, ac, src, dst, exact_taps):
    mats = []
    for n_in, n_out in zip(src, dst):
        if skip_same(kind, ac, n_in, n_out):
            mats.append(np.eye(n_in))
        elif exact_taps:
            mats.append(taps_matrix(kind, n_in, n_out, ac))
        else:
            mats.append(R.interp_matrix(n_in, n_out, kind, ac))
    return mats


def fwd64(mats, x):
    return np.einsum("oh,nhwc,pw->nopc", mats[0], x, mats[1])


def bwd64(mats, g):
    return np.einsum("oh,nopc,pw->nhwc", mats[0], g, mats[1])


def derivatives(fn, x, r):
    """Values, the gradient of sum(sin(f(x)) * r) and the gradient of the squared norm of that
    gradient (a second-order term, as R1 and path length make)."""
    g1 = lambda v: jax.grad(lambda u: jnp.sum(jnp.sin(fn(u)) * r))(v)
    g2 = jax.grad(lambda v: jnp.sum(jnp.square(g1(v))))
    return jax.jit(lambda v: (fn(v), g1(v), g2(v)))(x)


def derivatives64(mats, x, r):
    """The same in float64 NumPy: y = Lx, g1 = L^T(cos y r), g2 = L^T(-sin y r L(2 g1))."""
    y = fwd64(mats, x)
    g1 = bwd64(mats, np.cos(y) * r)
    g2 = bwd64(mats, -np.sin(y) * r * fwd64(mats, 2 * g1))
    return y, g1, g2


def check_all_orders(kind, ac, src, dst, formulas, seed=0):
    """Dense vs gather and vs float64 NumPy of the float32 taps (the operator both forms apply),
    at every order, to float32 rounding; with ``formulas``, values and gradients also vs the
    float64 formulas of tests/np_reference.py at test_ops's tolerance (second order there
    amplifies the float32-coordinate drift PyTorch has too, so it is held to the taps only)."""
    x, r = rand((2,) + src + (3,), seed), rand((2,) + dst + (3,), seed + 1)
    xj, rj = jnp.asarray(x), jnp.asarray(r)
    x64, r64 = x.astype(np.float64), r.astype(np.float64)
    dense = derivatives(lambda v: ops.resize(v, dst, kind, ac, impl="dense"), xj, rj)
    gather = derivatives(lambda v: ops.resize(v, dst, kind, ac, impl="gather"), xj, rj)
    taps = derivatives64(operator(kind, ac, src, dst, True), x64, r64)
    exact = derivatives64(operator(kind, ac, src, dst, False), x64, r64)
    for order, (d, g, t, e) in enumerate(zip(dense, gather, taps, exact)):
        msg = f"{kind} ac={ac} {src}->{dst} order {order}"
        assert d.shape == g.shape == t.shape, msg
        np.testing.assert_allclose(np.asarray(d), np.asarray(g), err_msg=msg + " (dense vs gather)", **form_tol(t))
        close(d, t, msg=msg + " (dense vs float64 of the taps)", **form_tol(t))
        if formulas and order < 2:
            close(d, e, msg=msg + " (dense vs float64 formulas)")


@pytest.mark.parametrize("kind,ac", KINDS)
@pytest.mark.parametrize("src,dst", SMALL)
def test_dense_equals_gather_and_float64_formulas(kind, ac, src, dst):
    check_all_orders(kind, ac, src, dst, formulas=True)


@pytest.mark.parametrize("kind,ac", KINDS)
@pytest.mark.parametrize("src,dst", LARGE)
def test_dense_equals_gather_and_float64_taps_on_many_blocks(kind, ac, src, dst):
    check_all_orders(kind, ac, src, dst, formulas=False)


@pytest.mark.parametrize("block", [1, 3, 5, 7, 32])
def test_every_block_size_gives_the_same_operator(block):
    x = jnp.asarray(rand((2, 23, 3, 2)))
    for kind, ac in KINDS:
        for n_out in (1, 5, 23, 30, 52):
            got = rs._dense_axis(x, 1, kind, n_out, ac, block=block)
            want = np.einsum("oh,nhwc->nowc", taps_matrix(kind, 23, n_out, ac), np.asarray(x, np.float64))
            close(got, want, msg=f"{kind} {ac} 23->{n_out} block {block}", **form_tol(want))


def test_interp_matrix_adds_the_weights_of_clamped_taps():
    m = rs.interp_matrix("bicubic", 5, 11, True)
    assert m.dtype == np.float32 and m.shape == (11, 5)
    np.testing.assert_allclose(m.sum(axis=1), 1.0, rtol=1e-6)
    close(m, R.interp_matrix(5, 11, "bicubic", True), atol=1e-6)
    assert rs._plan("nearest", 8, 16, False, 32)[0] == "repeat"
    assert rs._plan("nearest", 16, 8, False, 32)[0] == "slice"
    assert rs._plan("bicubic", 9, 9, False, 32)[0] == "identity"


@pytest.mark.parametrize("pad,method", [(5, "bicubic"), (2, "bilinear"), ((1, 2, 3, 0), "bilinear"),
                                        ((4, 1), "bicubic"), (0, "bilinear")])
def test_interp_padding_dense_equals_gather_and_float64(pad, method):
    x, src = rand((2, 9, 7, 3)), (9, 7)
    t, b, l, r_ = ops.padding.as_pad4(pad)
    dst = (9 + t + b, 7 + l + r_)
    r = rand((2,) + dst + (3,), 1)
    xj, rj = jnp.asarray(x), jnp.asarray(r)
    dense = derivatives(lambda v: ops.pad2d(v, pad, "interp", method), xj, rj)
    dense2 = derivatives(lambda v: ops.interp_pad(v, pad, method, impl="dense"), xj, rj)
    gather = derivatives(lambda v: ops.pad2d(v, pad, "interp", method, resize_impl="gather"), xj, rj)
    ref = derivatives64(operator(method, True, src, dst, False), x.astype(np.float64), r.astype(np.float64))
    for order, (d, d2, g, e) in enumerate(zip(dense, dense2, gather, ref)):
        np.testing.assert_array_equal(np.asarray(d), np.asarray(d2))
        np.testing.assert_allclose(np.asarray(d), np.asarray(g), err_msg=f"order {order}", **form_tol(e))
        close(d, e, msg=f"{pad} {method} order {order}")


@pytest.mark.parametrize("up,interp_pad", [("after", None), ("before", None), ("before", 4)])
def test_modulated_conv_resize_forms_agree(up, interp_pad):
    x, w, s = jnp.asarray(rand((2, 5, 6, 4))), jnp.asarray(rand((3, 3, 4, 3), 1)), jnp.asarray(rand((2, 4), 2) + 2)
    f = {impl: (lambda v, impl=impl: jnp.sum(jnp.sin(ops.modulated_conv2d(v, w, s, padding=0, up=up,
                                                                          interp_pad=interp_pad,
                                                                          resize_impl=impl))))
         for impl in ("dense", "gather")}
    want, grad = f["gather"](x), jax.grad(f["gather"])(x)
    np.testing.assert_allclose(f["dense"](x), want, **form_tol(want))
    np.testing.assert_allclose(jax.grad(f["dense"])(x), grad, **form_tol(grad))


def test_the_resize_form_is_a_compute_field_carried_by_the_models():
    from pegan.configs import singan_config, stylegan2_config
    from pegan.models import singan as sm
    from pegan.models.stylegan2 import build_discriminator, build_generator

    assert compute.resolve({}, "cpu")["resize_impl"] == compute.resolve({}, "gpu")["resize_impl"] == "dense"
    assert ops.Forms().resize == "dense"
    cfg = stylegan2_config("mspie-stylegan2-config-h_c2_8xb3-1100kiters_ffhq-256-512", "tiny")
    assert build_generator(cfg).forms.resize == "dense"
    cfg.compute.resize_impl = "gather"
    assert build_generator(cfg).forms.resize == build_discriminator(cfg).forms.resize == "gather"
    for impl in ("gather", "dense"):       # and the form reaches every resize of the generator
        G = build_generator(cfg, ops.Forms(resize=impl))
        v = jax.eval_shape(lambda: G.init(jax.random.PRNGKey(0), jnp.zeros((1, G.style_channels)), noise="const"))
        j = jax.make_jaxpr(lambda v: G.apply(v, jnp.ones((1, G.style_channels)), 2, rng=jax.random.PRNGKey(1)))(v)
        files = {fr[0].split(":")[0] for _, fr in gathers_and_scatters(j)}
        assert files == ({"ops/resize.py"} if impl == "gather" else set()), (impl, files)
    s = singan_config("singan_interp-pad_balloons", "tiny")
    s.compute.resize_impl = "gather"
    assert sm.build_generator(s).forms.resize == "gather"
    with pytest.raises(ValueError, match="unknown resize impl"):
        ops.resize(jnp.zeros((1, 2, 2, 1)), 3, impl="scatter")
    with pytest.raises(ValueError, match="unknown resize impl"):
        ops.Forms(resize="fast")
    with pytest.raises(Exception, match="compute.resize_impl"):
        compute.resolve({"compute": {"resize_impl": "fast"}}, "cpu")


# -- no gather or scatter in the programs ----------------------------------------------------------

def gathers_and_scatters(closed):
    """{(primitive, pegan frames): count} of every gather / scatter primitive in a jaxpr and its
    sub-jaxprs (pjit, custom_vjp, cond, scan, ...)."""
    found = collections.Counter()

    def ours(eqn):
        tb = eqn.source_info.traceback
        return tuple(f"{f.file_name.rsplit('/pegan/', 1)[-1]}:{f.line_num}" for f in (tb.frames if tb else ())
                     if "/pegan/" in f.file_name)[:3]

    def walk(jaxpr, outer):
        for eqn in jaxpr.eqns:
            name = eqn.primitive.name
            frames = ours(eqn) or outer     # an eqn of a sub-jaxpr: where its parent was traced
            if "gather" in name or "scatter" in name:
                found[(name, frames)] += 1
            for v in eqn.params.values():
                for sub in (v if isinstance(v, (list, tuple)) else (v,)):
                    if isinstance(sub, jcore.ClosedJaxpr):
                        walk(sub.jaxpr, frames)
                    elif isinstance(sub, jcore.Jaxpr):
                        walk(sub, frames)

    walk(closed.jaxpr, ())
    return dict(found)


def test_the_walker_finds_the_gather_forms_scatter():
    fn = lambda v: jnp.sum(jnp.square(jax.grad(
        lambda u: jnp.sum(jnp.sin(ops.resize(u, (9, 11), "bicubic", impl="gather"))))(v)))
    found = gathers_and_scatters(jax.make_jaxpr(jax.jit(jax.grad(fn)))(jnp.ones((1, 4, 5, 2))))
    names = {n for n, _ in found}
    assert "gather" in names and "scatter-add" in names
    fn = lambda v: jnp.sum(jnp.square(jax.grad(
        lambda u: jnp.sum(jnp.sin(ops.resize(u, (9, 11), "bicubic"))))(v)))
    assert gathers_and_scatters(jax.make_jaxpr(jax.jit(jax.grad(fn)))(jnp.ones((1, 4, 5, 2)))) == {}


@pytest.mark.parametrize("config", ["f", "h"])
def test_no_gather_or_scatter_in_an_mspie_training_step(config):
    """The whole iteration at chosen scale 2: reals resized, D loss + R1 (a double gradient),
    G loss + path length (a double gradient through every up-block's resize), Adam, EMA."""
    from pegan.configs import stylegan2_config
    from pegan.models.stylegan2 import build_discriminator, build_generator, image_size
    from pegan.train import stylegan2 as tr

    cfg = stylegan2_config(f"mspie-stylegan2-config-{config}_c2_8xb3-1100kiters_ffhq-256-512", "tiny")
    G, D = build_generator(cfg), build_discriminator(cfg)
    assert G.forms.resize == "dense"
    st = jax.eval_shape(lambda: tr.init_state(G, D, cfg.train, jax.random.PRNGKey(0)))   # shapes only
    scale = 2
    size = image_size(G.out_size, scale)
    rnd = tr.step_randomness(jax.random.PRNGKey(1), G, cfg.train, scale, 4)
    step = lambda st, real, rnd: tr.train_step(st, tr.resize_reals(real, size), rnd, G=G, D=D, tcfg=cfg.train,
                                               scale=scale, lazy=(True, True))
    assert gathers_and_scatters(jax.make_jaxpr(step)(st, jnp.zeros((4, 50, 50, 3)), rnd)) == {}
    # the generator's own gradient and second-order terms at that scale, on their own
    v = jax.eval_shape(lambda: G.init(jax.random.PRNGKey(2), jnp.zeros((1, G.style_channels)), noise="const"))
    z = jnp.ones((2, G.style_channels))

    def g_sq_grad(p, v):
        img = lambda w: G.apply({**v, "params": p}, w, scale, rng=jax.random.PRNGKey(3), input_is_latent=True)
        return jnp.sum(jnp.square(jax.grad(lambda w: jnp.sum(jnp.sin(img(w))))(z)))

    assert gathers_and_scatters(jax.make_jaxpr(jax.grad(g_sq_grad))(v["params"], v)) == {}


def test_no_gather_or_scatter_in_the_discriminator_r1_double_gradient():
    from pegan.configs import stylegan2_config
    from pegan.models.stylegan2 import build_discriminator
    from pegan.train import stylegan2 as tr

    cfg = stylegan2_config("mspie-stylegan2-config-f_c2_8xb3-1100kiters_ffhq-256-512", "tiny")
    D = build_discriminator(cfg)
    real = jnp.ones((4, 40, 40, 3))
    p = jax.eval_shape(lambda: D.init(jax.random.PRNGKey(0), real))["params"]
    assert gathers_and_scatters(jax.make_jaxpr(jax.grad(lambda p: tr.r1_penalty(p, D, real)))(p)) == {}


def test_no_gather_or_scatter_in_pe_singan_gradients():
    """Interp-pad PE-SinGAN: the generator's gradient over every stage (bicubic resizes between
    stages and as padding) and the noise amplitude's nearest resize."""
    from pegan.configs import singan_config
    from pegan.models import singan as sm
    from pegan.train import singan as st

    cfg = singan_config("singan_interp-pad_balloons", "tiny")
    n, sizes = st.pyramid_sizes(40, 52, 16, 40)
    cfg = st.fit_config_to_pyramid(cfg, n)
    G = sm.build_generator(cfg)
    assert G.forms.resize == "dense" and G.interp_pad
    noises = [jnp.ones((1,) + s) for s in sm.noise_shapes(cfg, sizes)]
    nw = [0.1] * (n + 1)
    v = jax.eval_shape(lambda: G.init(jax.random.PRNGKey(0), noises, nw))

    def loss(p, v):
        out, _ = G.apply({**v, "params": p}, noises, nw, n, train=True, mutable=["batch_stats"])
        return jnp.sum(jnp.square(out)) + st.noise_amplitude(out, jnp.ones((1, 47, 61, 3)))

    assert gathers_and_scatters(jax.make_jaxpr(jax.grad(loss))(v["params"], v)) == {}
