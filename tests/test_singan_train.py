"""PE-SinGAN training: losses and gradients against the reference train-step fixture, the Adam
update of the current block only, the pyramid, a short run that is interrupted and resumed,
and the command line (train, sample)."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pegan.api as pg
from helpers import close_scaled, nhwc
from pegan import checkpoint as ckpt
from pegan.configs import singan_config
from pegan.errors import InputError
from pegan.convert import singan as sconv
from pegan.convert.mmgen import _apply_rules
from pegan.models import singan as sm
from pegan.train import singan as ts





def reference_grads(d, prefix, rules):
    raw = {k[len(prefix):]: d[k] for k in d.files if k.startswith(prefix)}
    flat, unexpected = _apply_rules(raw, rules, "grads")
    assert not unexpected
    return flat


def leaf(tree, path):
    for p in path:
        tree = tree[p]
    return tree


@pytest.fixture(scope="module")
def csg(fixtures):
    kw = dict(experiment="singan-csg_fish", variant="tiny", keep_bgr=True)
    path = fixtures / "pe_singan_csg_tiny.mmgen.pth"
    return pg.load(path, **kw), pg.load(path, which="discriminator", **kw), np.load(fixtures / "singan_train_step_tiny.npz")


def test_losses_and_gradients_match_the_reference_train_step(csg):
    g, D, d = csg
    nw = [1, float(d["noise_weights"][1])]
    real = nhwc(d["real_stage1"])
    x0 = nhwc(d["input_sample"])
    rand_d = [nhwc(d["rand_noise_d.0"]), nhwc(d["rand_noise_d.1"])]
    fake, _ = g.model.apply(g.variables, rand_d, nw, 1, input_sample=x0, train=True, mutable=["batch_stats"])
    close_scaled(fake, nhwc(d["out.d.fake_imgs"]), "D-step fake")
    alpha = d["gp_alpha"].reshape(1, 1, 1, 1)
    (loss, (terms, _)), grads = jax.value_and_grad(ts.d_loss, has_aux=True)(
        D.variables["params"], D.variables, D.model, real, fake, 1, alpha)
    for k in ("loss_disc_fake", "loss_disc_real", "gp_unweighted", "loss_total"):
        close_scaled(terms[k], d[f"out.d.{k}"], k)
    close_scaled(terms["disc_pred_fake"], nhwc(d["out.d.disc_pred_fake"]), "pred fake")
    ref = reference_grads(d, "out.d.grad.", sconv.DISCRIMINATOR_RULES)
    assert len(ref) == 14
    for path, r in ref.items():
        close_scaled(leaf(grads, path[1:]), r, "D grad " + "/".join(path))
    assert float(jnp.abs(grads["blocks_0"]["head"]["kernel"]).max()) == 0.0   # other blocks: none

    fixed = [nhwc(d["fixed_noises.0"]), nhwc(d["fixed_noises.1"])]
    rand_g = [nhwc(d["rand_noise_g.0"]), nhwc(d["rand_noise_g.1"])]
    (loss, (terms, _, _)), grads = jax.value_and_grad(ts.g_loss, has_aux=True)(
        g.variables["params"], g.variables, g.model, D.variables, D.model, real, rand_g, fixed, nw, 1)
    for k in ("loss_disc_fake_g", "mse_unweighted", "loss_total"):
        close_scaled(terms[k], d[f"out.g.{k}"], k)
    close_scaled(terms["recon_imgs"], nhwc(d["out.g.recon_imgs"]), "recon")
    ref = reference_grads(d, "out.g.grad.", sconv.GENERATOR_RULES)
    assert {p[1] for p in ref} == {"blocks_0", "blocks_1"}
    for path, r in ref.items():
        close_scaled(leaf(grads, path[1:]), r, "G grad " + "/".join(path))


def test_d_step_is_adam_on_the_current_block_only(csg):
    """One trainer D step = the first Adam step p - lr g / (|g| + eps) on block t's parameters,
    with g recomputed here from the same draws; other blocks keep their parameters."""
    g, D, d = csg
    cfg = singan_config("singan-csg_fish", "tiny")
    reals = [np.zeros((1, h, w, 3), np.float32) for (h, w) in [(12, 16), (15, 20), (19, 25), (24, 32), (30, 40)]]
    reals[1] = nhwc(d["real_stage1"])
    tr = ts.SinGANTrainer(cfg, reals, jax.random.PRNGKey(0))
    tr.state.update(generator=g.variables, discriminator=D.variables, next_stage=1, noise_weights=[1.0, 0.2],
                    fixed_noises=list(g.state["fixed_noises"]))
    t = 1
    opt_d, _, d_step, _, _ = tr.stage_steps(t)
    opt_state = opt_d.init(D.variables["params"]["blocks_1"])
    nw = jnp.asarray([1.0, 0.2])
    key = jax.random.PRNGKey(7)
    _, dvars, _, _ = d_step(g.variables, D.variables, opt_state, nw, key)
    k_noise, k_alpha = jax.random.split(key)
    shapes = [tuple(x.shape[1:]) for x in tr.state["fixed_noises"][:2]]
    fake, _ = g.model.apply(g.variables, sm.draw_noises(k_noise, shapes, 1), nw, t, train=True,
                            mutable=["batch_stats"])
    alpha = jax.random.uniform(k_alpha, (1, 1, 1, 1))
    grads = jax.jit(jax.grad(lambda p: ts.d_loss(p, D.variables, D.model, jnp.asarray(reals[1]), fake, t, alpha)[0]))(
        D.variables["params"])
    expect = jax.tree.map(lambda p, gr: p - 5e-4 * gr / (jnp.abs(gr) + 1e-8),
                          D.variables["params"]["blocks_1"], grads["blocks_1"])
    for a, b, gr in zip(jax.tree.leaves(dvars["params"]["blocks_1"]), jax.tree.leaves(expect),
                        jax.tree.leaves(grads["blocks_1"])):
        big = np.abs(np.asarray(gr)) > 1e-4 * np.abs(np.asarray(gr)).max()
        np.testing.assert_allclose(np.asarray(a)[big], np.asarray(b)[big], atol=1e-6)
    for name in ("blocks_0", "blocks_2"):
        for a, b in zip(jax.tree.leaves(dvars["params"][name]), jax.tree.leaves(D.variables["params"][name])):
            np.testing.assert_array_equal(a, b)
    # BN running statistics of the discriminator's stage-1 block moved (train-mode forwards)
    assert not np.allclose(dvars["batch_stats"]["blocks_1"]["head"]["bn"]["mean"],
                           D.variables["batch_stats"]["blocks_1"]["head"]["bn"]["mean"])


def test_pyramid():
    stop, sizes = ts.pyramid_sizes(250, 375, 25, 250)
    # independent reading of REFERENCE §2.18 for a 250 x 375 image
    import math
    n = math.ceil(math.log(25 / 250, 0.75)) + 1
    q = math.ceil(math.log(250 / 375, 0.75))
    assert stop == n - q
    factor = (25 / min(167, 250)) ** (1 / stop)
    assert sizes[-1] == (250, 375) and sizes[0] == (int(250 * factor ** stop + 0.5), int(375 * factor ** stop + 0.5))
    img = (np.arange(30 * 40 * 3) % 251).astype(np.uint8).reshape(30, 40, 3)
    stop, reals = ts.create_real_pyramid(img, 12, 40)
    np.testing.assert_allclose(reals[-1][0], img / 127.5 - 1.0, atol=1e-6)
    assert [r.shape[1:3] for r in reals] == ts.pyramid_sizes(30, 40, 12, 40)[1]


def smooth_image(h, w):
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([yy * 200 // h, xx * 200 // w, (yy + xx) * 100 // (h + w) + 50], -1).astype(np.uint8)


class Interrupt(Exception):
    pass


def test_short_run_checkpoints_each_stage_and_resumes(tmp_path):
    cfg = singan_config("singan-csg_fish", "tiny")
    cfg.data.min_size, cfg.data.max_size = 12, 20
    img = smooth_image(15, 20)
    stop, _ = ts.create_real_pyramid(img, 12, 20)
    assert stop == 2

    def interrupt_at_stage_2(stage, size, total):
        if stage == 2:
            raise Interrupt()
        return None

    with pytest.raises(Interrupt):
        ts.run(cfg, img, tmp_path, iters=2, progress_factory=interrupt_at_stage_2, log=lambda m: None)
    assert ckpt.steps(tmp_path) == [1, 2]
    logs = []
    trainer, reports = ts.run(cfg, img, tmp_path, iters=2, log=logs.append)
    assert any("resuming" in m and "stage 2" in m for m in logs)
    assert [r.stage for r in reports] == [2] and ckpt.steps(tmp_path) == [1, 2, 3]
    # 2 iterations x (3 D + 3 G steps): each step compiled once, nothing recompiled within the stage
    assert [f._cache_size() for f in trainer._step_fns[2]] == [1, 1, 0]   # no recon pass at the last stage
    assert len(trainer.state["noise_weights"]) == 3 and all(np.isfinite(trainer.state["noise_weights"]))
    # the interrupted and resumed run is the straight run, bit for bit
    straight, _ = ts.run(cfg, img, tmp_path / "straight", iters=2, log=lambda m: None)
    for name in ("generator", "discriminator"):
        a, b = jax.tree.leaves(trainer.state[name]), jax.tree.leaves(straight.state[name])
        assert len(a) == len(b) and all(np.asarray(x).tobytes() == np.asarray(y).tobytes() for x, y in zip(a, b)), name
    np.testing.assert_array_equal(trainer.state["noise_weights"], straight.state["noise_weights"])
    g = pg.load(tmp_path)
    assert g.state["curr_stage"] == 2
    rec = pg.singan_sample(g, mode="recon")
    assert rec.shape == (1, 15, 20, 3) and np.isfinite(rec).all()
    wide = pg.singan_sample(g, 2, width_factor=2.0)
    assert wide.shape == (2, 15, 40, 3)
    edit = pg.singan_sample(g, 2, start_image=img, start_stage=1)
    assert edit.shape == (2, 15, 20, 3)
    # another run (different image) into the same directory is refused
    with pytest.raises(ckpt.CheckpointError, match="another run"):
        ts.run(cfg, smooth_image(20, 20), tmp_path, iters=1, log=lambda m: None)
    # ... also an image of the same size (its pyramid alike: it trained the later stages before)
    with pytest.raises(InputError, match="was trained on another image"):
        ts.run(cfg, img[::-1].copy(), tmp_path, iters=2, log=lambda m: None)
    # ... and changed settings, named (a model width gave a flax traceback, a rate went unnoticed)
    for change, words in [(dict(iters=3), "train.iters_per_scale 2 -> 3"), (dict(seed=7), "train.seed 0 -> 7")]:
        with pytest.raises(InputError, match=f"other settings \\({words}\\)"):
            ts.run(cfg, img, tmp_path, **{"iters": 2, **change}, log=lambda m: None)
    wider = cfg.copy_and_resolve_references()
    wider.generator.base_channels = 32
    with pytest.raises(InputError, match="generator.base_channels 16 -> 32"):
        ts.run(wider, img, tmp_path, iters=2, log=lambda m: None)
    logs = []
    ts.run(cfg, img, tmp_path, iters=2, log=logs.append)               # finished: said so
    assert any("has trained all 3 stages: nothing left to train" in m for m in logs), logs


def test_non_finite_loss_stops_the_stage_and_keeps_the_state():
    cfg = singan_config("singan-csg_fish", "tiny")
    cfg.train.gp_weight = float("nan")
    _, reals = ts.create_real_pyramid(smooth_image(15, 20), 12, 20)
    cfg.generator.num_scales = cfg.discriminator.num_scales = len(reals) - 1
    tr = ts.SinGANTrainer(cfg, reals, jax.random.PRNGKey(0))
    before = tr.state
    with pytest.raises(FloatingPointError, match="stage 0"):
        tr.train_stage(jax.random.PRNGKey(1), iters=1)
    assert tr.state["next_stage"] == 0 and tr.state["generator"] is before["generator"]
    assert tr.state["discriminator"] is before["discriminator"]


def test_cli_train_and_sample(tmp_path):
    from PIL import Image
    Image.fromarray(smooth_image(12, 16)).save(tmp_path / "img.png")   # a 2-stage pyramid
    run = [sys.executable, "-m", "pegan.cli"]
    r = subprocess.run(run + ["train", "--experiment", "singan_spe-dim4_fish", "--variant", "tiny", "--image",
                              str(tmp_path / "img.png"), "--max-size", "16", "--iters", "1", "--out",
                              str(tmp_path / "run")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(run + ["sample", str(tmp_path / "run"), "--num", "2", "--width-factor", "2", "--out",
                              str(tmp_path / "s.png"), "--npy", str(tmp_path / "s.npy")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert np.load(tmp_path / "s.npy").shape == (2, 12, 32, 3)
    r = subprocess.run(run + ["train", "--experiment", "singan-csg_fish", "--image", str(tmp_path / "none.png"),
                              "--out", str(tmp_path / "x")], capture_output=True, text=True)
    assert r.returncode == 2 and "none.png" in r.stderr


def test_sigterm_keeps_the_finished_stages_and_the_same_command_resumes(tmp_path):
    """SIGTERM (a scheduler's stop) during a PE-SinGAN run: exit status 130 and one line saying
    which stages are saved; the same command then resumes after them."""
    import signal
    import time

    from PIL import Image
    Image.fromarray(smooth_image(15, 20)).save(tmp_path / "img.png")     # a 3-stage pyramid
    cmd = [sys.executable, "-m", "pegan.cli", "train", "--experiment", "singan-csg_fish", "--variant", "tiny",
           "--image", str(tmp_path / "img.png"), "--set", "data.min_size=12", "--max-size", "20", "--iters", "100",
           "--out", str(tmp_path / "run")]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while not ckpt.steps(tmp_path / "run") and time.time() - t0 < 240 and p.poll() is None:
        time.sleep(0.2)
    assert p.poll() is None, p.communicate()
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=120)
    lines = [line for line in err.splitlines() if line.strip() and "pegan train" in line]
    assert p.returncode == 130 and len(lines) == 1 and "the same command resumes at stage" in lines[0], err[-2000:]
    assert "Traceback" not in err
    done = ckpt.steps(tmp_path / "run")
    assert done and done[-1] < 3
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert ckpt.steps(tmp_path / "run")[-1] == 3
