"""The benchmark's scaling report (scripts/bench/scaling.py) from made-up results: its tables and
its three-panel PNG, with a generator case and an iteration scale skipped for memory."""

import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from bench import scaling  # noqa: E402


def results():
    out = [{"case": f"gfwd:f:0:{b}", "images_per_s": 1.0 + 0.1 * b, "size": [256, 256]} for b in scaling.BATCHES]
    for s in scaling.SCALES[1:]:
        side = 64 * (4 + s)
        out.append({"case": f"gfwd:f:{s}:1", "size": [side, side], "images_per_s": 256.0 ** 2 / side ** 2})
    out[-1] = {"case": out[-1]["case"], "size": out[-1]["size"], "error": "skipped: its program needs 30 GB > --mem-cap-gb 16"}
    out.append({"case": scaling.ITER, "per_scale": {
        "0": {"size": [256, 256], "seconds": 30.5}, "2": {"size": [384, 384], "seconds": 71.0},
        "4": {"size": [512, 512], "error": "skipped: its program needs 25.1 GB > --mem-cap-gb 16"}}})
    return out


def test_tables_name_each_value_and_each_skip():
    text = scaling.tables(results())
    assert "| images/s | 1.10 | 1.20 | 1.40 | 1.80 | 2.60 |" in text
    assert "needs 30 GB" in text
    assert "| s/iteration (R1 / PL amortised) | 30.50 | 71.00 | skipped: its program needs 25.1 GB" in text


def test_plot_has_three_panels(tmp_path):
    path = scaling.plot(results(), tmp_path / "s.png")
    img = np.asarray(Image.open(path).convert("RGB"))
    assert img.shape[1] == 3 * 520
    blue = (img[..., 0] == 40) & (img[..., 1] == 90) & (img[..., 2] == 200)
    for k in range(3):                     # each panel draws its measured curve
        assert blue[:, k * 520:(k + 1) * 520].sum() > 20
    red = (img[..., 0] > 200) & (img[..., 1] < 60) & (img[..., 2] < 60)
    assert red[:, 2 * 520:].sum() > 0 and red[:, 520:1040].sum() > 0   # the skipped points are labelled


def test_a_scale_run_in_accumulation_passes_says_so():
    res = results()
    res[-1]["per_scale"]["4"] = {"size": [512, 512], "seconds": 150.0, "batch_gpu": 1, "passes": 3}
    text = scaling.tables(res)
    assert "| 30.50 | 71.00 | 150.00 (3 passes of 1) |" in text


def test_pass_sizes_are_the_divisors_of_a_share_largest_first():
    from bench import core

    assert core._pass_sizes(3, 1, None) == [3, 1]
    assert core._pass_sizes(12, 1, None) == [12, 6, 4, 3, 2, 1]
    assert core._pass_sizes(12, 2, 4) == [4, 3, 2, 1]          # the config's 4, then divisors of 6 below it
    assert core._pass_sizes(8, 8, None) == [1]
