"""Every user mistake is one `pegan <cmd>: error: ...` line with exit status 2, found before
anything is read or compiled, and nothing the user owns is damaged: foreign folders are never
replaced, grey 16-bit images are scaled rather than clipped."""

import pathlib

import jax
import numpy as np
import pytest
from PIL import Image

import pegan.api as pg
from pegan import checkpoint as ckpt
from pegan.cli import main
from pegan.configs import singan_config, stylegan2_config
from pegan.errors import ExistingPathError
from pegan.models.stylegan2 import abstract_variables, build_generator

CFG_F = "mspie-stylegan2-config-f_c2_8xb3-1100kiters_ffhq-256-512"
EXP_F = f"experiments/{CFG_F}.py"
REPO = pathlib.Path(__file__).resolve().parents[1]
COMPILE_EVENTS = ("/jax/core/compile/jaxpr_to_mlir_module_duration", "/jax/core/compile/backend_compile_duration")


@pytest.fixture
def refused(capsys, monkeypatch):
    """run(*argv): main(argv) must exit with 2 after printing exactly one line,
    `pegan <cmd>: error: ...`, with no traceback and without compiling anything; returns it."""
    monkeypatch.chdir(REPO)
    compiled = []

    def listen(event, duration, **kw):
        if event in COMPILE_EVENTS:
            compiled.append(kw.get("fun_name", event))

    jax.monitoring.register_event_duration_secs_listener(listen)

    def run(*argv):
        compiled.clear()
        rc = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        lines = err.splitlines()
        assert rc == 2, (rc, out, err)
        assert len(lines) == 1 and lines[0].startswith(f"pegan {argv[0]}: error: "), err
        assert "Traceback" not in err
        assert not compiled, f"compiled {compiled} before refusing"
        return lines[0]

    yield run
    jax.monitoring.unregister_event_duration_listener(listen)


