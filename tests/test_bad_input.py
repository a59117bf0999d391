"""Every user mistake is one `pegan <cmd>: error: ...` line with exit status 2, found before
anything is read or compiled, and nothing the user owns is damaged: foreign folders are never
replaced, grey 16-bit images are scaled rather than clipped, a full disk keeps the last
checkpoint. A bug still raises with its traceback."""

import errno
import json
import pathlib
import resource

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

import pegan.api as pg
from pegan import checkpoint as ckpt
from pegan import checks
from pegan.cli import main
from pegan.configs import apply_overrides, singan_config, stylegan2_config
from pegan.errors import ExistingPathError, InputError, StorageError
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


def test_what_only_looks_like_pegan_output_is_never_replaced_or_written_into(fixtures, ck, images, tmp_path,
                                                                              refused):
    """--overwrite replaces a folder only when it holds nothing but what pegan wrote there (a
    pegan.json of its format, a prepare record, projection folders): an imitation with the
    user's files, or a real output the user added a file to, is refused and left as it was. A
    run never writes into a checkpoints/ folder of the user's own (orbax's clean-up of old steps
    deletes numbered folders there)."""
    import shutil

    src = fixtures / "mspie_stylegan2_config-f_tiny.mmgen.pth"
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "pegan.json").write_text('{"mine": 1}')
    (fake / "config.json").write_text("{}")
    (fake / "thesis.tex").write_text("years of work")
    added = tmp_path / "added"
    shutil.copytree(ck, added)
    (added / "notes.txt").write_text("mine")
    user_steps = tmp_path / "user_steps"
    for s in ("1000", "2000", "3"):
        (user_steps / "checkpoints" / s).mkdir(parents=True)
        (user_steps / "checkpoints" / s / "model.pth").write_bytes(b"weights")
    run_steps = tmp_path / "run_steps"               # a real run directory with the user's step folder
    shutil.copytree(ck, run_steps)
    shutil.copytree(user_steps / "checkpoints" / "1000", run_steps / "checkpoints" / "1000")
    prep = tmp_path / "prep"
    prep.mkdir()
    (prep / "pegan_prepare.json").write_text('{"format": "pegan-prepared-images"}')
    (prep / "photos").mkdir()
    (prep / "photos" / "a.jpg").write_bytes(b"jpeg")
    proj = tmp_path / "proj"
    (proj / "me").mkdir(parents=True)
    (proj / "me" / "projected_w.npz").write_bytes(b"npz")
    (proj / "README.md").write_text("mine")
    folders = (fake, added, user_steps, run_steps, prep, proj)
    before = [listing(d) for d in folders]
    for d in (fake, added):
        assert "not replacing" in refused("convert", src, d, "--experiment", CFG_F, "--variant", "tiny",
                                          "--overwrite")
    for d in (user_steps, run_steps):
        line = refused("train", EXP_F, "--variant", "tiny", "--data", images, "--steps", 2, "--workdir", d)
        assert "not a pegan run directory" in line and "checkpoints/1000" in line, line
        with pytest.raises(ExistingPathError, match="checkpoints/1000"):
            ckpt.check_run_dir(d)
    assert "not replacing" in refused("prepare", images, "--out", prep, "--size", 32, "--overwrite")
    assert "not replacing" in refused("project", ck, images / "0.png", "--outdir", proj, "--overwrite")
    assert [listing(d) for d in folders] == before
    # what pegan wrote is still replaced: a converted checkpoint (also after a run's files came)
    assert ckpt.owns_checkpoint_dir(ck) and not any(ckpt.owns_checkpoint_dir(d) for d in (fake, added))
    ok = tmp_path / "ok"
    shutil.copytree(ck, ok)
    (ok / "metrics.jsonl").write_text("{}\n")
    pg.convert(src, ok, experiment=CFG_F, variant="tiny", overwrite=True)
    assert ckpt.read_info(ok)["source"]["file"] == src.name


def _chunk(kind: bytes, data: bytes) -> bytes:
    import struct
    import zlib

    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(w, h, chunks=b"", idat=b""):
    """A PNG of declared size ``w`` x ``h`` (grey, 8 bits) with ``chunks`` before its data."""
    import struct
    import zlib

    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) + chunks
            + _chunk(b"IDAT", idat or zlib.compress(bytes(w + 1) * h)) + _chunk(b"IEND", b""))


