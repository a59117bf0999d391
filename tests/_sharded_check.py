"""Run with 8 fake CPU devices (XLA_FLAGS=--xla_force_host_platform_device_count=8): a sharded
MS-PIE step against a 1-device emulation. Prints OK lines; exits non-zero on a mismatch.
Arguments: compute fields (conv_impl=xla), 'accumulate' (gradient accumulation too), 'augment'
(ADA's augmentation on every image D sees, each device with its own draws), 'no-global' (without
the global-statistics step)."""

import sys

import jax
import numpy as np

from pegan.configs import stylegan2_config
from pegan.models.stylegan2 import build_discriminator, build_generator
from pegan.train import sharded
from pegan.train import stylegan2 as tr

assert jax.device_count() == 8, jax.devices()
cfg = stylegan2_config("mspie-stylegan2-config-f_c2_8xb3-1100kiters_ffhq-256-512", "tiny")
accumulate = "accumulate" in sys.argv[1:]    # also check gradient accumulation
augmented = "augment" in sys.argv[1:]        # every image D sees augmented (ADA's pipeline at p = 0.5)
check_global = "no-global" not in sys.argv[1:]   # the global-statistics step too (one run of the test has it)
for item in sys.argv[1:]:              # e.g. conv_impl=xla: the forms accelerators get
    if item not in ("accumulate", "augment", "no-global"):
        k, v = item.split("=")
        cfg.compute[k] = v
if augmented:
    cfg.train.update(augment="fixed:0.5", ada_interval=1)
tcfg = cfg.train
G, D = build_generator(cfg), build_discriminator(cfg)
state0 = tr.init_state(G, D, tcfg, jax.random.PRNGKey(0))
n, b, scale = 8, 2, 2
size = (48, 48)
real = jax.random.uniform(jax.random.PRNGKey(1), (n * b, 64, 64, 3), minval=-1, maxval=1)
mesh = sharded.make_mesh()


def close(a, bb, grads, lr, what):
    a, bb, g = np.asarray(a), np.asarray(bb), np.asarray(grads)
    big = np.abs(g) > 1e-4 * (np.abs(g).max() + 1e-30)
    err = np.abs(a - bb)
    if not (np.all(err[big] <= 2e-6 + 1e-5 * np.abs(bb[big])) and np.all(err[~big] <= 2 * lr + 1e-6)):
        print("MISMATCH", what, float(err[big].max(initial=0)))
        sys.exit(1)


def compare(new, ref_state, d_grads, g_grads, what):
    for x, y, g in zip(jax.tree.leaves(new.d_params), jax.tree.leaves(ref_state["d"]), jax.tree.leaves(d_grads)):
        close(x, y, g, tcfg.d_lr, what + " D")
    for x, y, g in zip(jax.tree.leaves(new.g_params), jax.tree.leaves(ref_state["g"]), jax.tree.leaves(g_grads)):
        close(x, y, g, tcfg.g_lr, what + " G")
    for x, y, g in zip(jax.tree.leaves(new.ema_params), jax.tree.leaves(ref_state["ema"]), jax.tree.leaves(g_grads)):
        close(x, y, g, tcfg.g_lr * (1 - tcfg.ema_momentum), what + " EMA")


