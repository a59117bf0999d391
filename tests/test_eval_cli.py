"""`pegan evaluate` end to end: a tiny converted generator, random-weight extractors, a generated
real dataset; the numbers against an independent computation of the documented protocol."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pegan.api as pg
from pegan.eval import metrics
from pegan.eval.inception import load_inception
from pegan.eval.vgg import load_vgg16

CFG_F = "mspie-stylegan2-config-f_c2_8xb3-1100kiters_ffhq-256-512"


def pegan_cli(*args, env=None):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "pegan.cli", *map(str, args)], capture_output=True,
                          text=True, env=e)


def make_reals(folder, n, size=32, seed=0):
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(n):
        a, b, c = rng.uniform(0.5, 4, 3)
        img = np.stack([np.sin(a * xx * 6 + i), np.cos(b * yy * 6), np.sin(c * (xx + yy) * 4)], -1)
        img = img + 0.3 * rng.standard_normal(img.shape)
        Image.fromarray(np.clip((img + 1) * 127.5, 0, 255).astype(np.uint8)).save(folder / f"{i:03d}.png")


def independent_fakes(loaded, num, scale, seed=0):
    """The documented protocol written out again: per-sample keys, fresh noise, 8-bit rounding."""
    G = loaded.model
    keys = [jax.random.fold_in(jax.random.PRNGKey(seed), i) for i in range(num)]
    z = jnp.stack([jax.random.normal(jax.random.fold_in(k, 0), (G.style_channels,)) for k in keys])
    noise = []
    for j, s in enumerate(G.noise_shapes(scale)):
        noise.append(jnp.stack([jax.random.normal(jax.random.fold_in(jax.random.fold_in(k, 1), j), s + (1,))
                                for k in keys]))
    img = np.asarray(G.apply(loaded.variables, z, scale, noise=noise), np.float64)
    u8 = np.floor(np.clip((img + 1) / 2, 0, 1) * 255 + 0.5)
    return ((u8 - 127.5) / 127.5).astype(np.float32)


def numpy_fid(a, b):
    """FID from the samples themselves (float64): with centred X [n, d] and Y [m, d],
    tr(sqrtm(S_x S_y)) is the nuclear norm of X Y^T / sqrt((n - 1)(m - 1)), an n x m problem
    (a route independent of both scipy's sqrtm and pegan's eigenvalue form)."""
    x, y = a - a.mean(0), b - b.mean(0)
    tr_root = np.linalg.svd(x @ y.T, compute_uv=False).sum() / np.sqrt((len(a) - 1) * (len(b) - 1))
    tr_x, tr_y = (x ** 2).sum() / (len(a) - 1), (y ** 2).sum() / (len(b) - 1)
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + tr_x + tr_y - 2 * tr_root)


def numpy_unbiased_mmd2(x, y):
    """The unbiased squared MMD with k(a, b) = (a.b / d + 1)^3, pair by pair in float64."""
    d = x.shape[1]
    k = lambda a, b: (float(np.dot(a, b)) / d + 1.0) ** 3
    n, m = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return xx + yy - 2 * xy


def test_evaluate_cli_end_to_end(fixtures, tmp_path):
    ck = tmp_path / "ckpt"
    r = pegan_cli("convert", fixtures / "mspie_stylegan2_config-f_tiny.mmgen.pth", ck,
                  "--experiment", CFG_F, "--variant", "tiny")
    assert r.returncode == 0, r.stderr
    reals = tmp_path / "reals"
    make_reals(reals, 24)
    inc, vgg = fixtures / "fid_inception_random_compact.pth", fixtures / "vgg16_random_compact.pth"
    args = ["evaluate", ck, "--metrics", "fid20,pr12,kid16", "--chosen-scale", "2", "--real", reals,
            "--inception", inc, "--vgg16", vgg, "--batch", "6", "--cache-dir", tmp_path / "cache", "--fid-method", "eigh",
            "--out", tmp_path / "m.json"]
    r = pegan_cli(*args)
    assert r.returncode == 0, r.stderr
    assert "protocol:" in r.stdout and "bilinear" in r.stdout and "BGR" in r.stdout
    rep = json.loads((tmp_path / "m.json").read_text())
    assert rep["image_size"] == [48, 48] and rep["chosen_scale"] == [2, 2]
    got_fid, got_pr = rep["metrics"]["fid20"], rep["metrics"]["pr12"]

    # independent: generate all 20 fakes in one call, features in one call, numpy/scipy FID
    loaded = pg.load(ck)
    fakes = independent_fakes(loaded, 20, (2, 2))
    real_u8 = np.stack([np.asarray(__import__("PIL.Image").Image.open(reals / f"{i:03d}.png")) for i in range(24)])
    real = (real_u8.astype(np.float32) - 127.5) / 127.5
    inet, ivars = load_inception(str(inc))
    f_fake = np.asarray(jax.jit(inet.apply)(ivars, fakes), np.float64)
    f_real = np.asarray(jax.jit(inet.apply)(ivars, real[:20]), np.float64)
    assert got_fid["fid"] == pytest.approx(numpy_fid(f_fake, f_real), rel=1e-3)
    # KID on 16: every subset of 16 of 16 is the whole set, so each equals the full unbiased MMD^2
    got_kid = rep["metrics"]["kid16"]
    assert got_kid["kid"] == pytest.approx(numpy_unbiased_mmd2(f_fake[:16], f_real[:16]), rel=1e-4, abs=1e-9)
    assert got_kid["kid_subset_size"] == 16 and got_kid["kid_std"] < 1e-6 * max(1.0, abs(got_kid["kid"]))
    vnet, vvars = load_vgg16(str(vgg))
    v_fake = np.asarray(jax.jit(vnet.apply)(vvars, fakes[:12]))
    v_real = np.asarray(jax.jit(vnet.apply)(vvars, real[:12, ..., ::-1]))   # mmgen feeds the reals as BGR
    want = metrics.precision_recall(v_real, v_fake)
    assert (got_pr["precision"], got_pr["recall"]) == (want["precision"], want["recall"])

    # a second run reads the cached real features and gives the same numbers; a damaged cache
    # file (here the 20 Inception rows cut short) is computed again, not read or a traceback
    inc_cache = [f for f in (tmp_path / "cache").rglob("*.npy") if "-inception-" in f.name and "-20-" in f.name]
    assert len(inc_cache) == 1, sorted((tmp_path / "cache").rglob("*"))
    inc_cache[0].write_bytes(inc_cache[0].read_bytes()[:200])
    r2 = pegan_cli(*args)
    assert r2.returncode == 0, r2.stderr
    assert "vgg16 features: cached" in r2.stdout and "is damaged" in r2.stdout and "computing them again" in r2.stdout
    rep2 = json.loads((tmp_path / "m.json").read_text())
    assert rep2["metrics"]["fid20"]["fid"] == got_fid["fid"]
    assert rep2["metrics"]["pr12"] == got_pr

    # the real statistics saved by pegan, or a mmgen-style pickle, give the same FID
    mu, sig = metrics.feature_stats(f_real.astype(np.float32))
    import pickle
    with open(tmp_path / "stats.pkl", "wb") as f:
        pickle.dump({"mean": mu, "cov": sig, "size": 20, "name": "reals"}, f)
    r3 = pegan_cli("evaluate", ck, "--metrics", "fid20", "--chosen-scale", "2", "--real", tmp_path / "stats.pkl",
                   "--inception", inc, "--batch", "6", "--fid-method", "eigh", "--out", tmp_path / "m3.json")
    assert r3.returncode == 0, r3.stderr
    assert json.loads((tmp_path / "m3.json").read_text())["metrics"]["fid20"]["fid"] == pytest.approx(
        got_fid["fid"], rel=1e-3)


def test_evaluate_cli_errors(fixtures, tmp_path):
    ck = tmp_path / "ckpt"
    assert pegan_cli("convert", fixtures / "mspie_stylegan2_config-f_tiny.mmgen.pth", ck,
                     "--experiment", CFG_F, "--variant", "tiny").returncode == 0
    reals = tmp_path / "reals"
    make_reals(reals, 5)
    env = {"PEGAN_INCEPTION_WEIGHTS": "", "PEGAN_VGG16_WEIGHTS": ""}
    r = pegan_cli("evaluate", ck, "--metrics", "fid10", "--real", reals, env=env)
    assert r.returncode == 2 and "pt_inception-2015-12-05-6726825d.pth" in r.stderr and "--inception" in r.stderr
    r = pegan_cli("evaluate", ck, "--metrics", "fid10", "--real", reals,
                  "--inception", fixtures / "fid_inception_random_compact.pth", "--cache-dir", tmp_path / "c")
    assert r.returncode == 2 and "holds 5 images, 10 are needed" in r.stderr
    r = pegan_cli("evaluate", ck, "--metrics", "is50k", "--real", reals)
    assert r.returncode == 2 and "unknown metric" in r.stderr
    r = pegan_cli("evaluate", ck, "--metrics", "pr10", "--real-stats", tmp_path / "none.npz")
    assert r.returncode == 2 and "precision/recall and KID need real images" in r.stderr
    (reals / "004.png").write_bytes(b"not a png")
    r = pegan_cli("evaluate", ck, "--metrics", "fid5", "--real", reals,
                  "--inception", fixtures / "fid_inception_random_compact.pth", "--cache-dir", tmp_path / "c")
    assert r.returncode == 2 and "004.png" in r.stderr