@pytest.fixture(scope="module")
def ck(tmp_path_factory):
    """A tiny config-f checkpoint directory (zero weights: nothing here samples from it)."""
    cfg = stylegan2_config(CFG_F, "tiny")
    v = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), abstract_variables(build_generator(cfg)))
    d = tmp_path_factory.mktemp("ck")
    ckpt.save(d, 0, {"generator_ema": v}, cfg, {"family": "stylegan2", "experiment": cfg.name,
                                                 "variant": "tiny", "color_order": "RGB"})
    return d


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    d = tmp_path_factory.mktemp("imgs")
    for i in range(4):
        rgb = np.random.default_rng(i).integers(0, 256, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(rgb).save(d / f"{i}.png")
    return d


def listing(path):
    return sorted((str(p.relative_to(path)), p.read_bytes() if p.is_file() else None) for p in path.rglob("*"))


def a_project(tmp_path):
    proj = tmp_path / "project"
    (proj / "src").mkdir(parents=True)
    (proj / "src" / "main.py").write_text("print('mine')\n")
    (proj / "README.md").write_text("my project\n")
    (proj / "config.json").write_text('{"mine": true}\n')
    return proj


# -- part 4: nothing the user owns is damaged ----------------------------------------------------

def test_convert_overwrite_replaces_only_a_checkpoint_and_only_when_complete(fixtures, ck, tmp_path, refused):
    src = fixtures / "mspie_stylegan2_config-f_tiny.mmgen.pth"
    proj = a_project(tmp_path)
    before = listing(proj)
    line = refused("convert", src, proj, "--experiment", CFG_F, "--variant", "tiny", "--overwrite")
    assert "not a pegan checkpoint directory" in line and "not replacing" in line
    assert listing(proj) == before
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert "is a file" in refused("convert", src, afile, "--experiment", CFG_F, "--variant", "tiny")
    assert "afile is a file, not a folder" in refused("convert", src, afile / "out", "--experiment", CFG_F)
    # a failed conversion over a checkpoint leaves it as it was, and no temporary folder behind
    import shutil

    old = tmp_path / "old"
    shutil.copytree(ck, old)
    before = listing(old)
    bad = tmp_path / "bad.pth"
    bad.write_bytes(src.read_bytes()[:5000])
    assert "bad.pth" in refused("convert", bad, old, "--overwrite")
    assert listing(old) == before and sorted(p.name for p in tmp_path.iterdir()) == ["afile", "bad.pth", "old",
                                                                                     "project"]
    # a checkpoint directory is replaced by the new conversion
    with pytest.raises(ExistingPathError, match="not empty"):
        pg.convert(src, old, experiment=CFG_F, variant="tiny")
    pg.convert(src, old, experiment=CFG_F, variant="tiny", overwrite=True)
    assert ckpt.read_info(old)["source"]["file"] == src.name and ckpt.steps(old) == [0]
    assert not list(tmp_path.glob(".old.*"))
    assert pg.load(old).variables["params"]    # the swapped-in directory reads back


def test_train_refuses_a_non_empty_foreign_workdir_in_both_families(ck, images, tmp_path, refused):
    proj = a_project(tmp_path)
    before = listing(proj)
    line = refused("train", EXP_F, "--variant", "tiny", "--data", images, "--steps", 2, "--workdir", proj)
    assert "not a pegan run directory" in line and "README.md" in line
    refused("train", "singan-csg_fish", "--variant", "tiny", "--image", images / "0.png", "--workdir", proj)
    assert listing(proj) == before
    # the library refuses too, before building anything
    with pytest.raises(ExistingPathError, match="not a pegan run"):
        from pegan.train.stylegan2_loop import Trainer
        Trainer(stylegan2_config(CFG_F, "tiny"), None, proj)
    with pytest.raises(ExistingPathError, match="not a pegan run"):
        from pegan.train import singan as ts
        ts.run(singan_config("singan-csg_fish", "tiny"), np.zeros((40, 40, 3), np.uint8), proj)
    assert listing(proj) == before
    # fine: missing, empty, a checkpoint, or what a run writes before its first checkpoint
    (tmp_path / "empty").mkdir()
    early = tmp_path / "early"
    (early / "tensorboard").mkdir(parents=True)
    (early / "samples_0000010.png").write_bytes(b"")
    for ok in (tmp_path / "new", tmp_path / "empty", ck, early):
        assert ckpt.check_run_dir(ok) == ok


def grey16(tmp_path):
    """A 16-bit grey PNG over the whole range, and what 8 bits it must give: round(v / 257)."""
    v = np.concatenate([np.array([0, 128, 129, 385, 386, 32767, 32896, 65406, 65407, 65535]),
                        np.random.default_rng(0).integers(0, 65536, 54)]).reshape(8, 8).astype(np.uint16)
    path = tmp_path / "grey16" / "g.png"
    path.parent.mkdir()
    Image.fromarray(v).save(path)
    assert Image.open(path).mode == "I;16"
    want = ((v.astype(np.int64) + 128) // 257).astype(np.uint8)       # integer rounding, no floats
    return path, v, np.repeat(want[..., None], 3, axis=-1)


def test_sixteen_bit_grey_is_scaled_from_its_full_range_wherever_images_are_read(tmp_path):
    from pegan import data as D
    from pegan.eval.evaluate import RealImages
    from pegan.imageio import read_image, to_rgb
    from pegan.train.stylegan2_loop import ImageFolder

    path, v, want = grey16(tmp_path)
    np.testing.assert_array_equal(read_image(path), want)
    np.testing.assert_array_equal(D.load_image(path, 8)[0], want)
    np.testing.assert_array_equal(RealImages(path.parent).read(0), want)
    np.testing.assert_array_equal(ImageFolder(path.parent, 8).images[0], want.astype(np.float32) / 127.5 - 1.0)
    # big-endian 16-bit, and a 16-bit PGM (Pillow opens it as 32-bit mode I from I;16B samples)
    np.testing.assert_array_equal(np.asarray(to_rgb(Image.fromarray(v.astype(">u2")))), want)
    Image.fromarray(v).save(tmp_path / "g.pgm")
    assert Image.open(tmp_path / "g.pgm").mode == "I"
    np.testing.assert_array_equal(read_image(tmp_path / "g.pgm"), want)
    # mode I made in memory: by its values (8-bit values stay, 32-bit ones scale from 2**31 - 1)
    small = np.arange(64, dtype=np.int32).reshape(8, 8) * 4
    np.testing.assert_array_equal(np.asarray(to_rgb(Image.fromarray(small)))[..., 0], small)
    big = np.arange(64, dtype=np.int64).reshape(8, 8) * 33_000_000
    np.testing.assert_array_equal(np.asarray(to_rgb(Image.fromarray(big.astype(np.int32))))[..., 0],
                                  (big * 255 * 2 + (2**31 - 1)) // (2 * (2**31 - 1)))
    # mode F: 0..1 when every value lies in it, else 8-bit levels; clipped
    f = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    np.testing.assert_array_equal(np.asarray(to_rgb(Image.fromarray(f)))[..., 0],
                                  np.floor(f.astype(np.float64) * 255 + 0.5).astype(np.uint8))
    levels = np.array([[-3.0, 0.4, 254.6, 300.0]], np.float32)
    np.testing.assert_array_equal(np.asarray(to_rgb(Image.fromarray(levels)))[..., 0], [[0, 0, 255, 255]])
    # `pegan prepare` stores the same pixels
    info = D.prepare(path.parent, tmp_path / "ds", 8)
    with D.PreparedImages(tmp_path / "ds", process_index=0, process_count=1, prefetch=0, workers=0) as ds:
        np.testing.assert_array_equal(ds.read(0), want)
    assert info["num_images"] == 1
