"""Conversion of every real StyleGAN2 / MS-PIE config (zero-filled arrays of the released shapes),
experiment identification, the checkpoint directory, and the command line."""

import json
import os
import re
import subprocess
import sys
import zipfile

import jax
import numpy as np
import pytest

import pegan.api as pg
from pegan import checkpoint as ckpt
from pegan.configs import experiments_dir, load_experiment, recognise_filename, stylegan2_config
from pegan.configs.release import STYLEGAN2 as RELEASED
from pegan.convert import mmgen
from pegan.convert.torchpickle import load_pth
from pegan.models.stylegan2 import abstract_variables, build_discriminator, build_generator
from torch_writer import save_pth

from test_stylegan2_parity import TOL, ms_name, nhwc, noises

STYLEGAN_FILES = ("real_config_state_dict_shapes.json", "stylegan2_real_config_state_dict_shapes.json")


def real_configs(fixtures):
    """(mmgen config file name, {key: shape}) of every StyleGAN2-family real config."""
    out = []
    for f in STYLEGAN_FILES:
        data = json.loads((fixtures / f).read_text())
        for name, c in data["configs"].items():
            if "singan" in name:
                continue
            out.append((name, data["structures"][c["structure"]]))
    return out


def zeros(shapes):
    return {k: np.zeros(s, np.float32) for k, s in shapes.items()}


def test_every_real_config_converts_without_missing_or_unexpected_keys(fixtures):
    configs = real_configs(fixtures)
    assert len(configs) == 13
    seen = set()
    for cfg_file, shapes in configs:
        name = recognise_filename(cfg_file)
        assert name is not None, cfg_file
        seen.add(name)
        cfg = load_experiment(name)
        parts = mmgen.split_prefixes(zeros(shapes))
        assert set(parts["other"]) <= {"gen_auxiliary_losses.0.mean_path_length"}, parts["other"]
        g_abs = abstract_variables(build_generator(cfg))
        d_abs = abstract_variables(build_discriminator(cfg))
        for item in ("generator", "generator_ema"):
            v = mmgen.convert_stylegan2_generator(parts[item], True, g_abs)  # raises on any mismatch
            assert len(mmgen.flatten(v)) == len(mmgen.flatten(g_abs)) - 1     # all but mean_latent
        v = mmgen.convert_stylegan2_discriminator(parts["discriminator"], True, d_abs)
        assert len(mmgen.flatten(v)) == len(mmgen.flatten(d_abs))
        # the config's file name identifies it; the checked facts agree with the shapes
        got, how = mmgen.identify_experiment(parts, filename=cfg_file)
        assert (got.name, how) == (name, "file name")
    assert seen == set(RELEASED)


def test_shapes_identify_only_what_they_can(fixtures):
    """Without a name, shapes pick c, d, g, h, i, a, b and f-1024; e/f/f-896 and j/k are ambiguous."""
    groups = {}
    for cfg_file, shapes in real_configs(fixtures):
        parts = mmgen.split_prefixes(zeros(shapes))
        name = recognise_filename(cfg_file)
        try:
            got, how = mmgen.identify_experiment(parts)
            assert (got.name, how) == (name, "shapes")
            groups[name] = "unique"
        except mmgen.ConversionError as e:
            assert "several experiments" in str(e) and name in str(e)
            groups[name] = "ambiguous"
    ambiguous = {n for n, g in groups.items() if g == "ambiguous"}
    assert ambiguous == {ms_name("e"), ms_name("f"), ms_name("j"), ms_name("k"),
                         "mspie-stylegan2-config-f_c2_8xb3-1100kiters_ffhq-256-896"}


