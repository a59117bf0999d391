"""pegan video: interpolation endpoints are the `pegan sample` images, frame counts and sizes of
interpolations, scale sweeps and PE-SinGAN walks, MP4 read back, the GIF fallback, and bad
input as one line with exit status 2. One tiny MS-PIE and one tiny PE-SinGAN serve every test."""

import pathlib
import sys

import numpy as np
import pytest

import pegan.api as pg
from pegan import checks, cli, video
from pegan.errors import ExistingPathError, InputError, StorageError
from pegan.imageio import to_uint8

CFG_F = "mspie-stylegan2-config-f_c2_8xb3-1100kiters_ffhq-256-512"
TOL = dict(rtol=0, atol=1e-5)


@pytest.fixture(scope="module")
def sg_path(fixtures):
    return fixtures / "mspie_stylegan2_config-f_tiny.mmgen.pth"


@pytest.fixture(scope="module")
def sg(sg_path):
    return pg.load(sg_path, experiment=CFG_F, variant="tiny")      # out_size 32, scale s: (4 + s) * 8 px


@pytest.fixture(scope="module")
def singan(fixtures):
    return pg.load(fixtures / "pe_singan_csg_tiny.mmgen.pth", experiment="singan-csg_fish", variant="tiny")


def run_cli(capsys, *args):
    rc = cli.main(["video", *map(str, args)])
    out = capsys.readouterr()
    return rc, out.out, out.err


# -- pure pieces ----------------------------------------------------------------------------------

def test_schedule_slerp_and_noise_blend():
    src, dst, a = video.frame_schedule(3, 4)
    assert len(a) == 2 * 4 + 1 and (src[-1], dst[-1], a[-1]) == (1, 2, 1.0) and a[4] == 0 and src[4] == 1
    src, dst, a = video.frame_schedule(3, 4, loop=True)
    assert len(a) == 3 * 4 and (src[-1], dst[-1]) == (2, 0) and a[-1] == 0.75
    with pytest.raises(InputError, match="at least two keyframes"):
        video.frame_schedule(1, 4)
    rng = np.random.default_rng(0)
    z0, z1 = rng.standard_normal((2, 3, 64)).astype(np.float32)
    ends = video.slerp(np.stack([z0[0], z0[0]]), np.stack([z1[0], z1[0]]), np.array([0.0, 1.0]))
    np.testing.assert_array_equal(ends.astype(np.float32), np.stack([z0[0], z1[0]]))
    mid = video.slerp(z0, z1, np.full(3, 0.5))
    norm = lambda u: np.linalg.norm(np.asarray(u, np.float64), axis=1)
    cos = lambda u, v: np.sum(u * v, 1) / norm(u) / norm(v)
    np.testing.assert_allclose(cos(mid, z0), cos(mid, z1), atol=1e-9)       # halfway in angle
    np.testing.assert_allclose(norm(mid), (norm(z0) + norm(z1)) / 2, rtol=1e-9)
    assert (norm(mid) > norm((z0 + z1) / 2) * 1.2).all()     # a lerp would shrink it (64-d: ~1/sqrt(2))
    n0, n1 = rng.standard_normal((2, 1, 256, 256, 1))
    for a in (0.0, 0.3, 0.5, 1.0):
        assert abs(video.blend_noise(n0, n1, np.array([a])).std() - 1) < 0.01
    np.testing.assert_array_equal(video.blend_noise(n0, n1, np.array([0.0])), n0.astype(np.float32))
    assert video.sweep_offsets(both=(-1, 1)) == [(-1, -1), (0, 0), (1, 1)]
    assert video.sweep_offsets(h=(0, 3), w=(2, 0), base=(5, 5)) == [(0, 2), (1, 1), (2, 1), (3, 0)]
    assert video.sweep_offsets(w=(0, 2), base=(1, 4)) == [(1, 0), (1, 1), (1, 2)]


# -- interpolation --------------------------------------------------------------------------------

def test_interpolation_endpoints_are_the_sample_images(sg):
    scale, psi = (1, 0), 0.7
    first, last = (pg.sample(sg, 1, scale, truncation=psi, seed=s)[0] for s in (1, 2))
    keys = video.seed_keyframes(sg, [1, 2], scale, psi)
    f = video.interpolate(sg, keys, 2, space="z", truncation=psi, batch=2)    # 2 per segment + the last
    assert f.shape == (3, 40, 32, 3)
    np.testing.assert_allclose(f[0], first, **TOL)
    np.testing.assert_allclose(f[-1], last, **TOL)
    assert np.abs(f[1] - first).mean() > 1e-3 and np.abs(f[1] - last).mean() > 1e-3
    f = video.interpolate(sg, keys, 2, loop=True, space="w", batch=2)    # 1 -> 2 -> back towards 1
    assert f.shape == (4, 40, 32, 3)
    np.testing.assert_allclose(f[0], first, **TOL)
    np.testing.assert_allclose(f[2], last, **TOL)
    with pytest.raises(ValueError, match="latent files hold w"):
        video.iter_interpolation(sg, video.Keyframes(keys.w, keys.noises, keys.scale), 2, space="z")


