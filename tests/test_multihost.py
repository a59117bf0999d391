"""Multi-host training on loopback: two `pegan train --coordinator ...` processes (one CPU device
each, gloo collectives) train a tiny MS-PIE from a prepared dataset, each host reading its own
rows, and write one checkpoint; it equals a one-process run on two (fake) devices bit for bit,
and resumes there."""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from pegan import checkpoint as ckpt
from tests.conftest import REPO

NAME = "mspie-stylegan2-config-f_c2_8xb3-1100kiters_ffhq-256-512"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(devices: int):
    flags = os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={devices}"
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=flags.strip(), PYTHONPATH=str(REPO))
    return env


def _train_args(data, workdir, steps):
    return [sys.executable, "-m", "pegan.cli", "train", f"experiments/{NAME}.py", "--variant", "tiny",
            "--data", str(data), "--workdir", str(workdir), "--steps", str(steps), "--set", "train.batch=4",
            "--set", "scales=[0]", "--checkpoint-every", "2", "--sample-every", "1000", "--log-every", "1",
            # the forms accelerators get: XLA's convolutions, the lazy terms behind lax.cond
            "--config.compute.conv_impl=xla", "--config.compute.lazy_branches=cond"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    d = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(d / f"{i}.png")
    out = tmp_path_factory.mktemp("prepared") / "ds"
    r = subprocess.run([sys.executable, "-m", "pegan.cli", "prepare", str(d), "--out", str(out), "--size", "64"],
                       capture_output=True, text=True, cwd=str(REPO), env=_env(1))
    assert r.returncode == 0, r.stderr
    return out


def _items(workdir, step):
    got = ckpt.restore(workdir, ["generator", "discriminator", "train_pl_means"], step)
    return got


@pytest.mark.slow
def test_two_processes_train_and_checkpoint_like_one_process_on_two_devices(prepared, tmp_path):
    port = _free_port()
    procs = [subprocess.Popen(_train_args(prepared, tmp_path / "multi", 2)
                              + ["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(i)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(REPO), env=_env(1))
             for i in range(2)]
    outs = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=900)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
        outs.append((p.returncode, out, err))
    for i, (rc, out, err) in enumerate(outs):
        assert rc == 0, f"process {i}: {out[-2000:]}\n{err[-4000:]}"
        assert f"process {i} of 2" in out
    assert ckpt.steps(tmp_path / "multi") == [2]
    assert sorted(p.name for p in (tmp_path / "multi").glob("samples_*.png"))     # written by process 0
    assert list((tmp_path / "multi" / "tensorboard").glob("events.out.tfevents.*"))

    r = subprocess.run(_train_args(prepared, tmp_path / "single", 2), capture_output=True, text=True,
                       cwd=str(REPO), env=_env(2))
    assert r.returncode == 0, r.stderr[-4000:]
    a, b = _items(tmp_path / "multi", 2), _items(tmp_path / "single", 2)
    assert a["train_pl_means"]["pl_mean"].shape == (2,)
    import jax

    for name in a:
        for x, y in zip(jax.tree.leaves(a[name]), jax.tree.leaves(b[name])):
            np.testing.assert_array_equal(x, y, err_msg=name)

    # the two-host run resumes on one process with the same two devices (the program the
    # one-process run compiled): one more step
    r = subprocess.run(_train_args(prepared, tmp_path / "multi", 3), capture_output=True, text=True,
                       cwd=str(REPO), env=_env(2))
    assert r.returncode == 0, r.stderr[-4000:]
    assert "resumed" in r.stderr + r.stdout
    assert ckpt.steps(tmp_path / "multi")[-2:] == [2, 3]


def test_path_length_means_follow_the_device_count():
    """A state saved with per-device means on 2 devices resumes on this process's devices with
    their average (per_device) or as one mean (global)."""
    import jax

    from pegan.configs import stylegan2_config
    from pegan.models.stylegan2 import build_discriminator, build_generator
    from pegan.train import sharded
    from pegan.train import stylegan2 as tr

    cfg = stylegan2_config(NAME, "tiny")
    G, D = build_generator(cfg), build_discriminator(cfg)
    host = jax.eval_shape(lambda: tr.init_state(G, D, cfg.train, jax.random.PRNGKey(0)))
    host = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), host).replace(pl_mean=np.float32([1.0, 2.0]))
    mesh = sharded.make_mesh()
    n = mesh.devices.size
    st = sharded.put_state(host, mesh, "per_device")
    np.testing.assert_array_equal(sharded.to_host(st.pl_mean), np.full((n,), 1.5, np.float32) if n != 2
                                  else np.float32([1.0, 2.0]))
    st = sharded.put_state(host, mesh, "global")
    assert sharded.to_host(st.pl_mean).shape == () and float(st.pl_mean) == 1.5
