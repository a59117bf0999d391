"""The built-in demo: train a PE-SinGAN (CSG head, the released ``singan-csg_*`` settings) on a
real photo on this CPU, then draw a sheet: the training image, its reconstruction, random
samples at the native size and at twice the width (and, with ``--compare``, the same training
without positional encoding).

Reduced schedule (the reference trains 2000 iterations per stage on a 250-500 px image, about
26 s per iteration at its last stage on a 2-core CPU): the photo is scaled to ``max_size``
(default 64 px on its long side), the pyramid starts at ``min_size`` (default 16 px) and each
stage trains ``iters`` iterations (default 120), 3 D + 3 G steps each, as the reference.
The run is a normal pegan checkpoint directory (``out/demo_run``): re-running resumes it or,
if complete, only redraws the sheet; ``pegan sample out/demo_run`` samples from it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from pegan import loading
from pegan._extras import require
from pegan.checks import output_file
from pegan.configs import singan_config
from pegan.errors import MissingFileError
from pegan.imageio import IMAGE_EXTS, labelled_row, read_image, save_png, stack_rows, to_uint8
from pegan.train import singan as ts

DEFAULT_IMAGE = "skimage:rocket"


def load_demo_image(spec: str, max_size: int) -> np.ndarray:
    """uint8 [H, W, 3] from 'skimage:<name>' (an image bundled with scikit-image) or a path,
    scaled (Lanczos) so that its long side is ``max_size``."""
    from PIL import Image


    if spec.startswith("skimage:"):
        require("skimage", extra="demo", by=f"--image {spec}")
        import skimage.data

        name = spec.split(":", 1)[1]
        if not hasattr(skimage.data, name):
            raise MissingFileError(f"scikit-image has no bundled image {name!r}")
        arr = np.asarray(getattr(skimage.data, name)())
    else:
        arr = read_image(spec)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, -1)
    arr = arr[..., :3].astype(np.uint8)
    h, w = arr.shape[:2]
    s = max_size / max(h, w)
    if s < 1:
        arr = np.asarray(Image.fromarray(arr).resize((max(1, round(w * s)), max(1, round(h * s))), Image.LANCZOS))
    return arr


def _progress_factory(label):
    from tqdm import tqdm

    def make(stage, size, total):
        return tqdm(total=total, desc=f"{label} stage {stage} {size[0]}x{size[1]}", unit="it", leave=False,
                    dynamic_ncols=True)
    return make


def _train(cfg, image, out_dir, args, label):

    t0 = time.time()
    trainer, reports = ts.run(cfg, image, out_dir, seed=args.seed, iters=args.iters,
                              progress_factory=_progress_factory(label),
                              log=lambda m: print(f"[{label}] {m}", flush=True), image_name=args.image)
    return time.time() - t0, reports


def _rows(out_dir, image, label, args):

    g = loading.load(out_dir)
    recon = loading.singan_sample(g, mode="recon")[0]
    native = loading.singan_sample(g, args.num, seed=args.seed + 1)
    wide = loading.singan_sample(g, max(2, args.num // 2), seed=args.seed + 2, width_factor=2.0)
    z = args.zoom

    def up(a):
        return np.kron(to_uint8(a), np.ones((z, z, 1), np.uint8))

    h, w = image.shape[:2]
    rows = [labelled_row([up(image.astype(np.float32) / 127.5 - 1.0), up(recon)],
                         [f"{label}: training image {h}x{w}", "reconstruction"]),
            labelled_row([up(x) for x in native], ["random samples, native size"] + [""] * (len(native) - 1)),
            labelled_row([up(x) for x in wide], [f"random samples at twice the width ({wide.shape[2]} px)"]
                         + [""] * (len(wide) - 1))]
    return rows


def run_demo(args) -> int:
    import jax


    output_file(args.out, "--out", IMAGE_EXTS)

    cache = Path(os.environ.get("PEGAN_JAX_CACHE", Path.home() / ".cache" / "pegan" / "jax"))
    try:
        cache.mkdir(parents=True, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", str(cache))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    except Exception:  # the cache is only a speed-up
        pass
    t0 = time.time()
    image = load_demo_image(args.image, args.max_size)
    out = Path(args.out)
    run_dir = Path(args.run_dir) if args.run_dir else out.parent / "demo_run"
    cfg = singan_config("singan-csg_fish")
    cfg.data.max_size, cfg.data.min_size = args.max_size, args.min_size
    cfg.train.lr_milestones = [int(args.iters * 0.8)]
    print(f"PE-SinGAN (CSG) on {args.image} at {image.shape[0]}x{image.shape[1]}, {args.iters} iterations "
          f"per stage -> {run_dir}", flush=True)
    secs, reps = _train(cfg, image, run_dir, args, "CSG")
    rows = _rows(run_dir, image, "PE-SinGAN (CSG)", args)
    summary = [f"PE-SinGAN: {secs:.0f} s"]
    if args.compare:
        base = cfg.copy_and_resolve_references()
        base.name = "singan-nope_demo"
        base.generator.positional_encoding = None
        base.generator.first_stage_in_channels = None
        base.noise.first_fixed_noises_ch = 1
        secs2, _ = _train(base, image, Path(str(run_dir) + "_nope"), args, "no PE")
        rows += _rows(Path(str(run_dir) + "_nope"), image, "SinGAN without PE (same settings)", args)
        summary.append(f"without PE: {secs2:.0f} s")
    path = save_png(out, stack_rows(rows))
    print(f"wrote {path} ({', '.join(summary)}; total {time.time() - t0:.0f} s)")
    return 0