# -- scale sweep ----------------------------------------------------------------------------------

def test_scale_sweep_sizes_and_largest_frame(sg):
    offsets = video.sweep_offsets(h=(0, 1))
    frames = video.scale_sweep(sg, offsets, seed=3, hold=2)
    assert [f.shape[:2] for f in frames] == [(32, 32), (32, 32), (40, 32), (40, 32)]
    assert video.sweep_canvas(32, offsets) == (40, 32)
    np.testing.assert_allclose(frames[-1], pg.sample(sg, 1, (1, 0), seed=3)[0], **TOL)
    u8 = list(video.on_canvas(to_uint8(np.stack(frames[:1])), (40, 32)))[0]
    assert u8.shape == (40, 32, 3) and not u8[:4].any() and not u8[-4:].any()   # centred, black margins
    np.testing.assert_array_equal(u8[4:36], to_uint8(frames[0]))


def test_cli_scale_sweep_gif(capsys, sg, sg_path, tmp_path):
    from PIL import Image

    rc, out, err = run_cli(capsys, sg_path, "--experiment", CFG_F, "--variant", "tiny", "--seeds", "3",
                           "--scale-h", "0:1", "--hold", "2", "--out", tmp_path / "s.gif")
    assert rc == 0, err
    assert "4 frames of 40x32" in out and "2 sizes" in out
    with Image.open(tmp_path / "s.gif") as im:
        assert im.size == (32, 40)
        first = np.asarray(im.convert("RGB"))
    assert not first[:4].any() and first[4:36].any()


# -- writing --------------------------------------------------------------------------------------

def _moving_frames(n, h, w):
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([np.stack([(xx * 8 + 20 * t) % 256, (yy * 8) % 256, np.full_like(xx, 40 * t % 256)], -1)
                     for t in range(n)]).astype(np.uint8)


@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")     # JAX's, at the reader's ffmpeg process
def test_mp4_reads_back(tmp_path):
    pytest.importorskip("imageio_ffmpeg")      # the 'video' extra; the test extra installs it
    import imageio.v2 as iio

    frames = _moving_frames(5, 33, 21)          # odd sides: padded to 34 x 22
    done = video.write_video(tmp_path / "v.mp4", frames, fps=12)
    assert done.path.endswith("v.mp4") and done.frames == 5 and done.size == (33, 21)
    with iio.get_reader(done.path, format="FFMPEG") as r:
        got = np.stack([f for f in r])          # list(r) would ask len(): inf for a stream
        assert r.get_meta_data()["fps"] == 12
    assert got.shape == (5, 34, 22, 3)
    assert np.abs(got[:, :33, :21].astype(float) - frames).mean() < 6      # H.264 is lossy, not wrong


def test_gif_fallback_without_the_mp4_encoder(tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)
    assert video.mp4_missing() == ("imageio_ffmpeg",)
    lines = []
    done = video.write_video(tmp_path / "v.mp4", _moving_frames(3, 16, 12), fps=10, log=lines.append)
    assert done.path == str(tmp_path / "v.gif") and not (tmp_path / "v.mp4").exists()
    assert len(lines) == 1 and "pip install 'pegan[video]'" in lines[0] and "v.gif" in lines[0]
    with Image.open(done.path) as im:
        assert im.n_frames == 3 and im.size == (12, 16) and im.info["duration"] == 100


def test_the_gif_fallback_keeps_a_users_gif_and_replaces_pegans_own(tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)
    mine = tmp_path / "v.gif"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(mine)          # a GIF the user made
    before = mine.read_bytes()
    with pytest.raises(ExistingPathError, match="not a file pegan wrote; pass --overwrite"):
        video.write_video(tmp_path / "v.mp4", _moving_frames(2, 8, 8), overwrite=False, log=lambda _: None)
    assert mine.read_bytes() == before and not checks.written_by_pegan(mine)
    done = video.write_video(tmp_path / "v.mp4", _moving_frames(2, 8, 8), overwrite=True, log=lambda _: None)
    assert checks.written_by_pegan(done.path) and mine.read_bytes() != before
    again = video.write_video(tmp_path / "v.mp4", _moving_frames(3, 8, 8), overwrite=False, log=lambda _: None)
    with Image.open(again.path) as im:                                  # pegan's own GIF: replaced freely
        assert im.n_frames == 3


@pytest.mark.parametrize("fps", [0, -1, 1e-9, 1e6, float("nan"), float("inf")])
def test_fps_out_of_range_is_refused_before_anything_is_written(tmp_path, fps):
    with pytest.raises(InputError, match="fps must be a finite number >= 0.01 and <= 1000"):
        video.write_video(tmp_path / "v.gif", _moving_frames(2, 8, 8), fps=fps)
    assert not list(tmp_path.iterdir())