# -- per-device statistics: emulate shard by shard on one device ----------------------------
step = sharded.make_sharded_step(mesh, G, D, tcfg, scale, b, "per_device")
new, metrics = step(sharded.replicate_state(state0, mesh), real)
opt_g, opt_d = tr.make_optimizers(tcfg)
kw = dict(G=G, D=D, tcfg=tcfg, scale=scale)
d_phase = jax.jit(lambda st, r, rnd: tr.d_phase(st, r, rnd, **kw))
g_phase = jax.jit(lambda st, dp, rnd: tr.g_phase(st, dp, rnd, **kw))
rnds = [tr.draw_randomness(jax.random.fold_in(jax.random.fold_in(state0.key, state0.step), i), G, scale, b,
                           max(1, b // tcfg.pl_batch_shrink), tcfg.mix_prob) for i in range(n)]
reals = [tr.resize_reals(real[i * b:(i + 1) * b], size) for i in range(n)]
d_out = [d_phase(state0, reals[i], rnds[i]) for i in range(n)]
dg = [o[0] for o in d_out]
d_grads = jax.tree.map(lambda *g: sum(g) / n, *dg)
upd, _ = opt_d.update(d_grads, state0.opt_d, state0.d_params)
d_params = jax.tree.map(lambda p, u: p + u, state0.d_params, upd)
outs = [g_phase(state0, d_params, rnds[i]) for i in range(n)]
g_grads = jax.tree.map(lambda *g: sum(g) / n, *[o[0] for o in outs])
upd, _ = opt_g.update(g_grads, state0.opt_g, state0.g_params)
g_params = jax.tree.map(lambda p, u: p + u, state0.g_params, upd)
ema = tr.ema_update(state0.ema_params, g_params, tcfg.ema_momentum)
compare(new, {"d": d_params, "g": g_params, "ema": ema}, d_grads, g_grads, "per-device")
pl = np.asarray([o[1]["pl_mean"] for o in outs])
np.testing.assert_allclose(np.asarray(new.pl_mean), pl, rtol=1e-5)
assert len(set(np.round(pl, 7))) > 1, "per-device path-length means should differ"
assert new.pl_mean.sharding.spec == jax.sharding.PartitionSpec("data")
if augmented:      # each device its own draws (the emulation's keys), r_t over all devices' reals
    signs = np.concatenate([np.sign(np.asarray(o[1]["disc_pred_real"])).ravel() for o in d_out])
    for rt in [float(metrics["ada_rt"])] + [float(np.asarray(x.data)) for x in new.ada["rt"].addressable_shards]:
        assert abs(rt - signs.mean()) < 1e-6, (rt, signs.mean())     # the state's on every device too
    assert float(metrics["ada_p"]) == np.float32(0.5)
    print("OK augmented per-device r_t", float(metrics["ada_rt"]))
print("OK per-device", float(metrics["d_loss"]), float(metrics["g_loss"]))

# -- the step as its two halves, each with its lazy term fixed (the CPU loop's programs) ------
d_prog = sharded.make_sharded_step(mesh, G, D, tcfg, scale, b, "per_device", lazy=(True, False), phase="d")
g_prog = sharded.make_sharded_step(mesh, G, D, tcfg, scale, b, "per_device", lazy=(False, True), phase="g")
mid, dm, sign = d_prog(sharded.replicate_state(state0, mesh), real)
halves, gm = g_prog(mid, sign)
compare(halves, {"d": new.d_params, "g": new.g_params, "ema": new.ema_params}, d_grads, g_grads, "halves")
np.testing.assert_allclose(np.asarray(halves.pl_mean), np.asarray(new.pl_mean), rtol=1e-5)
assert int(halves.step) == int(new.step) == 1
both = dict(dm, **gm)
assert set(both) == set(metrics), (set(both), set(metrics))
for name in metrics:
    np.testing.assert_allclose(float(both[name]), float(metrics[name]), rtol=1e-5, atol=1e-6, err_msg=name)
if augmented:
    assert abs(float(sign) - float(metrics["ada_rt"])) < 1e-6 and float(halves.ada["rt"]) == float(metrics["ada_rt"])
print("OK halves", float(both["d_loss"]), float(both["g_loss"]))

# -- global statistics: equals the plain 1-device step of the whole batch ---------------------
if check_global:
    step = sharded.make_sharded_step(mesh, G, D, tcfg, scale, b, "global")
    new, metrics = step(sharded.replicate_state(state0, mesh, "global"), real)
    rnd = tr.draw_randomness(jax.random.fold_in(state0.key, state0.step), G, scale, n * b,
                             max(1, n * b // tcfg.pl_batch_shrink), tcfg.mix_prob)
    ref, _, aux = jax.jit(lambda st, r, rnd: tr.train_step(st, tr.resize_reals(r, size), rnd, **kw))(state0, real, rnd)
    compare(new, {"d": ref.d_params, "g": ref.g_params, "ema": ref.ema_params}, aux["d_grads"], aux["g_grads"],
            "global")
    print("OK global", float(metrics["d_loss"]))

# -- gradient accumulation: 4 devices x 2 passes of 2 == 8 devices x 1 pass of 2 (R1 and PL due) ----
if accumulate:
    half = sharded.make_mesh(jax.devices()[:4])
    accum = sharded.make_sharded_step(half, G, D, tcfg, scale, 2 * b, "per_device", passes=2)
    start = sharded.replicate_state(state0, half, slots=2)
    assert start.pl_mean.shape == (8,)
    new, metrics = accum(start, real)
    assert new.pl_mean.shape == (8,) and new.pl_mean.sharding.spec == jax.sharding.PartitionSpec("data")
    compare(new, {"d": d_params, "g": g_params, "ema": ema}, d_grads, g_grads, "accumulation")
    np.testing.assert_allclose(np.asarray(new.pl_mean), pl, rtol=1e-5)
    print("OK accumulation", float(metrics["d_loss"]), float(metrics["g_loss"]))
