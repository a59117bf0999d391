"""Integrity of saved checkpoints: per-item digests written with each step (format 2), checked
on every restore with the finiteness of the floats; format-1 directories load with a warning;
`--step` for sample and train, and a resume from an earlier step that keeps the later ones."""

import json
import shutil

import jax
import numpy as np
import pytest
from PIL import Image

import pegan.api as pg
from pegan import checkpoint as ckpt
from pegan import cli
from pegan.configs import apply_overrides, singan_config, stylegan2_config
from pegan.errors import InputError, PeganWarning
from pegan.models.stylegan2 import abstract_variables, build_generator

NAME = "mspie-stylegan2-config-f_c2_8xb3-1100kiters_ffhq-256-512"
INFO = {"family": "stylegan2", "experiment": NAME, "variant": "tiny", "color_order": "RGB"}


def _random_like(abstract, seed):
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: (0.5 * rng.standard_normal(s.shape)).astype(s.dtype), abstract)


@pytest.fixture(scope="module")
def generator():
    cfg = stylegan2_config(NAME, "tiny")
    return cfg, abstract_variables(build_generator(cfg))


def _generator_dir(path, generator, steps=(2, 4)):
    """A tiny StyleGAN2 checkpoint directory whose steps hold random generator_ema weights."""
    cfg, abstract = generator
    for s in steps:
        ckpt.save(path, s, {"generator_ema": _random_like(abstract, s)}, cfg, INFO)
    return path


def _raw_restore(item_dir):
    """The item as orbax reads it, bypassing pegan's checks."""
    import orbax.checkpoint as ocp

    with ocp.StandardCheckpointer() as c:
        return c.restore(item_dir.resolve())


def _same(a, b) -> bool:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(np.asarray(x).tobytes() == np.asarray(y).tobytes() for x, y in zip(la, lb))


def _flip_payload(item_dir):
    """Flip one bit in the array data of an orbax item so that orbax still reads it, with other
    values. Its data files (``d/``) mix array chunks with the b-tree nodes of the key-value store,
    and which file holds what varies from save to save, so every file is tried, largest first,
    from its middle on and then from its start."""
    before = _raw_restore(item_dir)
    files = sorted((p for p in item_dir.rglob("*") if p.is_file() and p.parent.name == "d"),
                   key=lambda p: -p.stat().st_size)
    for f in files:
        data = f.read_bytes()
        half = len(data) // 2
        for off in [*range(half, len(data), 7), *range(0, half, 7)]:
            damaged = bytearray(data)
            damaged[off] ^= 0x10
            f.write_bytes(bytes(damaged))
            try:
                after = _raw_restore(item_dir)
            except Exception:
                continue
            if not _same(before, after):
                return
        f.write_bytes(data)
    raise AssertionError(f"no bit flip in the data files of {item_dir} that orbax still reads")


def _one_error_line(capsys):
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    return err[0]


def test_a_saved_step_records_digests_and_round_trips(generator, tmp_path):
    cfg, abstract = generator
    v = _random_like(abstract, 0)
    small = {"params": {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}, "n": [np.int32(3), np.ones(2)]}
    ckpt.save(tmp_path, 1, {"generator_ema": v, "extra": small}, cfg, INFO)
    with ckpt.CheckpointWriter(tmp_path, cfg, INFO) as w:          # the asynchronous writer too
        assert w.save(2, {"generator_ema": v, "extra": small})
    assert json.loads((tmp_path / "pegan.json").read_text())["format_version"] == ckpt.FORMAT_VERSION == 2
    for step in (1, 2):
        record = json.loads(next((tmp_path / "checkpoints" / str(step) / ckpt.DIGESTS).glob("*metadata*")).read_text())
        assert record == {"algorithm": "sha256", "items": {"generator_ema": ckpt.digest(v), "extra": ckpt.digest(small)}}
        got = ckpt.restore(tmp_path, ["generator_ema", "extra"], step, {"generator_ema": abstract})
        assert _same(got["generator_ema"], v) and _same(got["extra"], small)
    # the digest covers the bytes, the dtype, the shape and the path of every leaf
    d = ckpt.digest(small)
    assert ckpt.digest({"params": {"w": small["params"]["w"] + 1}, "n": small["n"]}) != d
    assert ckpt.digest({"params": {"w": small["params"]["w"].astype(np.float64)}, "n": small["n"]}) != d
    assert ckpt.digest({"params": {"w": small["params"]["w"].reshape(3, 2)}, "n": small["n"]}) != d
    assert ckpt.digest({"params": {"v": small["params"]["w"]}, "n": small["n"]}) != d
    assert ckpt.digest({"n": tuple(small["n"]), "params": dict(small["params"])}) == d   # order, container type
    # the sampler reads a verified step: a named one, and a missing one is listed
    assert ckpt.restore(tmp_path, step=1)["generator_ema"]["params"].keys() == v["params"].keys()
    with pytest.raises(ckpt.CheckpointError, match="has no step 3; its steps are 1, 2: pass --step"):
        ckpt.restore(tmp_path, step=3)