def test_image_bombs_are_refused_from_their_header_wherever_images_are_read(ck, images, tmp_path, refused):
    """A PNG declaring 100000 x 100000 pixels, one declaring 10000 x 10000 (past pegan's limit,
    where Pillow only warns), and a 1x1 PNG with a text chunk that inflates to 2 MB: one line
    from every reader (a single image, a folder of real images, `pegan prepare`), nothing decoded."""
    import zlib

    from pegan.data import load_image
    from pegan.errors import DataError
    from pegan.eval.evaluate import RealImages
    from pegan.imageio import MAX_READ_PIXELS, read_image

    bombs = {"huge.png": _png(100_000, 100_000, idat=zlib.compress(b"\0" * 1000)),
             "past_limit.png": _png(10_000, 10_000, idat=zlib.compress(b"\0" * 1000)),
             "text_bomb.png": _png(1, 1, chunks=_chunk(b"zTXt", b"k\0\0" + zlib.compress(b"A" * 2_000_000, 9)))}
    assert 10_000 * 10_000 > MAX_READ_PIXELS
    for name, raw in bombs.items():
        folder = tmp_path / name.split(".")[0]
        folder.mkdir()
        (folder / name).write_bytes(raw)
        with pytest.raises(DataError, match="cannot read image") as e:
            read_image(folder / name)
        assert len(str(e.value)) < 400
        with pytest.raises(InputError, match="cannot read real image"):
            RealImages(folder).read(0)
        with pytest.raises(Exception) as e:
            load_image(folder / name, 32)
        assert not isinstance(e.value, (MemoryError, AssertionError))
        line = refused("project", ck, folder / name, "--outdir", tmp_path / "out", "--steps", 1)
        assert name in line
        assert "cannot read" in refused("prepare", folder, "--out", tmp_path / "prep", "--size", 32)
    assert not (tmp_path / "out").exists() and not (tmp_path / "prep").exists()


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
    np.testing.assert_array_equal(ImageFolder(path.parent, 8).images[0], want)   # uint8, as stored
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


def test_hostile_or_wrong_fid_statistics_are_refused_before_any_fake_is_made(ck, fixtures, tmp_path, refused):
    """--real-stats files: read bounded (a header declaring 8 TB, object arrays), shapes and
    values checked, all before the fakes' features (they were read only after them)."""
    import pickle

    from helpers import header_bomb_npz

    def stats(name, mu, sigma, num=10, meta="{}"):
        np.savez(tmp_path / name, mu=mu, sigma=sigma, num=np.asarray(num), meta=np.asarray(meta))
        return tmp_path / name

    cases = {
        header_bomb_npz(tmp_path / "bomb.npz", "sigma"): "declares (1000000, 1000000) float64",
        stats("obj.npz", np.array([object()], dtype=object), np.eye(2)): "holds Python objects",
        stats("ranks.npz", np.zeros((2, 2)), np.eye(2)): "must be real [D] and [D, D]",
        stats("square.npz", np.zeros(3), np.eye(2)): "got float64 (3,) and float64 (2, 2)",
        stats("nan.npz", np.array([0.0, np.nan]), np.eye(2)): "non-finite mean or covariance",
        stats("num.npz", np.zeros(2), np.eye(2), num=[1, 2]): "is not a statistics file",
        stats("meta.npz", np.zeros(2), np.eye(2), meta="[" * 100_000): "is not a statistics file",
    }
    (tmp_path / "junk.npz").write_bytes(b"PK junk")
    cases[tmp_path / "junk.npz"] = "not a readable .npz"
    with open(tmp_path / "text.pkl", "wb") as f:
        pickle.dump({"mean": "abc", "cov": "def"}, f)
    cases[tmp_path / "text.pkl"] = "must be real [D] and [D, D]"
    for path, words in cases.items():
        line = refused("evaluate", ck, "--metrics", "fid4", "--real-stats", path,
                       "--inception", fixtures / "fid_inception_random_compact.pth", "--out", tmp_path / "m.json")
        assert words in line and len(line) < 400, line
    assert not (tmp_path / "m.json").exists()


