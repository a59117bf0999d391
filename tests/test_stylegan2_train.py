"""One MS-PIE iteration (D step + R1, G step + path length, Adam, EMA) against the reference's
``mspie_train_step_config-f_tiny.npz`` at chosen scales 0 and 2, with the README_train
tolerances."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pegan.api as pg
from helpers import close_scaled, nhwc
from pegan.configs import stylegan2_config
from pegan.convert import mmgen
from pegan.train import stylegan2 as tr

NAME = "mspie-stylegan2-config-f_c2_8xb3-1100kiters_ffhq-256-512"





def g_phase_float64(st, d_params, rnd, G, D, tcfg, c):
    """The G phase (adversarial + path length gradients) computed in float64."""
    jax.config.update("jax_enable_x64", True)
    try:
        f64 = lambda t: jax.tree.map(lambda a: jnp.asarray(np.asarray(a), jnp.float64)
                                     if np.asarray(a).dtype.kind == "f" else jnp.asarray(a), t)
        st64 = st.replace(g_params=f64(st.g_params), g_buffers=f64(st.g_buffers), pl_mean=f64(st.pl_mean))
        fn = jax.jit(lambda st, dp, rnd: tr.g_phase(st, dp, rnd, G=G, D=D, tcfg=tcfg, scale=c)[0])
        return jax.tree.map(np.asarray, fn(st64, f64(d_params), f64(rnd)))
    finally:
        jax.config.update("jax_enable_x64", False)


def leaf(tree, path):
    for p in path:
        tree = tree[p]
    return np.asarray(tree)


def build_setup(fixtures, compute=None):
    """The fixture's models and state; ``compute`` overrides the compute section (the forms)."""
    d = np.load(fixtures / "mspie_train_step_config-f_tiny.npz")
    path = fixtures / "mspie_stylegan2_config-f_tiny.mmgen.pth"
    kw = dict(experiment=NAME, variant="tiny", keep_bgr=True, compute=compute)
    G, D, E = pg.load(path, which="orig", **kw), pg.load(path, which="discriminator", **kw), pg.load(path, **kw)
    cfg = stylegan2_config(NAME, "tiny")
    st = tr.init_state(G.model, D.model, cfg.train, jax.random.PRNGKey(0), g_vars=G.variables, d_vars=D.variables)
    st = st.replace(ema_params=E.variables["params"], pl_mean=jnp.float32(d["mean_path_length_init"]))

    def ref(prefix, rules):
        raw = {k[len(prefix):]: d[k] for k in d.files if k.startswith(prefix)}
        flat, unexpected = mmgen._apply_rules(raw, rules, "reference")
        assert not unexpected
        return flat
    return d, G, D, cfg, st, ref


@pytest.fixture(scope="module")
def setup(fixtures):
    return build_setup(fixtures)


@pytest.mark.parametrize("c", [0, 2])
def test_one_iteration_matches_the_reference(setup, c):
    check_iteration(setup, c)


