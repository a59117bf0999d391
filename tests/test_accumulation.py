"""Gradient accumulation (``train.batch_gpu``, NVIDIA's ``--batch-gpu``): k passes of b images
per device. The minibatch-stddev groups are formed within each pass, so the step equals one
pass of k*b images only when b is a multiple of the group size and the k*b images are ordered
so that the groups coincide, and differs otherwise. The equality with the 1-pass step on k
times the devices is checked on 8 fake devices in ``_sharded_check.py`` (the reference's joint
regularisation); here the steps run NVIDIA's separate regularisation phases, so both forms of
the accumulated step are checked."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pegan.configs import stylegan2_config
from pegan.errors import InputError
from pegan.models.stylegan2 import build_discriminator, build_generator
from pegan.train import stylegan2 as tr
from pegan.train.stylegan2_loop import check_config, passes_for

NAME = "mspie-stylegan2-config-f_c2_8xb3-1100kiters_ffhq-256-512"
SCALE = 0


@pytest.fixture(scope="module")
def model():
    cfg = stylegan2_config(NAME, "tiny")
    cfg.train.regularisation = "separate"
    # with no running-mean decay the path-length penalty is a mean over samples, so k passes of
    # b equal one pass of k*b for it too (with decay each pass keeps its own mean)
    cfg.train.pl_decay = 0.0
    G, D = build_generator(cfg), build_discriminator(cfg)
    return cfg, G, D, tr.init_state(G, D, cfg.train, jax.random.PRNGKey(0))


def as_passes(x, k: int, group: int):
    """One batch of k*b in the order whose strided minibatch-stddev groups (sample i is in group
    i mod N/g) are the groups of k passes of b: [k*b, ...] -> [k, b, ...] (b smaller than a group:
    consecutive passes, as no order can make the groups coincide)."""
    n = x.shape[0]
    b = n // k
    g = min(group, n)
    if b < g:
        return x.reshape((k, b) + x.shape[1:])
    return x.reshape((g, k, b // g) + x.shape[1:]).swapaxes(0, 1).reshape((k, b) + x.shape[1:])


_STEPS = {}


def step(model, passes, lazy):
    """The jitted step, compiled once per (passes, lazy) for the module's tests."""
    cfg, G, D, _ = model
    if (passes, lazy) not in _STEPS:
        _STEPS[passes, lazy] = jax.jit(lambda st, r, rnd: tr.train_step(
            st, r, rnd, G=G, D=D, tcfg=cfg.train, scale=SCALE, lazy=lazy, passes=passes))
    return _STEPS[passes, lazy]


def pass_inputs(model, k, b, seed=3):
    """A 1-pass batch of k*b (reals and randomness) and the same images and latents as k passes."""
    cfg, G, D, state = model
    group = cfg.discriminator.mbstd_group_size
    real = jax.random.uniform(jax.random.PRNGKey(seed), (k * b, 32, 32, 3), minval=-1, maxval=1)
    one = tr.step_randomness(jax.random.PRNGKey(seed + 1), G, cfg.train, SCALE, k * b)
    many = tr.pass_randomness(jax.random.PRNGKey(seed + 2), G, cfg.train, SCALE, b, k)
    regroup = lambda t: jax.tree.map(lambda x: as_passes(x, k, group), t)
    split = lambda t: jax.tree.map(lambda x: x.reshape((k, -1) + x.shape[1:]), t)   # G has no batch statistics
    same_index = lambda i: jnp.broadcast_to(i, (k,))
    many = many._replace(z_d=regroup(one.z_d), noise_d=regroup(one.noise_d), idx_d=same_index(one.idx_d),
                         z_g=regroup(one.z_g), noise_g=regroup(one.noise_g), idx_g=same_index(one.idx_g),
                         z_pl=split(one.z_pl), noise_pl=split(one.noise_pl), pl_randn=split(one.pl_randn),
                         idx_pl=same_index(one.idx_pl))
    return real, one, as_passes(real, k, group), many, state.replace(pl_mean=jnp.zeros((k,)))


