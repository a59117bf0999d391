"""Fine-tuning: ``train.init_from`` a converted released model (the tiny fixture), with ADA and
FreezeD, through the real loop: at step 0 the models are the parent's, p adapts and is logged,
the frozen blocks keep their weights, resume is bit-exact (ADA's state too); a parent that does
not fit is one error listing the parameters, and ``train.reinit`` starts named parts fresh."""

import jax
import numpy as np
import pytest
from helpers import noise_images

import pegan.api as pg
from pegan import checkpoint as ckpt
from pegan.configs import stylegan2_config
from pegan.errors import InputError
from pegan.train.stylegan2_loop import ImageFolder, Trainer

NAME = "mspie-stylegan2-config-f_c2_8xb3-1100kiters_ffhq-256-512"


@pytest.fixture(scope="module")
def parent(fixtures, tmp_path_factory):
    out = tmp_path_factory.mktemp("parent") / "ckpt"
    pg.convert(fixtures / "mspie_stylegan2_config-f_tiny.mmgen.pth", out, experiment=NAME, variant="tiny")
    return out


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return noise_images(tmp_path_factory.mktemp("own"), 6, (40, 40), seed=3)


class Recorder:
    def __init__(self):
        self.scalars = []

    def write_scalars(self, step, values):
        self.scalars.append((step, dict(values)))

    def write_images(self, step, images):
        pass

    def flush(self):
        pass


def tiny(parent, **train):
    cfg = stylegan2_config(NAME, "tiny")
    cfg.scales = [0]
    cfg.train.update(**{"init_from": str(parent), **train})
    # one program per (scale, batch) and the depthwise-conv filter form: the fewest compilations on CPU
    cfg.compute.update(lazy_branches="cond", upfirdn_impl="conv")
    return cfg


def leaves_equal(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb)
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb))


def test_fine_tune_with_ada_and_freezed_then_resume_bit_exact(parent, folder, tmp_path):
    cfg = tiny(parent, augment="ada", ada_kimg=0.05, ada_interval=1, freeze_d=1)
    notes = []
    rec = Recorder()
    t = Trainer(cfg, ImageFolder(folder, 32), tmp_path / "w", log=notes.append, writer=rec)
    assert any("starting from" in n and "optimiser states" in n for n in notes)
    # step 0: the parent's three models and mean latent, as the sampler reads them
    for which, got in (("ema", t.state.ema_params), ("orig", t.state.g_params)):
        assert leaves_equal(got, pg.load(parent, which=which).variables["params"])
    assert leaves_equal(t.state.g_buffers, pg.load(parent).variables["buffers"])    # the EMA's, mean latent too
    d0 = jax.device_get(t.state.d_params)
    assert leaves_equal(d0, pg.load(parent, which="discriminator").variables["params"])
    z = np.random.default_rng(0).standard_normal((2, 16)).astype(np.float32)
    mine = t.G.apply({"params": t.state.ema_params, "buffers": t.state.g_buffers}, z, 0, rng=jax.random.PRNGKey(1))
    ref = pg.load(parent)
    np.testing.assert_array_equal(np.asarray(mine), np.asarray(ref.model.apply(ref.variables, z, 0,
                                                                               rng=jax.random.PRNGKey(1))))
    # a discriminator made to overfit: every real far on the real side (its last bias +20), so r_t = 1
    d = jax.device_get(t.state.d_params)
    d["final_linear_1"]["bias"] = d["final_linear_1"]["bias"] + 20.0
    t.state = t.state.replace(d_params=jax.device_put(d, t.state.d_params["final_linear_1"]["bias"].sharding))
    d0 = d
    hist = t.run(4, checkpoint_every=2, sample_every=0, log_every=1)
    # p moves at every step (interval 1) by 4 images / 50: up when r_t > 0.6, down (floored) otherwise
    p = [0.0] + [m["ada_p"] for m in hist]
    for prev, m, now in zip(p, hist, p[1:]):
        want = prev + 0.08 if m["ada_rt"] > 0.6 else max(prev - 0.08, 0.0)
        assert abs(now - want) < 1e-6
    assert [m["ada_rt"] for m in hist] == [1.0] * 4 and abs(p[-1] - 0.32) < 1e-6
    logged = [v for _, v in rec.scalars if "augment/p" in v]
    assert [round(v["augment/p"], 6) for v in logged] == [round(x, 6) for x in p[1:]]
    # FreezeD: the fromRGB layer and the first block keep the parent's weights, the rest trains
    d4 = jax.device_get(t.state.d_params)
    for k in ("convs_0", "convs_1"):
        assert leaves_equal(d4[k], d0[k])
    assert not leaves_equal(d4["convs_2"], d0["convs_2"])
    # the run records its parent; a resume from step 2 ends where the straight run did
    assert ckpt.read_config(tmp_path / "w").train.init_from == str(parent)
    again = Trainer(cfg, ImageFolder(folder, 32), tmp_path / "w", log=notes.append, step=2)
    assert int(again.state.step) == 2 and float(again.state.ada["p"]) == np.float32(p[2])
    again.run(4, checkpoint_every=0, sample_every=0)
    assert leaves_equal(jax.device_get(again.state), jax.device_get(t.state))