def test_a_failed_write_keeps_the_earlier_file_whole_and_leaves_nothing(ck, tmp_path, refused, monkeypatch):
    """Output files are written beside their name and renamed when complete: a write that fails
    (here the disk fills as the PNG is written) leaves the earlier file as it was (it was left
    truncated) and no partial file; paths the system refuses (a pseudo folder) are one line."""
    import errno as errno_mod

    from pegan import imageio as pio

    for flag in ("--out", "--npy"):          # refused before anything is generated (it was after)
        line = refused("sample", ck, flag, "/proc/pegan_x" + (".png" if flag == "--out" else ".npy"))
        assert f"cannot write {flag} /proc/pegan_x" in line and "/proc does not let pegan create files" in line
    assert "over the 255 a file system takes" in refused("sample", ck, "--out", tmp_path / ("a" * 300 + ".png"))
    assert "/proc does not let pegan create files" in refused("train", EXP_F, "--variant", "tiny", "--data", tmp_path,
                                                              "--workdir", "/proc/pegan_run")
    out = tmp_path / "s.png"
    pio.save_png(out, np.full((4, 4, 3), 7, np.uint8))
    old = out.read_bytes()

    def full(image):
        raise OSError(errno_mod.ENOSPC, "No space left on device")

    monkeypatch.setattr(pio, "png_bytes", full)
    with pytest.raises(StorageError, match="No space left on device; .*s.png is unchanged"):
        pio.save_png(out, np.zeros((4, 4, 3), np.uint8))
    assert out.read_bytes() == old and [p.name for p in tmp_path.iterdir()] == ["s.png"]


def test_counts_that_cannot_fit_in_memory_are_refused_before_any_work(ck, tmp_path, refused):
    """Numbers that were allocated all at once and ended in an out-of-memory traceback (or an
    XLA abort): bounded, one line each."""
    out, stats = tmp_path / "x.png", tmp_path / "s.npz"
    assert "--num: the value must be at most 4096" in refused("sample", ck, "--num", 10**9, "--out", out)
    assert "--batch: the value must be at most 1024" in refused("sample", ck, "--batch", 10**11, "--out", out)
    assert "needs 4 to 200000 samples" in refused("evaluate", ck, "--metrics", "fid100000000000",
                                                  "--real-stats", stats)
    assert "--batch: the value must be at most 1024" in refused("evaluate", ck, "--metrics", "fid8",
                                                                "--batch", 10**11, "--real-stats", stats)
    assert "--frames: the value must be at most 100000" in refused("video", ck, "--seeds", "1,2",
                                                                   "--frames", 10**12, "--out", tmp_path / "v.gif")
    assert "--w-avg-samples: the value must be at most 100000" in refused(
        "project", ck, out, "--outdir", tmp_path / "p", "--w-avg-samples", 10**9)
    # the images a sample holds at once: 4096 of 800x800 px would be 29 GiB
    line = refused("sample", ck, "--num", 4096, "--chosen-scale", 96, "--out", out)
    assert "num 4096 of 800x800 px would hold 29.3 GiB at once" in line and "at most 1118 per command" in line
    assert not out.exists()


@pytest.mark.parametrize("override, words", [
    ("train.init_from=7", "train.init_from: 7 does not exist"),                 # TypeError before
    ('eval.scale="x"', "eval.scale takes a whole number"),                       # ValueError
    ("train={}", "train is a section; set its fields one by one"),              # AttributeError
    ("generator=null", "generator is a section; set its fields one by one"),
    ("generator.head_pos_encoding={}", "unknown positional encoding type None; use 'SPE' or 'CSG'"),
    ("discriminator.pool_size=[0,0]", "discriminator.pool_size must be two whole numbers of at least 1"),
    ("generator.style_channels=0", "generator.style_channels must be a whole number of at least 1"),  # ZeroDivision
])
def test_overrides_that_reached_the_code_unchecked_are_one_line(images, tmp_path, refused, override, words):
    line = refused("train", EXP_F, "--variant", "tiny", "--data", images, "--steps", 1, "--workdir", tmp_path / "w",
                   f"--config.{override}")
    assert words in line, line
    assert not (tmp_path / "w").exists()
    cfg = stylegan2_config(CFG_F, "tiny")            # unset fields take their kind, and null again
    assert apply_overrides(cfg, ["eval.scale=2"]).eval.scale == 2
    assert apply_overrides(cfg, ["eval.scale=null"]).eval.scale is None
    assert dict(apply_overrides(cfg, ['generator.head_pos_encoding={"type": "CSG"}']).generator.head_pos_encoding) == {"type": "CSG"}


