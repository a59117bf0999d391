"""Command line: ``pegan demo | convert | sample | experiments``.

Errors caused by the input (missing or damaged files, unknown experiments, checkpoints that do
not fit) print one message and exit with status 2; PEGAN_DEBUG=1 shows the traceback.

Each subcommand imports what it needs when it runs, so ``pegan --help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import List, Optional


class UserError(Exception):
    """An error caused by the user's input: printed without a traceback, exit status 2."""


# library exceptions that describe bad input (files, names, sizes), reported without traceback
_USER_ERRORS = {"CheckpointReadError", "UnsafePickleError", "ConversionError", "CheckpointError",
                "ExperimentError", "FileNotFoundError", "ValueError", "IsADirectoryError",
                "PermissionError"}


def _demo(args) -> int:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from pegan import encodings, ops
    from pegan.imageio import labelled_row, save_png, stack_rows, to_uint8

    t0 = time.time()
    rows = []
    # 1. the encodings themselves: SPE channels (x and y part) and CSG, at two sizes
    for h, w in ((8, 8), (12, 20)):
        spe = encodings.spe_grid(h, w, 8, center_shift=100)[0]
        csg = encodings.csg_grid(h, w)[0]
        tiles = [spe[..., c:c + 1] for c in (0, 1, 8, 9)] + [csg[..., :1], csg[..., 1:]]
        tiles = [np.kron(to_uint8(t), np.ones((8, 8, 1), np.uint8)) for t in tiles]
        rows.append(labelled_row(tiles, [f"SPE x0 {h}x{w}", "SPE x1", "SPE y0", "SPE y1", "CSG x", "CSG y"]))
    # 2. a tiny random network with an SPE head sampled at several sizes: the same weights
    #    make images of any size because the head is an explicit positional grid
    key = jax.random.PRNGKey(args.seed)
    ks = jax.random.split(key, 8)
    chans = [16, 16, 12, 8]
    ws = [jax.random.normal(ks[i], (3, 3, chans[i], chans[i + 1])) / np.sqrt(9 * chans[i]) for i in range(3)]
    w_rgb = jax.random.normal(ks[4], (1, 1, chans[-1], 3)) / np.sqrt(chans[-1])
    styles = jax.random.normal(ks[5], (args.num, 3, 16))

    @jax.jit
    def net(head, styles):
        x = head
        for i, w in enumerate(ws):
            x = ops.modulated_conv2d(x, w, styles[:, i, : w.shape[2]] + 1.0, up="after")
            x = ops.bias_leaky_relu(x)
        return jnp.tanh(ops.modulated_conv2d(x, w_rgb, jnp.ones((x.shape[0], chans[-1])), demodulate=False))

    tiles, labels = [], []
    for s in (0, 2, 4):
        head = encodings.spe_grid(4 + s, 4 + s, 8, center_shift=100, batch=args.num)
        img = np.asarray(net(jnp.asarray(head), styles))
        tiles.append(np.concatenate(list(to_uint8(img)), axis=1))
        labels.append(f"scale {s}: {img.shape[1]}x{img.shape[2]}")
    rows.append(labelled_row(tiles[:1], labels[:1]))
    rows.append(labelled_row(tiles[1:2], labels[1:2]))
    rows.append(labelled_row(tiles[2:], labels[2:]))
    path = save_png(args.out, stack_rows(rows))
    print(f"wrote {path} in {time.time() - t0:.1f} s")
    return 0


def _pair(text: str, what: str):
    try:
        parts = [int(v) for v in text.replace("x", ",").split(",")]
    except ValueError:
        raise UserError(f"{what} must be N or H,W (integers), got {text!r}")
    if len(parts) == 1:
        return parts[0], parts[0]
    if len(parts) != 2:
        raise UserError(f"{what} must be N or H,W, got {text!r}")
    return parts[0], parts[1]


def _convert(args) -> int:
    from pegan import api

    t0 = time.time()
    out = api.convert(args.file, args.out_dir, experiment=args.experiment, variant=args.variant,
                      keep_bgr=args.keep_bgr, overwrite=args.overwrite)
    from pegan import checkpoint as ckpt
    info = ckpt.read_info(out)
    print(f"wrote {out}: experiment {info['experiment']} ({info['variant']}, chosen by "
          f"{info['source']['experiment_chosen_by']}), {info['color_order']} output, step "
          f"{ckpt.latest_step(out)}, in {time.time() - t0:.1f} s")
    return 0


