"""The benchmark's model options (scripts/bench/core.py): the compute forms and ``--set`` reach the
experiment's config the cases build their models from; a bad ``--set`` is refused by name."""

import argparse
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from bench import core  # noqa: E402

from pegan.configs import load_experiment  # noqa: E402
from pegan.errors import InputError  # noqa: E402


def _opts(**kw):
    base = dict(impl=None, conv=None, upfirdn=None, resize=None, dtype=None, set=None, variant="tiny")
    return argparse.Namespace(**{**base, **kw})


def test_set_and_forms_reach_the_config():
    plain = load_experiment(core.MODELS["f"], "tiny")
    cfg = core._set_compute(load_experiment(core.MODELS["f"], "tiny"),
                            _opts(conv="xla", set=["train.batch_gpu=1", "train.r1_interval=8"]))
    assert cfg.compute.conv_impl == "xla" and cfg.train.batch_gpu == 1 and cfg.train.r1_interval == 8
    assert (plain.train.batch_gpu, plain.train.r1_interval) != (1, 8)          # the overrides changed them
    cfg, G, D = core.stylegan_models("f", _opts(set=["train.batch_gpu=1"]))
    assert cfg.train.batch_gpu == 1


@pytest.mark.parametrize("kv, words", [("train.no_such=1", "has no 'train.no_such'"),
                                       ("train.r1_interval=x", "train.r1_interval")])
def test_a_bad_set_names_the_field(kv, words):
    with pytest.raises(InputError) as e:
        core._set_compute(load_experiment(core.MODELS["f"], "tiny"), _opts(set=[kv]))
    assert words in str(e.value) and "--set " in str(e.value)


def _tagged_programs(monkeypatch):
    """Trainer.program tags each step with its trainer's images per pass; a program of one
    image per pass then 'plans' 1 GB and any other 10 GB (the cap's decision, without XLA's
    numbers for a tiny model, where the arguments outweigh the activations)."""
    from pegan.train.stylegan2_loop import Trainer

    real = Trainer.program

    def program(self, *a, **k):
        fn = real(self, *a, **k)
        fn.per_pass = self.tcfg.batch_gpu
        return fn

    monkeypatch.setattr(Trainer, "program", program)
    monkeypatch.setattr(core, "program_gb", lambda fn: 1.0 if getattr(fn, "per_pass", None) == 1 else 10.0)


@pytest.mark.parametrize("cap", [5.0, 0.5])
def test_iter_falls_back_to_accumulation_passes_under_the_cap(monkeypatch, cap):
    _tagged_programs(monkeypatch)
    opts = _opts(reps=1, mem_cap_gb=cap, all_kinds=False)
    res = {}
    core.case_iter("iter:0:2", opts, res, core.CompileLog())
    r = res["per_scale"]["0"]
    if cap == 5.0:                         # 2 images in one pass are over it, 2 passes of 1 are not
        assert (r["batch_gpu"], r["passes"]) == (1, 2) and r["seconds"] > 0
        assert res["compilations_after_warmup"] == 0 and "error" not in res
        # each kind counts its own lazy terms (not the dearer lax.cond branch for all three)
        assert r["gflop_none"] < r["gflop_pl"] < r["gflop_r1+pl"]
    else:                                  # over it even in passes of one image: skipped, saying so
        assert r["batch_gpu"] == 1 and "needs 1 GB > --mem-cap-gb 0.5" in r["error"] and "seconds" not in r
        assert res["error"] == r["error"]


def test_profile_names_each_op_by_its_program_and_kind(tmp_path):
    """--profile: the longest ops keyed by program and op (a D and a G program number their
    fusions alike), each with its kind, read from the optimised HLO the case's process dumps."""
    import json
    import subprocess

    out = tmp_path / "r.json"
    p = subprocess.run([sys.executable, str(Path(core.__file__).parents[1] / "bench.py"), "--cases", "dstep:nor1:0:2",
                        "--variant", "tiny", "--reps", "1", "--mm-reps", "1", "--profile", str(tmp_path / "prof"),
                        "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    r = [c for c in json.loads(out.read_text())["results"] if c["case"] == "dstep:nor1:0:2"][0]
    names = [n for n, _ in r["profile_top"]]
    assert names and all(n.startswith("step/") for n in names)
    assert any("[convolution: f32[2," in n for n in names)           # shape and kind from the HLO
    assert r["profile_by_kind"].get("convolution", 0) > 0
    assert abs(sum(r["profile_by_kind"].values()) - r["profile_total_op_s"]) < 1e-6
    assert "by kind: " in p.stdout
