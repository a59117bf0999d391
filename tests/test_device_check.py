"""scripts/device_check.py, the prepared GPU check (issue 17): a small dry run on CPU through the
driver (two parts in their subprocesses, the table and the JSON), a part stopped at its time
limit, and the pieces that only a GPU run reaches fed with GPU-shaped inputs: the table of every
section, the profile's device-trace aggregation and op flags, the HLO opcode map, the run
comparison, the pytest summary parser."""

import json
import os
import subprocess
import sys
import time
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import device_check as dc  # noqa: E402


def gpu_results():
    """Results shaped like a GPU run's, one part timed out, one skipped, one failed."""
    dev = dict(platform="gpu", device="NVIDIA H200", num_devices=1, jax="0.11.2")
    prof = {"total_op_s": 0.2, "threads": "device XLA Ops line", "flagged": ["transpose.3 (k)"],
            "top": [{"name": "fusion.1 (sm90_xmma)", "s": 0.1, "share": 0.5, "flag": "", "hlo": "fusion"},
                    {"name": "transpose.3 (k)", "s": 0.02, "share": 0.1, "flag": "transpose", "hlo": ""}]}
    kinds = {k: {"seconds": s, "times": [s], "first_call_s": 40.0, "profile": prof}
             for k, s in (("plain", 0.12), ("pl", 0.2), ("r1+pl", 0.4))}
    dist = {"leaves": 20, "max_abs": 1e-4, "worst_leaf_rel": 2e-3, "worst_leaf": "convs_0/kernel", "rel_l2": 1e-3,
            "cosine": 0.99999}
    return {
        "tests": {"status": "done", "counts": {"passed": 40, "failed": 1}, "failed_tests": ["tests/x.py::t"],
                  "seconds": 70.0},
        "precision": {"status": "done", **dev, "g_tiny": {**dist, "scale": 2}, "g_full": {**dist, "scale": 0},
                      "g_full_variant": "full", "step_lazy": [True, True],
                      "step_losses": {"d_loss": {"rel": 1e-4}, "g_loss": {"rel": 3e-4}},
                      "step_d_grads": dist, "step_g_grads": dist},
        "determinism": {"status": "done", "steps": 10, **dev, "results": {
            "cached": {"leaves": 350, "differing": 0, "differing_leaves": [], "max_abs_diff": 0.0,
                       "identical": True, "cache_hits": [0, 3]},
            "fresh": {"leaves": 350, "differing": 3, "differing_leaves": ["g_params/a"], "max_abs_diff": 1e-7,
                      "identical": False},
            "xla_gpu_deterministic_ops": {"leaves": 350, "differing": 0, "differing_leaves": [], "max_abs_diff": 0.0,
                                          "identical": True}}},
        "speed256": {"status": "done", **dev, "variant": "full", "scale": 0, "batch": 8, "size": [256, 256],
                     "compile_s": 45.0, "programs": 1, "compilations_after_warmup": 0, "per_kind": kinds,
                     "seconds_per_iter": 0.1525, "s_per_kimg": 19.06, "peak_device_gb": 9.5, "planned_gb": 6.4,
                     "memory_analysis": {"temp_size_in_bytes": 6.1}},
        "loop_tiny": {"status": "done", "variant": "tiny", "batch": 4, "steps": 50, "s_per_kimg_loop": 5.0,
                      "s_per_kimg_device": 4.9, "host_blocked_fraction": 0.02, "recompiles_after_warmup": 0},
        "bf16": {"status": "timed out", "limit_s": 60, "variant": "full", "batch": 8, "lazy": [True, True],
                 "speed": {"float32": {"seconds": 0.4}}},
        "loop_full": {"status": "skipped", "reason": "out of time (3 s of the 270 s budget left)"},
        "r1_forms": {"status": "error", "error": "RuntimeError: boom", "log_tail": "..."},
    }


