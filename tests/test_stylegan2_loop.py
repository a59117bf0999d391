"""The MS-PIE training loop: deterministic scale schedule, per-scale batches, one compilation
per (scale, batch), exact resume, checkpoints readable by the sampler, and the command line."""

import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

import pegan.api as pg
from pegan import checkpoint as ckpt
from pegan.configs import stylegan2_config
from pegan.train.stylegan2_loop import ImageFolder, Trainer, batch_for_scale, choose_scale

NAME = "mspie-stylegan2-config-f_c2_8xb3-1100kiters_ffhq-256-512"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:64]
    for i in range(10):
        c = rng.uniform(0, 1, 3)
        img = np.stack([(np.sin(xx / 8 + c[0] * 6) + 1) * 127, (np.cos(yy / (6 + 4 * c[1])) + 1) * 127,
                        np.full_like(xx, 255 * c[2])], -1).astype(np.uint8)
        Image.fromarray(img).save(d / f"{i}.png")
    return d


def test_scale_schedule_is_a_function_of_seed_and_step():
    a = [choose_scale(0, k, [0, 2, 4]) for k in range(300)]
    assert a == [choose_scale(0, k, [0, 2, 4]) for k in range(300)]
    assert a != [choose_scale(1, k, [0, 2, 4]) for k in range(300)]
    counts = np.bincount(a, minlength=5)[[0, 2, 4]]
    assert counts.min() > 70                         # uniform, as the reference really draws
    b = [choose_scale(0, k, [0, 2, 4], [0.8, 0.1, 0.1]) for k in range(300)]
    assert np.bincount(b, minlength=5)[0] > 200      # the configured probabilities, by switch
    cfg = stylegan2_config(NAME, "tiny")
    cfg.train.batch_per_scale = {"4": 2}
    assert batch_for_scale(cfg.train, 4) == 2 and batch_for_scale(cfg.train, 0) == 4


def test_the_accelerator_forms_through_the_real_loop(folder, tmp_path):
    """XLA's convolutions and the lazy R1 / PL terms behind lax.cond (what GPUs and TPUs resolve
    'auto' to), through Trainer.run: exactly one program per (scale, batch), the lazy terms on
    at the steps they are due and off otherwise, uint8 batches in, finite losses; with gradient
    accumulation at scale 0 (2 passes of 2), its two path-length means saved and resumed."""
    cfg = stylegan2_config(NAME, "tiny")
    cfg.scales = [0, 2]
    cfg.train.batch_per_scale = {"2": 2}
    cfg.train.batch_gpu = 2
    cfg.compute.update(conv_impl="xla", lazy_branches="cond")
    data = ImageFolder(folder, 64)
    assert data.batch(0, 0, 4, 0).dtype == np.uint8
    t = Trainer(cfg, data, tmp_path / "w", log=lambda m: None)
    assert t.compute["lazy_branches"] == "cond" and t.G.forms.conv == "xla" and t.step_kind(0) is None
    hist = t.run(6, checkpoint_every=0, sample_every=0)
    assert [m["step"] for m in hist] == list(range(6))
    assert t.compilations() == len({(m["scale"], m["batch"]) for m in hist}) == 2
    assert set(t.compile_seconds) == {(0, 4, None), (2, 2, None)}
    for m in hist:
        assert np.isfinite(m["d_loss"]) and np.isfinite(m["g_loss"])
        assert (m["r1_penalty"] > 0) == (m["step"] % 16 == 0) and (m["pl_penalty"] > 0) == (m["step"] % 4 == 0)
    assert ckpt.steps(tmp_path / "w") == [6] and int(t.state.step) == t.step == 6
    # a path-length step updates the means of the passes it ran: 2 at scale 0, 1 at scale 2
    used = max(2 if m["scale"] == 0 else 1 for m in hist if m["step"] % 4 == 0)
    assert t.slots == 2 and t.state.pl_mean.shape == (2,)
    assert [v > 0 for v in np.asarray(t.state.pl_mean)] == [True, used == 2]
    again = Trainer(cfg, data, tmp_path / "w", log=lambda m: None)
    np.testing.assert_array_equal(np.asarray(again.state.pl_mean), np.asarray(t.state.pl_mean))
    notes = []
    cfg.train.batch_gpu = None                       # one pass: the two means restart from their average
    one = Trainer(cfg, data, tmp_path / "w", log=notes.append)
    assert one.state.pl_mean.shape == (1,) and "2 path-length means" in " ".join(notes)
    np.testing.assert_allclose(float(one.state.pl_mean[0]), float(np.mean(np.asarray(t.state.pl_mean))), rtol=1e-6)


