#!/usr/bin/env python
"""pegan's prepared GPU check (issue 17): numerics, speed, memory, the loop and determinism in
one short run on one H100 / H200, with NVIDIA's published StyleGAN2 figures beside.

    scripts/device_check.sh                    # on the GPU machine: ~4.5 min, start-up included
    scripts/device_check.sh --dry-run          # the same code on CPU at the tiny sizes (~3 min here)
    scripts/device_check.sh --dry-run --sections loop,determinism
    scripts/device_check.sh --prepare          # here, before a GPU call: copy the fixtures, fetch wheels

Sections, each in parts that run in their own subprocess with a time limit (a part that fails
or runs out of time loses only itself; a part writes what it has measured so far after each
measurement, so a part stopped at its limit still reports that):

1. numerics: the parity and train-step fixture tests with matmul_precision=highest; how far
   'default' precision (TF32 on Ampere / Hopper) moves the tiny and full config-f generator
   outputs and one tiny train step's losses and gradients.
2. speed: the training loop's own step (``Trainer.program``) of the full config-f at 256 px:
   compile seconds, step seconds of the plain, path-length and R1 + path-length iterations, peak
   device memory beside what XLA plans for the step, one profiled call of each kind (longest ops; gathers, scatters, transposes and
   copies among them flagged); the D step with R1 with XLA's and pegan's 'taps' convolutions;
   512 px when time is left.
3. loop: 50 steps of ``Trainer.run`` on an in-memory synthetic dataset (tiny and full config-f):
   s/kimg of the loop against the same programs back to back (``measure_host_blocked``).
4. determinism: pairs of identical 10-step tiny runs (``Trainer.run``, fresh work directories,
   each in its own process) compared leaf by leaf, bit for bit: the second on the first's
   programs (a shared cache), then each compiling and autotuning its own, then (where those
   differ) with XLA's deterministic ops (``_det_trials``).
5. bf16: one R1 + path-length step in bfloat16 against float32: loss and gradient distances and
   speed.

Output: one table on stdout (s/kimg, GB per device) and ``device_check.json`` /
``device_check.md`` in ``--out`` (default ``$OUT`` when set, else ``./device_check_out``).
The parts after the budget (``--budget`` s, 285 by default) are skipped and named as such.
Needs jax, flax, optax, orbax-checkpoint, ml-collections, numpy and pegan (Trainer also looks for
tensorflow-datasets, which the synthetic data never imports); pytest for section 1.
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for p in (str(ROOT), str(ROOT / "scripts")):
    if p not in sys.path:
        sys.path.insert(0, p)

F = "mspie-stylegan2-config-f_c2_8xb3-1100kiters_ffhq-256-512"
SECTIONS = {1: "numerics", 2: "speed", 3: "loop", 4: "determinism", 5: "bf16"}

from bench.reference import NVIDIA, TARGETS  # noqa: E402  (the reference figures, as data)
FLAG_OPS = ("gather", "scatter", "transpose", "copy")


class Part:
    def __init__(self, name, section, title, limit, dry_limit, concurrent=False):
        self.name, self.section, self.title, self.limit, self.dry_limit = name, section, title, limit, dry_limit
        self.concurrent = concurrent         # measures no time: runs beside the other such parts


# The untimed parts start together, first; then the timed parts one by one in this order (what
# runs first when time is short). Limits in seconds (GPU, dry run). speed256 starts a process,
# initialises CUDA and compiles (and autotunes) the full config-f step with its R1 and
# path-length branches: 120 s. loop_full comes next, as it runs the same program, which it loads
# from the run's compilation cache.
PARTS = [
    Part("tests", 1, "fixture tests at matmul_precision=highest", 80, 120, concurrent=True),
    Part("precision", 1, "TF32 (default) against highest precision", 60, 120, concurrent=True),
    Part("determinism", 4, "two identical tiny runs", 75, 120, concurrent=True),
    Part("speed256", 2, "config-f 256 px iteration", 120, 70),
    Part("loop_full", 3, "full config-f through the loop", 30, 50),
    Part("bf16", 5, "bf16 against float32, R1 + path-length step", 60, 50),
    Part("loop_tiny", 3, "tiny config-f through the loop", 25, 50),
    Part("r1_forms", 2, "D step with R1, xla vs taps convolutions", 40, 60),
    Part("speed512", 2, "config-f 512 px iteration", 45, 70),
]
BUDGET = 285.0                              # s for all parts: with start-up, within 5 minutes
PART = {p.name: p for p in PARTS}
MIN_START = {True: 8.0, False: 12.0}        # seconds a part needs to be worth starting (dry, GPU)
def _cores() -> int:
    """CPU cores this process may use (a container's share, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


SIDE_BY_SIDE = _cores() >= 8   # the untimed parts together only where there are cores for it


# ---------------------------------------------------------------------------------------------
# inside a part's process
# ---------------------------------------------------------------------------------------------

class Record(dict):
    """A part's results, written to its JSON file after every update (a part stopped at its
    time limit still reports what it measured)."""

    def __init__(self, path):
        super().__init__()
        self.path = path

    def save(self):
        if self.path:
            tmp = self.path + ".tmp"
            Path(tmp).write_text(json.dumps(self, default=_jsonable))
            os.replace(tmp, self.path)

    def put(self, **kw):
        self.update(kw)
        self.save()


def _jsonable(x):
    try:
        import numpy as np

        if isinstance(x, np.generic):
            return x.item()
        if isinstance(x, np.ndarray):
            return x.tolist()
    except ImportError:  # pragma: no cover
        pass
    return str(x)


class Ctx:
    """What a part knows: dry run or not, sizes, deadline, scratch folder."""

    def __init__(self, opts, deadline):
        self.dry = opts.dry_run
        self.variant = "tiny" if self.dry else "full"        # the 'full-size' branches at tiny size on CPU
        self.batch = opts.batch or (4 if self.dry else 8)
        self.steps = opts.loop_steps or (3 if self.dry else 50)
        self.det_steps = opts.det_steps or (3 if self.dry else 10)
        self.reps = 1 if self.dry else 5
        # the compared steps' lazy terms: R1 and path length on the GPU; none on the CPU dry run
        # (the same code; the R1 + PL program takes twice as long to compile there)
        self.lazy_step = (False, False) if self.dry else (True, True)
        self.deadline = deadline
        self.tmp = opts.tmp
        self.profile = not opts.no_profile
        self.opts = opts

    def left(self):
        return self.deadline - time.time()


def setup_process():
    """The compute section resolved for this backend; its matmul precision applied (highest on
    GPU, default on CPU), as ``pegan train`` does before anything is traced. The compilation
    cache is the run's own ($JAX_COMPILATION_CACHE_DIR, which the driver sets to a fresh folder
    that its parts share; the determinism runs turn it off or give their own)."""
    from pegan import compute

    resolved = compute.resolve({"compute": {"compile_cache": os.environ.get("JAX_COMPILATION_CACHE_DIR", "")}})
    compute.apply_process_settings(resolved)
    return resolved


def device_info():
    import jax

    d = jax.devices()[0]
    return {"platform": d.platform, "device": str(d.device_kind), "num_devices": jax.device_count(),
            "jax": jax.__version__}


def peak_gb():
    from bench import device_peak_bytes

    b = device_peak_bytes()
    return b / 1e9 if b else None


def _put_step(state, step):
    """The state with its step counter set to ``step``, on the counter's own sharding."""
    import jax
    import jax.numpy as jnp

    return state.replace(step=jax.device_put(jnp.asarray(step, jnp.int32), state.step.sharding))


def _block(x):
    import jax

    return jax.block_until_ready(x)


def _flat(tree):
    """{'a/b/c': array} of a pytree's leaves (NumPy)."""
    import jax
    import numpy as np

    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        out["/".join(_key(k) for k in path)] = np.asarray(leaf)
    return out


def _key(k):
    for attr in ("key", "name", "idx"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def tree_distance(a, b):
    """How far pytree ``b`` is from ``a`` (the reference): worst leaf max |b - a| relative to the
    leaf's max |a|, the relative L2 distance over all leaves, and their cosine."""
    import numpy as np

    fa, fb = _flat(a), _flat(b)
    worst, worst_name, num, den, dot, nb = 0.0, None, 0.0, 0.0, 0.0, 0.0
    max_abs = 0.0
    for k, x in fa.items():
        x = x.astype(np.float64)
        y = fb[k].astype(np.float64)
        d = np.abs(y - x)
        m = float(d.max()) if d.size else 0.0
        max_abs = max(max_abs, m)
        scale = float(np.abs(x).max()) if x.size else 0.0
        rel = m / scale if scale > 0 else (0.0 if m == 0 else float("inf"))
        if rel > worst:
            worst, worst_name = rel, k
        num += float(np.sum((y - x) ** 2))
        den += float(np.sum(x ** 2))
        dot += float(np.sum(x * y))
        nb += float(np.sum(y ** 2))
    return {"leaves": len(fa), "max_abs": max_abs, "worst_leaf_rel": worst, "worst_leaf": worst_name,
            "rel_l2": (num / den) ** 0.5 if den > 0 else 0.0,
            "cosine": dot / (den * nb) ** 0.5 if den > 0 and nb > 0 else 1.0}


def scalar_distance(a, b, keys):
    out = {}
    for k in keys:
        x, y = float(a[k]), float(b[k])
        out[k] = {"ref": x, "other": y, "abs": abs(y - x), "rel": abs(y - x) / abs(x) if x else abs(y - x)}
    return out


# -- 1. numerics --------------------------------------------------------------------------------

def find_fixtures():
    """$PEGAN_FIXTURES, ./shared/fixtures (the copy made by --prepare, which travels with the
    working tree) or ../shared/fixtures, whichever holds manifest.json first; else None."""
    cands = ([Path(os.environ["PEGAN_FIXTURES"])] if os.environ.get("PEGAN_FIXTURES") else []) + \
            [ROOT / "shared" / "fixtures", ROOT.parent / "shared" / "fixtures"]
    for c in cands:
        if (c / "manifest.json").exists():
            return c, [str(x) for x in cands]
    return None, [str(x) for x in cands]


TEST_FILES = ["tests/test_stylegan2_parity.py", "tests/test_stylegan2_train.py", "tests/test_singan_parity.py",
              "tests/test_forms_parity.py"]
DRY_TESTS = ["tests/test_stylegan2_parity.py", "-k", "test_rgb_default_reverses_channels"]   # one quick parity test


def parse_pytest(text):
    """Counts from pytest -q output: the summary line if there is one, else the progress
    characters of the lines seen (a run stopped at its time limit)."""
    counts = {}
    summary = None
    for line in text.splitlines():
        if re.search(r"\b(passed|failed|error|errors|skipped|deselected)\b.* in [\d.]+s", line):
            summary = line.strip("= ").strip()
    if summary:
        for n, what in re.findall(r"(\d+) (passed|failed|errors?|skipped|deselected|xfailed|xpassed)", summary):
            counts["error" if what.startswith("error") else what] = int(n)
        counts["summary"] = summary
        return counts
    prog = [m.group(1) for m in re.finditer(r"^([.FEsxX]+)\s*(?:\[\s*\d+%\])?\s*$", text, re.M)]
    s = "".join(prog)
    counts.update(passed=s.count("."), failed=s.count("F"), error=s.count("E"), skipped=s.count("s"))
    counts["summary"] = "incomplete: " + ", ".join(f"{v} {k}" for k, v in counts.items() if v and k != "summary")
    return counts


def part_tests(ctx, rec):
    fx, looked = find_fixtures()
    if fx is None:
        rec.put(status="skipped", reason="fixtures absent (looked in " + ", ".join(looked) +
                "; run scripts/device_check.sh --prepare where they are, or set PEGAN_FIXTURES)")
        return
    args = DRY_TESTS if ctx.dry else TEST_FILES
    env = dict(os.environ, PEGAN_FIXTURES=str(fx), JAX_DEFAULT_MATMUL_PRECISION="highest",
               PYTHONPATH=os.pathsep.join([str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE"] + args
    if not ctx.dry:
        # several workers share the GPU (compilation dominates the tiny tests): no preallocation;
        # XLA's default optimisation (the suite's -O0 is a CPU compile-time saving)
        env.update(XLA_PYTHON_CLIENT_PREALLOCATE="false", PEGAN_TEST_FULL_OPT="1")
        cmd += ["-n", str(ctx.opts.test_workers)] if _has_xdist() else []
    else:
        cmd += ["-n", "0"] if _has_xdist() else []
    rec.put(fixtures=str(fx), command=" ".join(cmd[1:]), precision="highest")
    t0 = time.time()
    limit = max(5.0, ctx.left() - 3)
    # its own process group: at the limit pytest and its xdist workers end together (killing
    # pytest alone leaves the workers compiling on the device beside the next part)
    p = subprocess.Popen(cmd, cwd=str(ROOT), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, start_new_session=True)
    try:
        out, _ = p.communicate(timeout=limit)
        rc, timed_out = p.returncode, False
    except subprocess.TimeoutExpired:
        import signal

        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, _ = p.communicate()
        rc, timed_out = None, True
    counts = parse_pytest(out)
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", out, re.M)
    rec.put(status="timed out" if timed_out else "done", returncode=rc, seconds=time.time() - t0,
            counts=counts, failed_tests=failed[:20], output_tail=out[-3000:])


def _has_xdist():
    import importlib.util

    return importlib.util.find_spec("xdist") is not None


def part_precision(ctx, rec):
    import jax

    from bench import init_d, init_g
    from pegan.configs import load_experiment
    from pegan.models.stylegan2 import build_discriminator, build_generator
    from pegan.train import stylegan2 as tr

    resolved = setup_process()
    rec.put(status="running", compute=resolved, **device_info())

    def g_outputs(variant, scales, batch):
        cfg = load_experiment(F, variant)
        G = build_generator(cfg)
        v = init_g(G)
        z = jax.random.normal(jax.random.PRNGKey(1), (batch, G.style_channels))
        outs = {}
        for prec in ("highest", "default"):
            with jax.default_matmul_precision(prec):
                f = jax.jit(lambda v, z: [G.apply(v, z, s, rng=jax.random.PRNGKey(2)) for s in scales])
                outs[prec] = jax.device_get(f(v, z))
        worst = None
        for s, hi, lo in zip(scales, outs["highest"], outs["default"]):
            d = tree_distance(hi, lo)
            d["scale"] = s
            if worst is None or d["worst_leaf_rel"] > worst["worst_leaf_rel"]:
                worst = d
        return worst

    cfg = load_experiment(F, "tiny")
    t0 = time.time()
    rec.put(g_tiny=g_outputs("tiny", [0] if ctx.dry else list(cfg.scales), 4), g_tiny_s=time.time() - t0)

    # one tiny training iteration with R1 and path length: losses and every gradient
    G, D = build_generator(cfg), build_discriminator(cfg)
    tcfg = cfg.train
    state = tr.init_state(G, D, tcfg, jax.random.PRNGKey(0), g_vars=init_g(G), d_vars=init_d(D))
    real = jax.random.uniform(jax.random.PRNGKey(4), (4, 32, 32, 3), minval=-1, maxval=1)
    rnd = tr.step_randomness(jax.random.PRNGKey(5), G, tcfg, 0, 4)
    res = {}
    t0 = time.time()
    for prec in ("highest", "default"):
        with jax.default_matmul_precision(prec):
            f = jax.jit(lambda st, r, n: (lambda o: (o[1], o[2]["d_grads"], o[2]["g_grads"]))(
                tr.train_step(st, r, n, G=G, D=D, tcfg=tcfg, scale=0, lazy=ctx.lazy_step)))
            res[prec] = jax.device_get(f(state, real, rnd))
    rec.put(step_lazy=ctx.lazy_step)
    keys = ("d_loss", "g_loss", "r1_penalty", "pl_penalty")
    losses = scalar_distance(res["highest"][0], res["default"][0], keys)
    rec.put(step_s=time.time() - t0, step_losses=losses, step_worst_loss_rel=max(v["rel"] for v in losses.values()),
            step_d_grads=tree_distance(res["highest"][1], res["default"][1]),
            step_g_grads=tree_distance(res["highest"][2], res["default"][2]))
    if ctx.dry:             # the same g_outputs as above, only wider: not worth its CPU time here
        rec.put(status="done", skipped=["full-size generator (dry run)"])
        return
    if ctx.left() < 25:
        rec.put(status="done", skipped=["full-size generator (out of time)"])
        return
    # the full-size generator at 256 px (wider convolutions: TF32 rounding adds up more)
    rec.put(g_full=g_outputs(ctx.variant, [0], 2), g_full_variant=ctx.variant, status="done")


# -- 2. speed --------------------------------------------------------------------------------

KINDS = {"plain": 1, "pl": 4, "r1+pl": 16}       # step % 16 / % 4 select the lazy terms


def make_trainer(dry, variant, scale, batch, workdir):
    """A Trainer of config-f (``variant``) at one scale and batch on a synthetic in-memory
    dataset. The dry run puts the lazy terms behind lax.cond, as on a GPU: one program per
    shape (the GPU's code path, and one compilation instead of three)."""
    from pegan.configs import load_experiment
    from pegan.data import SyntheticImages
    from pegan.train.stylegan2_loop import Trainer

    cfg = load_experiment(F, variant)
    cfg.scales = [scale]
    cfg.train.batch = batch
    cfg.compute.compile_cache = ""
    if dry:
        cfg.compute.lazy_branches = "cond"
    stored = cfg.generator.out_size // 4 * (4 + scale)
    data = SyntheticImages(max(16, 2 * batch), stored)
    return Trainer(cfg, data, workdir, log=lambda m: None)


def part_speed(ctx, rec, scale):
    from bench import CompileLog, program_gb

    resolved = setup_process()
    clog = CompileLog()
    batch = ctx.batch
    rec.put(status="running", variant=ctx.variant, scale=scale, batch=batch, compute=resolved, **device_info())
    trainer = make_trainer(ctx.dry, ctx.variant, scale, batch, Path(ctx.tmp) / f"run_speed{scale}")
    real = trainer.global_batch(0, batch)
    rec.put(size=list(real.shape[1:3]))
    programs, per_kind = {}, {}
    for kind, step in KINDS.items():          # compile (once per program) and one warm-up call each
        k = trainer.step_kind(step)
        fn = trainer.program(scale, batch, k, real)
        programs[kind] = (k, fn)
        trainer.state = _put_step(trainer.state, step)
        t = time.perf_counter()
        trainer.state, m = fn(trainer.state, real)
        _block(m)
        per_kind[kind] = {"first_call_s": time.perf_counter() - t}
    rec.put(compile_s=sum(trainer.compile_wall_seconds.values()), programs=trainer.compilations(),
            compile_s_per_program={str(k): v for k, v in trainer.compile_seconds.items()},
            memory_analysis=_memory_analysis(programs["r1+pl"][1]), per_kind=per_kind,
            planned_gb=program_gb(programs["r1+pl"][1]))   # the step's own; the peak adds autotuning's buffers
    c0 = clog.compiles
    for kind, step in KINDS.items():
        _, fn = programs[kind]
        ts = []
        for _ in range(ctx.reps if kind == "plain" else max(1, ctx.reps - 2)):
            trainer.state = _put_step(trainer.state, step)
            t = time.perf_counter()
            trainer.state, m = fn(trainer.state, real)
            _block(m)
            ts.append(time.perf_counter() - t)
        per_kind[kind].update(times=ts, seconds=statistics.median(ts))
        rec.put(per_kind=per_kind)
    s_iter = (12 * per_kind["plain"]["seconds"] + 3 * per_kind["pl"]["seconds"] + per_kind["r1+pl"]["seconds"]) / 16
    rec.put(seconds_per_iter=s_iter, s_per_kimg=s_iter / batch * 1000, peak_device_gb=peak_gb(),
            compilations_after_warmup=clog.compiles - c0 + 0)
    if ctx.profile:
        for kind, step in KINDS.items():
            if ctx.left() < (5 if ctx.dry else 10):
                rec.put(profile_skipped="out of time")
                break
            _, fn = programs[kind]

            def call(fn=fn, step=step):
                trainer.state = _put_step(trainer.state, step)
                trainer.state, m = fn(trainer.state, real)
                return m
            per_kind[kind]["profile"] = profile_one(call, os.path.join(ctx.tmp, f"prof_s{scale}_{kind}"),
                                                    os.environ.get("PEGAN_HLO_DUMP"))
            rec.put(per_kind=per_kind)
    rec.put(status="done", compilations_after_warmup=clog.compiles - c0)


def _memory_analysis(compiled):
    parts = getattr(compiled, "parts", None)       # a step run as its halves (the CPU loop): the larger
    if parts is not None:
        got = [_memory_analysis(p) for p in parts]
        return max(got, key=lambda m: m.get("temp_size_in_bytes", -1))
    try:
        m = compiled.memory_analysis()
        return {k: getattr(m, k) / 1e9 for k in ("argument_size_in_bytes", "output_size_in_bytes",
                                                "temp_size_in_bytes", "generated_code_size_in_bytes")
                if getattr(m, k, None) is not None}
    except Exception as e:  # not every backend reports it
        return {"error": f"{type(e).__name__}: {e}"[:200]}


def profile_one(call, folder, hlo_dump=None, top=12):
    """One ``call()`` under jax.profiler: the ops that took longest on the device (the trace's
    device streams; on CPU the host threads that run XLA's thunks), their share of the op time,
    and which of them are a gather, scatter, transpose or copy (by name, HLO opcode or the root
    of a fusion, from an HLO dump when there is one)."""
    import jax

    jax.profiler.start_trace(folder)
    try:
        _block(call())
    finally:
        jax.profiler.stop_trace()
    files = sorted(Path(folder).glob("plugins/profile/*/*.trace.json.gz"))
    if not files:
        return {"error": f"no trace written under {folder}"}
    ev = json.load(gzip.open(files[-1]))
    agg, total, how = aggregate_trace(ev.get("traceEvents", []) if isinstance(ev, dict) else ev,
                                      jax.default_backend())
    meta = hlo_opcodes(hlo_dump) if hlo_dump else {}
    ops = []
    for name, sec in sorted(agg.items(), key=lambda kv: -kv[1])[:top]:
        info = meta.get(name.split(" ")[0].lstrip("%"), {})
        flag = flagged(name, info)
        ops.append({"name": name, "s": sec, "share": sec / total if total else None, "flag": flag,
                    "hlo": info.get("text", "")})
    return {"total_op_s": total, "threads": how, "top": ops,
            "flagged": [o["name"] for o in ops if o["flag"]]}


def aggregate_trace(events, platform="cpu"):
    """Seconds per op name over the device's op events. GPU / TPU: the processes named like a
    device; within them an 'XLA Ops' line if there is one (one event per HLO op), else the
    kernel streams. CPU: every complete event except the host's own bookkeeping. On another
    ``platform`` a trace without device events (the profiler recorded no kernels) is empty,
    and says so, rather than the host's threads read as the device's."""
    import collections

    pname, tname = {}, {}
    for e in events:
        if e.get("ph") == "M" and e.get("name") == "process_name":
            pname[e.get("pid")] = str(e.get("args", {}).get("name", ""))
        if e.get("ph") == "M" and e.get("name") == "thread_name":
            tname[(e.get("pid"), e.get("tid"))] = str(e.get("args", {}).get("name", ""))
    dev = {p for p, n in pname.items() if re.search(r"/device:(GPU|TPU)|GPU|TPU", n) and "CPU" not in n}
    keep = None
    if dev:
        ops_lines = {k for k, n in tname.items() if k[0] in dev and n.strip().lower() == "xla ops"}
        streams = {k for k, n in tname.items() if k[0] in dev and "stream" in n.lower()}
        keep = ops_lines or streams or {k for k in tname if k[0] in dev} or None
        how = "device " + ("XLA Ops line" if ops_lines else "streams" if streams else "threads")
    elif platform != "cpu":
        return {}, 0.0, f"no {platform} device events in the trace (did the profiler record kernels?)"
    else:
        how = "host threads (CPU)"
    agg = collections.defaultdict(float)
    for e in events:
        if e.get("ph") != "X" or "dur" not in e:
            continue
        name = str(e.get("name", ""))
        if dev:
            if (e.get("pid"), e.get("tid")) not in keep if keep else e.get("pid") not in dev:
                continue
            op = (e.get("args") or {}).get("hlo_op")
            if op and op != name:
                name = f"{op} ({name[:60]})"
        elif name.startswith(("ThunkExecutor", "$", "Slinky", "Pjit", "PjitFunction", "jit_", "Thunk")) or \
                "::" in name or name.startswith("Py"):
            continue
        else:                    # two programs (the CPU loop's D and G halves) number their ops alike
            a = e.get("args") or {}
            if a.get("hlo_module") and a.get("hlo_op"):
                name = f"{a['hlo_module']}/{a['hlo_op']}"
        agg[name] += float(e["dur"]) / 1e6
    return dict(agg), sum(agg.values()), how


def hlo_opcodes(folder):
    """instruction name -> {'opcode', 'root' (of a fusion's computation), 'text'} from the largest
    optimised HLO module dumped in ``folder``, and 'program/instruction' -> the same from the
    largest dump of every program (the names ``aggregate_trace`` gives ops on CPU)."""
    from bench import hlo_dumps

    dumps = hlo_dumps(folder)
    parsed = {module: _hlo_instructions(f.read_text(errors="replace")) for module, f in dumps.items()}
    out = {f"{module}/{k}": v for module, ins in parsed.items() for k, v in ins.items()}
    if parsed:
        out.update(parsed[max(dumps, key=lambda m: dumps[m].stat().st_size)])
    return out


def _hlo_instructions(text):
    roots, comp = {}, None
    # the result shape may be a tuple (multi-output fusions, custom calls such as cuDNN's)
    inst = re.compile(r"^\s*(ROOT )?%?([\w.\-]+) = (\((?:[^()]|\([^()]*\))*\)|\S+) ([\w\-]+)\(")
    out = {}
    for line in text.splitlines():
        m = re.match(r"^(?:ENTRY )?%?([\w.\-]+) .*\{\s*$", line)
        if m and "=" not in line.split("{")[0]:
            comp = m.group(1)
            continue
        m = inst.match(line)
        if not m:
            continue
        is_root, name, shape, opcode = m.groups()
        calls = re.search(r"calls=%?([\w.\-]+)", line)
        calls = calls.group(1) if calls else None
        op_name = re.search(r'op_name="([^"]*)"', line)
        op_name = op_name.group(1) if op_name else ""
        if is_root and comp:
            roots[comp] = opcode
        out[name] = {"opcode": opcode, "calls": calls, "text": f"{opcode} {shape} {op_name[-90:]}"}
    for v in out.values():
        if v["calls"]:
            v["root"] = roots.get(v["calls"])
    return out


def flagged(name, info=None):
    """Which of gather / scatter / transpose / copy an op is (by its name, opcode or fusion
    root), or ''."""
    info = info or {}
    head, _, rest = name.partition(" ")
    op = head.rsplit("/", 1)[-1] + " " + rest              # the op's name, not its program's
    hay = " ".join([op.lower(), str(info.get("opcode", "")), str(info.get("root", ""))])
    return ",".join(w for w in FLAG_OPS if w in hay)


def part_speed256(ctx, rec):
    part_speed(ctx, rec, 0)


def part_speed512(ctx, rec):
    if ctx.dry:
        rec.put(status="skipped", reason="dry run: speed256 runs the same code")
        return
    part_speed(ctx, rec, 4)


def part_r1_forms(ctx, rec):
    import bench

    setup_process()
    rec.put(status="running", variant=ctx.variant, batch=ctx.batch, **device_info())
    forms = {}
    for conv in ("xla",) if ctx.dry else ("xla", "taps"):      # dry run: the same code once
        if forms and ctx.left() < (5 if ctx.dry else 15):
            rec.put(skipped=[f"{conv}: out of time"])
            break
        opts = argparse.Namespace(impl=None, conv=conv, upfirdn=None, dtype="float32", variant=ctx.variant,
                                  reps=max(1, ctx.reps - 2), warmup=1, profile=None)
        res = {"case": f"dstep:r1:0:{ctx.batch}"}
        bench.case_dstep(res["case"], opts, res, bench.CompileLog())
        forms[conv] = {k: res.get(k) for k in ("seconds", "compile_s", "gflop", "times", "compilations_after_warmup")}
        if res.get("gflop") and res.get("seconds"):
            forms[conv]["tflops"] = res["gflop"] / res["seconds"] / 1e3
        rec.put(forms=forms)
    rec.put(status="done", peak_device_gb=peak_gb())


# -- 3. loop ----------------------------------------------------------------------------------

def part_loop(ctx, rec, variant):
    from bench import CompileLog
    from pegan.train.stylegan2_loop import measure_host_blocked

    setup_process()
    clog = CompileLog()
    batch = 4 if variant == "tiny" else ctx.batch      # the tiny config's own batch, or the full parts'
    v = "tiny" if ctx.dry else variant
    rec.put(status="running", variant=v, batch=batch, steps=ctx.steps, **device_info())
    trainer = make_trainer(ctx.dry, v, 0, batch, Path(ctx.tmp) / f"run_loop_{variant}")
    quiet = dict(checkpoint_every=0, sample_every=0, log_every=10**9, final_save=False)
    t0 = time.time()
    trainer.run(5 if not ctx.dry else 2, **quiet)             # warm-up: every program compiled
    rec.put(warmup_s=time.time() - t0, programs=trainer.compilations(),
            compile_s=sum(trainer.compile_wall_seconds.values()))
    out = measure_host_blocked(trainer, steps=ctx.steps, warmup=1)
    rec.put(**out, s_per_kimg_loop=out["loop_seconds_per_step"] / batch * 1000,
            s_per_kimg_device=out["device_seconds_per_step"] / batch * 1000)
    c0, p0 = clog.compiles, trainer.compilations()
    trainer.run(trainer.step + (2 if ctx.dry else 10), **quiet)
    rec.put(recompiles_after_warmup=trainer.compilations() - p0, backend_compiles_after_warmup=clog.compiles - c0,
            peak_device_gb=peak_gb(), status="done")


def part_loop_tiny(ctx, rec):
    part_loop(ctx, rec, "tiny")


def part_loop_full(ctx, rec):
    if ctx.dry:
        rec.put(status="skipped", reason="dry run: loop_tiny runs the same code")
        return
    part_loop(ctx, rec, "full")


# -- 4. determinism ---------------------------------------------------------------------------

def det_run(steps, out_file, workdir, dry):
    """One tiny run of ``steps`` steps through Trainer.run in a fresh work directory; its final
    state's leaves to ``out_file`` (.npz), with the losses and how many programs came from the
    compilation cache."""
    import jax
    import numpy as np

    hits = []
    jax.monitoring.register_event_listener(
        lambda event, **kw: hits.append(1) if event == "/jax/compilation_cache/cache_hits" else None)
    setup_process()
    trainer = make_trainer(dry, "tiny", 0, 4, Path(workdir))
    hist = trainer.run(steps, checkpoint_every=0, sample_every=0, log_every=10**9, final_save=False)
    leaves = _flat(trainer.host_state())
    np.savez(out_file, **{f"leaf{i}": v for i, v in enumerate(leaves.values())})
    Path(str(out_file) + ".json").write_text(json.dumps({"names": list(leaves), "losses": [
        [h["d_loss"], h["g_loss"]] for h in hist], "cache_hits": len(hits), **device_info()}))


def compare_runs(a, b):
    import numpy as np

    na = json.loads(Path(str(a) + ".json").read_text())["names"]
    xa, xb = np.load(a), np.load(b)
    differ, max_abs = [], 0.0
    for i, name in enumerate(na):
        u, v = xa[f"leaf{i}"], xb[f"leaf{i}"]
        same = u.shape == v.shape and u.dtype == v.dtype and u.tobytes() == v.tobytes()
        if not same:
            differ.append(name)
            if u.shape == v.shape and u.dtype.kind in "fc":
                max_abs = max(max_abs, float(np.max(np.abs(u.astype(np.float64) - v.astype(np.float64)))))
    return {"leaves": len(na), "differing": len(differ), "differing_leaves": differ[:10], "max_abs_diff": max_abs,
            "identical": not differ}


def _det_trials(ctx):
    """(label, environment changes, side by side) of each pair of determinism runs, in order.
    'cached': one after the other sharing a fresh compilation cache, so that the second runs
    the first's executables (what a restarted `pegan train` does with its default cache).
    On a GPU then 'fresh': side by side, no cache, each compiling and autotuning its own
    programs (autotuning times the convolution algorithms and may pick others); and, only where
    the fresh pair differs, the same with XLA's deterministic ops (which also fix the choice)."""
    cache = os.path.join(ctx.tmp, "det-cache")
    cached = {"JAX_ENABLE_COMPILATION_CACHE": "true", "JAX_COMPILATION_CACHE_DIR": cache,
              "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}
    trials = [("cached", cached, False)]
    if not ctx.dry:
        fresh = {"JAX_ENABLE_COMPILATION_CACHE": "false", "JAX_COMPILATION_CACHE_DIR": None}
        trials += [("fresh", fresh, SIDE_BY_SIDE),
                   ("xla_gpu_deterministic_ops", dict(fresh, XLA_FLAGS_ADD="--xla_gpu_deterministic_ops=true"),
                    SIDE_BY_SIDE)]
    return trials


def part_determinism(ctx, rec):
    """Pairs of identical tiny runs, each run in its own process, compared bit for bit
    (``_det_trials``); the deterministic-ops pair only where the fresh pair differs."""
    rec.put(status="running", steps=ctx.det_steps)
    base = dict(os.environ, XLA_PYTHON_CLIENT_PREALLOCATE="false")
    results = {}
    for label, change, side_by_side in _det_trials(ctx):
        if label == "xla_gpu_deterministic_ops" and results.get("fresh", {}).get("identical", True):
            break                                    # only worth a try when the fresh pair differs
        if ctx.left() < (10 if ctx.dry else 20):
            rec.put(skipped=f"{label}: out of time")
            break
        e = dict(base)
        for k, v in change.items():
            if k == "XLA_FLAGS_ADD":
                e["XLA_FLAGS"] = (e.get("XLA_FLAGS", "") + " " + v).strip()
            elif v is None:
                e.pop(k, None)
            else:
                e[k] = v
        files, procs, logs = [], [], []
        for i in range(2):
            f = os.path.join(ctx.tmp, f"det_{label}_{i}.npz")
            files.append(f)
            logs.append(open(f + ".log", "w"))
            procs.append(subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--det-run", f, "--det-steps", str(ctx.det_steps),
                 "--tmp", tempfile.mkdtemp(dir=ctx.tmp)] + ["--dry-run"] * ctx.dry,
                env=e, stdout=logs[-1], stderr=subprocess.STDOUT, start_new_session=True))
            if not side_by_side:                     # the second after the first (its cache; few cores)
                try:
                    procs[-1].wait(timeout=max(1.0, ctx.left() - 1))
                except subprocess.TimeoutExpired:
                    pass
        for i, p in enumerate(procs):
            try:
                p.wait(timeout=max(1.0, ctx.left() - 1))
            except subprocess.TimeoutExpired:
                import signal

                for q in procs:
                    try:
                        os.killpg(q.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                rec.put(results=results, skipped=f"{label}: the runs did not finish in time")
                return
            finally:
                logs[i].close()
            if p.returncode != 0:
                out = Path(files[i] + ".log").read_text(errors="replace")
                raise RuntimeError(f"determinism run {i + 1} ({label}) failed: {out[-1500:]}")
        results[label] = compare_runs(*files)
        infos = [json.loads(Path(f + ".json").read_text()) for f in files]
        results[label].update(last_losses_first_run=infos[0]["losses"][-1],
                              cache_hits=[i.get("cache_hits") for i in infos])
        rec.put(results=results, **{k: infos[0][k] for k in ("platform", "device", "num_devices", "jax")})
    rec.put(status="done", identical=all(r["identical"] for k, r in results.items()
                                         if k != "xla_gpu_deterministic_ops"))


# -- 5. bf16 ----------------------------------------------------------------------------------

def part_bf16(ctx, rec):
    import jax

    from bench import init_d, init_g
    from pegan import compute
    from pegan.configs import load_experiment
    from pegan.models.stylegan2 import build_discriminator, build_generator, image_size
    from pegan.train import stylegan2 as tr

    resolved = setup_process()
    batch = ctx.batch
    cfg = load_experiment(F, ctx.variant)
    forms = compute.forms_of(resolved)
    rec.put(status="running", variant=ctx.variant, batch=batch, lazy=ctx.lazy_step, **device_info())
    G32, D32 = build_generator(cfg, forms), build_discriminator(cfg, forms)
    tcfg = cfg.train
    state = tr.init_state(G32, D32, tcfg, jax.random.PRNGKey(0), g_vars=init_g(G32), d_vars=init_d(D32))
    h, w = image_size(G32.out_size, 0)
    real = jax.random.uniform(jax.random.PRNGKey(4), (batch, h, w, 3), minval=-1, maxval=1)
    rnd = tr.step_randomness(jax.random.PRNGKey(5), G32, tcfg, 0, batch)
    out, speed = {}, {}
    for tag, dtype in (("float32", None), ("bfloat16", "bfloat16")):
        G = build_generator(cfg, forms, dtype=dtype)
        D = build_discriminator(cfg, forms, dtype=dtype)
        f = jax.jit(lambda st, r, n, G=G, D=D: (lambda o: (o[1], o[2]["d_grads"], o[2]["g_grads"]))(
            tr.train_step(st, r, n, G=G, D=D, tcfg=tcfg, scale=0, lazy=ctx.lazy_step)))
        t = time.perf_counter()
        res = _block(f(state, real, rnd))
        first = time.perf_counter() - t
        ts = []
        for _ in range(max(1, ctx.reps - 2)):
            t = time.perf_counter()
            _block(f(state, real, rnd))
            ts.append(time.perf_counter() - t)
        speed[tag] = {"first_call_s": first, "times": ts, "seconds": statistics.median(ts)}
        out[tag] = jax.device_get(res)
        rec.put(speed=speed)
    keys = ("d_loss", "g_loss", "loss_disc_fake", "loss_disc_real", "r1_penalty", "pl_penalty")
    losses = scalar_distance(out["float32"][0], out["bfloat16"][0], keys)
    rec.put(losses=losses, worst_loss_rel=max(v["rel"] for v in losses.values()),
            d_grads=tree_distance(out["float32"][1], out["bfloat16"][1]),
            g_grads=tree_distance(out["float32"][2], out["bfloat16"][2]),
            speedup=speed["float32"]["seconds"] / speed["bfloat16"]["seconds"], status="done")


PART_FNS = {"tests": part_tests, "precision": part_precision, "speed256": part_speed256,
            "speed512": part_speed512, "r1_forms": part_r1_forms, "loop_tiny": part_loop_tiny,
            "loop_full": part_loop_full, "determinism": part_determinism, "bf16": part_bf16}


# ---------------------------------------------------------------------------------------------
# the table
# ---------------------------------------------------------------------------------------------

def _g(x, nd=3):
    """A number in few characters: 0.000312 -> 3.1e-04, 12.345 -> 12.3."""
    if x is None:
        return "?"
    x = float(x)
    if x == 0:
        return "0"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 0.01:
        return f"{x:.{nd}g}"
    return f"{x:.1e}"


def _pct(x):
    return "?" if x is None else f"{100 * float(x):.2g}%" if x < 0.01 else f"{100 * float(x):.1f}%"


def _state_note(r):
    """'' for a finished part, else why it has no (or only some) results."""
    if r is None:
        return "not run"
    st = r.get("status")
    if st == "done":
        return ""
    if st == "skipped":
        return "skipped: " + r.get("reason", "")
    if st == "error":
        return "error: " + r.get("error", "")[:160]
    if st == "timed out":
        return f"timed out after {_g(r.get('limit_s'))} s (partial)"
    return st or "no result"


BOOKKEEPING = {"status", "reason", "error", "part", "wall_s", "limit_s", "log_tail", "variant", "batch", "scale",
               "compute", "platform", "device", "num_devices", "jax", "steps", "fixtures", "command", "precision"}


def rows_for(results, meta):
    """The table's rows: (section, check, pegan, NVIDIA / target, note)."""
    rows = []
    chosen = meta.get("parts") or list(PART)
    R = lambda name: results.get(name) if name in chosen else False
    n256, n1, p512, a512 = NVIDIA["paper256"], NVIDIA["auto256_1gpu"], NVIDIA["paper512"], NVIDIA["auto512_1gpu"]

    def add(sec, check, val, ref="", note=""):
        rows.append((f"{sec} {SECTIONS[sec]}", check, val, ref, note))

    def guarded(sec, name, fn):
        r = R(name)
        if r is False:                                  # not among the parts asked for
            return
        note = _state_note(r)
        if r is None or not set(r) - BOOKKEEPING:      # nothing measured
            add(sec, PART[name].title, "-", "", note)
            return
        try:
            fn(r, note)
        except Exception as e:  # a part with partial results: say what is missing
            add(sec, PART[name].title, "incomplete", "", (note + "; " if note else "") + f"{type(e).__name__}: {e}"[:120])

    def tests(r, note):
        c = r["counts"]
        val = f"{c.get('passed', 0)} passed, {c.get('failed', 0)} failed" + \
              (f", {c['error']} errors" if c.get("error") else "") + (f", {c['skipped']} skipped" if c.get("skipped") else "")
        fl = ("failed: " + ", ".join(r["failed_tests"][:4])) if r.get("failed_tests") else ""
        add(1, "fixture tests, matmul_precision=highest", val, "all pass",
            "; ".join(x for x in (f"{_g(r.get('seconds'))} s", fl, note) if x))
    guarded(1, "tests", tests)

    def precision(r, note):
        g = r["g_tiny"]
        add(1, "TF32 vs highest: tiny config-f G output", f"max abs {_g(g['max_abs'])} ({_pct(g['worst_leaf_rel'])} "
            f"of max abs)", "", "; ".join(x for x in (f"worst at scale {g['scale']}", note) if x))
        if "g_full" in r:
            g = r["g_full"]
            add(1, f"TF32 vs highest: {r.get('g_full_variant', 'full')} config-f G output, scale 0",
                f"max abs {_g(g['max_abs'])} ({_pct(g['worst_leaf_rel'])} of max abs)", "", "batch 2")
        if "step_losses" in r:
            worst = max(r["step_losses"].items(), key=lambda kv: kv[1]["rel"])
            kind = _kind(r.get("step_lazy"))
            add(1, f"TF32 vs highest: tiny {kind} step losses", f"worst rel {_pct(worst[1]['rel'])} ({worst[0]})")
            d, g = r["step_d_grads"], r["step_g_grads"]
            add(1, f"TF32 vs highest: tiny {kind} step gradients",
                f"rel L2 D {_g(d['rel_l2'])}, G {_g(g['rel_l2'])}; worst leaf {_pct(max(d['worst_leaf_rel'], g['worst_leaf_rel']))}",
                "", (d["worst_leaf"] if d["worst_leaf_rel"] >= g["worst_leaf_rel"] else g["worst_leaf"]) or "")
    guarded(1, "precision", precision)

    def speed(r, note, px_ref):
        pk = r.get("per_kind", {})
        size = "x".join(map(str, r.get("size", []))) or "?"
        tag = f"{r.get('variant', '')} config-f {size}, batch {r.get('batch')}"
        add(2, f"compile (trace + XLA), {tag}", f"{_g(r.get('compile_s'))} s ({r.get('programs', '?')} program"
            f"{'s' if r.get('programs') != 1 else ''})", "no recompilation after warm-up",
            f"recompilations after warm-up: {r.get('compilations_after_warmup', '?')}")
        add(2, "step s: plain / PL / R1+PL", " / ".join(_g(pk.get(k, {}).get("seconds")) for k in KINDS),
            "", note)
        if "s_per_kimg" in r:
            if px_ref == 256:
                ref = (f"paper256 {n256['gpus'] * n256['s_per_kimg']:.1f} GPU-s/kimg ({n256['s_per_kimg']} on 8 A100, "
                       f"batch 8/GPU); auto 1 A100 {n1['s_per_kimg']} (batch 16); target <= "
                       f"{TARGETS['s_per_kimg_256']:.1f}")
                verdict = "meets target" if r["s_per_kimg"] <= TARGETS["s_per_kimg_256"] else "misses target"
            else:
                ref = (f"paper512 {p512['gpus'] * p512['s_per_kimg']:.1f} GPU-s/kimg ({p512['s_per_kimg']} on 8 A100); "
                       f"auto 1 A100 {a512['s_per_kimg']} (batch 8)")
                verdict = ""
            add(2, "iteration, R1 / 16 and PL / 4 amortised", f"{_g(r['s_per_kimg'])} s/kimg "
                f"({_g(r['seconds_per_iter'])} s/iter)", ref, verdict if meta.get("platform") != "cpu" else
                "CPU dry run: not comparable")
        ref = f"paper256 {n256['gb']} GB, auto 1 GPU {n1['gb']} GB" if px_ref == 256 else \
            f"paper512 {p512['gb']} GB, auto 1 GPU {a512['gb']} GB"
        ma = r.get("memory_analysis", {})
        planned = f"R1+PL program {_g(r['planned_gb'])} GB as XLA plans it" if r.get("planned_gb") is not None else ""
        add(2, f"device memory, {size}", f"{_g(r.get('peak_device_gb'))} GB peak per device", ref,
            "; ".join(x for x in (planned, "the peak includes compilation's autotuning workspace" if planned and
                                  r.get("peak_device_gb") is not None else "",
                                  f"temp {_g(ma.get('temp_size_in_bytes'))} GB" if "temp_size_in_bytes" in ma else "",
                                  "(no device memory stats on this backend)" if r.get("peak_device_gb") is None else "")
                      if x))
        for kind in KINDS:
            prof = pk.get(kind, {}).get("profile")
            if prof and "top" not in prof:
                add(2, f"top ops, {kind} step", "-", "", "profile: " + str(prof.get("error", "no ops"))[:120])
            if not prof or "top" not in prof:
                continue
            top = ", ".join(f"{o['name'][:40]} {_pct(o['share'])}" for o in prof["top"][:4])
            fl = [o for o in prof["top"] if o["flag"]]
            add(2, f"top ops, {kind} step ({_g(prof['total_op_s'])} s in ops)", top, "",
                ("flagged: " + ", ".join(f"{o['name'][:30]} [{o['flag']}] {_pct(o['share'])}" for o in fl))
                if fl else "no gather / scatter / transpose / copy in the top 12")
    guarded(2, "speed256", lambda r, n: speed(r, n, 256))

    def r1(r, note):
        f = r.get("forms", {})
        val = " vs ".join(f"{k} {_g(v.get('seconds'))} s" for k, v in f.items())
        tf = ", ".join(f"{k} {_g(v.get('tflops'))} TFLOP/s" for k, v in f.items() if v.get("tflops"))
        add(2, f"D step with R1, {r.get('variant')} config-f scale 0, batch {r.get('batch')}", val, "", "; ".join(
            x for x in (tf, note) if x))
    guarded(2, "r1_forms", r1)
    guarded(2, "speed512", lambda r, n: speed(r, n, 512))

    def loop(r, note):
        add(3, f"loop, {r.get('variant')} config-f, batch {r.get('batch')}, {r.get('steps')} steps",
            f"{_g(r['s_per_kimg_loop'])} s/kimg loop vs {_g(r['s_per_kimg_device'])} device: host-blocked "
            f"{_pct(r['host_blocked_fraction'])}", f"host-blocked <= {_pct(TARGETS['host_blocked'])}",
            f"recompilations after warm-up {r.get('recompiles_after_warmup', '?')}"
            + (f"; peak {_g(r['peak_device_gb'])} GB per device" if r.get("peak_device_gb") is not None else "")
            + ("; " + note if note else ""))
    guarded(3, "loop_tiny", loop)
    guarded(3, "loop_full", loop)

    def det(r, note):
        how = {"cached": "the second on the first's programs (shared cache)",
               "fresh": "each compiling and autotuning its own", "default": ""}
        for label, x in r.get("results", {}).items():
            val = (f"bit-identical ({x['leaves']} leaves)" if x["identical"] else
                   f"{x['differing']} of {x['leaves']} leaves differ, max abs {_g(x['max_abs_diff'])}")
            hits = x.get("cache_hits")
            extra = [", ".join(x["differing_leaves"][:3]), f"programs from the cache: {hits[0]} / {hits[1]}"
                     if hits else "", note]
            add(4, f"two {r.get('steps')}-step tiny runs" + (f", {how.get(label, label)}" if how.get(label, label)
                                                              else ""), val, "bit-identical",
                "; ".join(e for e in extra if e))
        if not r.get("results"):
            add(4, "two tiny runs", "-", "bit-identical", note or r.get("skipped", ""))
    guarded(4, "determinism", det)

    def bf16(r, note):
        sp = r.get("speed", {})
        if "losses" in r:
            worst = max(r["losses"].items(), key=lambda kv: kv[1]["rel"])
            add(5, f"bf16 vs f32 {_kind(r.get('lazy'))} step, {r.get('variant')} config-f scale 0: losses",
                f"worst rel {_pct(worst[1]['rel'])} ({worst[0]})", "distance stated", note)
            d, g = r["d_grads"], r["g_grads"]
            add(5, "bf16 vs f32: gradients", f"rel L2 D {_g(d['rel_l2'])}, G {_g(g['rel_l2'])}; cosine D "
                f"{d['cosine']:.4f}, G {g['cosine']:.4f}")
        add(5, f"bf16 vs f32: step s, batch {r.get('batch')}", " vs ".join(
            f"{k} {_g(v.get('seconds'))}" for k, v in sp.items()), "bf16 faster",
            f"{_g(r['speedup'])}x" if "speedup" in r else note)
    guarded(5, "bf16", bf16)
    return rows


def _kind(lazy):
    """(R1, PL) of a compared step -> 'R1 + PL', 'plain', ..."""
    lazy = lazy or (True, True)
    return " + ".join(n for n, on in zip(("R1", "PL"), lazy) if on) or "plain"


def format_table(results, meta):
    rows = rows_for(results, meta)
    head = ("| section | check | pegan | NVIDIA StyleGAN2 (A100) / target | note |", "|---|---|---|---|---|")
    esc = lambda s: str(s).replace("|", "/").replace("\n", " ")
    lines = [f"## pegan device check: {meta.get('device', '?')} x{meta.get('num_devices', '?')}, "
             f"jax {meta.get('jax', '?')}, {meta.get('date', '')}, {meta.get('mode', '')}, "
             f"{_g(meta.get('total_s'))} of {_g(meta.get('budget_s'))} s", "", *head]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    skipped = [f"{n} ({_state_note(results.get(n))})" for n in meta.get("parts", [])
               if _state_note(results.get(n)) and results.get(n, {}).get("status") != "done"]
    if skipped:
        lines += ["", "Skipped or incomplete: " + "; ".join(skipped)]
    lines += ["", "NVIDIA: NVlabs/stylegan3 docs/configs.md (StyleGAN2 paper256 / paper512 on 8 A100, "
              "--cfg=auto on 1 A100), their 4 highest resolutions in float16, --cbase=16384 at 256 px; "
              "pegan: float32 at matmul_precision=highest unless the row says bf16."]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------------------------

def select_parts(sections, parts):
    chosen = PARTS
    if sections:
        want = set()
        for s in sections.split(","):
            s = s.strip()
            if s.isdigit() and int(s) in SECTIONS:
                want.add(int(s))
            elif s in SECTIONS.values():
                want.add(next(k for k, v in SECTIONS.items() if v == s))
            else:
                raise SystemExit(f"--sections: unknown section {s!r} (1-5 or {', '.join(SECTIONS.values())})")
        chosen = [p for p in chosen if p.section in want]
    if parts:
        names = [x.strip() for x in parts.split(",")]
        bad = [n for n in names if n not in PART]
        if bad:
            raise SystemExit(f"--parts: unknown part(s) {', '.join(bad)} (known: {', '.join(PART)})")
        chosen = [p for p in chosen if p.name in names]
    return chosen


def start_part(part, opts, limit, env):
    """Start one part in its own process (and process group) with ``limit`` seconds."""
    res_file = os.path.join(opts.tmp, f"part_{part.name}.json")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--run-part", part.name, "--result-file", res_file,
           "--tmp", opts.tmp, "--limit", str(limit), "--batch", str(opts.batch or 0),
           "--loop-steps", str(opts.loop_steps or 0), "--det-steps", str(opts.det_steps or 0),
           "--test-workers", str(opts.test_workers)] + (["--dry-run"] if opts.dry_run else []) + \
          (["--no-profile"] if opts.no_profile else [])
    penv = dict(env)
    if part.concurrent:          # several processes share the device: none takes most of its memory up front
        penv["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    if part.name.startswith("speed"):        # instruction names -> opcodes for the profile's flags
        dump = os.path.join(opts.tmp, f"hlo_{part.name}")
        penv["PEGAN_HLO_DUMP"] = dump
        penv["XLA_FLAGS"] = (penv.get("XLA_FLAGS", "") + f" --xla_dump_to={dump} --xla_dump_hlo_module_re=step").strip()
    log_path = os.path.join(opts.tmp, f"part_{part.name}.log")
    lf = open(log_path, "w")
    proc = subprocess.Popen(cmd, cwd=str(ROOT), env=penv, stdout=lf, stderr=subprocess.STDOUT,
                            start_new_session=True)
    return {"part": part, "proc": proc, "t0": time.time(), "limit": limit, "res_file": res_file,
            "log_path": log_path, "log_file": lf}


def finish_part(h, log):
    """Wait for a started part until its limit (then end its process group: the part and what
    it started); returns its record."""
    import signal

    part, proc, limit = h["part"], h["proc"], h["limit"]
    status = None
    try:
        rc = proc.wait(timeout=max(0.1, h["t0"] + limit + 5 - time.time()))
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        rc, status = None, "timed out"
    h["log_file"].close()
    try:
        rec = json.loads(Path(h["res_file"]).read_text())
    except (OSError, ValueError):
        rec = {}
    if status:
        rec["status"] = status
    elif rc != 0 and rec.get("status") != "done":
        rec.setdefault("error", f"exited with status {rc}")
        rec["status"] = "error"
    elif rec.get("status") not in ("done", "skipped", "error"):
        rec["status"] = "incomplete"
    rec.update(wall_s=time.time() - h["t0"], limit_s=limit)
    if rec.get("status") in ("error", "timed out", "incomplete"):
        rec["log_tail"] = Path(h["log_path"]).read_text(errors="replace")[-2500:]
    log(f"[device_check] {part.name}: {rec.get('status')} in {rec['wall_s']:.0f} s (limit {limit:.0f} s)"
        + (f": {rec.get('error', '')[:200]}" if rec.get("status") == "error" else ""))
    return rec


def run_part(part, opts, limit, env, log):
    """Run one part in its own process with ``limit`` seconds; returns its record."""
    return finish_part(start_part(part, opts, limit, env), log)


def git_commit():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=str(ROOT), capture_output=True,
                              text=True, timeout=5).stdout.strip() or None
    except Exception:
        return None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dry-run", "--smoke", dest="dry_run", action="store_true",
                    default=bool(os.environ.get("PEGAN_DEVICE_CHECK_DRY")),
                    help="every section on CPU at the tiny sizes (also PEGAN_DEVICE_CHECK_DRY=1)")
    ap.add_argument("--budget", type=float, default=None, help=f"seconds for all parts (default {BUDGET:.0f})")
    ap.add_argument("--sections", default=None, help="comma-separated sections to run: 1-5 or " +
                    ", ".join(SECTIONS.values()))
    ap.add_argument("--parts", default=None, help="comma-separated parts: " + ", ".join(PART))
    ap.add_argument("--out", default=None, help="folder for device_check.json / .md (default $OUT, else ./device_check_out)")
    ap.add_argument("--batch", type=int, default=None, help="images per step of the full-size parts (default 8: "
                    "NVIDIA's per-GPU batch of paper256; dry run 4)")
    ap.add_argument("--loop-steps", type=int, default=None, help="timed loop steps (default 50; dry run 3)")
    ap.add_argument("--det-steps", type=int, default=None, help="steps of each determinism run (default 10; dry run 3)")
    ap.add_argument("--test-workers", type=int, default=4, help="pytest-xdist workers of the fixture tests on a GPU")
    ap.add_argument("--part-limit", type=float, default=None, help="seconds each part may take (default: its own limit)")
    ap.add_argument("--no-profile", action="store_true", help="no profiled call in the speed parts")
    ap.add_argument("--list", action="store_true", help="list the parts and their time limits")
    ap.add_argument("--run-part", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--result-file", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--limit", type=float, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--tmp", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--det-run", default=None, help=argparse.SUPPRESS)
    opts = ap.parse_args(argv)
    for k in ("batch", "loop_steps", "det_steps"):
        if getattr(opts, k) == 0:
            setattr(opts, k, None)

    if opts.det_run:
        det_run(opts.det_steps or 10, opts.det_run, opts.tmp or tempfile.mkdtemp(), opts.dry_run)
        return 0
    if opts.run_part:
        rec = Record(opts.result_file)
        ctx = Ctx(opts, time.time() + (opts.limit or 60) - 2)
        try:
            rec.put(status="running", part=opts.run_part)
            PART_FNS[opts.run_part](ctx, rec)
        except Exception as e:  # report, don't hide
            import traceback

            traceback.print_exc()
            rec.put(status="error", error=f"{type(e).__name__}: {e}"[:1000])
        return 0
    if opts.list:
        for p in PARTS:
            print(f"{p.section} {SECTIONS[p.section]:12s} {p.name:12s} {p.limit:4.0f} s (dry {p.dry_limit:3.0f} s)  {p.title}")
        return 0

    t_start = time.time()
    budget = opts.budget or BUDGET
    out = Path(opts.out or os.environ.get("OUT") or (ROOT / "device_check_out"))
    out.mkdir(parents=True, exist_ok=True)
    opts.tmp = tempfile.mkdtemp(prefix="pegan-device-check-")
    parts = select_parts(opts.sections, opts.parts)
    env = dict(os.environ, PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join([str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]),
               JAX_COMPILATION_CACHE_DIR=os.path.join(opts.tmp, "jax-cache"))   # shared by the parts, fresh per run
    if opts.dry_run:
        env["JAX_PLATFORMS"] = "cpu"
        if "xla_backend_optimization_level" not in env.get("XLA_FLAGS", ""):   # compile time, not speed, matters here
            env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()
    log_lines = []

    def log(msg):
        print(msg, file=sys.stderr, flush=True)
        log_lines.append(msg)

    log(f"[device_check] {'dry run on CPU' if opts.dry_run else 'GPU run'}: {len(parts)} parts, budget {budget:.0f} s, "
        f"output {out}")
    results = {}

    def limit_for(part):
        left = budget - (time.time() - t_start)
        limit = min(opts.part_limit or (part.dry_limit if opts.dry_run else part.limit), left)
        if limit < MIN_START[opts.dry_run]:
            results[part.name] = {"status": "skipped", "reason": f"out of time ({max(0, left):.0f} s of the "
                                                                  f"{budget:.0f} s budget left)"}
            log(f"[device_check] {part.name}: skipped, out of time")
            return None
        return limit

    # first the parts that measure no time, side by side (the GPU machine has 16 cores for their
    # compilations); then the timed parts one at a time, with the device to themselves
    started = []
    for part in [p for p in parts if p.concurrent and SIDE_BY_SIDE]:
        limit = limit_for(part)
        if limit is not None:
            started.append(start_part(part, opts, limit, env))
    for h in started:
        results[h["part"].name] = finish_part(h, log)
    for part in [p for p in parts if not (p.concurrent and SIDE_BY_SIDE)]:
        limit = limit_for(part)
        if limit is not None:
            results[part.name] = run_part(part, opts, limit, env, log)
    meta = {"date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), "mode": "dry run (CPU, tiny sizes)"
            if opts.dry_run else "GPU", "budget_s": budget, "total_s": time.time() - t_start,
            "parts": [p.name for p in parts], "commit": git_commit(), "python": sys.version.split()[0],
            "argv": sys.argv[1:] if argv is None else list(argv)}
    for r in results.values():                   # the device, as the parts saw it
        if "device" in r:
            meta.update({k: r[k] for k in ("platform", "device", "num_devices", "jax")})
            break
    table = format_table(results, meta)
    print(table, flush=True)
    (out / "device_check.md").write_text(table + "\n")
    (out / "device_check.json").write_text(json.dumps({"meta": meta, "nvidia": NVIDIA, "targets": TARGETS,
                                                       "results": results, "rows": rows_for(results, meta),
                                                       "log": log_lines}, indent=1, default=_jsonable))
    shutil.rmtree(opts.tmp, ignore_errors=True)
    log(f"[device_check] wrote {out / 'device_check.md'} and {out / 'device_check.json'} ({time.time() - t_start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