def test_table_of_a_gpu_run():
    meta = {"device": "NVIDIA H200", "num_devices": 1, "jax": "0.11.2", "platform": "gpu", "date": "d", "mode": "GPU",
            "total_s": 268.0, "budget_s": 270.0, "parts": [p.name for p in dc.PARTS]}
    table = dc.format_table(gpu_results(), meta)
    rows = [r for r in table.splitlines() if r.startswith("| ") and not r.startswith("| section")]
    text = "\n".join(rows)
    for sec in ("1 numerics", "2 speed", "3 loop", "4 determinism", "5 bf16"):
        assert any(r.startswith(f"| {sec} |") for r in rows), sec
    assert "40 passed, 1 failed" in text and "tests/x.py::t" in text
    assert "19.1 s/kimg" in text and "meets target" in text                 # 19.06 <= 19.76
    assert "19.8 GPU-s/kimg" in text and "12.53" in text                     # NVIDIA's figures beside
    assert "9.5 GB peak per device" in text and "paper256 2.7 GB" in text
    assert "R1+PL program 6.4 GB as XLA plans it" in text and "autotuning workspace" in text
    assert "0.12 / 0.2 / 0.4" in text
    assert "flagged: transpose.3" in text
    assert "host-blocked 2.0%" in text
    assert "3 of 350 leaves differ" in text and "xla_gpu_deterministic_ops | bit-identical" in text
    assert "the second on the first's programs (shared cache) | bit-identical (350 leaves)" in text
    assert "programs from the cache: 0 / 3" in text and "each compiling and autotuning its own | 3 of 350" in text
    assert "TF32 vs highest: full config-f G output" in text and "R1 + PL step gradients" in text
    assert "timed out after 60 s (partial)" in text and "float32 0.4" in text
    assert "skipped: out of time" in text and "error: RuntimeError: boom" in text
    assert "config-f 512 px iteration | - |  | not run" in text                  # asked for, no result
    assert "Skipped or incomplete:" in table
    # a slower iteration misses the target; a part not asked for has no row
    res = gpu_results()
    res["speed256"]["s_per_kimg"] = 25.0
    text = dc.format_table(res, {**meta, "parts": ["speed256"]})
    assert "misses target" in text and "1 numerics" not in text


def test_rows_survive_partial_records():
    """A part stopped half-way has some keys only: its row says so instead of failing the table."""
    res = {"speed256": {"status": "timed out", "limit_s": 75, "variant": "full", "batch": 8, "size": [256, 256],
                        "compile_s": 70.0, "programs": 1},
           "precision": {"status": "timed out", "limit_s": 60, "g_tiny": {"max_abs": 0.0, "worst_leaf_rel": 0.0,
                                                                          "scale": 0}}}
    table = dc.format_table(res, {"parts": ["speed256", "precision"]})
    assert "compile (trace + XLA), full config-f 256x256, batch 8 | 70 s (1 program)" in table
    assert "? / ? / ?" in table and "timed out after 75 s" in table
    assert "tiny config-f G output | max abs 0" in table


def test_parse_pytest():
    c = dc.parse_pytest("....F.\n=== 5 passed, 1 failed, 2 deselected in 12.3s ===\n")
    assert (c["passed"], c["failed"], c["deselected"]) == (5, 1, 2)
    c = dc.parse_pytest("..F.s.. [ 40%]\n...E\n")          # stopped at its limit: no summary
    assert (c["passed"], c["failed"], c["error"], c["skipped"]) == (8, 1, 1, 1)
    assert c["summary"].startswith("incomplete")


