"""Command line: ``pegan demo | ...``.

Each subcommand imports what it needs when it runs, so ``pegan --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import List, Optional


class UserError(Exception):
    """An error caused by the user's input: printed without a traceback, exit status 2."""


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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pegan", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="the built-in demo: writes a PNG sheet")
    d.add_argument("--out", default="out/demo.png", help="PNG to write (default out/demo.png)")
    d.add_argument("--num", type=int, default=4, help="samples per size")
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(func=_demo)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as e:
        print(f"pegan {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pegan {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
