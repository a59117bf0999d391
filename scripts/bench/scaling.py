"""The scaling picture: config-f generator images/s against the batch (1, 2, 4, 8, 16 at 256
px) and against the output size (256, 384, 512, 896 and 1024 px from the one 256-px generator,
chosen scales 0, 2, 4, 10 and 12, batch 1), and the training iteration against the chosen
scale, as markdown tables and one PNG of three panels (drawn with Pillow, no plotting library).

The cases are ordinary benchmark cases (``gfwd``, ``iter``), each in its own process; a case
whose compiled program would need more memory than ``--mem-cap-gb`` is reported as skipped
with that reason instead of being run.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

__all__ = ["BATCHES", "SCALES", "cases", "tables", "plot"]

BATCHES = (1, 2, 4, 8, 16)
SCALES = (0, 2, 4, 10, 12)          # 256, 384, 512, 896, 1024 px from out_size 256
ITER = "iter:0-2-4:3"


def cases() -> List[str]:
    return ([f"gfwd:f:0:{b}" for b in BATCHES] + [f"gfwd:f:{s}:1" for s in SCALES if s != 0]
            + [ITER])


def _by(results: Sequence[dict]) -> Dict[str, dict]:
    return {r["case"]: r for r in results}


def _series(results):
    by = _by(results)
    batch = [(b, by.get(f"gfwd:f:0:{b}", {})) for b in BATCHES]
    size = [(s, by.get(f"gfwd:f:{s}:1", {})) for s in SCALES]
    return batch, size, by.get(ITER, {})


def _ips(r) -> Optional[float]:
    return r.get("images_per_s") if r and "error" not in r else None


def tables(results: Sequence[dict]) -> str:
    batch, size, it = _series(results)
    out = ["| G forward, 256 px | " + " | ".join(f"batch {b}" for b, _ in batch) + " |",
           "|---|" + "---|" * len(batch),
           "| images/s | " + " | ".join(f"{_ips(r):.2f}" if _ips(r) else r.get("error", "-") for _, r in batch) + " |",
           "", "| G forward, batch 1 | " + " | ".join(
               "x".join(map(str, r.get("size", []))) + " px" if r.get("size") else f"scale {s}" for s, r in size) + " |",
           "|---|" + "---|" * len(size),
           "| images/s | " + " | ".join(f"{_ips(r):.2f}" if _ips(r) else r.get("error", "-") for _, r in size) + " |"]
    per = (it or {}).get("per_scale") or {}
    if per:
        out += ["", "| iteration, batch 3 | " + " | ".join(f"scale {s}: {'x'.join(map(str, r['size']))}"
                                                          for s, r in per.items()) + " |",
                "|---|" + "---|" * len(per),
                "| s/iteration (R1 / PL amortised) | " + " | ".join(_iter_cell(r) for r in per.values()) + " |"]
    elif it.get("error"):
        out += ["", f"iteration: {it['error']}"]
    return "\n".join(out)


def _iter_cell(r) -> str:
    if "error" in r:
        return r["error"]
    if "seconds" in r:
        return f"{r['seconds']:.2f}" + _passes(r)
    return f"{r['seconds_none']:.2f} (plain)" + _passes(r) if "seconds_none" in r else "-"


def _passes(r) -> str:
    """How a scale run in accumulation passes (the benchmark's fallback under its memory cap) says so."""
    n = r.get("passes", 1)
    return f" ({n} passes of {r['batch_gpu']})" if n > 1 else ""


def _iter_seconds(r) -> Optional[float]:
    return None if "error" in r else r.get("seconds", r.get("seconds_none"))


def plot(results: Sequence[dict], path) -> str:
    """Three panels (G images/s against batch and against output side, seconds per training
    iteration against output side) as a PNG at ``path``."""
    from PIL import Image, ImageDraw, ImageFont

    try:                                    # Pillow's scalable default font (10.1 and later)
        font = ImageFont.load_default(size=13)
    except TypeError:
        font = ImageFont.load_default()

    batch, size, it = _series(results)
    def why(r):                 # below the x value where nothing was measured; else after the value
        return ("(skipped)" if r.get("error") else "(not run)") if _iter_seconds(r) is None and _ips(r) is None \
            else ((" (plain)" if "seconds_none" in r and "seconds" not in r else "")
                  + (f" ({r['passes']} passes)" if r.get("passes", 1) > 1 else ""))

    per = (it or {}).get("per_scale") or {}
    panels = [("G forward images/s against batch (256 px)", [(b, _ips(r), why(r)) for b, r in batch], "batch"),
              ("G forward images/s against output side (batch 1)",
               [(r["size"][0], _ips(r), why(r)) for _, r in size if r.get("size")], "px"),
              ("training iteration s against output side (batch 3)",
               [(r["size"][0], _iter_seconds(r), why(r)) for r in per.values() if r.get("size")], "px")]
    W, H, pad = 520, 360, 50
    img = Image.new("RGB", (len(panels) * W, H), "white")
    d = ImageDraw.Draw(img)
    for k, (title, pts, unit) in enumerate(panels):
        x0 = k * W
        d.text((x0 + pad, 12), title, fill="black", font=font)
        d.line([(x0 + pad, H - pad), (x0 + W - 20, H - pad)], fill="black")
        d.line([(x0 + pad, H - pad), (x0 + pad, 40)], fill="black")
        good = [(x, y) for x, y, _ in pts if y]
        if not good:
            d.text((x0 + pad + 10, H // 2), "no measurement", fill="red", font=font)
            continue
        xs, ymax = [x for x, _, _ in pts], max(y for _, y in good) * 1.1

        def at(x, y):           # the x values evenly spaced, in order (batches double, sides grow)
            i = xs.index(x)
            fx = 0.5 if len(xs) == 1 else i / (len(xs) - 1)
            return (x0 + pad + 10 + fx * (W - pad - 90), H - pad - (y / ymax) * (H - pad - 50))

        d.line([at(x, y) for x, y in good], fill=(40, 90, 200), width=2)
        for x, y, note in pts:
            if y:
                px, py = at(x, y)
                d.ellipse([px - 3, py - 3, px + 3, py + 3], fill=(40, 90, 200))
                label = f"{y:.2f}{note}"          # kept inside its panel
                d.text((min(px + 4, x0 + W - 6 - d.textlength(label, font=font)), py - 16), label,
                       fill="black", font=font)
            px, _ = at(x, 0)
            d.text((px - 8, H - pad + 6), str(x) if y else f"{x} {note}", fill="black" if y else "red", font=font)
        d.text((x0 + W // 2 - 20, H - 18), unit, fill="black", font=font)
        d.text((x0 + 4, 40), f"{ymax / 1.1:.2f}", fill="black", font=font)
    img.save(path)
    return str(path)