def test_aggregate_trace_device_and_host():
    M = lambda what, pid, name, tid=None: {"ph": "M", "name": what, "pid": pid, "tid": tid, "args": {"name": name}}
    X = lambda pid, tid, name, dur, **args: {"ph": "X", "pid": pid, "tid": tid, "name": name, "dur": dur, "args": args}
    gpu = [M("process_name", 1, "/device:GPU:0"), M("process_name", 2, "/host:CPU"),
           M("thread_name", 1, "Stream #13(Compute)", 7), M("thread_name", 1, "XLA Ops", 8),
           X(1, 7, "sm90_xmma_fprop", 300.0, hlo_op="convolution.4"), X(1, 8, "convolution.4", 310.0),
           X(1, 8, "transpose.2", 90.0), X(1, 8, "convolution.4", 10.0), X(2, 1, "PjitFunction(step)", 5000.0)]
    agg, total, how = dc.aggregate_trace(gpu)
    assert how == "device XLA Ops line" and agg == {"convolution.4": 320e-6, "transpose.2": 90e-6}
    assert total == pytest.approx(410e-6)
    streams = [e for e in gpu if not (e.get("tid") == 8)]                  # no XLA Ops line: the streams
    agg, _, how = dc.aggregate_trace(streams)
    assert how == "device streams" and list(agg) == ["convolution.4 (sm90_xmma_fprop)"]
    cpu = [M("process_name", 2, "/host:CPU"), X(2, 1, "ThunkExecutor::Execute", 900.0), X(2, 1, "fusion.3", 40.0),
           X(2, 1, "PjitFunction(step)", 900.0)]
    agg, _, how = dc.aggregate_trace(cpu)
    assert how == "host threads (CPU)" and agg == {"fusion.3": 40e-6}
    agg, total, how = dc.aggregate_trace(cpu, platform="gpu")      # a GPU trace without kernels
    assert agg == {} and total == 0.0 and "no gpu device events" in how
    # on CPU the D and G programs number their ops alike: each op is named with its program
    halves = cpu + [X(2, 1, "fusion.3", 10.0, hlo_module="jit_d_step", hlo_op="fusion.3"),
                    X(2, 1, "fusion.3", 20.0, hlo_module="jit_g_step", hlo_op="fusion.3")]
    agg, _, _ = dc.aggregate_trace(halves)
    assert agg == {"fusion.3": 40e-6, "jit_d_step/fusion.3": 10e-6, "jit_g_step/fusion.3": 20e-6}


HLO = """HloModule jit_step, entry_computation_layout={()->f32[]}

fused_transpose {
  param_0 = f32[4,8]{1,0} parameter(0)
  ROOT transpose.1 = f32[8,4]{1,0} transpose(param_0), dimensions={1,0}
}

ENTRY main.9 {
  p = f32[4,8]{1,0} parameter(0)
  loop_fusion.2 = f32[8,4]{1,0} fusion(p), kind=kLoop, calls=fused_transpose, metadata={op_name="jit(step)/transpose"}
  copy.5 = f32[8,4]{0,1} copy(loop_fusion.2)
  ROOT gather.7 = f32[2,4]{1,0} gather(copy.5, p), offset_dims={1}, metadata={op_name="jit(step)/take"}
}
"""


TUPLE_OPS = """
  multi_fusion.4 = (f32[8,4]{1,0}, f32[8]{0}) fusion(p), kind=kInput, calls=fused_transpose
  custom-call.6 = (f32[2,8,8,4]{3,2,1,0}, u8[0]{0}) custom-call(p, p), custom_call_target="__cudnn$convForward"
"""


def test_hlo_opcodes_and_flags(tmp_path):
    (tmp_path / "module_0001.jit_step.gpu_after_optimizations.txt").write_text(
        HLO.replace("  copy.5 =", TUPLE_OPS.strip("\n") + "\n  copy.5 ="))
    m = dc.hlo_opcodes(str(tmp_path))
    # tuple-shaped results (multi-output fusions, cuDNN custom calls) are read too
    assert m["multi_fusion.4"]["opcode"] == "fusion" and m["multi_fusion.4"]["root"] == "transpose"
    assert m["custom-call.6"]["opcode"] == "custom-call"
    assert m["loop_fusion.2"]["opcode"] == "fusion" and m["loop_fusion.2"]["root"] == "transpose"
    assert "jit(step)/transpose" in m["loop_fusion.2"]["text"]
    assert dc.flagged("loop_fusion.2", m["loop_fusion.2"]) == "transpose"
    assert dc.flagged("copy.5", m["copy.5"]) == "copy"
    assert dc.flagged("gather.7 (kernel)", m["gather.7"]) == "gather"
    assert dc.flagged("input_scatter_fusion") == "scatter" and dc.flagged("fusion.1 (sm90_xmma)") == ""
    assert dc.hlo_opcodes(str(tmp_path / "none")) == {}
    # a second program with the same instruction names: each kept under its program's name
    (tmp_path / "module_0002.jit_g_step.gpu_after_optimizations.txt").write_text(
        HLO.replace("HloModule jit_step", "HloModule jit_g_step").replace("transpose(param_0)", "negate(param_0)"))
    m = dc.hlo_opcodes(str(tmp_path))
    assert m["jit_step/loop_fusion.2"]["root"] == "transpose" and m["jit_g_step/loop_fusion.2"]["root"] == "negate"
    assert dc.flagged("jit_step/loop_fusion.2", m["jit_step/loop_fusion.2"]) == "transpose"
    assert dc.flagged("jit_g_step/loop_fusion.2", m["jit_g_step/loop_fusion.2"]) == ""
    assert dc.flagged("jit_transpose_step/fusion.9") == ""                # the program's name is not the op