def test_wrong_experiment_lists_the_differences(fixtures):
    shapes = dict(real_configs(fixtures))["mspie-stylegan2_c2_config-h_ffhq_256-512_b3x8_1100k.py"]
    parts = mmgen.split_prefixes(zeros(shapes))
    with pytest.raises(mmgen.ConversionError) as e:
        mmgen.identify_experiment(parts, experiment=ms_name("f"))
    assert "head: checkpoint has 'constant 6x6'" in str(e.value) and "no_pad" in str(e.value)
    # array level: a missing, an unexpected and a mis-shaped key are all listed at once
    g = dict(parts["generator_ema"])
    g.pop("convs.3.noise_injector.weight")
    g["convs.3.extra"] = np.zeros(3, np.float32)
    g["to_rgbs.1.bias"] = np.zeros((1, 4, 1, 1), np.float32)
    abstract = abstract_variables(build_generator(stylegan2_config(ms_name("h"))))
    with pytest.raises(mmgen.ConversionError) as e:
        mmgen.convert_stylegan2_generator(g, True, abstract)
    msg = str(e.value)
    assert "missing (1): params/convs_3/noise_injector/weight" in msg
    assert "unexpected checkpoint keys (1): convs.3.extra" in msg
    assert "mis-shaped (1): params/to_rgbs_1/bias (4,) vs model (3,)" in msg


def test_recognise_released_file_names():
    for name, e in RELEASED.items():
        assert recognise_filename(e["file"]) == name
        assert recognise_filename("/some/dir/" + e["file"]) == name
        assert recognise_filename(name) == name
    assert recognise_filename("my_model.pth") is None


def test_tiny_variants_build():
    for name in RELEASED:
        cfg = load_experiment(name, "tiny")
        G = build_generator(cfg)
        z = np.zeros((1, 16), np.float32)
        v = abstract_variables(G)
        img = jax.eval_shape(lambda v: G.apply(v, z, max(cfg.scales), rng=jax.random.PRNGKey(1)), v)
        f = 32 // 4
        assert img.shape == (1, (4 + max(cfg.scales)) * f, (4 + max(cfg.scales)) * f, 3)


def test_each_released_experiment_file_documents_its_release_and_command():
    """experiments/<name>.py: the release facts in its docstring are the release table's, and the
    command it gives names the file itself."""
    d = experiments_dir()
    files = sorted(p.stem for p in d.glob("*.py"))
    assert set(RELEASED) <= set(files)
    for name, e in RELEASED.items():
        text = (d / f"{name}.py").read_text()
        assert f"FID50k {e['fid50k']:.2f}" in text and e["file"] in text
        assert f"precision10k {e['precision10k']:.2f}" in text and f"recall10k {e['recall10k']:.2f}" in text
        assert f"pegan train --config experiments/{name}.py" in text
        cfg = load_experiment(str(d / f"{name}.py"))
        assert cfg.name == name and "release" not in cfg and cfg.family == "stylegan2"


# -- checkpoint directory and command line ------------------------------------------------