# -- part 6: validate before compiling; one line, exit 2 ----------------------------------------

def test_a_workdir_inside_the_image_folder_is_refused(images, tmp_path, refused):
    """Its sample grids were read as training images when the run resumed, without a word."""
    import shutil

    data = tmp_path / "imgs"
    shutil.copytree(images, data)
    line = refused("train", EXP_F, "--variant", "tiny", "--data", data, "--steps", 1, "--workdir", data / "run")
    assert "is inside the data" in line and "choose a workdir outside it" in line
    assert not (data / "run").exists()


def test_an_existing_file_where_a_folder_is_needed(ck, images, tmp_path, refused, fixtures):
    afile = tmp_path / "somefile"
    afile.write_text("x")
    assert "somefile is a file, not a folder" in refused("sample", ck, "--out", afile / "x.png")
    assert "somefile is a file, not a folder" in refused("sample", ck, "--npy", afile / "x.npy")
    assert "is a file, not a folder" in refused("train", EXP_F, "--variant", "tiny", "--data", images,
                                                "--steps", 2, "--workdir", afile)
    assert "is a file, not a folder" in refused("evaluate", ck, "--metrics", "fid10", "--real-stats",
                                                tmp_path / "s.npz", "--out", afile / "m.json")
    assert "is a file, not a folder" in refused("prepare", images, "--out", afile / "ds")
    assert "--cache-dir" in refused("evaluate", ck, "--metrics", "fid4", "--real", images, "--cache-dir", afile,
                                    "--inception", fixtures / "fid_inception_random_compact.pth", "--out", tmp_path / "m.json")
    assert afile.read_text() == "x"


def test_set_checks_each_value_against_the_type_of_its_field(images, tmp_path, refused):
    w = tmp_path / "w"
    args = ("train", EXP_F, "--variant", "tiny", "--data", images, "--steps", 2, "--workdir", w, "--set")
    for item, says in [("train.batch=abc", "train.batch takes a whole number"),
                       ("train.batch=2.5", "train.batch takes a whole number"),
                       ("train.pl_detach_mean=1", "train.pl_detach_mean takes true or false"),
                       ("train.g_lr=fast", "train.g_lr takes a number"),
                       ("train.g_betas=0.5", "train.g_betas takes a JSON list"),
                       ("scales=[0,2.5]", "scales takes a JSON list whose items are each a whole number"),
                       ("eval=5", "eval is a section; set its fields one by one"),
                       ("train.nope=1", "the config has no 'train.nope'"),
                       ("train.batch.x=1", "train.batch is a value, not a section")]:
        assert says in refused(*args, item), item
    assert not w.exists()
    cfg = apply_overrides(stylegan2_config(CFG_F, "tiny"), [
        "train.g_lr=1", "train.pl_detach_mean=True", "train.regularisation=separate", "scales=[0,2]",
        'train.batch_per_scale={"2": 2}', "generator.head_pos_encoding=null"])
    assert cfg.train.g_lr == 1.0 and isinstance(cfg.train.g_lr, float) and cfg.train.pl_detach_mean is True
    assert cfg.train.regularisation == "separate" and list(cfg.scales) == [0, 2]
    assert dict(cfg.train.batch_per_scale) == {"2": 2} and cfg.generator.head_pos_encoding is None