def _run_files(path, leaves, names):
    np.savez(path, **{f"leaf{i}": v for i, v in enumerate(leaves)})
    Path(str(path) + ".json").write_text(json.dumps({"names": names, "losses": [[1.0, 2.0]]}))


def test_compare_runs(tmp_path):
    a, b, c = (tmp_path / f"{x}.npz" for x in "abc")
    leaves = [np.arange(6, dtype=np.float32), np.int32(3)]
    _run_files(a, leaves, ["g/w", "step"])
    _run_files(b, [x.copy() for x in leaves], ["g/w", "step"])
    other = leaves[0].copy()
    other[2] = np.nextafter(other[2], np.float32(9))                     # one ulp
    _run_files(c, [other, leaves[1]], ["g/w", "step"])
    assert dc.compare_runs(a, b) == {"leaves": 2, "differing": 0, "differing_leaves": [], "max_abs_diff": 0.0,
                                     "identical": True}
    d = dc.compare_runs(a, c)
    assert not d["identical"] and d["differing_leaves"] == ["g/w"] and 0 < d["max_abs_diff"] < 1e-6


def test_tree_distance():
    a = {"x": np.array([1.0, -2.0]), "y": {"z": np.array([4.0])}}
    b = {"x": np.array([1.0, -2.2]), "y": {"z": np.array([4.0])}}
    d = dc.tree_distance(a, b)
    assert d["leaves"] == 2 and d["worst_leaf"] == "x" and d["worst_leaf_rel"] == pytest.approx(0.1)
    assert d["rel_l2"] == pytest.approx(0.2 / np.sqrt(21)) and d["max_abs"] == pytest.approx(0.2)
    assert dc.tree_distance(a, a)["rel_l2"] == 0 and dc.tree_distance(a, a)["cosine"] == pytest.approx(1)


def test_determinism_trials(tmp_path):
    """The dry run: one pair sharing a fresh cache (the second on the first's programs). A GPU
    run adds the fresh pair (no cache) and the deterministic-ops pair."""
    ctx = Namespace(dry=True, tmp=str(tmp_path))
    assert [t[0] for t in dc._det_trials(ctx)] == ["cached"]
    label, env, side = dc._det_trials(ctx)[0]
    assert env["JAX_ENABLE_COMPILATION_CACHE"] == "true" and env["JAX_COMPILATION_CACHE_DIR"].startswith(str(tmp_path))
    assert env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] == "0" and side is False
    ctx.dry = False
    trials = dc._det_trials(ctx)
    assert [t[0] for t in trials] == ["cached", "fresh", "xla_gpu_deterministic_ops"]
    assert trials[1][1]["JAX_ENABLE_COMPILATION_CACHE"] == "false" and trials[1][1]["JAX_COMPILATION_CACHE_DIR"] is None
    assert trials[2][1]["XLA_FLAGS_ADD"] == "--xla_gpu_deterministic_ops=true"