def test_exact_resume_and_one_compilation_per_shape(folder, tmp_path):
    """2 steps, save, resume (through a prepared dataset, past an interrupted save), 2 steps ==
    4 straight steps bit for bit."""
    cfg = stylegan2_config(NAME, "tiny")
    cfg.scales = [0, 2]
    cfg.train.batch_per_scale = {"2": 2}
    data = ImageFolder(folder, 64)
    straight = Trainer(cfg, data, tmp_path / "a", log=lambda m: None)
    hist = straight.run(4)
    # one program per (scale, batch) and, on CPU, half of a step and its lazy term (R1 + PL at
    # step 0, none after: d_r1, g_pl, d, g), each compiled once
    shapes = {(m["scale"], m["batch"], straight.step_kind(m["step"])) for m in hist}
    programs = {(s, b, p) for s, b, kind in shapes for p in straight.phases(kind)}
    assert set(straight.compile_seconds) == programs    # no compilation after warm-up
    assert straight.compilations() == len(programs)
    assert all((s, 2 if s == 2 else 4) == (s, b) for s, b, _ in shapes)
    # the other half reads a `pegan prepare` dataset of the same images: same batches
    from pegan.data import PreparedImages, prepare

    prepare(folder, tmp_path / "ds", 64)
    with PreparedImages(tmp_path / "ds") as prepared:
        half = Trainer(cfg, prepared, tmp_path / "b", log=lambda m: None)
        half.run(2)
        assert ckpt.steps(tmp_path / "b") == [2]
        # a save killed mid-way leaves orbax's temporary directory behind: step 2 stays usable
        junk = tmp_path / "b" / "checkpoints" / "3.orbax-checkpoint-tmp-1234567"
        (junk / "train_state").mkdir(parents=True)
        (junk / "train_state" / "partial").write_bytes(b"\0" * 100)
        assert ckpt.steps(tmp_path / "b") == [2]
        resumed = Trainer(cfg, prepared, tmp_path / "b", log=lambda m: None)
        assert int(resumed.state.step) == 2
        resumed.run(4)
    assert ckpt.steps(tmp_path / "b") == [2, 4]
    for x, y in zip(jax.tree.leaves(straight.state), jax.tree.leaves(resumed.state)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    g = pg.load(tmp_path / "a")                      # the sampler reads a training checkpoint
    img = pg.sample(g, 2, 2, seed=0)
    assert img.shape == (2, 48, 48, 3) and np.isfinite(img).all()


def test_unreadable_image_is_named(tmp_path):
    (tmp_path / "ok.png").write_bytes(b"")
    with pytest.raises(ValueError, match="ok.png"):
        ImageFolder(tmp_path, 32)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "good.png")
    data = ImageFolder(tmp_path, 32, on_error="skip")
    assert len(data) == 1 and data.skipped == [str(tmp_path / "ok.png")]