def test_train_checks_batches_and_steps_before_building_anything(images, tmp_path, refused, monkeypatch):
    w = tmp_path / "w"
    args = ("train", EXP_F, "--variant", "tiny", "--data", images, "--workdir", w)
    assert "train.batch must be at least 1, got 0" in refused(*args, "--steps", 2, "--set", "train.batch=0")
    assert "train.batch_per_scale[4] must be at least 1" in refused(
        *args, "--steps", 2, "--set", 'train.batch_per_scale={"4": 0}')
    assert "scales entry -4" in refused(*args, "--steps", 2, "--set", "scales=[0,-4]")
    assert "minibatch-stddev groups of 4" in refused(*args, "--steps", 2, "--set", "train.batch=6")
    assert "--steps: the value must be at least 1, got -5" in refused(*args, "--steps", -5)
    assert "--steps: the value must be at least 1, got 0" in refused(*args, "--steps", 0)
    assert "--checkpoint-every: the value must be at least 0" in refused(*args, "--steps", 2,
                                                                          "--checkpoint-every", -1)
    assert "--iters: the value must be at least 1" in refused("train", "singan-csg_fish", "--image",
                                                              images / "0.png", "--workdir", w, "--iters", -3)
    monkeypatch.setattr(jax, "device_count", lambda: 2)
    line = refused(*args, "--steps", 2, "--set", "train.batch=3")
    assert "train.batch is 3 images, not a multiple of the 2 devices" in line
    line = refused(*args, "--steps", 2, "--set", 'train.batch_per_scale={"2": 3}')
    assert "train.batch_per_scale[2] is 3 images" in line
    assert not w.exists()


@pytest.mark.parametrize("setting, words", [
    ("train.keep_checkpoints=0", "train.keep_checkpoints (null keeps every step) must be at least 1"),
    ("train.keep_checkpoints=-1", "must be at least 1"),
    ("train.r1_interval=0", "train.r1_interval must be at least 1"),
    ("train.pl_interval=0", "train.pl_interval must be at least 1"),
    ("train.pl_batch_shrink=0", "train.pl_batch_shrink must be at least 1"),
    ("train.seed=-1", "train.seed must be at least 0"),
    ("discriminator.mbstd_group_size=0", "discriminator.mbstd_group_size must be at least 1"),
    ("train.d_lr=-1", "train.d_lr must be a finite number > 0"),
    ("train.adam_eps=0", "train.adam_eps must be a finite number > 0"),
    ("train.mix_prob=5", "train.mix_prob must be a finite number >= 0 and <= 1"),
    ("train.ema_momentum=2", "train.ema_momentum must be"),
    ("train.g_betas=[1.5,0.99]", "each of train.g_betas must be a finite number >= 0 and < 1"),
    ("train.g_betas=[0.5]", "train.g_betas must be two numbers"),
    ("train.pl_scale=9999", "train.pl_scale 9999"),
    ("eval.scale=99999", "eval.scale"),
    ('train.batch_per_scale={"9": 4}', "train.batch_per_scale has the key '9'"),
])
def test_train_checks_each_setting_range_before_building_anything(images, tmp_path, refused, setting, words):
    """A value out of its range (a count of 0 that would divide by zero or keep no checkpoint, a
    negative rate, a probability over 1, a scale that makes no image or an oversized one, a
    batch for a scale not trained) is one line naming the field, before anything compiles."""
    line = refused("train", EXP_F, "--variant", "tiny", "--data", images, "--workdir", tmp_path / "w", "--steps", 2,
                   "--set", setting)
    assert words in line, line
    assert not (tmp_path / "w").exists()


def test_train_checks_scale_probabilities_and_the_fixed_fields(images, tmp_path, refused):
    args = ("train", EXP_F, "--variant", "tiny", "--data", images, "--workdir", tmp_path / "w", "--steps", 2)
    assert "train.scale_probs must sum to 1" in refused(*args, "--set", "train.scale_sampling=configured",
                                                        "--set", "train.scale_probs=[0.2,0.2,0.2]")
    assert "each of train.scale_probs must be a finite number >= 0" in refused(
        *args, "--set", "train.scale_sampling=configured", "--set", "train.scale_probs=[2,-1,0]")
    assert "the family is the experiment's own" in refused(*args, "--config.family=singan")
    for setting, words in (("train.lr_g=-1", "train.lr_g must be a finite number > 0"),
                           ("train.gp_weight=-10", "train.gp_weight must be a finite number >= 0"),
                           ("train.lr_milestones=[-5]", "each of train.lr_milestones must be at least 0")):
        assert words in refused("train", "singan-csg_fish", "--variant", "tiny", "--image", images / "0.png",
                                "--workdir", tmp_path / "w", "--set", setting)


