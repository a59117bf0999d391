"""Training data: ``pegan prepare`` (image folder -> tfds array_record dataset, no TensorFlow),
the prepared-dataset loader (determinism, prefetch, per-host rows), bad inputs, and the CLI."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from pegan import data as D
from pegan.data import ImageFolder

REPO = pathlib.Path(__file__).resolve().parents[1]
NAME = "mspie-stylegan2-config-f_c2_8xb3-1100kiters_ffhq-256-512"


def _photo(rng, h, w):
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    c = rng.uniform(0, 1, 4)
    img = np.stack([np.sin(xx * (3 + 9 * c[0])), np.cos(yy * (3 + 9 * c[1])), np.sin((xx + yy) * 7 * c[2])], -1)
    return np.clip(img * 100 + 127 + rng.normal(0, 20, img.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    """Mixed images: PNG and JPEG, larger and smaller than 32 px, non-square, grey, RGBA, a subfolder."""
    d = tmp_path_factory.mktemp("src")
    (d / "sub").mkdir()
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(48, 48), (40, 56), (64, 37), (24, 24), (32, 32), (50, 50), (45, 45), (33, 70)]):
        Image.fromarray(_photo(rng, h, w)).save(d / (f"{i}.jpg" if i % 3 == 0 else f"{i}.png"), quality=90)
    Image.fromarray(_photo(rng, 40, 40)[..., 0]).save(d / "sub" / "grey.png")
    Image.fromarray(np.concatenate([_photo(rng, 36, 36), np.full((36, 36, 1), 200, np.uint8)], -1)).save(
        d / "sub" / "rgba.png")
    (d / "notes.txt").write_text("not an image")
    return d


@pytest.fixture(scope="module")
def square(tmp_path_factory):
    """Square images only (what ``ImageFolder`` reads the same way), 11 of them: batches cross epochs."""
    d = tmp_path_factory.mktemp("square")
    rng = np.random.default_rng(1)
    for i in range(11):
        s = [40, 32, 24, 64][i % 4]
        Image.fromarray(_photo(rng, s, s)).save(d / f"{i:02d}.png")
    return d


@pytest.fixture(scope="module")
def prepared(square, tmp_path_factory):
    out = tmp_path_factory.mktemp("p") / "ds"
    D.prepare(square, out, 32)
    return out


def _expected(path, size):
    """Independently: Pillow RGB, center crop to the short side, Lanczos to size x size."""
    im = Image.open(path).convert("RGB")
    w, h = im.size
    s = min(w, h)
    im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    return np.asarray(im if im.size == (size, size) else im.resize((size, size), Image.Resampling.LANCZOS))


@pytest.mark.parametrize("encoding", ["raw", "png"])
def test_prepare_stores_the_resized_images_pixel_exact(src, tmp_path, encoding):
    import tensorflow_datasets as tfds

    info = D.prepare(src, tmp_path / "ds", 32, encoding=encoding)
    files = sorted(p for p in src.rglob("*") if p.suffix in (".png", ".jpg"))
    side = {p: min(Image.open(p).size) for p in files}
    saved = json.loads((tmp_path / "ds" / "pegan_prepare.json").read_text())
    assert saved == info
    assert info["num_images"] == info["num_files"] == len(files) == 10 and info["num_skipped"] == 0
    assert info["num_upscaled"] == sum(s < 32 for s in side.values()) == 1
    # read back with tfds alone (no pegan code), record i = i-th sorted file
    vdir = tmp_path / "ds" / info["tfds_dir"]
    ds = tfds.builder_from_directory(str(vdir)).as_data_source(split="train")
    assert len(ds) == len(files)
    for i, p in enumerate(files):
        rec = ds[i]
        assert rec["file"].decode() == str(p.relative_to(src))
        np.testing.assert_array_equal(rec["image"], _expected(p, 32), err_msg=str(p))
    assert not list(tmp_path.glob(".ds.incomplete-*"))        # the temporary folder is gone


def test_loader_equals_the_in_memory_image_folder(prepared, square):
    ref = ImageFolder(square, 32)
    with D.PreparedImages(prepared, process_index=0, process_count=1, prefetch=0, workers=0) as data:
        assert len(data) == len(ref) == 11 and data.size == 32
        np.testing.assert_array_equal(data.read(3), _expected(sorted(square.iterdir())[3], 32))
        offset = 0
        for step, b in enumerate([4, 4, 2, 6, 4, 4, 3]):     # crosses epochs 0 -> 1 -> 2
            x = data.batch(7, step, b, offset)
            assert x.dtype == np.uint8 and x.shape == (b, 32, 32, 3)
            np.testing.assert_array_equal(x, ref.batch(7, step, b, offset))
            offset += b
        assert offset > 2 * len(ref)
        # the epoch stream is a permutation: each epoch has every image once, in a new order
        e0, e1 = [data.indices(7, 11, 11 * e) for e in (0, 1)]
        assert sorted(e0) == sorted(e1) == list(range(11)) and e0 != e1
        # flips: some rows mirrored, and a different seed gives different batches
        assert not np.array_equal(data.batch(7, 0, 4, 0), data.batch(8, 0, 4, 0))


def test_both_sources_crop_non_square_images_alike(src, tmp_path):
    """One image policy: a folder read in memory gives the prepared dataset's pixels, non-square
    images centre-cropped (the folder path used to squash them)."""
    D.prepare(src, tmp_path / "ds", 32)
    folder = ImageFolder(src, 32, process_index=0, process_count=1)
    files = sorted(p for p in src.rglob("*") if p.suffix in (".png", ".jpg"))
    assert any(Image.open(p).size[0] != Image.open(p).size[1] for p in files)
    for i, p in enumerate(files):
        np.testing.assert_array_equal(folder.images[i], _expected(p, 32), err_msg=str(p))
    with D.PreparedImages(tmp_path / "ds", process_index=0, process_count=1, prefetch=0, workers=0) as data:
        for step, (b, off) in enumerate([(4, 0), (6, 4), (4, 10)]):
            np.testing.assert_array_equal(data.batch(3, step, b, off), folder.batch(3, step, b, off))


def test_the_batch_plan_is_the_stated_pure_function():
    """Records from permutation(seed, epoch) at stream positions offset + lo .., flips from
    (seed, step), each computed here independently with NumPy; hflip=False flips nothing."""
    n, seed, step, batch, offset = 7, 5, 3, 6, 12
    for rows in [(0, 6), (2, 4)]:
        idx, flip = D.batch_plan(seed, step, batch, offset, n, rows)
        want = []
        for pos in range(offset + rows[0], offset + rows[1]):
            epoch, i = divmod(pos, n)
            want.append(np.random.default_rng([seed, 1, epoch]).permutation(n)[i])
        np.testing.assert_array_equal(idx, want)
        coins = np.random.default_rng([seed, 2, step]).random(batch) < 0.5
        np.testing.assert_array_equal(flip, coins[rows[0]:rows[1]])
        idx2, flip2 = D.batch_plan(seed, step, batch, offset, n, rows, hflip=False)
        np.testing.assert_array_equal(idx2, idx)
        assert not flip2.any()


def test_hflip_off_gives_the_same_images_unmirrored(square):
    on = ImageFolder(square, 32, process_index=0, process_count=1)
    off = ImageFolder(square, 32, process_index=0, process_count=1, hflip=False)
    a, b = on.batch(1, 0, 8, 0), off.batch(1, 0, 8, 0)
    flip = D.flips(1, 0, 8, (0, 8))
    assert flip.any() and not flip.all()
    np.testing.assert_array_equal(a[~flip], b[~flip])
    np.testing.assert_array_equal(a[flip], b[flip][:, :, ::-1])


def test_batches_are_a_function_of_the_arguments_whatever_the_threads(prepared):
    calls = [(0, s, b, o) for s, b, o in [(0, 4, 0), (1, 4, 4), (2, 2, 8), (3, 6, 10), (4, 6, 16), (5, 4, 22),
                                          (6, 4, 26), (9, 8, 40)]]
    with D.PreparedImages(prepared, process_index=0, process_count=1, prefetch=0, workers=0) as plain:
        want = [plain.batch(*c) for c in calls]
        np.testing.assert_array_equal(plain.batch(*calls[3]), want[3])      # again: the same
        assert plain.stats == {"prefetched": 0, "on_demand": len(calls) + 1}
    with D.PreparedImages(prepared, process_index=0, process_count=1, prefetch=3, workers=3) as threaded:
        got = [threaded.batch(*c) for c in calls]
        assert threaded.stats["prefetched"] >= 2       # the same-size guesses were used
    for c, a, b in zip(calls, want, got):
        np.testing.assert_array_equal(a, b, err_msg=str(c))
    with D.PreparedImages(prepared, process_index=0, process_count=1, prefetch=2, workers=2) as hinted:
        for i, c in enumerate(calls):
            np.testing.assert_array_equal(hinted.batch(*c), want[i])
            for n in calls[i + 1:i + 3]:
                hinted.prefetch(*n)
        assert hinted.stats == {"prefetched": len(calls) - 1, "on_demand": 1}


def test_several_shards_read_as_one(prepared, square, tmp_path, monkeypatch):
    monkeypatch.setattr(D, "_SHARD_BYTES", 3 * 32 * 32 * 3)     # 3 images per file
    monkeypatch.setattr(D, "_CHUNK_BYTES", 2 * 32 * 32 * 3)     # 2 images per write
    D.prepare(square, tmp_path / "sharded", 32)
    assert len(list((tmp_path / "sharded").rglob("*.array_record-*"))) == 4      # 11 = 3 + 3 + 3 + 2
    with D.PreparedImages(tmp_path / "sharded", process_index=0, process_count=1) as a, \
            D.PreparedImages(prepared, process_index=0, process_count=1) as b:
        for step in range(6):
            np.testing.assert_array_equal(a.batch(1, step, 5, 5 * step), b.batch(1, step, 5, 5 * step))


def test_each_host_reads_its_rows_of_the_global_batch(prepared):
    with D.PreparedImages(prepared, process_index=0, process_count=1, prefetch=0) as one:
        hosts = [D.PreparedImages(prepared, process_index=h, process_count=2, prefetch=1, workers=1) for h in (0, 1)]
        offset = 0
        for step, b in enumerate([4, 6, 2, 8]):
            glob = one.batch(3, step, b, offset)
            parts = [h.batch(3, step, b, offset) for h in hosts]
            assert [len(p) for p in parts] == [b // 2, b // 2]
            np.testing.assert_array_equal(np.concatenate(parts), glob)
            i0, i1 = (h.indices(3, b, offset) for h in hosts)
            assert i0 + i1 == one.indices(3, b, offset)             # host h reads only its records
            offset += b
        with pytest.raises(ValueError, match="not divisible"):
            hosts[0].batch(3, 9, 5, offset)
        for h in hosts:
            h.close()
    with pytest.raises(ValueError, match="process_index"):
        D.PreparedImages(prepared, process_index=2, process_count=2)


def test_trainer_hints_name_the_batches_it_asks_for(prepared):
    """The loop's prefetch hints come from its own scale schedule: every batch after the first is
    already being assembled when the loop asks for it (a Trainer shell, no model is built)."""
    from pegan.configs import stylegan2_config
    from pegan.train.stylegan2_loop import Trainer

    cfg = stylegan2_config(NAME, "tiny")
    cfg.train.batch_per_scale = {"2": 2, "4": 6}
    t = object.__new__(Trainer)
    t.cfg, t.tcfg, t.seed, t.offset = cfg, cfg.train, 5, 0
    with D.PreparedImages(prepared, process_index=0, process_count=1, prefetch=2, workers=1) as data:
        t.data = data
        sizes = []
        for step in range(12):
            _, b = t.schedule(step)
            data.batch(t.seed, step, b, t.offset)
            t._hint_next(step, b, 12)
            t.offset += b
            sizes.append(b)
        assert len(set(sizes)) == 3                           # the batch size changed with the scale
        assert data.stats == {"prefetched": 11, "on_demand": 1}


def test_unreadable_image_is_named_or_skipped_and_counted(square, tmp_path):
    bad = tmp_path / "src"
    bad.mkdir()
    for p in sorted(square.iterdir())[:3]:
        (bad / p.name).write_bytes(p.read_bytes())
    (bad / "zero.png").write_bytes(b"")
    good = (bad / "00.png").read_bytes()
    (bad / "cut.png").write_bytes(good[:len(good) // 2])          # truncated PNG
    with pytest.raises(ValueError, match=r"cut\.png.*--skip-bad"):
        D.prepare(bad, tmp_path / "out", 16)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))
    info = D.prepare(bad, tmp_path / "out", 16, on_error="skip")
    assert info["num_files"] == 5 and info["num_images"] == 3 and info["num_skipped"] == 2
    assert sorted(s["file"] for s in info["skipped"]) == ["cut.png", "zero.png"]
    assert all(s["reason"] for s in info["skipped"])
    with pytest.raises(FileExistsError, match="not empty"):
        D.prepare(bad, tmp_path / "out", 16, on_error="skip")
    info2 = D.prepare(square, tmp_path / "out", 16, overwrite=True)
    assert info2["num_images"] == 11
    # training straight from the folder: the same names, the training command's flag
    with pytest.raises(ValueError, match=r"cut\.png.*pass --skip-bad-images \(data\.on_error='skip'\)"):
        ImageFolder(bad, 16)
    folder = ImageFolder(bad, 16, on_error="skip")
    assert sorted(pathlib.Path(f).name for f in folder.skipped) == ["cut.png", "zero.png"]


def test_missing_or_damaged_prepared_dataset_names_pegan_prepare(prepared, square, tmp_path):
    import shutil

    assert D.find_prepared(square) is None
    assert isinstance(D.open_data(square, 32), ImageFolder)
    data = D.open_data(prepared, 32, process_index=0, process_count=1)
    assert isinstance(data, D.PreparedImages)
    data.close()
    with pytest.raises(ValueError, match="pegan prepare .*--size 64"):
        D.open_data(prepared, 64)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        D.open_data(tmp_path / "nowhere", 32)
    (tmp_path / "one.png").write_bytes(b"not a folder")
    with pytest.raises(FileNotFoundError, match="one.png is a file, not a folder of images; name the folder"):
        D.open_data(tmp_path / "one.png", 32)         # it said "does not exist" of a file that does

    def damaged(name, how):
        d = tmp_path / name
        shutil.copytree(prepared, d)
        rec = next(d.rglob("*.array_record-*"))
        how(d, rec)
        return d

    for d in [damaged("norec", lambda d, rec: rec.unlink()),
              damaged("trunc", lambda d, rec: rec.write_bytes(rec.read_bytes()[: rec.stat().st_size // 2])),
              damaged("noinfo", lambda d, rec: (rec.parent / "dataset_info.json").unlink()),
              damaged("badjson", lambda d, rec: (d / "pegan_prepare.json").write_text("{"))]:
        with pytest.raises((ValueError, FileNotFoundError), match="pegan prepare"):
            D.PreparedImages(d, process_index=0, process_count=1)


def test_cli_prepare_then_train_a_tiny_mspie_writes_samples_at_three_scales(src, tmp_path, capsys, fixtures):
    import shutil

    from pegan.cli import main

    bad = tmp_path / "bad"
    shutil.copytree(src, bad)
    (bad / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    assert main(["prepare", str(bad), "--out", str(tmp_path / "x"), "--size", "64"]) == 2
    err = capsys.readouterr().err
    assert "broken.jpg" in err and "--skip-bad" in err and "Traceback" not in err
    assert main(["prepare", str(bad), "--out", str(tmp_path / "ds"), "--size", "64", "--skip-bad"]) == 0
    info = json.loads((tmp_path / "ds" / "pegan_prepare.json").read_text())
    assert info["num_skipped"] == 1 and info["skipped"][0]["file"] == "broken.jpg"
    # the tiny MS-PIE stores 64 px (scales 0, 2, 4 of out_size 32): trains on the prepared dataset
    r = subprocess.run([sys.executable, "-m", "pegan.cli", "train", f"experiments/{NAME}.py", "--variant", "tiny",
                        "--data", str(tmp_path / "ds"), "--steps", "2", "--workdir", str(tmp_path / "w"),
                        "--set", "train.batch=2", "--eval", "fid8", "--eval-every", "2", "--eval-batch", "4",
                        "--inception", str(fixtures / "fid_inception_random_compact.pth"),
                        "--eval-real", str(tmp_path / "ds")],
                       capture_output=True, text=True, cwd=str(REPO),
                       env={**os.environ, "PEGAN_CACHE_DIR": str(tmp_path / "cache")})
    assert r.returncode == 0, r.stderr
    assert "10 images of 64 px prepared" in r.stdout
    # the periodic evaluation ran at step 2, at the largest scale (64 px), on the prepared reals
    rows = [json.loads(line) for line in (tmp_path / "w" / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [2]
    fid = rows[0]["scale_4"]["fid8"]
    assert np.isfinite(fid["fid"]) and fid["num_fakes"] == 8 and fid["real_count"] == 8
    pngs = sorted((tmp_path / "w").glob("samples_*.png"))
    assert pngs
    grid = np.asarray(Image.open(pngs[-1]))
    assert grid.shape[0] > 32 + 48 + 64                  # three rows: 32, 48 and 64 px


def test_overwrite_never_replaces_a_prepared_folder_holding_the_users_files(square, tmp_path):
    """--overwrite replaced an earlier output whose top level looked like pegan's, deleting the
    user's folder nested inside it, which was the very folder being read."""
    import shutil

    out = tmp_path / "P"
    D.prepare(square, out, 16)
    assert D._earlier_prepare(out)
    mine = out / D._BUILDER_NAME / "mine"
    shutil.copytree(square, mine)
    with pytest.raises(ValueError, match="is inside --out .*choose an --out outside it"):
        D.prepare(mine, out, 16, overwrite=True)
    assert not D._earlier_prepare(out)                       # a folder of the user's in the tree
    with pytest.raises(FileExistsError, match="not a `pegan prepare` output"):
        D.prepare(square, out, 16, overwrite=True)
    assert sorted(p.name for p in mine.iterdir()) == sorted(p.name for p in square.iterdir())
    shutil.rmtree(mine)
    version = next((out / D._BUILDER_NAME).iterdir())
    (version / "notes.txt").write_text("mine")               # a file of the user's beside tfds's
    assert not D._earlier_prepare(out)
    (version / "notes.txt").unlink()
    assert D._earlier_prepare(out)
    assert D.prepare(square, out, 16, overwrite=True)["num_images"] == 11
