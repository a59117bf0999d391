"""How long ``pegan explore`` takes to answer, over HTTP on 127.0.0.1, for the tiny and the
full config-f generator (random weights: a render costs the same with trained ones).

For each model and output size: the first render (compiles that size's program), then the
median of ``--reps`` renders of other seeds and truncations (the held program), and one with
style mixing (the w-space program of that size). Prints a table.

    .venv/bin/python scripts/bench_explore.py                      # tiny and full, 256 and 512 px
    .venv/bin/python scripts/bench_explore.py --models tiny --reps 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CFG_F = "mspie-stylegan2-config-f_c2_8xb3-1100kiters_ffhq-256-512"


def random_checkpoint(folder: Path, variant: str) -> Path:
    """A pegan checkpoint directory of a config-f generator with random weights."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from pegan import checkpoint as ckpt
    from pegan.configs import load_experiment
    from pegan.loading import MEAN_LATENT_SAMPLES, MEAN_LATENT_SEED
    from pegan.models.stylegan2 import build_generator, compute_mean_latent

    cfg = load_experiment(CFG_F, variant)
    g = build_generator(cfg)
    v = jax.jit(lambda k: g.init(k, jnp.zeros((1, g.style_channels)), noise="const"))(jax.random.PRNGKey(0))
    v = jax.tree.map(np.asarray, v)
    v["buffers"]["mean_latent"] = np.asarray(compute_mean_latent(g, v, jax.random.PRNGKey(MEAN_LATENT_SEED),
                                                                 MEAN_LATENT_SAMPLES))
    info = {"family": "stylegan2", "experiment": cfg.name, "variant": cfg.variant, "color_order": "RGB",
            "source": {"file": None, "note": "random weights (scripts/bench_explore.py)"}}
    out = folder / variant
    ckpt.save(out, 0, {"generator_ema": v, "generator": v}, cfg, info)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="tiny,full", help="config-f variants: tiny, full")
    ap.add_argument("--sides", default="1x,2x", help="output sizes as multiples of the native side")
    ap.add_argument("--reps", type=int, default=3)
    opts = ap.parse_args(argv)

    from pegan.explore import Explorer, make_server

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for variant in opts.models.split(","):
            path = random_checkpoint(Path(tmp), variant)
            explorer = Explorer([str(path)], cache=8)
            server, worker = make_server(explorer, "127.0.0.1", 0)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            base = f"http://127.0.0.1:{server.server_address[1]}/api/render?"

            def get(**q):
                t0 = time.perf_counter()
                with urllib.request.urlopen(base + urllib.parse.urlencode(q), timeout=1800) as r:
                    r.read()
                    return time.perf_counter() - t0, r.headers["X-Size"]

            for mult in opts.sides.split(","):
                s = 4 * int(mult.rstrip("x")) - 4
                first, size = get(seed=0, sh=s, sw=s)
                held = [get(seed=i + 1, sh=s, sw=s, truncation=0.5 + 0.1 * i)[0] for i in range(opts.reps)]
                mix_first = get(seed=1, sh=s, sw=s, mix_seed=2, mix_layers="0-3")[0]
                mix = [get(seed=i + 3, sh=s, sw=s, mix_seed=2, mix_layers="0-3")[0] for i in range(opts.reps)]
                rows.append((variant, size, first, statistics.median(held), mix_first, statistics.median(mix)))
                print(f"  {variant} {size}: first {first:.2f} s, held {statistics.median(held) * 1e3:.0f} ms",
                      file=sys.stderr, flush=True)
            server.shutdown()
            server.server_close()
            worker.stop()
            explorer.close()
    print("| model | image | first render (compiles) | render, program held | mixing: first | mixing: held |")
    print("|---|---|---|---|---|---|")
    for variant, size, first, held, mf, mh in rows:
        print(f"| config-f {variant} | {size} px | {first:.1f} s | {held * 1e3:.0f} ms | {mf:.1f} s | {mh * 1e3:.0f} ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