def test_a_resumed_run_keeps_its_settings(images, tmp_path, refused, capsys):
    """Resuming with another learning rate, batch or variant would train on values its
    config.json does not record: refused in one line naming them, before anything compiles; the
    run length and the intervals may change."""
    w = tmp_path / "w"
    args = ("train", EXP_F, "--variant", "tiny", "--data", images, "--workdir", w, "--set", "scales=[0]")
    assert main([str(a) for a in args + ("--steps", 1, "--checkpoint-every", 1)]) == 0
    capsys.readouterr()
    before = listing(w)
    line = refused(*args, "--steps", 2, "--set", "train.g_lr=0.001", "--set", "train.batch=8")
    assert "other settings" in line and "train.batch 4 -> 8" in line and "train.g_lr 0.0016 -> 0.001" in line, line
    line = refused("train", EXP_F, "--data", images, "--workdir", w, "--set", "scales=[0]", "--steps", 2)
    assert "holds a tiny run of" in line and "this config is full" in line, line
    assert listing(w) == before
    from pegan.train.stylegan2_loop import resume_changes

    cfg = stylegan2_config(CFG_F, "tiny")
    assert resume_changes(cfg, apply_overrides(stylegan2_config(CFG_F, "tiny"), [
        "train.total_iters=9", "train.checkpoint_every=3", "eval.every=5", "compute.conv_impl=xla"])) == []


def test_truncation_seeds_and_factors_are_range_checked(ck, tmp_path, refused):
    out = str(tmp_path / "x.png")
    for cmd in (("sample", ck, "--out", out), ("mix", ck, "--rows", "1", "--cols", "2", "--out", out),
                ("video", ck, "--seeds", "1,2", "--out", str(tmp_path / "v.gif"))):
        for psi in ("nan", "inf", "1e30", "-5"):
            assert "finite number >= -2 and <= 2" in refused(*cmd, "--truncation", psi)
    assert "at most 2**63 - 1" in refused("sample", ck, "--seed", "99999999999999999999", "--out", out)
    assert "at least 0" in refused("sample", ck, "--seed", "-1", "--out", out)
    for bad in ("nan", "inf", "0", "-1"):
        assert "finite number > 0" in refused("sample", ck, "--width-factor", bad, "--out", out)
    assert "at most 2**63 - 1" in refused("mix", ck, "--rows", "99999999999999999999", "--cols", "1", "--out", out)
    assert "empty item" in refused("mix", ck, "--rows", "1,,2", "--cols", "3", "--out", out)
    assert "whole numbers" in refused("video", ck, "--seeds", "1,,2", "--out", str(tmp_path / "v.gif"))
    assert "at most 2**63 - 1" in refused("video", ck, "--seeds", "1,99999999999999999999",
                                          "--out", str(tmp_path / "v.gif"))
    assert not list(tmp_path.iterdir())


def test_an_existing_output_file_is_replaced_only_with_overwrite(ck, images, tmp_path, refused):
    mine = tmp_path / "notes.png"
    mine.write_bytes(b"the user's own file")
    arr = tmp_path / "keep.npy"
    arr.write_bytes(b"mine too")
    for cmd in (("sample", ck, "--out", mine), ("sample", ck, "--out", tmp_path / "new.png", "--npy", arr),
                ("mix", ck, "--rows", "1", "--cols", "2", "--out", mine),
                ("video", ck, "--seeds", "1,2", "--out", tmp_path / "v.gif")):
        if cmd[0] == "video":
            (tmp_path / "v.gif").write_bytes(b"GIF89a mine")
        line = refused(*cmd)
        assert "exists and is not a file pegan wrote; pass --overwrite to replace it" in line, line
    assert "not a file pegan wrote; pass --overwrite" in refused("evaluate", ck, "--metrics", "fid4", "--real", images, "--out", mine)
    assert "has '.png'; name a .json file" in refused("evaluate", ck, "--metrics", "fid4", "--real", images,
                                                       "--out", mine, "--overwrite")
    assert mine.read_bytes() == b"the user's own file" and arr.read_bytes() == b"mine too"
    assert not (tmp_path / "new.png").exists()
    assert checks.output_file(mine, "--out", (".png",), overwrite=True) == mine     # --overwrite: allowed
    from pegan.imageio import save_png, written_by_pegan

    save_png(tmp_path / "ours.png", np.zeros((4, 4, 3), np.uint8))                # pegan's own: replaced
    assert written_by_pegan(tmp_path / "ours.png") and not written_by_pegan(mine)
    assert checks.output_file(tmp_path / "ours.png", "--out", (".png",), overwrite=False) == tmp_path / "ours.png"