def check_iteration(setup, c):
    """One iteration at chosen scale ``c`` against the fixture (the lazy terms behind lax.cond)."""
    d, G, D, cfg, st, ref = setup
    s = f"s{c}."
    size = 32 + 8 * c
    real = tr.resize_reals(jnp.asarray(nhwc(d["real_src"])), (size, size))
    close_scaled(real, nhwc(d[f"out.{s}real_imgs"]), "resized reals")
    noise = {k: [nhwc(d[f"{s}noise_{k}.{i}"]) for i in range(7)] for k in ("d", "g", "pl")}
    rnd = tr.Randomness((d[s + "z_d.0"], d[s + "z_d.1"]), 3, noise["d"], (d[s + "z_g.0"], d[s + "z_g.1"]), 5,
                        noise["g"], (d[s + "z_pl.0"], d[s + "z_pl.1"]), 2, noise["pl"], nhwc(d[s + "pl_randn"]))
    step = jax.jit(lambda st, real, rnd: tr.train_step(st, real, rnd, G=G.model, D=D.model, tcfg=cfg.train, scale=c))
    new, m, aux = step(st, real, rnd)
    assert int(new.step) == 1
    pairs = [("loss_disc_fake", "d.loss_disc_fake"), ("loss_disc_real", "d.loss_disc_real"),
             ("r1_penalty", "d.r1_penalty_unweighted"), ("d_loss", "d.loss_total"),
             ("loss_disc_fake_g", "g.loss_disc_fake_g"), ("pl_penalty", "g.pl_penalty_unweighted"),
             ("g_loss", "g.loss_total")]
    for k, r in pairs:
        close_scaled(m[k], d[f"out.{s}{r}"], k)
    np.testing.assert_allclose(m["path_lengths"], d[f"out.{s}g.path_lengths"], rtol=1e-5)
    np.testing.assert_allclose(m["pl_mean"], d[f"out.{s}g.mean_path_length_new"], rtol=1e-5)
    close_scaled(aux["d_terms"]["disc_pred_fake"], d[f"out.{s}d.disc_pred_fake"], "D(fake)")
    close_scaled(aux["g_terms"]["fake_imgs"], nhwc(d[f"out.{s}g.fake_imgs"]), "G-step fake")

    # G gradients: the reference's float32 values sit within 2e-6 (relative to each tensor's
    # largest) of a float64 computation, but at chosen scale 0 one leaky-ReLU input of the last
    # 32x32 conv is 1.0e-7 away from the kink, a float32 tie: a float32 port may land on the
    # other side (this CPU does) and move convs_1.bias's gradient by 4.7e-5. So the G gradients
    # are compared from the same G phase run in float64 against the reference's updated D.
    d_new = mmgen.unflatten(ref(f"out.{s}d.after_adam.", mmgen.DISCRIMINATOR_RULES))["params"]
    g_grads = g_phase_float64(st, d_new, rnd, G.model, D.model, cfg.train, c)
    for kind, grads, params, rules in (("d", aux["d_grads"], new.d_params, mmgen.DISCRIMINATOR_RULES),
                                       ("g", g_grads, new.g_params, mmgen.GENERATOR_RULES)):
        ref_grads = ref(f"out.{s}{kind}.grad.", rules)
        assert len(ref_grads) == (23 if kind == "d" else 67)
        lr = cfg.train.d_lr if kind == "d" else cfg.train.g_lr
        for path, r in ref_grads.items():
            close_scaled(leaf(grads, path[1:]), r, f"{kind} grad {'/'.join(path)}")
        # Adam: compare where the gradient is not tiny (the first step is ~ lr * sign(g))
        for path, r in ref(f"out.{s}{kind}.after_adam.", rules).items():
            g_ref = ref_grads[path]
            big = np.abs(g_ref) > 1e-4 * np.abs(g_ref).max()
            mine = leaf(params, path[1:])
            # README_train: atol 1e-6 where |g| is not tiny. Raw weights reach |p| ~ 200, where one
            # float32 ulp (1.5e-5) exceeds 1e-6: p - lr * sign(g) may round to the neighbouring
            # float, so one ulp of the parameter is allowed on top.
            ulp = np.spacing(np.abs(r).astype(np.float32))
            assert np.all(np.abs(mine - r)[big] <= 1e-6 + ulp[big]), f"{kind} adam {path}"
            assert np.all(np.abs(mine - r)[~big] <= 2 * lr + 1e-7)
    # EMA: ema_after = G_new + (ema_before - G_new) * m
    m_ema = cfg.train.ema_momentum
    for path, r in ref(f"out.{s}g.ema_after.", mmgen.GENERATOR_RULES).items():
        before = ref(f"out.{s}g.ema_before.", mmgen.GENERATOR_RULES)[path]
        g_new = leaf(new.g_params, path[1:])
        ulp = np.spacing(np.abs(r).astype(np.float32))        # as for Adam above
        mine = leaf(new.ema_params, path[1:])
        assert np.all(np.abs(mine - (g_new + (before - g_new) * m_ema)) <= 1e-6 + ulp), f"ema rule {path}"
        assert np.all(np.abs(mine - r) <= 1e-6 + ulp + 2 * cfg.train.g_lr * (1 - m_ema)), f"ema {path}"


