"""Videos of StyleGAN2 / MS-PIE and PE-SinGAN generators (``pegan video``).

Three kinds, each a stream of frames written as MP4 (H.264) or GIF by ``write_video``:

* **Interpolation** between keyframes (seeds, or latent files of ``pegan project``). A keyframe
  is a seed's (or a file row's) w and noise maps, as ``pegan sample`` uses them
  (``pegan.latent``). Segment k runs from keyframe k to k + 1 over ``frames`` frames at
  a = 0, 1/frames, ..., (frames - 1)/frames; without ``loop`` one last frame (a = 1) ends on the
  last keyframe, so a video of K keyframes has (K - 1) * frames + 1 frames; with ``loop`` a
  K-th segment runs back to the first keyframe and stops one step short of it (K * frames
  frames), so the file loops without a repeated frame. Frame 0 is the first keyframe's
  ``pegan sample`` image and, without ``loop``, the last frame the last keyframe's.
  Styles move by slerp in z (seeds only: the mapping pixel-normalises z, so only its direction
  counts, and slerp turns it at an even rate where a lerp would hurry through the middle) or by
  lerp in w (the space StyleGAN's paths are perceptually more even in; the only one latent
  files have, since they hold w). Noise maps
  move as ((1 - a) n0 + a n1) / sqrt((1 - a)^2 + a^2): the blend of two independent standard
  normal maps has that standard deviation, so every frame's noise stays standard normal.
* **Scale / aspect sweep** of one latent: one frame per integer scale offset from A to B (the
  height offset, the width offset or both), each frame size its own compiled program. Each
  noise map is drawn once at the largest frame's scale (as ``pegan sample`` draws it there)
  and centre-cropped for the smaller frames, so the noise a pixel sees does not jump from one
  frame to the next; the frames are centred on a black canvas of the largest height and the
  largest width (a video has one frame size).
* **PE-SinGAN random walk**: the noise of stages >= ``start_stage`` follows the AR(1) process
  z_t = alpha z_{t-1} + sqrt(1 - alpha^2) r_t (r_t fresh standard normal), which keeps every
  z_t standard normal, the distribution the generator was trained on, so the frames never
  fade or grow busier; SinGAN's own animation walk (z_t = beta z_{t-1} + (1 - beta) r_t plus
  momentum) has a stationary variance of about (1 - beta) / (1 + beta), far below 1, so its
  frames drift towards the noise-free image. Stages < ``start_stage`` keep the
  reconstruction's stored noise (stretched bilinearly when the output size is not the
  native one), so the coarse layout stays the training image's and the finer detail moves.
  Frame 0 with ``start_stage`` 0 is ``pegan sample SINGAN --seed s --num 1``.

Frames are generated ``batch`` at a time (the last batch padded with repeats, so one program
per frame size), sharded over the local devices when the batch divides evenly among them.
"""

from __future__ import annotations

import itertools
import math
import os
from dataclasses import dataclass
from typing import Iterable, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import jax
import numpy as np

from pegan import checks, ops
from pegan._extras import missing
from pegan.errors import InputError, StorageError
from pegan.imageio import to_uint8
from pegan.latent import Latents, generator_of, noise_for_scale, renderer, seed_latents, to_w, truncate
from pegan.loading import singan_noise_shapes, singan_runner, singan_sizes
from pegan.models.singan import draw_noises
from pegan.models.stylegan2 import checked_scale, image_size, scale_pair

__all__ = ["VIDEO_EXTS", "Written", "write_video", "mp4_missing", "Keyframes", "seed_keyframes", "file_keyframes",
           "frame_schedule", "slerp", "blend_noise", "iter_interpolation", "interpolate", "sweep_offsets",
           "iter_scale_sweep", "scale_sweep", "sweep_canvas", "on_canvas", "iter_singan_walk", "singan_walk", "to_frames",
           "parse_seeds", "parse_range"]