def test_a_parent_that_does_not_fit_is_one_clear_error(parent, folder, tmp_path):
    cfg = tiny(parent)
    cfg.discriminator.pool_size = [1, 1]        # the D head's input shrinks: final_linear_0 changes shape
    with pytest.raises(InputError) as e:
        Trainer(cfg, ImageFolder(folder, 32), tmp_path / "a", log=lambda m: None)
    msg = str(e.value)
    assert "parameters differ" in msg and "final_linear_0" in msg and "train.reinit" in msg
    assert "\n" not in msg
    cfg.train.reinit = ["d_head"]              # the head starts fresh: the rest is the parent's
    t = Trainer(cfg, ImageFolder(folder, 32), tmp_path / "b", log=lambda m: None)
    ref = pg.load(parent, which="discriminator").variables["params"]
    d = jax.device_get(t.state.d_params)
    assert leaves_equal(d["convs_1"], ref["convs_1"])
    assert d["final_linear_0"]["kernel"].shape != ref["final_linear_0"]["kernel"].shape
    cfg = tiny(parent, reinit=["mapping"])
    t = Trainer(cfg, ImageFolder(folder, 32), tmp_path / "c", log=lambda m: None)
    g, ema = jax.device_get(t.state.g_params), jax.device_get(t.state.ema_params)
    ref = pg.load(parent, which="orig").variables["params"]
    assert not leaves_equal(g["style_mapping_0"], ref["style_mapping_0"])
    assert leaves_equal(g["style_mapping_0"], ema["style_mapping_0"]) and leaves_equal(g["convs_0"], ref["convs_0"])
    for bad, match in ((dict(reinit=["everything"]), "train.reinit"), (dict(init_from=str(tmp_path / "none")),
                                                                       "does not exist"),
                       (dict(freeze_d=9), "train.freeze_d"), (dict(augment="fixed:3"), "train.augment")):
        cfg = tiny(parent, **bad)
        with pytest.raises(InputError, match=match):
            Trainer(cfg, ImageFolder(folder, 32), tmp_path / "d", log=lambda m: None)


def test_a_reference_pth_or_a_pegan_run_as_the_parent(parent, fixtures, folder, tmp_path):
    """The .pth itself (converted on the fly) gives the models of its converted directory; a pegan
    run's directory gives those of its latest step."""
    pth = fixtures / "mspie_stylegan2_config-f_tiny.mmgen.pth"
    t = Trainer(tiny(pth), ImageFolder(folder, 32), tmp_path / "a", log=lambda m: None)
    for which, got in (("ema", t.state.ema_params), ("orig", t.state.g_params),
                       ("discriminator", t.state.d_params)):
        assert leaves_equal(got, pg.load(parent, which=which).variables["params"])
    t.save()                                             # a pegan run's directory (its step 0)
    t.close()
    child = Trainer(tiny(tmp_path / "a"), ImageFolder(folder, 32), tmp_path / "b", log=lambda m: None)
    assert int(child.state.step) == 0
    for got, want in ((child.state.ema_params, t.state.ema_params), (child.state.d_params, t.state.d_params)):
        assert leaves_equal(got, want)