def _sample(args) -> int:
    import numpy as np

    from pegan import api
    from pegan.imageio import image_grid, save_png, to_uint8

    t0 = time.time()
    loaded = api.load(args.checkpoint, which=args.which, experiment=args.experiment,
                      variant=args.variant)
    if args.size and args.chosen_scale is not None:
        raise UserError("give --chosen-scale or --size, not both")
    scale = api.resolve_scale(loaded.model, None if args.chosen_scale is None else
                              _pair(args.chosen_scale, "--chosen-scale"),
                              _pair(args.size, "--size") if args.size else None)
    imgs = api.sample(loaded, args.num, scale, truncation=args.truncation, seed=args.seed,
                      batch=args.batch, noise=args.noise)
    if loaded.info.get("color_order") == "BGR":
        imgs = imgs[..., ::-1]
    path = save_png(args.out, image_grid(to_uint8(imgs), ncol=args.ncol))
    msg = f"wrote {path}"
    if args.npy:
        os.makedirs(os.path.dirname(os.path.abspath(args.npy)), exist_ok=True)
        np.save(args.npy, imgs)
        msg += f" and {args.npy} (float32 [N, H, W, 3] RGB in [-1, 1])"
    print(f"{msg}: {args.num} images of {imgs.shape[1]}x{imgs.shape[2]} (chosen scale {scale}, "
          f"truncation {args.truncation}, seed {args.seed}) in {time.time() - t0:.1f} s")
    return 0


def _experiments(args) -> int:
    from pegan.configs import RELEASED, stylegan2_config

    for name in RELEASED:
        c = stylegan2_config(name)
        f = c.generator.out_size // 4
        print(f"{name:60s} {c.paper:16s} px {','.join(str((4 + s) * f) for s in c.scales):14s} "
              f"FID50k {c.release.fid50k:.2f}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pegan", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="the built-in demo: writes a PNG sheet")
    d.add_argument("--out", default="out/demo.png", help="PNG to write (default out/demo.png)")
    d.add_argument("--num", type=int, default=4, help="samples per size")
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(func=_demo)

    c = sub.add_parser("convert", help="reference .pth (mmgeneration / mmagic) -> pegan checkpoint directory")
    c.add_argument("file", help="the released .pth")
    c.add_argument("out_dir", help="new directory for the pegan checkpoint")
    c.add_argument("--experiment", help="experiment name (needed when the file name and the shapes "
                   "do not identify it; see `pegan experiments`)")
    c.add_argument("--variant", choices=["full", "tiny"], default=None)
    c.add_argument("--keep-bgr", action="store_true", help="keep the reference's BGR output order")
    c.add_argument("--overwrite", action="store_true", help="replace a non-empty out_dir")
    c.set_defaults(func=_convert)

    s = sub.add_parser("sample", help="sample a grid of images from a checkpoint directory or a .pth")
    s.add_argument("checkpoint", help="pegan checkpoint directory (or a reference .pth)")
    s.add_argument("--chosen-scale", help="scale offset S or SH,SW (out_size 256: 0 -> 256 px, 2 -> 384, "
                   "4 -> 512, 12 -> 1024); default 0")
    s.add_argument("--size", help="image size H,W in pixels instead (must map to whole offsets)")
    s.add_argument("--num", type=int, default=16)
    s.add_argument("--truncation", type=float, default=1.0)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--batch", type=int, default=4, help="images per forward pass")
    s.add_argument("--which", default="ema", choices=["ema", "orig"], help="EMA or raw generator")
    s.add_argument("--noise", default="random", choices=["random", "const"],
                   help="per-layer noise drawn from the seed, or the stored noise (scale 0 only)")
    s.add_argument("--ncol", type=int, default=None, help="grid columns")
    s.add_argument("--out", default="out/samples.png")
    s.add_argument("--npy", help="also save the raw float32 images here (.npy)")
    s.add_argument("--experiment", help="for a .pth: the experiment, if not recognised")
    s.add_argument("--variant", choices=["full", "tiny"], default=None)
    s.set_defaults(func=_sample)

    e = sub.add_parser("experiments", help="list the released experiments")
    e.set_defaults(func=_experiments)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as e:
        print(f"pegan {args.command}: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # the known error types of the library are user errors too
        if type(e).__name__ not in _USER_ERRORS or os.environ.get("PEGAN_DEBUG"):
            raise
        print(f"pegan {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pegan {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