def test_cli_trains_a_tiny_mspie_and_writes_samples_at_three_scales(folder, tmp_path):
    r = subprocess.run([sys.executable, "-m", "pegan.cli", "train", f"experiments/{NAME}.py", "--variant", "tiny",
                        "--data", str(folder), "--steps", "2", "--workdir", str(tmp_path / "w"), "--set",
                        "train.batch=2"], capture_output=True, text=True, cwd=str(pytest_root()))
    assert r.returncode == 0, r.stderr
    pngs = sorted((tmp_path / "w").glob("samples_*.png"))
    assert pngs and ckpt.steps(tmp_path / "w") == [2]
    w = Image.open(pngs[-1])
    assert w.size[1] > 32 + 48 + 64                  # three rows: scales 0, 2, 4
    # the run records the compute section as requested and as resolved on this backend, and says it
    import json

    import jax
    from pegan import compute

    stored = json.loads((tmp_path / "w" / "config.json").read_text())
    assert stored["compute"]["conv_impl"] == "auto"
    assert stored["compute_resolved"] == compute.resolve(stored, jax.default_backend())
    assert stored["variant"] == "tiny" and stored["compute_resolved"]["cpu_compile"] in ("quick", "default")
    assert f"conv_impl={stored['compute_resolved']['conv_impl']} (auto)" in r.stdout


def pytest_root():
    import pathlib
    return pathlib.Path(__file__).resolve().parents[1]


def test_sigterm_saves_and_exits_cleanly(folder, tmp_path):
    """SIGTERM in the middle of `pegan train`: the step reached is saved, the exit status is 0,
    and a second run resumes from it."""
    import signal

    args = [sys.executable, "-m", "pegan.cli", "train", f"experiments/{NAME}.py", "--variant", "tiny",
            "--data", str(folder), "--steps", "100000", "--workdir", str(tmp_path / "w"), "--set", "train.batch=2",
            "--set", "scales=[0]", "--log-every", "1", "--checkpoint-every", "100000", "--sample-every", "100000"]
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(pytest_root()))
    try:
        for line in p.stdout:                        # the console writer's line after step 2
            if line.startswith("[2]"):
                break
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=300)
    finally:
        p.kill()
    assert p.returncode == 0, err[-3000:]
    assert "stopping at step" in out + err
    saved = ckpt.steps(tmp_path / "w")
    assert len(saved) == 1 and 2 <= saved[0] < 100000
    r = subprocess.run(args[:args.index("--steps") + 1] + [str(saved[0] + 1)] + args[args.index("--steps") + 2:],
                       capture_output=True, text=True, cwd=str(pytest_root()))
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"resumed {tmp_path / 'w'} at step {saved[0]}" in r.stdout + r.stderr
    assert ckpt.steps(tmp_path / "w")[-1] == saved[0] + 1


def test_a_non_finite_loss_stops_the_run_naming_what_is_kept(folder, tmp_path, monkeypatch):
    """A NaN loss stops the run before anything is saved after it, naming the checkpoint kept,
    or saying that there is none yet (it named 'the last checkpoint' of a run that had none)."""
    from pegan.errors import NonFiniteError

    cfg = stylegan2_config(NAME, "tiny")
    data = ImageFolder(folder, 32)
    real = Trainer._fetch

    def poisoned(self, window):       # the losses of every step from 2 on come back NaN
        window = [(s, sc, b, ({**m, "d_loss": m["d_loss"] * np.nan} if s >= 2 else m)) for s, sc, b, m in window]
        return real(self, window)

    fresh = Trainer(cfg, data, tmp_path / "none", log=lambda m: None)        # (nothing compiled)
    with pytest.raises(NonFiniteError, match="non-finite loss at step 0 .*no checkpoint was saved yet"):
        fresh._fetch([(0, 0, 4, {"d_loss": np.float32(np.nan), "g_loss": np.float32(0.0)})])
    monkeypatch.setattr(Trainer, "_fetch", poisoned)
    t = Trainer(cfg, data, tmp_path / "w", log=lambda m: None)
    with pytest.raises(NonFiniteError, match=r"non-finite loss at step 2 .*the last checkpoint \(step 2\)"):
        t.run(4, checkpoint_every=2, sample_every=0)
    assert ckpt.steps(tmp_path / "w") == [2]        # the NaN step's state never saved