def test_chosen_scale_and_size_must_make_an_image_of_bounded_size(ck, tmp_path, refused):
    out = tmp_path / "x.png"
    for scale in ("-4", "-5", "0,-4"):
        assert "every scale offset must be at least -3" in refused("sample", ck, "--chosen-scale", scale, "--out", out)
    line = refused("sample", ck, "--chosen-scale", 100000, "--out", out)
    assert "800032x800032 px image, over the largest side of 4096 px" in line and "--max-side" in line
    assert "over the largest side of 4096 px" in refused("sample", ck, "--size", 1000000, "--out", out)
    for size in ("0", "-8", "4,16"):          # multiples of 8 that make no image (said "not a multiple" before)
        assert "is too small: image sides are (4 + s) * 8 px" in refused("sample", ck, "--size", size, "--out", out)
    assert "size 12 is not a multiple of 8" in refused("sample", ck, "--size", 12, "--out", out)
    assert "over the largest side of 100 px" in refused("sample", ck, "--size", 128, "--max-side", 100,
                                                        "--out", out)
    assert "at least -3" in refused("evaluate", ck, "--metrics", "fid10", "--real-stats", tmp_path / "s.npz",
                                    "--chosen-scale", -4, "--out", tmp_path / "m.json")
    assert "4096 px" in refused("evaluate", ck, "--metrics", "fid10", "--real-stats", tmp_path / "s.npz",
                                "--size", 1000000, "--out", tmp_path / "m.json")
    assert not out.exists()
    # the library refuses the same, and --max-side / max_side raises the bound
    G = build_generator(stylegan2_config(CFG_F, "tiny"))
    with pytest.raises(InputError, match="at least -3"):
        pg.resolve_scale(G, -4)
    with pytest.raises(InputError, match="4096 px"):
        pg.resolve_scale(G, None, (1_000_000, 1_000_000))
    assert pg.resolve_scale(G, -3) == (-3, -3) and pg.resolve_scale(G, 600, max_side=5000) == (600, 600)
    import ml_collections

    singan = pg.Loaded(None, {}, ml_collections.ConfigDict({"generator": {"padding": 1}}),
                       state={"sizes": [(12, 16), (30, 40)], "curr_stage": 1})
    with pytest.raises(InputError, match="over the largest side of 4096 px"):
        pg.singan_sizes(singan, (1_000_000, 1_000_000))
    assert pg.singan_sizes(singan, width_factor=2.0)[-1] == (30, 80)


def test_counts_must_be_positive(ck, images, tmp_path, refused):
    out = tmp_path / "x.png"
    for flag in ("--num", "--batch", "--ncol"):
        assert f"argument {flag}: the value must be at least 1, got 0" in refused("sample", ck, flag, 0, "--out", out)
    assert "argument --num: expected a whole number, got 'many'" in refused("sample", ck, "--num", "many")
    assert "argument --batch" in refused("evaluate", ck, "--batch", 0, "--real-stats", tmp_path / "s.npz")
    assert "argument --workers" in refused("prepare", images, "--out", tmp_path / "ds", "--workers", 0)
    assert "argument --iters" in refused("demo", "--iters", -1)
    assert "the following arguments are required: --out" in refused("prepare", images)


def test_prepare_checks_the_size_first(images, tmp_path, refused):
    line = refused("prepare", images, "--out", tmp_path / "ds", "--size", 100000)
    assert "--size 100000" in line and "16384 px" in line and ".png" not in line
    assert "at least 1 px" in refused("prepare", images, "--out", tmp_path / "ds", "--size", 0)
    assert not (tmp_path / "ds").exists() and not list(tmp_path.iterdir())


def test_sample_out_must_name_an_image_file(ck, tmp_path, refused):
    assert "is a folder; name the file to write, e.g." in refused("sample", ck, "--out", tmp_path)
    assert "has no extension" in refused("sample", ck, "--out", tmp_path / "grid")
    assert "name a .npy file" in refused("sample", ck, "--out", tmp_path / "g.png", "--npy", tmp_path / "g.txt")
    assert not list(tmp_path.iterdir())


