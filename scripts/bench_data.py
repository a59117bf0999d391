"""Throughput of the training-data pipeline alone (no model): images/s and images/s per CPU core.

Generates ``--num`` photo-like images (smooth colour fields plus noise, saved as PNG and JPEG at
``--src`` px), prepares them with ``pegan.data.prepare`` at ``--size`` px in a temporary folder
(raw and PNG storage), then times ``PreparedImages.batch`` over consecutive steps (epoch
shuffling, flips, float conversion, prefetch threads) as the trainer calls it, plus the in-memory
``ImageFolder`` for reference. The issue's target: >= 200 images/s per core at 256 px.

    .venv/bin/python scripts/bench_data.py                 # 320 images, 256 px, batch 32
    .venv/bin/python scripts/bench_data.py --size 512 --num 200 --seconds 5
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_images(folder: Path, num: int, src: int, seed: int = 0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:src, 0:src] / src
    for i in range(num):
        c = rng.uniform(0, 1, 6)
        img = np.stack([np.sin(xx * (3 + 9 * c[0]) + 6 * c[1]), np.cos(yy * (3 + 9 * c[2]) + 6 * c[3]),
                        np.sin((xx + yy) * (2 + 6 * c[4]) + 6 * c[5])], -1) * 100 + 127
        img = np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / (f"{i:05d}.png" if i % 2 else f"{i:05d}.jpg"), quality=95)


def time_loader(fn, batch: int, seconds: float, min_steps: int = 8, consumer_s: float = 0.0):
    """(images/s wall, images per CPU-second of this process, last batch). ``consumer_s``: a
    stand-in for the accelerator step (a sleep, which like a jitted step releases the GIL)."""
    fn(0, batch, 0)                                     # warm-up: threads, file handles, first epoch
    t0, c0, step, n = time.perf_counter(), time.process_time(), 1, 0
    while time.perf_counter() - t0 < seconds or step <= min_steps:
        x = fn(step, batch, step * batch)
        if consumer_s:
            time.sleep(consumer_s)
        n += len(x)
        step += 1
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return n / wall, n / max(cpu, 1e-9), x


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num", type=int, default=320, help="images to generate and prepare")
    p.add_argument("--src", type=int, default=320, help="side of the generated source images (px)")
    p.add_argument("--size", type=int, default=256, help="prepared resolution (px)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seconds", type=float, default=4.0, help="time per measurement")
    p.add_argument("--workers", default="0,1,2", help="reader-thread counts to try")
    p.add_argument("--formats", default="raw,png")
    p.add_argument("--step-ms", type=float, default=25.0,
                   help="also time raw with a consumer that takes this long per batch (0: skip)")
    p.add_argument("--dir", help="work folder (default: a temporary one, removed)")
    args = p.parse_args(argv)

    from pegan.data import PreparedImages, prepare
    from pegan.train.stylegan2_loop import ImageFolder

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        tmp = Path(tmp)
        (tmp / "src").mkdir()
        t0 = time.perf_counter()
        make_images(tmp / "src", args.num, args.src)
        print(f"generated {args.num} images of {args.src} px (PNG and JPEG) in {time.perf_counter() - t0:.1f} s; "
              f"{cores} CPU cores; load average {os.getloadavg()[0]:.1f}")
        rows, overlap = [], []
        for fmt in args.formats.split(","):
            t0 = time.perf_counter()
            info = prepare(tmp / "src", tmp / f"prep-{fmt}", args.size, encoding=fmt)
            dt = time.perf_counter() - t0
            mb = sum(f.stat().st_size for f in (tmp / f"prep-{fmt}").rglob("*")) / 2**20
            print(f"prepare --format {fmt}: {info['num_images']} images in {dt:.1f} s "
                  f"({info['num_images'] / dt:.0f} images/s), {mb:.1f} MiB")
            for w in [int(v) for v in args.workers.split(",")]:
                for depth in (0, 2):
                    with PreparedImages(tmp / f"prep-{fmt}", process_index=0, process_count=1,
                                        prefetch=depth, workers=w) as data:
                        rate, cpu, x = time_loader(lambda s, b, o: data.batch(0, s, b, o), args.batch,
                                                   args.seconds)
                    assert x.shape == (args.batch, args.size, args.size, 3) and x.dtype == np.float32
                    rows.append((f"PreparedImages {fmt}", w, depth, rate, cpu))
                    print(f"  {rows[-1][0]:22s} workers {w} prefetch {depth}: {rate:7.0f} images/s "
                          f"({rate / cores:.0f} per core, {cpu:.0f} per CPU-second)", flush=True)
            if fmt == "raw" and args.step_ms:
                for depth in (0, 2):
                    with PreparedImages(tmp / "prep-raw", process_index=0, process_count=1, prefetch=depth,
                                        workers=1) as data:
                        rate, _, _ = time_loader(lambda s, b, o: data.batch(0, s, b, o), args.batch,
                                                 args.seconds, consumer_s=args.step_ms / 1000)
                    overlap.append((depth, rate))
                    print(f"  with a {args.step_ms:.0f} ms step per batch, prefetch {depth}: {rate:.0f} images/s "
                          f"({1000 * args.batch / rate:.1f} ms per step)", flush=True)
        t0 = time.perf_counter()
        folder = ImageFolder(tmp / "src", args.size)
        load = time.perf_counter() - t0
        rate, cpu, _ = time_loader(lambda s, b, o: folder.batch(0, s, b, o), args.batch, args.seconds)
        rows.append(("ImageFolder (in memory)", "-", "-", rate, cpu))
        print(f"  ImageFolder: loaded in {load:.1f} s, {rate:.0f} images/s")

    print(f"\n{args.size} px, batch {args.batch}, {cores} cores (target: >= 200 images/s per core)")
    print("| loader | reader threads | prefetch | images/s | images/s per core | images per CPU-second |")
    print("|---|---|---|---|---|---|")
    for name, w, d, rate, cpu in rows:
        print(f"| {name} | {w} | {d} | {rate:.0f} | {rate / cores:.0f} | {cpu:.0f} |")
    for depth, rate in overlap:
        print(f"raw, 1 reader, prefetch {depth}, consumer {args.step_ms:.0f} ms/step: {1000 * args.batch / rate:.1f} "
              f"ms per step (the step alone: {args.step_ms:.0f} ms)")
    best = max(r[3] for r in rows if r[0].startswith("PreparedImages raw")) if any(
        r[0].startswith("PreparedImages raw") for r in rows) else max(r[3] for r in rows)
    print(f"best prepared (raw) pipeline: {best:.0f} images/s = {best / cores:.0f} per core "
          f"({'meets' if best / cores >= 200 else 'below'} the 200/core target); "
          f"load average now {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