@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")
def test_an_mp4_ffmpeg_could_not_write_is_an_error_not_a_success(tmp_path):
    """imageio's writer returned as if it had written when ffmpeg could not (a pseudo folder, a
    read-only one, a full disk); the file is read back and its frames counted."""
    pytest.importorskip("imageio_ffmpeg")
    with pytest.raises(StorageError, match="/proc does not let pegan create files there"):
        video.write_video("/proc/pegan_test.mp4", _moving_frames(3, 8, 8))     # refused before ffmpeg runs
    before = video.write_video(tmp_path / "v.mp4", _moving_frames(3, 8, 8)).path
    cut = tmp_path / "cut.mp4"                  # what a disk that fills leaves: the file cut short
    cut.write_bytes(pathlib.Path(before).read_bytes()[:300])
    with pytest.raises(StorageError, match="ffmpeg wrote 0 of its 3 frames"):
        video._check_mp4(str(cut), 3, "x.mp4")
    cut.unlink()
    video._check_mp4(before, 3, "x.mp4")        # a whole file passes
    old = pathlib.Path(before).read_bytes()
    with pytest.raises(InputError):                              # a bad frame half way: nothing replaced
        video.write_video(tmp_path / "v.mp4", iter([_moving_frames(1, 8, 8)[0], np.zeros((4, 4), np.uint8)]),
                          overwrite=True)
    assert pathlib.Path(before).read_bytes() == old and sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]


# -- PE-SinGAN random walk ------------------------------------------------------------------------

def test_singan_walk(singan):
    walk = video.singan_walk(singan, 5, seed=5, batch=4)      # two batches, the second padded
    assert walk.shape == (5, 30, 40, 3)
    np.testing.assert_allclose(walk[0], pg.singan_sample(singan, 1, seed=5)[0], **TOL)
    step = np.mean([np.abs(walk[i + 1] - walk[i]).mean() for i in range(4)])
    others = pg.singan_sample(singan, 4, seed=11)
    apart = np.mean([np.abs(others[i] - others[j]).mean() for i in range(4) for j in range(i)])
    assert step < 0.6 * apart, (step, apart)
    last = singan.state["curr_stage"]        # only the finest stage walks: the frames barely move
    fine = video.singan_walk(singan, 2, seed=5, start_stage=last, width_factor=1.5, batch=2)
    assert fine.shape == (2, 30, 60, 3)
    assert np.abs(fine[1] - fine[0]).mean() < 0.5 * step


# -- bad input ------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, words", [
    (["{tmp}/nope.pth", "--seeds", "1,2"], "nope.pth"),
    (["{ck}", "--latents", "{tmp}/missing.npz"], "does not exist"),
    (["{ck}", "--latents", "{tmp}/junk.npz"], "not a readable .npz"),
    (["{ck}", "--seeds", ","], "names no seed"),
    (["{ck}", "--seeds", "1,2", "--frames", "0"], "at least 1"),
    (["{ck}", "--seeds", "1,2", "--fps", "1e-9"], "finite number >= 0.01 and <= 1000"),
    (["{ck}", "--seeds", "1", "--scale-sweep=-5:0"], "at least -3"),
])
def test_bad_input_is_one_line_exit_2(capsys, tmp_path, sg_path, args, words):
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    args = [a.format(tmp=tmp_path, ck=sg_path) for a in args] + ["--out", str(tmp_path / "v.gif")]
    rc, out, err = run_cli(capsys, *args)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and err.startswith("pegan video: error:"), err
    assert words in err and not (tmp_path / "v.gif").exists()


def test_bad_output_and_scale_after_loading(capsys, tmp_path, sg_path):
    rc, _, err = run_cli(capsys, sg_path, "--seeds", "1,2", "--out", tmp_path)
    assert rc == 2 and "is a folder" in err and len(err.strip().splitlines()) == 1
    rc, _, err = run_cli(capsys, sg_path, "--experiment", CFG_F, "--variant", "tiny", "--seeds", "1,2",
                         "--chosen-scale", "600", "--out", tmp_path / "v.gif")
    assert rc == 2 and "over the largest side" in err and len(err.strip().splitlines()) == 1, err


# -- sharding -------------------------------------------------------------------------------------

SHARDED = """
import sys, jax, numpy as np
import pegan.api as pg
from pegan import video
assert jax.local_device_count() == 2
g = pg.load(sys.argv[1], experiment=sys.argv[2], variant="tiny")
spread = video._spread([np.zeros((2, 3), np.float32)])[0]
assert len(spread.sharding.device_set) == 2, spread.sharding
keys = video.seed_keyframes(g, [1, 2], 0)
two = video.interpolate(g, keys, 2, batch=2)       # 2 frames a pass: one per device
three = video.interpolate(g, keys, 2, batch=3)     # 3 do not split over 2 devices: one device
np.testing.assert_allclose(two, three, rtol=0, atol=1e-5)
print("OK", two.shape)
"""


def test_batches_shard_over_local_devices(sg_path):
    import os
    import subprocess

    env = dict(os.environ, XLA_FLAGS=os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2")
    r = subprocess.run([sys.executable, "-c", SHARDED, str(sg_path), CFG_F], capture_output=True, text=True, env=env)
    assert r.returncode == 0 and "OK (3, 32, 32, 3)" in r.stdout, r.stderr[-3000:]