def test_lazy_regularisers_follow_the_step_counter(setup):
    """R1 at steps 0, 16, ...; path length at 0, 4, ...: both off at step 1, and no recompilation."""
    d, G, D, cfg, st, _ = setup
    key = jax.random.PRNGKey(3)
    rnd = tr.draw_randomness(key, G.model, 0, 4, 2, 0.9)
    real = jnp.asarray(nhwc(d["out.s0.real_imgs"]))
    fn = jax.jit(lambda st, real, rnd: tr.train_step(st, real, rnd, G=G.model, D=D.model, tcfg=cfg.train, scale=0)[:2])
    s1, m0 = fn(st, real, rnd)
    s2, m1 = fn(s1, real, rnd)
    assert float(m0["r1_penalty"]) > 0 and float(m0["pl_penalty"]) > 0
    assert float(m1["r1_penalty"]) == 0 and float(m1["pl_penalty"]) == 0
    assert float(m1["pl_mean"]) == float(m0["pl_mean"])       # unchanged without the PL pass
    assert fn._cache_size() == 1
    # the same iteration with the lazy terms fixed when tracing (compute.lazy_branches='static')
    static = jax.jit(lambda st, real, rnd: tr.train_step(st, real, rnd, G=G.model, D=D.model, tcfg=cfg.train,
                                                          scale=0, lazy=tr.lazy_kind(cfg.train, 0))[:2])
    t1, n0 = static(st, real, rnd)
    for k in ("d_loss", "g_loss", "r1_penalty", "pl_penalty", "pl_mean"):
        np.testing.assert_allclose(float(n0[k]), float(m0[k]), rtol=1e-5, err_msg=k)
    lr = max(cfg.train.d_lr, cfg.train.g_lr)   # Adam with beta1 = 0 moves a weight by ~lr * sign(g): a
    for x, y in zip(jax.tree.leaves((t1.d_params, t1.g_params)), jax.tree.leaves((s1.d_params, s1.g_params))):
        err = np.abs(np.asarray(x) - np.asarray(y))            # tiny gradient may flip sign
        assert err.max() <= 2 * lr + 1e-6 and np.mean(err > 1e-5) < 0.01


def test_separate_regularisation_and_path_length_at_the_current_scale(setup):
    """``train.regularisation='separate'`` (NVIDIA): the main D / G Adam steps, then a second Adam
    step on 80 x R1 alone (at the D the main step produced) and on 8 x path length alone (at that
    G), composed here from an R1 written out in the test and the loss pieces; with
    ``pl_at_current_scale`` the path length runs on images of the step's scale."""
    import ml_collections
    import optax

    d, G, D, cfg, st, _ = setup
    tcfg = ml_collections.ConfigDict(cfg.train.to_dict())
    tcfg.regularisation, tcfg.pl_at_current_scale = "separate", True
    scale, b = 2, 4
    rnd = tr.step_randomness(jax.random.PRNGKey(5), G.model, tcfg, scale, b)
    assert rnd.pl_randn.shape == (2, 48, 48, 3) and rnd.noise_pl[-1].shape[1:3] == (48, 48)
    real = jax.random.uniform(jax.random.PRNGKey(6), (b, 48, 48, 3), minval=-1, maxval=1)
    kw = dict(G=G.model, D=D.model, tcfg=tcfg, scale=scale)
    new, metrics, _ = jax.jit(lambda st, r, rnd: tr.train_step(st, r, rnd, **kw))(st, real, rnd)

    opt_g, opt_d = tr.make_optimizers(tcfg)

    def adam(opt, grads, o, p):
        u, o = opt.update(grads, o, p)
        return optax.apply_updates(p, u), o

    def r1(p):                      # written out: mean over the batch of sum (dD/dx)^2
        g = jax.grad(lambda x: jnp.sum(D.model.apply({"params": p}, x)))(real)
        return tcfg.r1_weight * jnp.mean(jnp.sum(g * g, axis=(1, 2, 3)))

    d_main = jax.jit(lambda st, r, rnd: tr.d_phase(st, r, rnd, do_r1=False, **kw)[0])(st, real, rnd)
    d1, od = adam(opt_d, d_main, st.opt_d, st.d_params)
    d2, od = adam(opt_d, jax.jit(jax.grad(r1))(d1), od, d1)
    g_main = jax.jit(lambda st, dp, rnd: tr.g_phase(st, dp, rnd, do_pl=False, **kw)[0])(st, d2, rnd)
    g1, og = adam(opt_g, g_main, st.opt_g, st.g_params)
    g_pl, terms = jax.jit(lambda st, dp, rnd, p: tr.g_phase(st, dp, rnd, do_pl=True, adversarial=False,
                                                            g_params=p, **kw))(st, d2, rnd, g1)
    g2, og = adam(opt_g, g_pl, og, g1)
    for mine, ref in ((new.d_params, d2), (new.g_params, g2)):
        for x, y in zip(jax.tree.leaves(mine), jax.tree.leaves(ref)):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6)
    assert int(new.opt_d[0].count) == 2 and int(new.opt_g[0].count) == 2      # two Adam steps each
    np.testing.assert_allclose(float(metrics["r1_penalty"]) * tcfg.r1_weight, float(r1(d1)), rtol=1e-5)
    np.testing.assert_allclose(float(metrics["pl_penalty"]), float(terms["pl_penalty"]), rtol=1e-5)
    assert float(metrics["pl_penalty"]) > 0