def assert_trees_close(a, b, rtol=2e-5):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        x, y = np.asarray(x), np.asarray(y)
        np.testing.assert_allclose(x, y, rtol=rtol, atol=rtol * (np.abs(y).max() + 1e-30))


def max_relative_difference(a, b):
    return max(float(np.abs(np.asarray(x) - np.asarray(y)).max() / (np.abs(np.asarray(y)).max() + 1e-30))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


LAZY = (True, True)         # R1 and path length due: every phase of the step runs


def test_passes_of_whole_groups_equal_one_pass(model):
    """2 passes of 4 (one minibatch-stddev group each) = 1 pass of 8, with the R1 and
    path-length phases: the same gradients, losses, parameters and EMA."""
    cfg, G, D, state = model
    real, one, real_k, many, state_k = pass_inputs(model, 2, 4)
    new1, m1, aux1 = step(model, 1, LAZY)(state, real, one)
    new2, m2, aux2 = step(model, 2, LAZY)(state_k, real_k, many)
    assert_trees_close(aux2["d_grads"], aux1["d_grads"])
    assert_trees_close(aux2["g_grads"], aux1["g_grads"])
    for name in ("d_loss", "g_loss", "r1_penalty", "pl_penalty", "loss_disc_real", "loss_disc_fake"):
        np.testing.assert_allclose(float(m2[name]), float(m1[name]), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(m2["path_lengths"]), np.asarray(m1["path_lengths"]), rtol=1e-5)
    assert float(m1["r1_penalty"]) > 0 and float(m1["pl_penalty"]) > 0
    # the regularisation phases' Adam steps too: compare the parameters' moves (measured: 5e-5
    # and 1.2e-4 of the largest move; a gradient of the wrong pass or weight moves them by O(1))
    for new_k, new_1, start in [(new2.d_params, new1.d_params, state.d_params),
                                (new2.g_params, new1.g_params, state.g_params)]:
        moved = lambda a: jax.tree.map(lambda x, x0: np.asarray(x) - np.asarray(x0), a, start)
        assert max_relative_difference(moved(new_k), moved(new_1)) < 1e-2
    assert new2.pl_mean.shape == (2,)


def test_passes_form_their_own_groups(model):
    """The same 8 images as 2 consecutive passes of 4 (groups {0,1,2,3} and {4,5,6,7}) are not
    1 pass of 8 (groups {i, i+2, i+4, i+6}): the discriminator sees other statistics, and its
    gradients differ."""
    cfg, G, D, state = model
    real, one, _, many, state_k = pass_inputs(model, 2, 4)
    many = many._replace(z_d=jax.tree.map(lambda x: x.reshape((2, 4) + x.shape[1:]), one.z_d),
                         noise_d=jax.tree.map(lambda x: x.reshape((2, 4) + x.shape[1:]), one.noise_d))
    _, _, aux1 = step(model, 1, LAZY)(state, real, one)
    _, _, aux2 = step(model, 2, LAZY)(state_k, real.reshape((2, 4) + real.shape[1:]), many)
    assert max_relative_difference(aux2["d_grads"], aux1["d_grads"]) > 1e-3


def test_batch_gpu_is_checked_before_anything_is_built():
    cfg = stylegan2_config(NAME, "tiny")
    assert passes_for(cfg.train, 4, 1) == 1
    cfg.train.batch_gpu = 2
    assert passes_for(cfg.train, 4, 1) == 2 and passes_for(cfg.train, 8, 2) == 2 and passes_for(cfg.train, 2, 1) == 1
    check_config(cfg, 1)
    for bad, why in [(3, "do not split into passes"), (0, "train.batch_gpu")]:
        cfg.train.batch_gpu = bad
        with pytest.raises(InputError, match=why):
            check_config(cfg, 1)
    cfg.train.batch, cfg.train.batch_gpu = 24, 6     # passes of 6 cannot form groups of 4
    with pytest.raises(InputError, match="6 per pass"):
        check_config(cfg, 1)