def test_a_damaged_step_is_refused_by_sample_naming_the_intact_one(generator, tmp_path, capsys):
    d = _generator_dir(tmp_path / "ck", generator, steps=(2, 4, 6))
    _flip_payload(d / "checkpoints" / "6" / "generator_ema")
    _flip_payload(d / "checkpoints" / "4" / "generator_ema")
    png = tmp_path / "s.png"
    assert cli.main(["sample", str(d), "--num", "1", "--out", str(png)]) == 2
    line = _one_error_line(capsys)
    assert line.startswith("pegan sample: error: step 6 of ") and "generator_ema does not match the digest" in line
    assert "the latest intact step is 2: pass --step 2" in line          # step 4 is damaged too
    assert not png.exists()                                               # nothing fell back
    assert cli.main(["sample", str(d), "--num", "1", "--out", str(png), "--step", "4"]) == 2
    assert "error: step 4 of " in _one_error_line(capsys)
    assert cli.main(["sample", str(d), "--num", "1", "--out", str(png), "--step", "3"]) == 2
    assert "has no step 3; its steps are 2, 4, 6" in _one_error_line(capsys)
    assert cli.main(["sample", str(d), "--num", "1", "--out", str(png), "--step", "2", "--npy",
                     str(tmp_path / "s.npy")]) == 0
    from pegan.imageio import image_grid, to_uint8

    ref = pg.sample(pg.load(d, step=2), 1, 0, seed=0)                    # the image of step 2
    np.testing.assert_array_equal(np.load(tmp_path / "s.npy"), ref)
    np.testing.assert_array_equal(np.asarray(Image.open(png).convert("RGB")), image_grid(to_uint8(ref)))


def _write_v1(path, generator, steps):
    """A directory as format 1 wrote it: the orbax items alone, no digest record."""
    import orbax.checkpoint as ocp

    cfg, abstract = generator
    path.mkdir()
    (path / "config.json").write_text(json.dumps(cfg.to_dict()))
    (path / "pegan.json").write_text(json.dumps({"format": ckpt.FORMAT, "format_version": 1, **INFO}))
    mngr = ocp.CheckpointManager((path / "checkpoints").resolve())
    for s, v in steps.items():
        mngr.save(s, args=ocp.args.Composite(generator_ema=ocp.args.StandardSave(v)))
    mngr.wait_until_finished()
    mngr.close()