def pegan_cli(*args, cwd=None):
    env = dict(os.environ)
    return subprocess.run([sys.executable, "-m", "pegan.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env=env)


def test_convert_then_sample_matches_the_fixture(fixtures, tmp_path):
    src = fixtures / "mspie_stylegan2_config-i_tiny.mmgen.pth"
    out = tmp_path / "ckpt"
    r = pegan_cli("convert", src, out, "--experiment", ms_name("i"), "--variant", "tiny", "--keep-bgr")
    assert r.returncode == 0, r.stderr
    assert ckpt.is_checkpoint_dir(out) and ckpt.steps(out) == [0]
    info = ckpt.read_info(out)
    assert info["experiment"] == ms_name("i") and info["color_order"] == "BGR"
    assert json.loads((out / "config.json").read_text())["generator"]["no_pad"] is True
    d = np.load(fixtures / "mspie_stylegan2_config-i_tiny.npz")
    for which, key in (("ema", "img_cs4"), ("orig", None)):
        g = pg.load(out, which=which)
        if key:
            img = g.model.apply(g.variables, d["z"], 4, noise=noises(d, "noise_cs4"))
            np.testing.assert_allclose(np.asarray(img), nhwc(d["out.img_cs4"]), **TOL)
    D = pg.load(out, which="discriminator")
    dd = np.load(fixtures / "mspie_disc_tiny.npz")
    np.testing.assert_allclose(D.model.apply(D.variables, nhwc(dd["x40"])), dd["out.logits_x40"], **TOL)

    # sampling: non-square by offsets and by pixel size give the same images; npy = API
    r1 = pegan_cli("sample", out, "--chosen-scale", "0,2", "--num", "3", "--batch", "2", "--seed", "5",
                   "--truncation", "0.7", "--out", tmp_path / "a.png", "--npy", tmp_path / "a.npy")
    assert r1.returncode == 0, r1.stderr
    r2 = pegan_cli("sample", out, "--size", "32,48", "--num", "3", "--seed", "5", "--truncation", "0.7",
                   "--out", tmp_path / "b.png", "--npy", tmp_path / "b.npy")
    assert r2.returncode == 0, r2.stderr
    a, b = np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy")
    assert a.shape == (3, 32, 48, 3)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    api = pg.sample(pg.load(out), 3, (0, 2), truncation=0.7, seed=5, batch=3)
    np.testing.assert_allclose(a, api[..., ::-1], rtol=1e-5, atol=1e-5)   # the CLI writes RGB
    from PIL import Image
    assert Image.open(tmp_path / "a.png").size[0] > 48


def test_cli_errors_are_clear(fixtures, tmp_path):
    src = fixtures / "mspie_stylegan2_config-k_tiny.mmgen.pth"
    r = pegan_cli("convert", tmp_path / "nope.pth", tmp_path / "o")
    assert r.returncode == 2 and "nope.pth" in r.stderr and "Traceback" not in r.stderr
    bad = tmp_path / "bad.pth"
    bad.write_bytes(src.read_bytes()[:5000])
    r = pegan_cli("convert", bad, tmp_path / "o")
    assert r.returncode == 2 and "bad.pth" in r.stderr and "Traceback" not in r.stderr
    r = pegan_cli("convert", src, tmp_path / "o", "--variant", "tiny")
    assert r.returncode == 2 and "--experiment" in r.stderr and ms_name("j") in r.stderr
    r = pegan_cli("convert", src, tmp_path / "o", "--experiment", ms_name("c"), "--variant", "tiny")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "does not fit" in lines[0], r.stderr   # one line (was 3 to 5)
    assert "named by --experiment): head: checkpoint has" in lines[0] and lines[0].endswith("(--experiment)")
    r = pegan_cli("convert", src, tmp_path / "o", "--experiment", "config-z")
    assert r.returncode == 2 and "unknown experiment" in r.stderr
    assert not (tmp_path / "o").exists() or not ckpt.is_checkpoint_dir(tmp_path / "o")
    out = tmp_path / "ok"
    assert pegan_cli("convert", src, out, "--experiment", ms_name("k"), "--variant", "tiny").returncode == 0
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    r = pegan_cli("convert", src, out, "--experiment", ms_name("k"), "--variant", "tiny")
    assert r.returncode == 2 and "not empty" in r.stderr
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before      # nothing lost
    r = pegan_cli("sample", out, "--size", "30,32", "--out", tmp_path / "x.png")
    assert r.returncode == 2 and "multiple of 8" in r.stderr
    r = pegan_cli("sample", out, "--chosen-scale", "2", "--noise", "const", "--out", tmp_path / "x.png")
    assert r.returncode == 2 and "chosen_scale 0" in r.stderr
    r = pegan_cli("sample", tmp_path / "missing_dir", "--out", tmp_path / "x.png")
    assert r.returncode == 2 and "no such file" in r.stderr
    (out / "pegan.json").write_text("{broken")
    r = pegan_cli("sample", out, "--out", tmp_path / "x.png")
    assert r.returncode == 2 and "pegan.json" in r.stderr


def test_checkpoint_save_refuses_to_overwrite_a_step(tmp_path):
    cfg = stylegan2_config(ms_name("f"), "tiny")
    info = {"family": "stylegan2", "experiment": cfg.name, "variant": "tiny", "color_order": "RGB"}
    tree = {"params": {"a": np.arange(3, dtype=np.float32)}}
    ckpt.save(tmp_path, 10, {"generator_ema": tree}, cfg, info)
    with pytest.raises(ckpt.CheckpointError, match="already has step 10"):
        ckpt.save(tmp_path, 10, {"generator_ema": tree})
    with pytest.raises(ckpt.CheckpointError, match="experiment"):
        ckpt.save(tmp_path, 20, {"generator_ema": tree}, cfg, dict(info, experiment="other"))
    ckpt.save(tmp_path, 20, {"generator_ema": {"params": {"a": tree["params"]["a"] + 1}}})
    assert ckpt.steps(tmp_path) == [10, 20]
    got = ckpt.restore(tmp_path, ["generator_ema"], step=10)
    np.testing.assert_array_equal(got["generator_ema"]["params"]["a"], [0, 1, 2])
    with pytest.raises(ckpt.CheckpointError, match="no discriminator"):
        ckpt.restore(tmp_path, ["discriminator"])


def test_save_pth_round_trip(tmp_path):
    sd = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "s": np.float32(2.5), "i": np.arange(4),
          "h": np.ones((2, 2), np.float16), "t": np.ones((3, 4), np.float32)[:, 1]}
    path = save_pth(tmp_path / "x.pth", {"meta": {"iter": 7, "note": "x"}, "state_dict": sd})
    back = load_pth(path)
    assert back["meta"] == {"iter": 7, "note": "x"}
    for k, v in sd.items():
        assert back["state_dict"][k].dtype == np.asarray(v).dtype
        np.testing.assert_array_equal(back["state_dict"][k], v)
    with zipfile.ZipFile(path) as zf:
        assert "archive/data.pkl" in zf.namelist()


def random_state_dict(shapes, seed=0):
    """Random arrays of the released shapes: standard normal weights (the equalized-lr scales
    make them well-behaved), small biases, noise-injection weights of 0.1."""
    rng = np.random.default_rng(seed)
    sd = {}
    for k, s in shapes.items():
        if k.endswith("noise_injector.weight"):
            sd[k] = np.full(s, 0.1, np.float32)
        elif k.endswith("bias") or "mean_path_length" in k:
            sd[k] = (0.1 * rng.standard_normal(s)).astype(np.float32)
        else:
            sd[k] = rng.standard_normal(s, dtype=np.float32)
    return sd


@pytest.mark.slow
def test_full_size_config_f_samples_512_and_384x640_through_the_cli(fixtures, tmp_path):
    """A full-size config-f checkpoint with the released key set, written by our own writer
    under the released file name less its digest suffix (the name's SHA-256 digits are checked, and
    this file is not the released one), converted and sampled by the CLI at 512x512 and 384x640."""
    shapes = dict(real_configs(fixtures))["mspie-stylegan2_c2_config-f_ffhq_256-512_b3x8_1100k.py"]
    keep = {k: s for k, s in shapes.items() if not k.startswith("generator.")}   # keep the file smaller
    path = tmp_path / re.sub(r"-[0-9a-f]{8}\.pth$", ".pth", RELEASED[ms_name("f")]["file"])
    save_pth(path, {"meta": {"iter": 1100000}, "state_dict": random_state_dict(keep)})
    out = tmp_path / "ckpt"
    r = pegan_cli("convert", path, out)
    assert r.returncode == 0, r.stderr
    assert "chosen by file name" in r.stdout and ckpt.steps(out) == [1100000]
    for args, shape in ((("--chosen-scale", "4"), (512, 512)), (("--size", "384,640"), (384, 640))):
        npy = tmp_path / f"{shape[0]}x{shape[1]}.npy"
        r = pegan_cli("sample", out, *args, "--num", "1", "--truncation", "0.7", "--out",
                      tmp_path / "s.png", "--npy", npy)
        assert r.returncode == 0, r.stderr
        img = np.load(npy)
        assert img.shape == (1,) + shape + (3,)
        assert np.isfinite(img).all() and img.std() > 1e-3