def fail_writes_of_step(monkeypatch, step, code=errno.ENOSPC):
    """Every array orbax writes for ``step`` fails as on a full disk (in its background threads)."""
    from orbax.checkpoint._src.serialization import type_handlers

    write = type_handlers.NumpyHandler._open_and_write

    async def full_disk(self, value, tspec, ts_context):
        if f"/{step}.orbax-checkpoint-tmp" in json.dumps(tspec):
            raise OSError(code, "No space left on device")
        return await write(self, value, tspec, ts_context)

    monkeypatch.setattr(type_handlers.NumpyHandler, "_open_and_write", full_disk)


def a_quick_step(*args, phase="step", **kwargs):
    """Stands in for the compiled train step or its halves (the disk, not the step, is under
    test): the step counter moves on (in the G half) and the metrics are finite."""
    names = {"d": ("d_loss", "r1_penalty"), "g": ("g_loss", "pl_penalty")}

    def metrics(x, which):
        return {k: jnp.mean(x) for k in names[which]}

    if phase == "d":
        return jax.jit(lambda state, real: (state, metrics(real, "d"), jnp.mean(real)))
    if phase == "g":
        return jax.jit(lambda state, sign: (state.replace(step=state.step + 1), metrics(sign, "g")))
    return jax.jit(lambda state, real: (state.replace(step=state.step + 1), dict(metrics(real, "d"),
                                                                                  **metrics(real, "g"))))


def test_disk_full_during_training_is_one_line_and_keeps_the_last_checkpoint(images, tmp_path, capsys,
                                                                            monkeypatch):
    from pegan.train import sharded

    monkeypatch.chdir(REPO)
    monkeypatch.setattr(sharded, "make_sharded_step", a_quick_step)
    fail_writes_of_step(monkeypatch, 2)
    w = tmp_path / "w"
    rc = main(["train", EXP_F, "--variant", "tiny", "--data", str(images), "--steps", "3", "--workdir", str(w),
               "--checkpoint-every", "1", "--sample-every", "0", "--no-tensorboard", "--set", "scales=[0]"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and "ERROR" not in err, err
    errors = [line for line in err.splitlines() if "error" in line.lower()]
    assert errors == [err.rstrip().splitlines()[-1]], err          # one error line, the last
    assert errors[0].startswith("pegan train: error: cannot write step 2 of the checkpoint in")
    assert "No space left on device" in errors[0] and "last complete step, 1, is kept" in errors[0]
    assert ckpt.steps(w) == [1]
    got = ckpt.restore(w, ["generator_ema", "discriminator", "train_state"], step=1)
    assert int(got["train_state"]["state"]["step"]) == 1
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(got))


def test_a_real_write_failure_inside_tensorstore_is_one_storage_error(tmp_path, capfd):
    """The form a full disk takes below orbax (tensorstore's ValueError with the OS error
    code), made real with a file-size limit: one StorageError, no log records, step 1 intact."""
    cfg = stylegan2_config(CFG_F, "tiny")
    info = {"family": "stylegan2", "experiment": cfg.name, "variant": "tiny", "color_order": "RGB"}
    items = {"a": {"x": np.random.default_rng(0).random(300_000, dtype=np.float32)},
             "b": {"y": np.ones(3, np.float32)}}
    writer = ckpt.CheckpointWriter(tmp_path / "run", cfg, info)
    writer.save(1, items)
    writer.wait()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, hard))     # no file over 200 kB: 1.2 MB fails
    try:
        writer.save(2, items)
        with pytest.raises(StorageError, match=r"step 2 of the checkpoint in .*: File too large; its last "
                                               r"complete step, 1, is kept") as e:
            writer.wait()
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        writer.close()
    assert e.value.errno == errno.EFBIG and checks.storage_errno(e.value.__cause__) == errno.EFBIG
    out, err = capfd.readouterr()
    assert err == "" and out == ""
    assert ckpt.steps(tmp_path / "run") == [1]
    np.testing.assert_array_equal(ckpt.restore(tmp_path / "run", ["a"], 1)["a"]["x"], items["a"]["x"])


def test_a_bug_keeps_its_traceback(monkeypatch):
    import pegan.cli

    def broken(args):
        raise AssertionError("internal invariant")

    monkeypatch.setattr(pegan.cli, "_experiments", broken)
    with pytest.raises(AssertionError, match="internal invariant"):
        main(["experiments"])