def test_a_version_1_directory_loads_with_one_warning(generator, tmp_path, capsys):
    _, abstract = generator
    v = _random_like(abstract, 0)
    bad = jax.tree.map(np.copy, v)
    bad["params"]["convs_3"]["conv"]["weight"].flat[3] = np.nan           # e.g. a bit flip in the exponent
    _write_v1(tmp_path / "v1", generator, {2: v, 4: bad})
    with pytest.warns(PeganWarning, match="format version 1: its steps carry no digests"):
        g = pg.load(tmp_path / "v1", step=2)
    assert _same(g.variables, v)
    with pytest.raises(ckpt.CheckpointError) as e:                        # finiteness still applies
        ckpt.restore(tmp_path / "v1")
    msg = str(e.value)
    assert "step 4 of" in msg and "generator_ema holds a non-finite value at params/convs_3/conv/weight (nan)" in msg
    assert "latest intact step is 2: pass --step 2" in msg
    shutil.copytree(tmp_path / "v1", tmp_path / "v1b")
    assert cli.main(["sample", str(tmp_path / "v1b"), "--step", "2", "--num", "1", "--out", str(tmp_path / "a.png")]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(err) == 1 and err[0].startswith("pegan: warning: ") and "no digests" in err[0]
    # a digest record removed from a format-2 step is damage, and a newer format is refused
    d = _generator_dir(tmp_path / "v2", generator)
    shutil.rmtree(d / "checkpoints" / "4" / ckpt.DIGESTS)
    with pytest.raises(ckpt.CheckpointError, match=r"step 4 of .* no digest record .* latest intact step is 2"):
        ckpt.restore(d)
    info = json.loads((d / "pegan.json").read_text())
    (d / "pegan.json").write_text(json.dumps(dict(info, format_version=3)))
    with pytest.raises(ckpt.CheckpointError, match="version 3"):
        ckpt.restore(d, step=2)


def test_non_finite_parameters_are_refused(generator, tmp_path, capsys):
    cfg, abstract = generator
    v = _random_like(abstract, 1)
    v["params"]["style_mapping_1"]["kernel"].flat[0] = np.inf
    d = _generator_dir(tmp_path / "ck", generator, steps=(2,))
    ckpt.save(d, 3, {"generator_ema": v})                                  # its digest matches: written so
    assert cli.main(["sample", str(d), "--num", "1", "--out", str(tmp_path / "x.png")]) == 2
    line = _one_error_line(capsys)
    assert "step 3 of" in line and "params/style_mapping_1/kernel (inf)" in line and "--step 2" in line
    assert not (tmp_path / "x.png").exists()
    ckpt.save(tmp_path / "alone", 0, {"generator_ema": v}, cfg, INFO)
    with pytest.raises(ckpt.CheckpointError, match="no earlier step with generator_ema is intact"):
        pg.load(tmp_path / "alone")


DEEP = "[" * 100_000 + "]" * 100_000          # JSON nested past Python's recursion limit


@pytest.mark.parametrize("damage, words", [
    (lambda d: (d / "pegan.json").write_text("[1]"), "pegan.json holds a JSON list"),
    (lambda d: (d / "pegan.json").write_text(json.dumps(dict(json.loads((d / "pegan.json").read_text()),
                                                            format_version="2"))), "version '2'"),
    (lambda d: (d / "pegan.json").write_text(DEEP), "pegan.json is unreadable"),
    (lambda d: (d / "config.json").write_text(DEEP), "config.json is unreadable"),
    (lambda d: (d / "config.json").write_text("[]"), "config.json holds a JSON list"),
    (lambda d: (d / "config.json").write_text(json.dumps(
        {k: v for k, v in json.loads((d / "config.json").read_text()).items() if k != "generator"})),
     "the generator section lacks"),
    (lambda d: (d / "config.json").write_text(json.dumps(dict(
        json.loads((d / "config.json").read_text()), scales="all"))), "scales should be a JSON list"),
    (lambda d: (d / "config.json").write_text(json.dumps(dict(
        json.loads((d / "config.json").read_text()), family="torch"))), "names family 'torch'"),
    (lambda d: next((d / "checkpoints" / "2" / ckpt.DIGESTS).glob("*metadata*")).write_text("[1, 2]"),
     "its digest record (pegan_digests) is damaged"),
])
def test_damaged_records_of_a_checkpoint_are_one_line(generator, tmp_path, capsys, damage, words):
    """pegan.json, config.json or a step's digest record that is damaged (another JSON type,
    nesting past the recursion limit, a section or field missing or of another type): one line
    naming the file and what is wrong, never an AttributeError / TypeError / RecursionError."""
    d = _generator_dir(tmp_path / "ck", generator, steps=(2,))
    damage(d)
    assert cli.main(["sample", str(d), "--num", "1", "--out", str(tmp_path / "x.png")]) == 2
    line = _one_error_line(capsys)
    assert line.startswith("pegan sample: error: ") and words in line and len(line) < 500, line
    assert not (tmp_path / "x.png").exists()


def _edit_generator(d, **changes):
    c = json.loads((d / "config.json").read_text())
    c["generator"].update(changes)
    (d / "config.json").write_text(json.dumps(c))


@pytest.mark.parametrize("changes, words", [
    # a width that changes shapes: orbax restored the stored arrays, flax failed deep in apply
    (dict(style_channels=32), "buffers/mean_latent is stored as (1, 16), the config builds (1, 32)"),
    # fewer mapping layers: orbax's multi-line tree diff before
    (dict(num_mlps=3), "params/style_mapping_3/bias is stored but not built by the config"),
    # more layers than stored
    (dict(num_mlps=9), "params/style_mapping_8/bias is built by the config but not stored"),
])
def test_an_edited_config_that_does_not_fit_the_weights_is_one_line(generator, tmp_path, capsys, changes, words):
    """config.json edited by hand (valid types, other sizes): one line naming the first leaf
    that differs and how to mend it, not a flax traceback; nothing written."""
    d = _generator_dir(tmp_path / "ck", generator, steps=(2,))
    _edit_generator(d, **changes)
    assert cli.main(["sample", str(d), "--num", "1", "--out", str(tmp_path / "x.png")]) == 2
    line = _one_error_line(capsys)
    assert "does not fit the weights of step 2" in line and words in line and "put back the config.json" in line, line
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("changes, words", [
    (dict(out_size=64), "generator.out_size 64 needs a width for resolution 64 in generator.channels "
                        "(it has 4, 8, 16, 32)"),
    (dict(out_size=48), "generator.out_size must be a power of two from 8 to 4096, got 48"),
    (dict(channels=[[4, 16], [8, 0], [16, 12], [32, 8]]), "the width of resolution 8 must be at least 1, got 0"),
])
def test_a_config_whose_channel_table_cannot_build_the_model_is_one_line(generator, tmp_path, capsys, changes, words):
    """A size the channel table does not cover (a KeyError inside the model's set-up before)."""
    d = _generator_dir(tmp_path / "ck", generator, steps=(2,))
    _edit_generator(d, **changes)
    assert cli.main(["sample", str(d), "--num", "1", "--out", str(tmp_path / "x.png")]) == 2
    line = _one_error_line(capsys)
    assert words in line, line
    cfg = stylegan2_config(NAME, "tiny")
    with pytest.raises(InputError, match="needs a width for resolution 64"):
        build_generator(apply_overrides(cfg, ["generator.out_size=64", "discriminator.in_size=64"]))


@pytest.mark.parametrize("changes, words", [
    (dict(base_channels=32), "generator batch_stats/blocks_0/block1/bn/mean is stored as (8,), the config builds (16,)"),
    (dict(num_scales=2), "blocks_3/block1/bn/mean is stored but not built by the config"),
    (dict(padding=0), "generator.padding 0 needs generator.pad_at_head true"),
    (dict(noise_with_pad=True), "generator.noise_with_pad needs generator.pad_at_head true"),
])
def test_an_edited_singan_config_is_one_line(fixtures, tmp_path, capsys, changes, words):
    d = tmp_path / "s"
    pg.convert(fixtures / "pe_singan_csg_tiny.mmgen.pth", d, experiment="singan-csg_fish", variant="tiny")
    assert cli.main(["sample", str(d), "--num", "1", "--out", str(tmp_path / "ok.png")]) == 0
    capsys.readouterr()
    _edit_generator(d, **changes)
    assert cli.main(["sample", str(d), "--num", "1", "--out", str(tmp_path / "x.png")]) == 2
    line = _one_error_line(capsys)
    assert words in line, line
    assert not (tmp_path / "x.png").exists()


def test_a_step_orbax_cannot_read_is_one_short_line_naming_an_intact_step(generator, tmp_path, capsys):
    d = _generator_dir(tmp_path / "ck", generator, steps=(2, 4))
    for f in (d / "checkpoints" / "4" / "generator_ema").rglob("*"):
        if f.is_file() and f.parent.name == "d":
            f.write_bytes(f.read_bytes()[:40])                             # every data file truncated
    assert cli.main(["sample", str(d), "--num", "1", "--out", str(tmp_path / "x.png")]) == 2
    line = _one_error_line(capsys)
    assert "cannot restore generator_ema from step 4" in line and "pass --step 2" in line and len(line) < 700, line


def test_a_damaged_reference_file_is_refused_at_conversion(fixtures, tmp_path, capsys):
    """A .pth whose weights hold a NaN is refused by `pegan convert` naming the file and the
    weight (not later, as a damaged pegan checkpoint); an odd meta.iter becomes step 0."""
    from pegan.convert.torchpickle import load_pth
    from torch_writer import save_pth

    obj = load_pth(fixtures / "mspie_stylegan2_config-f_tiny.mmgen.pth")
    key = next(k for k in obj["state_dict"] if k.startswith("generator_ema.") and k.endswith("weight"))
    sd = {k: np.array(v) for k, v in obj["state_dict"].items()}
    sd[key].flat[0] = np.nan
    save_pth(tmp_path / "nan.pth", {"meta": obj.get("meta", {}), "state_dict": sd})
    rc = cli.main(["convert", str(tmp_path / "nan.pth"), str(tmp_path / "out"), "--experiment", NAME,
                   "--variant", "tiny"])
    line = _one_error_line(capsys)
    assert rc == 2 and "nan.pth: its generator_ema holds a non-finite value" in line, line
    assert not (tmp_path / "out").exists()
    for odd in ("abc", -5, 10**30, [1, 2], float("nan")):
        sd = {k: np.array(v) for k, v in obj["state_dict"].items()}
        save_pth(tmp_path / "odd.pth", {"meta": {"iter": odd}, "state_dict": sd})
        out = tmp_path / f"odd_{len(list(tmp_path.iterdir()))}"
        assert cli.main(["convert", str(tmp_path / "odd.pth"), str(out), "--experiment", NAME, "--variant", "tiny"]) == 0
        capsys.readouterr()
        assert ckpt.steps(out) == [0] and ckpt.read_info(out)["source"]["iteration"] is None


@pytest.mark.parametrize("change, words", [
    (dict(noise_weights=np.array(1.0)), "noise_weights must be a list"),
    (dict(noise_weights=[10**400, 1.0]), "not a finite float32"),
    (dict(noise_weights=[1e39, 1.0]), "not a finite float32"),
    (dict(noise_weights=[float("nan"), 1.0]), "not a finite float32"),
    (dict(fixed_noises=[np.full((1, 3, 8, 8), np.nan), np.zeros((1, 3, 12, 12))]), "fixed_noises[0] holds NaN"),
])
def test_a_damaged_singan_pkl_is_one_error(change, words):
    from pegan.convert.mmgen import ConversionError
    from pegan.convert.singan import noise_state_from_pkl

    pkl = dict(fixed_noises=[np.zeros((1, 3, 8, 8)), np.zeros((1, 3, 12, 12))], noise_weights=[1.0, 0.1],
               curr_stage=1)
    assert noise_state_from_pkl(pkl)["noise_weights"].tolist() == [1.0, np.float32(0.1)]
    with pytest.raises(ConversionError) as e:
        noise_state_from_pkl(dict(pkl, **change))
    assert words in str(e.value), e.value


def test_set_aside_later_steps_keeps_every_step(generator, tmp_path):
    d = _generator_dir(tmp_path / "ck", generator, steps=(1, 2, 3))
    logs = []
    moved = ckpt.set_aside_later_steps(d, 1, logs.append)
    assert ckpt.steps(d) == [1] and moved == [d / "superseded" / "2", d / "superseded" / "3"]
    assert len(logs) == 1 and "moved the later steps 2, 3 aside" in logs[0]
    _generator_dir(d, generator, steps=(2,))                               # the run writes step 2 again
    ckpt.set_aside_later_steps(d, 1, logs.append)
    assert sorted(p.name for p in (d / "superseded").iterdir()) == ["2", "2.1", "3"]
    assert ckpt.set_aside_later_steps(d, 1, logs.append) == [] and len(logs) == 2
    assert (d / "superseded" / "2.1" / "generator_ema").is_dir()


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    d = tmp_path_factory.mktemp("imgs")
    for i in range(2):
        Image.fromarray(np.full((32, 32, 3), 60 * i + 30, np.uint8)).save(d / f"{i}.png")
    return d


def test_stylegan2_resume_verifies_and_resumes_from_an_earlier_step(images, tmp_path, capsys):
    from pegan.train.stylegan2_loop import ImageFolder, Trainer

    cfg = stylegan2_config(NAME, "tiny")
    cfg.scales = [0]
    w = tmp_path / "w"
    tr = Trainer(cfg, ImageFolder(images, 32), w, log=lambda m: None)
    for s in (2, 4):                                     # the train state saved as steps 2 and 4
        tr.state = tr.state.replace(step=jax.device_put(np.asarray(s, tr.state.step.dtype), tr.state.step.sharding))
        tr.step = s                                      # the loop's host-side step counter
        tr.save()
    tr.close()
    _flip_payload(w / "checkpoints" / "4" / "train_state")
    args = ["train", NAME, "--variant", "tiny", "--set", "scales=[0]", "--data", str(images), "--steps", "2",
            "--workdir", str(w), "--no-tensorboard", "--sample-every", "1000"]
    assert cli.main(args) == 2
    line = _one_error_line(capsys)
    assert line.startswith("pegan train: error: step 4 of ") and "train_state does not match the digest" in line
    assert "the latest intact step is 2: pass --step 2" in line and ckpt.steps(w) == [2, 4]
    assert cli.main(args + ["--step", "7"]) == 2
    assert "has no step 7; its steps are 2, 4" in _one_error_line(capsys)
    kept = sorted(p.relative_to(w / "checkpoints" / "4") for p in (w / "checkpoints" / "4").rglob("*"))
    logs = []
    resumed = Trainer(cfg, ImageFolder(images, 32), w, log=logs.append, step=2)   # what `--step 2` runs
    assert int(resumed.state.step) == 2 and ckpt.steps(w) == [2]          # the run may write step 4 again
    assert any("moved the later steps 4 aside" in m for m in logs)
    assert sorted(p.relative_to(w / "superseded" / "4") for p in (w / "superseded" / "4").rglob("*")) == kept
    resumed.close()


def test_singan_resume_verifies_and_resumes_from_an_earlier_step(tmp_path):
    from pegan.train import singan as ts

    cfg = singan_config("singan-csg_fish", "tiny")
    cfg.data.min_size, cfg.data.max_size = 12, 16
    img = np.random.default_rng(0).integers(0, 255, (12, 16, 3), dtype=np.uint8)
    stop, reals = ts.create_real_pyramid(img, 12, 16)
    cfg = ts.fit_config_to_pyramid(cfg, stop)
    cfg.pyramid = [list(r.shape[1:3]) for r in reals]
    trainer = ts.SinGANTrainer(cfg, reals, jax.random.PRNGKey(0))
    trainer.state["next_stage"] = stop + 1               # saved as if every stage were trained
    trainer.state["noise_weights"] = [1.0] * (stop + 1)
    info = {"family": "singan", "experiment": cfg.name, "variant": "tiny", "color_order": "RGB"}
    items = {"generator": trainer.state["generator"], "discriminator": trainer.state["discriminator"],
             "singan": trainer.singan_item()}
    for s in (2, 3):
        ckpt.save(tmp_path, s, items, cfg, info)
    _flip_payload(tmp_path / "checkpoints" / "3" / "discriminator")
    with pytest.raises(ckpt.CheckpointError) as e:
        ts.run(cfg, img, tmp_path, log=lambda m: None)
    assert "step 3 of" in str(e.value) and "discriminator does not match the digest" in str(e.value)
    assert "the latest intact step is 2: pass --step 2" in str(e.value)
    logs = []
    tr2, reports = ts.run(cfg, img, tmp_path, log=logs.append, step=2)
    assert reports == [] and tr2.state["next_stage"] == stop + 1
    assert any("moved the later steps 3 aside" in m for m in logs)
    assert ckpt.steps(tmp_path) == [2] and (tmp_path / "superseded" / "3" / "discriminator").is_dir()