def test_the_driver_script_unpacks_its_wheels_or_stops(tmp_path):
    """device_check.sh with an interpreter lacking ml_collections (python -S: no site-packages):
    it unpacks the wheels of $PEGAN_WHEELS and runs; with none there it stops with one line, 2."""
    import zipfile

    wheels = tmp_path / "whl"
    wheels.mkdir()
    for mod in ("ml_collections", "tensorflow_datasets"):
        with zipfile.ZipFile(wheels / f"{mod}-0-py3-none-any.whl", "w") as z:
            z.writestr(f"{mod}/__init__.py", "")
    import numpy

    only = tmp_path / "only_numpy"          # numpy alone of the environment's packages (bench imports it)
    only.mkdir()
    (only / "numpy").symlink_to(Path(numpy.__file__).parent)
    libs = Path(numpy.__file__).parent.parent / "numpy.libs"
    if libs.is_dir():
        (only / "numpy.libs").symlink_to(libs)
    py = tmp_path / "python"
    py.write_text(f"#!/bin/sh\nPYTHONPATH=\"$PYTHONPATH:{only}\" exec {sys.executable} -S \"$@\"\n")
    py.chmod(0o755)
    env = dict(os.environ, PEGAN_PYTHON=str(py), PEGAN_WHEELS=str(wheels))
    p = subprocess.run(["bash", str(REPO / "scripts" / "device_check.sh"), "--list"], env=env, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "unpacked ml_collections-0-py3-none-any.whl" in p.stderr and "speed256" in p.stdout
    (wheels / "ml_collections-0-py3-none-any.whl").unlink()
    (wheels / "tensorflow_datasets-0-py3-none-any.whl").unlink()
    p = subprocess.run(["bash", str(REPO / "scripts" / "device_check.sh"), "--list"], env=env, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 2 and p.stdout == "" and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "run scripts/device_check.sh --prepare" in p.stderr


def test_select_parts():
    assert [p.name for p in dc.select_parts("1,determinism", None)] == ["tests", "precision", "determinism"]
    assert [p.name for p in dc.select_parts(None, "loop_tiny,tests")] == ["tests", "loop_tiny"]
    with pytest.raises(SystemExit, match="unknown section"):
        dc.select_parts("7", None)
    with pytest.raises(SystemExit, match="unknown part"):
        dc.select_parts(None, "speed1024")


def _env(fixtures):
    env = dict(os.environ, PEGAN_FIXTURES=str(fixtures), PYTHONPATH=str(REPO))
    env.pop("OUT", None)
    return env


def test_dry_run_of_two_parts(fixtures, tmp_path):
    """The driver on CPU: the fixture-test part and the loop part in their own processes, the
    table on stdout, device_check.md and .json in --out."""
    out = tmp_path / "out"
    # limits for a loaded 2-core CI machine (the dry run's own 50 s for the loop is for an idle one)
    p = subprocess.run([sys.executable, str(REPO / "scripts" / "device_check.py"), "--dry-run", "--parts",
                        "tests,loop_tiny", "--budget", "400", "--part-limit", "240", "--out", str(out)],
                       cwd=str(REPO), env=_env(fixtures), capture_output=True, text=True, timeout=500)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "## pegan device check: cpu x1" in p.stdout
    assert "| 1 numerics | fixture tests, matmul_precision=highest | 1 passed, 0 failed | all pass |" in p.stdout
    assert "| 3 loop | loop, tiny config-f, batch 4, 3 steps |" in p.stdout and "host-blocked" in p.stdout
    assert "2 speed" not in p.stdout                          # only the parts asked for
    assert (out / "device_check.md").read_text().strip() == p.stdout.strip()
    d = json.loads((out / "device_check.json").read_text())
    assert d["meta"]["platform"] == "cpu" and d["meta"]["parts"] == ["tests", "loop_tiny"]
    assert {k: v["status"] for k, v in d["results"].items()} == {"tests": "done", "loop_tiny": "done"}
    loop = d["results"]["loop_tiny"]
    assert loop["recompiles_after_warmup"] == 0 and 0 <= loop["host_blocked_fraction"] < 1
    assert d["nvidia"]["paper256"]["s_per_kimg"] == 2.47 and len(d["rows"]) == 2


def test_a_part_past_its_limit_is_stopped_and_reported(fixtures, tmp_path):
    opts = Namespace(tmp=str(tmp_path), batch=None, loop_steps=None, det_steps=None, test_workers=1, dry_run=True,
                     no_profile=True)
    env = dict(_env(fixtures), JAX_PLATFORMS="cpu")
    t0 = time.time()
    rec = dc.run_part(dc.PART["bf16"], opts, 1.0, env, log=lambda m: None)
    assert rec["status"] == "timed out" and rec["limit_s"] == 1.0 and time.time() - t0 < 30
    table = dc.format_table({"bf16": rec}, {"parts": ["bf16"]})
    assert "timed out after 1 s" in table