VIDEO_EXTS = (".mp4", ".gif")
FPS_RANGE = checks.FPS_RANGE
MP4_QUALITY = 8        # imageio-ffmpeg's 0-10 scale: H.264 CRF 10, near-lossless for generated frames


# -- writing ------------------------------------------------------------------------------------

class Written(NamedTuple):
    path: str                     # the file written (the .gif when the MP4 encoder was missing)
    frames: int
    size: Tuple[int, int]         # (H, W) of the frames as given (before any even padding)


def mp4_missing() -> Tuple[str, ...]:
    """The modules MP4 writing needs (the 'video' extra) that are not installed."""
    return missing("imageio", "imageio_ffmpeg")


def _checked_frames(frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """The frames, each checked to be uint8 [H, W, 3] of the first one's size; at least one."""
    it = iter(frames)
    first = next(it, None)
    if first is None:
        raise InputError("a video needs at least one frame")
    shape = np.asarray(first).shape
    for f in itertools.chain([first], it):
        f = np.asarray(f)
        if f.dtype != np.uint8 or f.ndim != 3 or f.shape[-1] != 3 or f.shape != shape:
            raise InputError(f"video frames must be uint8 [H, W, 3] of one size; got {f.dtype} {f.shape} "
                             f"after {shape}")
        yield f


def _even(frame: np.ndarray) -> np.ndarray:
    """Odd sides padded to even by repeating the last row / column: H.264 in yuv420p stores
    colour at half resolution, so both sides must be even."""
    h, w = frame.shape[:2]
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge") if (h % 2 or w % 2) else frame


def _write_mp4(path: str, frames: Iterator[np.ndarray], fps: float) -> Tuple[int, Tuple[int, int]]:
    import warnings

    import imageio.v2 as iio

    n, size = 0, (0, 0)
    with warnings.catch_warnings():    # JAX warns at every fork; the child execs ffmpeg at once, holding no lock
        warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
        writer = iio.get_writer(path, format="FFMPEG", mode="I", fps=fps, codec="libx264", pixelformat="yuv420p",
                                quality=MP4_QUALITY, macro_block_size=2)   # sides already even: no resizing
        try:
            for f in frames:
                writer.append_data(_even(f))
                n, size = n + 1, f.shape[:2]
        finally:
            writer.close()
    return n, size


def _check_mp4(tmp: str, frames: int, path: str) -> None:
    """ffmpeg reports a failed write (a folder it may not write, a full disk) only on its own
    stderr, and imageio's writer returns as if it had succeeded: read the file back and count
    its frames. A StorageError when it holds fewer than were written."""
    import imageio_ffmpeg

    try:
        got = imageio_ffmpeg.count_frames_and_secs(tmp)[0] if os.path.getsize(tmp) else 0
    except (OSError, RuntimeError):
        got = 0
    if got != frames:
        raise StorageError(f"cannot write {path}: ffmpeg wrote {got} of its {frames} frames (a full disk, or a "
                           "folder it may not write: see its message above)")


def _write_gif(path: str, frames: Iterator[np.ndarray], fps: float) -> Tuple[int, Tuple[int, int]]:
    from PIL import Image

    ims = [Image.fromarray(f) for f in frames]
    # GIF delays are whole centiseconds, and viewers slow delays under 2 cs down: 24 fps plays at 25
    delay = max(20, int(round(100.0 / fps)) * 10)
    ims[0].save(path, save_all=True, append_images=ims[1:], duration=delay, loop=0,
                comment=checks.GIF_MARK)   # the mark ``checks.written_by_pegan`` reads
    return len(ims), (ims[0].height, ims[0].width)


def write_video(path, frames: Iterable[np.ndarray], fps: float = 24.0, log=print,
                overwrite: Optional[bool] = None) -> Written:
    """Write ``frames`` (uint8 [T, H, W, 3], or any iterable of [H, W, 3]) to ``path``:
    ``.mp4`` as H.264 in yuv420p (odd sides padded to even) through imageio + imageio-ffmpeg,
    streamed frame by frame; ``.gif`` through Pillow (looping; Pillow merges repeated
    consecutive frames into one longer one). When the MP4 encoder is not installed, the GIF is
    written beside the .mp4 instead and ``log`` says so in one line and how to get MP4.
    ``fps`` within ``FPS_RANGE``; ``overwrite`` as in ``checks.output_file`` (for that GIF too)."""
    path = os.fspath(path)
    checks.output_file(path, "the video", VIDEO_EXTS, overwrite=overwrite)
    checks.number_in(fps, "fps", *FPS_RANGE)
    frames = _checked_frames(frames)
    ext = os.path.splitext(path)[1].lower()
    note = None
    if ext == ".mp4" and mp4_missing():
        gone = mp4_missing()
        gif = os.path.splitext(path)[0] + ".gif"
        checks.output_file(gif, "the GIF written instead of the MP4", (".gif",), overwrite=overwrite)
        note = (f"MP4 needs imageio-ffmpeg (missing: {', '.join(gone)}): wrote {gif} instead of {path}; "
                "for MP4: pip install 'pegan[video]'")
        path, ext = gif, ".gif"
    with checks.writing_file(path) as tmp:      # a failed write leaves no partial file, keeps an earlier one
        n, size = (_write_mp4 if ext == ".mp4" else _write_gif)(str(tmp), frames, float(fps))
        if ext == ".mp4":
            _check_mp4(str(tmp), n, path)
    if note:
        log(note)
    return Written(path, n, tuple(int(v) for v in size))


def to_frames(batches: Iterable[np.ndarray], bgr: bool = False) -> Iterator[np.ndarray]:
    """Float image batches [b, H, W, 3] in [-1, 1] -> uint8 RGB frames one at a time (a BGR
    model's channels reversed), so a long video never holds its float frames at once."""
    for b in batches:
        u8 = to_uint8(np.asarray(b)[..., ::-1] if bgr else b)
        yield from u8


# -- parsing ------------------------------------------------------------------------------------

def parse_seeds(text: str) -> List[int]:
    """'1,2,3' -> [1, 2, 3] (whole numbers; at least one)."""
    parts = [p.strip() for p in str(text).split(",")]
    if not any(parts):
        raise InputError(f"--seeds {text!r} names no seed: give comma-separated whole numbers, e.g. 1,2,3")
    try:
        seeds = [int(p) for p in parts]
    except ValueError:
        raise InputError(f"--seeds {text!r}: give comma-separated whole numbers, e.g. 1,2,3") from None
    for s in seeds:
        checks.seed(s, f"--seeds: the seed {s}")
    return seeds


def parse_range(text: str, what: str) -> Tuple[int, int]:
    """'A:B' -> (A, B): whole scale offsets, each at least -3 (a head of at least 1 x 1 for every
    generator; the upper bound is the image side, checked against the model)."""
    try:
        a, b = (int(v) for v in str(text).split(":"))
    except ValueError:
        raise InputError(f"{what} {text!r}: give two whole scale offsets as A:B, e.g. 0:4 "
                         f"(negative ones as {what}=-2:2)") from None
    if min(a, b) < -3:
        raise InputError(f"{what} {text!r}: every scale offset must be at least -3")
    return a, b


# -- keyframes and interpolation ------------------------------------------------------------------

@dataclass
class Keyframes:
    """K keyframes at one ``scale``: styles ``w`` [K, L, S] (truncated), ``z`` [K, S] when they
    come from seeds (None for latent files), noise maps [K, h, w, 1] per layer, and a label each."""
    w: np.ndarray
    noises: List[np.ndarray]
    scale: Tuple[int, int]
    z: Optional[np.ndarray] = None
    labels: Tuple[str, ...] = ()

    def __len__(self) -> int:
        return int(self.w.shape[0])


def seed_keyframes(loaded, seeds: Sequence[int], scale, truncation: float = 1.0) -> Keyframes:
    """One keyframe per seed: image 0 of ``pegan sample --seed s --num 1`` at ``scale``."""
    model = generator_of(loaded)
    scale = scale_pair(scale)
    zs, noises = [], []
    for s in seeds:
        z, nz = seed_latents(model, s, 1, scale)
        zs.append(np.asarray(z))
        noises.append([np.asarray(n) for n in nz])
    z = np.concatenate(zs)
    noises = [np.concatenate(layer) for layer in zip(*noises)]
    return Keyframes(to_w(loaded, z, truncation), noises, scale, z, tuple(f"seed {s}" for s in seeds))


def file_keyframes(loaded, latents: Sequence[Latents], scale, truncation: float = 1.0,
                   noise_seed: int = 0) -> Keyframes:
    """One keyframe per row of each latent file (in order): its w (truncated) and its noise
    maps when it was made at ``scale``, else maps drawn from seed ``noise_seed + i`` for the
    i-th file (``latent.noise_for_scale``)."""
    model = generator_of(loaded)
    scale = scale_pair(scale)
    ws, noises = [], []
    for i, lat in enumerate(latents):
        ws.append(np.broadcast_to(lat.w, (len(lat), model.num_latents, model.style_channels)))
        noises.append([np.asarray(n, np.float32) for n in noise_for_scale(model, lat, scale, noise_seed + i)])
    w = truncate(loaded, np.concatenate(ws), truncation)
    labels = tuple(f"file {i} row {r}" for i, lat in enumerate(latents) for r in range(len(lat)))
    return Keyframes(w, [np.concatenate(layer) for layer in zip(*noises)], scale, None, labels)


def frame_schedule(num_keys: int, frames: int, loop: bool = False) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(from keyframe, to keyframe, a) for every frame: ``frames`` per segment, segments between
    consecutive keyframes (and back to the first with ``loop``), plus the last keyframe itself
    as a final frame when not looping."""
    checks.at_least(frames, 1, "frames per segment")
    if num_keys < 2:
        raise InputError(f"an interpolation needs at least two keyframes, got {num_keys}: give more seeds "
                         "(--seeds 1,2) or latents, or a scale sweep for one")
    segs = num_keys if loop else num_keys - 1
    i = np.arange(segs * frames)
    src, step = np.divmod(i, frames)
    a = step / float(frames)
    dst = (src + 1) % num_keys
    if not loop:
        src, dst, a = (np.append(src, num_keys - 2), np.append(dst, num_keys - 1), np.append(a, 1.0))
    return src, dst, a


def slerp(z0: np.ndarray, z1: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Spherical interpolation of rows z0, z1 [n, S] at fractions a [n] (float64): the direction
    turns through the angle between them at an even rate and the norm moves linearly (a plain
    lerp shrinks it midway); a = 0 and 1 give z0 and z1 (to float64 rounding, exact once cast
    back to float32); parallel rows lerp."""
    z0, z1 = np.asarray(z0, np.float64), np.asarray(z1, np.float64)
    a = np.asarray(a, np.float64)[:, None]
    n0, n1 = np.linalg.norm(z0, axis=1, keepdims=True), np.linalg.norm(z1, axis=1, keepdims=True)
    u0, u1 = z0 / np.maximum(n0, 1e-30), z1 / np.maximum(n1, 1e-30)
    theta = np.arccos(np.clip(np.sum(u0 * u1, axis=1, keepdims=True), -1.0, 1.0))
    s = np.sin(theta)
    flat = s < 1e-6
    safe = np.where(flat, 1.0, s)
    c0 = np.where(flat, 1.0 - a, np.sin((1.0 - a) * theta) / safe)
    c1 = np.where(flat, a, np.sin(a * theta) / safe)
    direction = c0 * u0 + c1 * u1
    direction /= np.maximum(np.linalg.norm(direction, axis=1, keepdims=True), 1e-30)
    return direction * ((1.0 - a) * n0 + a * n1)


def blend_noise(n0: np.ndarray, n1: np.ndarray, a: np.ndarray) -> np.ndarray:
    """((1 - a) n0 + a n1) / sqrt((1 - a)^2 + a^2) for maps [n, h, w, 1] and a [n]: unit
    variance kept for independent standard normal maps; a = 0 and 1 give n0 and n1 exactly."""
    a = np.asarray(a, np.float64).reshape(-1, 1, 1, 1)
    out = ((1.0 - a) * n0 + a * n1) / np.sqrt((1.0 - a) ** 2 + a ** 2)
    return out.astype(np.float32)


def _spread(arrays):
    """The arrays (frames along axis 0) sharded over the local devices when their count
    divides evenly (one slice of the batch per device), else as they are."""
    devices = jax.local_devices()
    n = int(np.asarray(arrays[0]).shape[0])
    if len(devices) < 2 or n % len(devices):
        return arrays
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    shard = NamedSharding(Mesh(np.asarray(devices), ("frames",)), P("frames"))
    return [jax.device_put(np.asarray(x), shard) for x in arrays]


def _batches(total: int, batch: int) -> Iterator[Tuple[np.ndarray, int]]:
    """(indices padded with repeats to ``batch``, how many are real) over range(total)."""
    b = max(1, min(batch, total))
    for i in range(0, total, b):
        yield np.arange(i, i + b) % total, min(b, total - i)


def iter_interpolation(loaded, keys: Keyframes, frames: int, loop: bool = False, space: str = "z",
                       truncation: float = 1.0, batch: int = 4) -> Iterator[np.ndarray]:
    """Float frames [b, H, W, 3] in [-1, 1], ``batch`` at a time, of the interpolation through
    ``keys`` (``frame_schedule``). space 'z': slerp between the keyframes' z, then the mapping
    and ``truncation`` (seed keyframes only); 'w': lerp between their (truncated) w."""
    checks.at_least(batch, 1, "batch")
    src, dst, a = frame_schedule(len(keys), frames, loop)     # checked here, before the first frame is asked
    if space == "z":
        if keys.z is None:
            raise InputError("latent files hold w, not z: interpolate them in w (--space w)")
        w_all = to_w(loaded, slerp(keys.z[src], keys.z[dst], a).astype(np.float32), truncation)
    elif space == "w":
        a32 = a.astype(np.float32)[:, None, None]
        w_all = ((1 - a32) * keys.w[src] + a32 * keys.w[dst]).astype(np.float32)
    else:
        raise InputError(f"space must be 'z' or 'w', got {space!r}")
    render = renderer(loaded, keys.scale)

    def frames_of():
        for idx, real in _batches(len(a), batch):
            noises = [blend_noise(n[src[idx]], n[dst[idx]], a[idx]) for n in keys.noises]
            w, *noises = _spread([w_all[idx]] + noises)
            yield np.asarray(render(w, noises))[:real]

    return frames_of()


def interpolate(loaded, keys: Keyframes, frames: int, loop: bool = False, space: str = "z",
                truncation: float = 1.0, batch: int = 4) -> np.ndarray:
    """``iter_interpolation`` gathered: [T, H, W, 3] float32 in [-1, 1]."""
    return np.concatenate(list(iter_interpolation(loaded, keys, frames, loop, space, truncation, batch)))


# -- scale / aspect sweep --------------------------------------------------------------------------

def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def sweep_offsets(both: Optional[Tuple[int, int]] = None, h: Optional[Tuple[int, int]] = None,
                  w: Optional[Tuple[int, int]] = None, base=(0, 0)) -> List[Tuple[int, int]]:
    """The scale offsets (s_h, s_w) of a sweep, one per integer step: ``both`` walks both offsets
    from A to B; ``h`` / ``w`` walk one each (the other stays at ``base``'s); when both walk
    different distances the frame count follows the longer walk and the shorter one takes the
    nearest whole offset (rounded half up) at each step."""
    if both is not None:
        if h is not None or w is not None:
            raise InputError("give --scale-sweep A:B, or --scale-h / --scale-w, not both")
        h = w = both
    if h is None and w is None:
        raise InputError("a scale sweep needs --scale-sweep A:B, --scale-h A:B or --scale-w C:D")
    bh, bw = scale_pair(base)
    hs, ws = h or (bh, bh), w or (bw, bw)
    steps = max(abs(hs[1] - hs[0]), abs(ws[1] - ws[0]))
    if steps == 0:
        return [(hs[0], ws[0])]
    return [(hs[0] + _round_half_up((hs[1] - hs[0]) * i / steps), ws[0] + _round_half_up((ws[1] - ws[0]) * i / steps))
            for i in range(steps + 1)]


def _centre_crop(x: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """The centre ``size`` (h, w) of maps [n, H, W, ...] (the larger margin below / right)."""
    H, W = x.shape[1:3]
    top, left = (H - size[0]) // 2, (W - size[1]) // 2
    return x[:, top:top + size[0], left:left + size[1]]


def iter_scale_sweep(loaded, offsets: Sequence[Tuple[int, int]], seed: Optional[int] = None,
                     latents: Optional[Latents] = None, truncation: float = 1.0, noise_seed: int = 0,
                     hold: int = 1, max_side: Optional[int] = checks.MAX_SIDE) -> Iterator[np.ndarray]:
    """Float frames [H_i, W_i, 3] in [-1, 1] of one latent (``seed``, or row 0 of ``latents``)
    at each scale of ``offsets``, each repeated ``hold`` times. The noise maps are drawn once at
    the largest offsets (the seed's, or the file's when made there, else from ``noise_seed``)
    and centre-cropped for the smaller frames; the frame at the largest offsets is then that
    scale's ``pegan sample`` image."""
    model = generator_of(loaded)
    checks.at_least(hold, 1, "hold")
    offsets = [checked_scale(model.out_size, s, max_side) for s in offsets]
    if not offsets:
        raise InputError("a scale sweep needs at least one scale")
    big = (max(s[0] for s in offsets), max(s[1] for s in offsets))
    if (seed is None) == (latents is None):
        raise InputError("a scale sweep renders one latent: give one seed or one latent file")
    if seed is not None:
        keys = seed_keyframes(loaded, [seed], big, truncation)
    else:
        if len(latents) != 1:
            raise InputError(f"a scale sweep renders one latent; this latent file holds {len(latents)}")
        keys = file_keyframes(loaded, [latents], big, truncation, noise_seed)

    def frames_of():
        last, image = None, None
        for s in offsets:
            if s != last:         # one compiled program per frame size, each rendered once
                noises = [_centre_crop(n, shape) for n, shape in zip(keys.noises, model.noise_shapes(s))]
                image = np.asarray(renderer(loaded, s)(keys.w, noises))[0]
                last = s
            for _ in range(hold):
                yield image

    return frames_of()


def on_canvas(frames: Iterable[np.ndarray], size: Tuple[int, int], fill: int = 0) -> Iterator[np.ndarray]:
    """Each uint8 frame [h, w, 3] centred on a ``fill`` canvas of ``size`` (H, W)."""
    H, W = size
    for f in frames:
        h, w = f.shape[:2]
        out = np.full((H, W, f.shape[2]), fill, np.uint8)
        top, left = (H - h) // 2, (W - w) // 2
        out[top:top + h, left:left + w] = f
        yield out


def scale_sweep(loaded, offsets: Sequence[Tuple[int, int]], seed: Optional[int] = None,
                latents: Optional[Latents] = None, truncation: float = 1.0, noise_seed: int = 0,
                hold: int = 1, max_side: Optional[int] = checks.MAX_SIDE) -> List[np.ndarray]:
    """``iter_scale_sweep`` gathered: a list of float frames of their own sizes."""
    return list(iter_scale_sweep(loaded, offsets, seed, latents, truncation, noise_seed, hold, max_side))


def sweep_canvas(out_size: int, offsets: Sequence[Tuple[int, int]]) -> Tuple[int, int]:
    """(H, W) of the canvas of a sweep: the largest height and the largest width of its frames."""
    sizes = [image_size(out_size, s) for s in offsets]
    return max(h for h, _ in sizes), max(w for _, w in sizes)


# -- PE-SinGAN random walk ------------------------------------------------------------------------

def _stretched(noise, shape, impl: str):
    """A stored noise map [1, h, w, c] at the (H, W, c) of ``shape``: as it is when it fits,
    else resized bilinearly (align_corners, as pegan's other SinGAN resizes)."""
    if tuple(noise.shape[1:]) == tuple(shape):
        return np.asarray(noise)
    return np.asarray(ops.resize_bilinear(noise, tuple(shape[:2]), align_corners=True, impl=impl))


def iter_singan_walk(loaded, frames: int, seed: int = 0, start_stage: int = 0, alpha: float = 0.9,
                     size: Optional[Tuple[int, int]] = None, width_factor: float = 1.0,
                     height_factor: float = 1.0, batch: int = 4,
                     max_side: Optional[int] = checks.MAX_SIDE) -> Iterator[np.ndarray]:
    """Float frames [b, H, W, 3] in [-1, 1] of a PE-SinGAN random walk (module doc): stages
    >= ``start_stage`` start from ``pegan sample --seed seed``'s noise and move by AR(1) with
    ``alpha`` (r_t drawn from ``fold_in(PRNGKey(seed), t)``), stages below keep the stored
    reconstruction noise; output size as ``singan_sample`` ('rand') takes it."""
    checks.at_least(frames, 1, "frames")
    checks.at_least(batch, 1, "batch")
    st = loaded.state
    if "fixed_noises" not in st:
        raise InputError("a random walk needs a PE-SinGAN generator")
    last = st["curr_stage"]
    if not 0 <= start_stage <= last:
        raise InputError(f"start stage must be in 0..{last} (this checkpoint's trained stages), got {start_stage}")
    if not (math.isfinite(alpha) and 0.0 <= alpha <= 1.0):
        raise InputError(f"alpha must be in [0, 1] (1: no motion, 0: independent frames), got {alpha}")
    sizes = singan_sizes(loaded, size, width_factor, height_factor, max_side)
    shapes = singan_noise_shapes(loaded, sizes)
    impl = loaded.model.forms.resize
    native = [tuple(v) for v in st["sizes"][: last + 1]]
    fixed = [np.asarray(st["fixed_noises"][t]) if [tuple(v) for v in sizes] == native
             else _stretched(st["fixed_noises"][t], shapes[t], impl) for t in range(start_stage)]
    key = jax.random.PRNGKey(int(seed))
    walk = [np.asarray(n) for n in draw_noises(key, shapes, 1)][start_stage:]
    keep, fresh = np.float32(alpha), np.float32(math.sqrt(max(0.0, 1.0 - alpha * alpha)))
    run = singan_runner(loaded)
    b = min(batch, frames)

    def frames_of():
        z, t = walk, 0
        while t < frames:
            states = []               # the walking stages' noise maps of each frame of this batch
            for _ in range(min(b, frames - t)):
                if t > 0:
                    r = draw_noises(jax.random.fold_in(key, t), shapes, 1)[start_stage:]
                    z = [keep * zj + fresh * np.asarray(rj) for zj, rj in zip(z, r)]
                states.append(z)
                t += 1
            idx = np.arange(b) % len(states)          # pad with repeats: one program
            stacked = [np.concatenate([states[i][j] for i in idx]) for j in range(len(z))]
            yield np.asarray(run(fixed + list(_spread(stacked)), None))[:len(states)]

    return frames_of()


def singan_walk(loaded, frames: int, seed: int = 0, start_stage: int = 0, alpha: float = 0.9,
                size: Optional[Tuple[int, int]] = None, width_factor: float = 1.0, height_factor: float = 1.0,
                batch: int = 4, max_side: Optional[int] = checks.MAX_SIDE) -> np.ndarray:
    """``iter_singan_walk`` gathered: [T, H, W, 3] float32 in [-1, 1]."""
    return np.concatenate(list(iter_singan_walk(loaded, frames, seed, start_stage, alpha, size, width_factor,
                                                height_factor, batch, max_side)))
