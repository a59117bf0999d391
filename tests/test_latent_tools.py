"""The latent tools on the tiny config-f fixture generator (converted from the reference's
``.pth``): the seed convention shared with ``pegan sample``, style mixing, truncation sweeps,
latent files, and projection at a square and a non-square scale."""


import jax
import numpy as np
import pytest
from PIL import Image

import pegan.api as pg
from pegan import latent as lt
from pegan import project as pj
from pegan.cli import main
from pegan.errors import InputError, MissingFileError
from helpers import header_bomb_npz

CFG_F = "mspie-stylegan2-config-f_c2_8xb3-1100kiters_ffhq-256-512"


@pytest.fixture(scope="module")
def gen(fixtures):
    return pg.load(fixtures / "mspie_stylegan2_config-f_tiny.mmgen.pth", experiment=CFG_F, variant="tiny")


@pytest.fixture(scope="module")
def ckpt_dir(fixtures, tmp_path_factory):
    out = tmp_path_factory.mktemp("lt") / "ck"
    assert main(["convert", str(fixtures / "mspie_stylegan2_config-f_tiny.mmgen.pth"), str(out),
                 "--experiment", CFG_F, "--variant", "tiny"]) == 0
    return out


def psnr(a, b):
    return float(10 * np.log10(4.0 / np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


def read_png(path):
    return np.asarray(Image.open(path).convert("RGB"))


def tiles(grid, h, w, rows, cols, pad=2):
    """The tiles of a ``pegan.imageio.image_grid`` image."""
    return [[grid[pad + r * (h + pad):pad + r * (h + pad) + h, pad + c * (w + pad):pad + c * (w + pad) + w]
             for c in range(cols)] for r in range(rows)]


@pytest.mark.parametrize("scale", [(0, 0), (2, 4)])
def test_mixing_cells_are_their_seeds_samples_at_the_ends(gen, scale):
    """No style mixed: the row seed's sample; every style mixed: the column seed's (noise follows
    the style); some mixed: neither."""
    L = gen.model.num_latents
    row, col = lt.latents_for(gen, 3, 2, scale), lt.latents_for(gen, 5, 2, scale)
    plain_row, plain_col = pg.sample(gen, 2, scale, seed=3), pg.sample(gen, 2, scale, seed=5)
    np.testing.assert_allclose(lt.render(gen, lt.mix(row, col, [])), plain_row, atol=1e-5)
    np.testing.assert_allclose(lt.render(gen, lt.mix(row, col, range(L))), plain_col, atol=1e-5)
    some = lt.render(gen, lt.mix(row, col, lt.parse_layers("0-2", L)))
    assert np.abs(some - plain_row).max() > 0.1 and np.abs(some - plain_col).max() > 0.1


def test_the_mix_grid_is_made_of_sample_commands(ckpt_dir, tmp_path):
    """Each cell of `pegan mix` is `pegan sample --seed R --mix-seed C --mix-layers A-B`, its
    headers the seeds' plain samples, at a non-square scale."""
    out = tmp_path / "mix.png"
    assert main(["mix", str(ckpt_dir), "--rows", "1,2", "--cols", "7", "--layers", "0-3", "--chosen-scale", "2,4",
                 "--out", str(out)]) == 0
    t = tiles(read_png(out), 48, 64, 3, 2)
    assert (t[0][0] == 255).all()
    for r, seed in enumerate([1, 2], start=1):
        one = tmp_path / f"cell{seed}.png"
        assert main(["sample", str(ckpt_dir), "--seed", str(seed), "--num", "1", "--mix-seed", "7",
                     "--mix-layers", "0-3", "--chosen-scale", "2,4", "--out", str(one)]) == 0
        np.testing.assert_allclose(t[r][1].astype(int), tiles(read_png(one), 48, 64, 1, 1)[0][0].astype(int), atol=1)
        plain = tmp_path / f"plain{seed}.png"
        assert main(["sample", str(ckpt_dir), "--seed", str(seed), "--num", "1", "--chosen-scale", "2,4",
                     "--out", str(plain)]) == 0
        np.testing.assert_allclose(t[r][0].astype(int), tiles(read_png(plain), 48, 64, 1, 1)[0][0].astype(int), atol=1)


def test_truncation_sweep_rows_are_images_and_columns_values(ckpt_dir, gen, tmp_path):
    out = tmp_path / "sweep.png"
    assert main(["sample", str(ckpt_dir), "--num", "2", "--seed", "4", "--truncation-sweep", "0,0.5,1",
                 "--out", str(out)]) == 0
    t = tiles(read_png(out), 32, 32, 2, 3)
    for j, psi in enumerate([0.0, 0.5, 1.0]):
        want = np.clip(np.rint((pg.sample(gen, 2, 0, seed=4, truncation=psi) + 1) * 127.5), 0, 255)
        for i in range(2):
            np.testing.assert_allclose(t[i][j].astype(int), want[i].astype(int), atol=1)


def test_latent_file_round_trip_and_hostile_files(gen, tmp_path):
    lat = lt.latents_for(gen, 9, 2, (1, 2))
    p = lt.save_latents(tmp_path / "a.npz", lat)
    back = lt.load_latents(p, gen.model)
    np.testing.assert_array_equal(back.w, lat.w)
    assert back.scale == (1, 2) and len(back.noises) == len(lat.noises) and back.settings["seed"] == 9
    np.testing.assert_allclose(lt.render(gen, back), pg.sample(gen, 2, (1, 2), seed=9), atol=1e-5)
    # hostile or wrong files: one clear error each, nothing executed
    np.save(tmp_path / "obj.npy", np.array([object()], dtype=object), allow_pickle=True)
    import zipfile
    with zipfile.ZipFile(tmp_path / "pickled.npz", "w") as z:
        z.write(tmp_path / "obj.npy", "w.npy")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    np.savez(tmp_path / "nan.npz", w=np.full((1, 16), np.nan, np.float32))
    np.savez(tmp_path / "wide.npz", w=np.zeros((1, 3, 16), np.float32))
    np.savez(tmp_path / "noW.npz", x=np.zeros(3))
    np.savez(tmp_path / "deep.npz", w=np.zeros((1, 16), np.float32), settings=np.asarray("[" * 100_000 + "]" * 100_000))
    np.savez(tmp_path / "zero.npz", w=np.zeros((0, 16), np.float32))
    np.savez_compressed(tmp_path / "many.npz", w=np.zeros((lt.MAX_LATENTS + 1, 16), np.float32))
    np.savez(tmp_path / "complex.npz", w=np.zeros((1, 16), np.complex64))
    header_bomb_npz(tmp_path / "bomb.npz")                    # 8 TB declared in a 200-byte file
    for name, why in [("pickled.npz", "holds Python objects"), ("bomb.npz", r"declares \(1000000, 1000000\) float64"), ("junk.npz", "not a readable"), ("nan.npz", "finite"),
                      ("wide.npz", "this generator takes"), ("noW.npz", "no array 'w'"),
                      ("deep.npz", "not a readable"), ("zero.npz", "holds 0 latents"),
                      ("many.npz", f"holds {lt.MAX_LATENTS + 1} latents"), ("complex.npz", "complex64")]:
        with pytest.raises(InputError, match=why) as e:
            lt.load_latents(tmp_path / name, gen.model)
        assert len(str(e.value)) < 400
    with pytest.raises(MissingFileError):
        lt.load_latents(tmp_path / "none.npz")
    with pytest.raises(InputError, match="styles 0-7"):
        lt.parse_layers("0-9", 8)
    assert lt.parse_layers(" 2 , 4-5,5", 8) == [2, 4, 5] and lt.parse_layers("0-7", 8) == list(range(8))
    # the ends are checked before a range is made: 0-10**15 held every integer (the explore
    # server, reachable by one GET, was killed at 24 GB)
    for text, words in [("0-999999999999999", "not 999999999999999"), ("-1", "not -1"), ("3-2", "A-B or A,B,C"),
                        ("5" * 5000, "A-B or A,B,C"), ("1," * 1000, "at most 1000 characters")]:
        with pytest.raises(InputError, match=words) as e:
            lt.parse_layers(text, 8)
        assert len(str(e.value)) < 300


def test_default_scale_and_target_preparation(gen):
    m = gen.model                                     # out_size 32: 8 px per scale offset
    assert pj.default_scale(m, (32, 32)) == (0, 0)
    assert pj.default_scale(m, (40, 64)) == (1, 4)    # 40x64 exactly
    assert pj.default_scale(m, (100, 50)) == (8, 2)   # the largest 2:1 that fits: 96x48
    with pytest.raises(InputError, match="smaller than"):
        pj.default_scale(m, (7, 30))
    img = np.zeros((40, 100, 3), np.uint8)
    img[:, 30:70] = 255                               # the centre 40 columns white
    t = pj.prepare_target(img, (8, 8))                # a square from the middle: all white
    assert t.shape == (8, 8, 3) and np.allclose(t, 1.0)


def test_schedule_and_noise_regulariser_against_numpy():
    s = pj.ProjectSettings(steps=200)
    for i in [0, 5, 10, 100, 150, 199]:
        t = i / 200
        want = 0.1 * min(1.0, t / 0.05) * (0.5 - 0.5 * np.cos(np.pi * min(1.0, (1 - t) / 0.25)))
        np.testing.assert_allclose(float(pj.learning_rate(s, i)), want, rtol=1e-5, atol=1e-9)
    rng = np.random.default_rng(0)
    maps = [rng.standard_normal((2, 4, 4, 1)), rng.standard_normal((2, 16, 32, 1))]
    want = np.zeros(2)
    for n in maps:
        x = n[..., 0].astype(np.float64)
        while True:
            want += np.mean(x * np.roll(x, 1, axis=2), axis=(1, 2)) ** 2
            want += np.mean(x * np.roll(x, 1, axis=1), axis=(1, 2)) ** 2
            if min(x.shape[1:]) <= 8:
                break
            x = 0.25 * (x[:, ::2, ::2] + x[:, 1::2, ::2] + x[:, ::2, 1::2] + x[:, 1::2, 1::2])
    got = pj.noise_regularisation([jax.numpy.asarray(m, jax.numpy.float32) for m in maps])
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4)


SETTINGS = dict(w_avg_samples=1000, noise_reg=0.0)   # the tiny random generator's images are mostly noise


def test_projection_recovers_a_sample_square_pixels_only(gen):
    """The generator's own image (known w and noise), projected with the pixel loss (no VGG16):
    the PSNR rises above 20 dB and w comes closer to the true one than the start (w_avg)."""
    true = lt.latents_for(gen, 7, 1, (0, 0))
    target = lt.render(gen, true)
    res = pj.project(gen, target, (0, 0), pj.ProjectSettings(steps=150, **SETTINGS))
    w_avg, _ = pj.w_statistics(gen, 1000, 0)
    start = np.linalg.norm(w_avg - true.w[0, 0])
    assert psnr(res.images, target) > 20, psnr(res.images, target)
    assert np.linalg.norm(res.latents.w[0, 0] - true.w[0, 0]) < 0.6 * start
    assert res.losses[-1] < 0.05 * res.losses[0] and res.latents.settings["distance"] == "pixel"


def test_projection_at_a_non_square_scale_with_vgg_and_init(gen, fixtures, tmp_path):
    """At chosen scale (0, 2) (32x48) with the VGG16 distance (the fixture's random weights) plus
    the pixel term, W+: the PSNR rises; a second run from the saved latents (--init) starts
    where the first ended, below the first run's start."""
    from pegan.eval.vgg import load_vgg16, perceptual

    vgg = perceptual(load_vgg16(str(fixtures / "vgg16_random_compact.pth"))[1])
    true = lt.latents_for(gen, 11, 1, (0, 2))
    target = lt.render(gen, true)
    s = pj.ProjectSettings(steps=15, wplus=True, pixel_weight=1.0, **SETTINGS)
    first = pj.project(gen, target, (0, 2), s, perceptual=vgg)
    assert first.images.shape == (1, 32, 48, 3) and first.latents.settings["distance"] == "vgg16+pixel"
    path = lt.save_latents(tmp_path / "p.npz", first.latents)
    init = lt.load_latents(path, gen.model)
    second = pj.project(gen, target, (0, 2), s, perceptual=vgg, init=init)
    assert psnr(first.images, target) > psnr(lt.render(gen, lt.latents_for(gen, 12, 1, (0, 2))), target) + 5
    assert second.losses[0] < 0.5 * first.losses[0]
    assert psnr(second.images, target) >= psnr(first.images, target) - 0.5


@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")     # JAX's, at the reader's ffmpeg process
def test_project_command_writes_its_files_and_refuses_bad_input(ckpt_dir, tmp_path, capsys):
    img = (np.random.default_rng(0).uniform(0, 255, (52, 68, 3))).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "t.png")
    out = tmp_path / "proj"
    assert main(["project", str(ckpt_dir), str(tmp_path / "t.png"), "--outdir", str(out), "--steps", "5",
                 "--w-avg-samples", "100", "--save-video", "--video-every", "2"]) == 0
    said = capsys.readouterr().out
    assert "pixel MSE only" in said and "52x68 px, centre-cropped and resized to 48x64 (chosen scale (2, 4))" in said
    for f in ("projected_w.npz", "target.png", "projected.png", "compare.png", "progress.mp4"):
        assert (out / "t" / f).is_file()
    assert read_png(out / "t" / "projected.png").shape == (48, 64, 3)
    import imageio.v2 as iio                          # the progress video: target | projection, steps 0, 2, 4
    with iio.get_reader(str(out / "t" / "progress.mp4"), format="FFMPEG") as r:
        frames = [f for f in r]                       # list(r) asks len(): inf for a stream
    assert len(frames) == 3 and frames[0].shape == (48, 128, 3)
    meta = lt.load_latents(out / "t" / "projected_w.npz")
    assert meta.scale == (2, 4) and meta.settings["target"] == "t.png" and meta.settings["steps"] == 5
    # `pegan sample --latent` renders the projection again, at its scale by default
    again = tmp_path / "again.png"
    assert main(["sample", str(ckpt_dir), "--latent", str(out / "t" / "projected_w.npz"), "--out", str(again)]) == 0
    np.testing.assert_allclose(tiles(read_png(again), 48, 64, 1, 1)[0][0].astype(int),
                               read_png(out / "t" / "projected.png").astype(int), atol=1)
    Image.fromarray(img[:6, :6]).save(tmp_path / "small.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG broken")
    before = sorted(p.name for p in out.rglob("*"))
    cases = [([str(tmp_path / "none.png")], "does not exist"),
             ([str(tmp_path / "bad.png")], "bad.png"),
             ([str(tmp_path / "small.png")], "smaller than"),
             ([str(tmp_path / "t.png"), "--chosen-scale", "-4"], "at least -3"),
             ([str(tmp_path / "t.png"), "--vgg16", str(tmp_path / "no_vgg.pth")], "does not exist"),
             ([str(tmp_path / "t.png"), "--steps", "0"], "at least 1")]
    for extra, why in cases:
        assert main(["project", str(ckpt_dir)] + extra + ["--outdir", str(tmp_path / "p2"), "--steps", "2",
                                                          "--w-avg-samples", "10"]
                    if "--steps" not in extra else ["project", str(ckpt_dir)] + extra
                    + ["--outdir", str(tmp_path / "p2")]) == 2, extra
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and why in err[0], (extra, err)
    assert main(["project", str(ckpt_dir), str(tmp_path / "t.png"), "--outdir", str(out), "--steps", "2"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert sorted(p.name for p in out.rglob("*")) == before          # nothing of the user's touched


SHARDED = """
import jax, numpy as np, pegan.api as pg
from pegan import latent as lt, project as pj
assert jax.local_device_count() == 2
g = pg.load({path!r}, experiment={cfg!r}, variant="tiny")
targets = lt.render(g, lt.latents_for(g, 7, 2, (0, 1)))
s = pj.ProjectSettings(steps=20, w_avg_samples=200, noise_reg=0.0)
two = pj.project(g, targets, (0, 1), s)
one = pj.project(g, targets, (0, 1), s, devices=jax.local_devices()[:1])
np.testing.assert_allclose(two.images, one.images, atol=1e-4)
np.testing.assert_allclose(two.latents.w, one.latents.w, atol=1e-5)
np.testing.assert_allclose(two.losses, one.losses, rtol=1e-4)
print("OK sharded projection", two.losses[-1])
"""


def test_several_targets_are_projected_sharded_over_the_devices(fixtures):
    """2 targets on 2 fake CPU devices (one each) give what the same projection gives on one."""
    import os
    import subprocess
    import sys

    code = SHARDED.format(path=str(fixtures / "mspie_stylegan2_config-f_tiny.mmgen.pth"), cfg=CFG_F)
    env = dict(os.environ, XLA_FLAGS=os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2",
               JAX_PLATFORMS="cpu")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert r.returncode == 0 and "OK sharded projection" in r.stdout, r.stdout[-2000:] + r.stderr[-3000:]
