#!/usr/bin/env python
"""pegan benchmark: speed, compile time, compilations and memory of the MS-PIE StyleGAN2 and
PE-SinGAN models and training steps, beside the OpenMMLab PyTorch reference (issue 7).

    .venv/bin/python scripts/bench.py                     # quick mode (the default, < 10 min on 2 CPU cores)
    .venv/bin/python scripts/bench.py --mode full --json bench.json
    .venv/bin/python scripts/bench.py --cases gfwd:f:0:4,dfwd:0:4 --impl grouped
    .venv/bin/python scripts/bench.py --list               # every case name

Every case runs in its own subprocess (so peak host memory is per case) on whatever devices
JAX sees; it needs only jax, flax, optax, numpy and pegan (no tfds, clu or orbax).

Case names (scale = MS-PIE chosen scale: 0 -> 256 px, 2 -> 384 px, 4 -> 512 px):

* ``matmul``: float32 4096 x 4096 matmul (the peak the reference figures are measured against)
* ``gfwd:<f|h|a>:<scale>:<batch>``: generator forward (config-f c2 SPE head, config-h, baseline
  config-a) with fresh noise
* ``dfwd:<scale>:<batch>``: MS-PIE discriminator forward
* ``dstep:<r1|nor1>:<scale>:<batch>``: fakes generated, D on reals and fakes, backward, Adam
* ``gstep:<pl|nopl>:<scale>:<batch>``: G forward, D, backward, Adam (path length at scale 0)
* ``iter:<scales>:<batch>``: the training loop's own compiled step (``Trainer.program``, donation;
  the lazy R1 / PL terms fixed per program on CPU, behind ``lax.cond`` elsewhere, see
  ``compute.lazy_branches``), timed per kind of iteration (none / PL / R1+PL) and amortised as
  the reference schedules them (R1 every 16, PL every 4); compile seconds per scale (all its
  programs) and compilations after warm-up; ``<scales>`` like ``0-2-4``
* ``loop:<f|h|a>:<steps>``: the real training loop on a synthetic in-memory dataset and its
  host-blocked fraction (1 - device step time / loop wall time per step), e.g. ``loop:f:100``
  with ``--variant tiny``
* ``singan_iter``: PE-SinGAN (CSG) iteration at the last stage of a 187 x 250 pyramid (3 D + 3 G)
* ``singan_sample``: PE-SinGAN full-pyramid sample, 187 x 250

Timings are medians after warm-up. The matmul is timed inside every case's process, before and
after the case, so a loaded machine can be compared with the reference machine:
``normalised s = s x (matmul GFLOP/s now) / 141`` (141 GFLOP/s: the matmul on the reference
machine); the verdict compares that with the target. FLOPs count convolutions and matmuls only,
2 per multiply-add, from the jaxpr (gradients included; taps on the zeros of an lhs dilation are
not counted; a ``cond`` counts the branch it takes), as the reference figures are counted.

``--dtype bfloat16``: mixed precision (bf16 convolutions, f32 parameters, mapping network,
logits and losses); ``bf16diff`` cases measure how far bf16 images are from float32.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for _p in (str(ROOT), str(ROOT / "scripts")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from bench.flops import flops_of  # noqa: E402  (scripts/bench/: the FLOP counter, tested)
from bench.reference import REF_MATMUL_GFLOPS, REFERENCE  # noqa: E402  (the reference figures, as data)
from bench import scaling  # noqa: E402  (the scaling picture)

MODELS = {
    "f": "mspie-stylegan2-config-f_c2_8xb3-1100kiters_ffhq-256-512",
    "h": "mspie-stylegan2-config-h_c2_8xb3-1100kiters_ffhq-256-512",
    "a": "stylegan2_c2_8xb3-1100kiters_ffhq-256x256",
}
SINGAN = "singan-csg_fish"
SINGAN_SIZE = (187, 250)

QUICK = ["gfwd:f:0:4", "dfwd:0:4", "dstep:nor1:0:3", "gstep:nopl:0:3", "singan_iter", "singan_sample"]


def full_cases():
    cases = []
    for m, scales in (("f", (0, 2, 4)), ("h", (0, 2, 4)), ("a", (0,))):
        for s in scales:
            for b in (1, 4):
                cases.append(f"gfwd:{m}:{s}:{b}")
    for s in (0, 2, 4):
        for b in (1, 4):
            cases.append(f"dfwd:{s}:{b}")
    cases += ["dstep:nor1:0:3", "dstep:r1:0:3", "gstep:nopl:0:3", "gstep:pl:0:3", "iter:0-2-4:3",
              "singan_iter", "singan_sample", "bf16diff:f:0:4"]
    return cases


# ---------------------------------------------------------------------------------------------
# measurement helpers (run inside a case's process)
# ---------------------------------------------------------------------------------------------

class CompileLog:
    """Counts backend compilations and sums trace + lowering + compile seconds."""

    def __init__(self):
        import jax

        self.compiles = 0
        self.seconds = 0.0
        ev = ("/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/jaxpr_to_mlir_module_duration",
              "/jax/core/compile/backend_compile_duration")

        def listener(event, duration, **kw):
            if event in ev:
                self.seconds += duration
            if event == ev[2]:
                self.compiles += 1

        jax.monitoring.register_event_duration_secs_listener(listener)


_MM = {}


def matmul_gflops(reps=3):
    import jax
    import jax.numpy as jnp

    if "f" not in _MM:
        a = jax.random.normal(jax.random.PRNGKey(0), (4096, 4096), jnp.float32)
        _MM["a"], _MM["b"] = a, a + 1.0
        _MM["f"] = jax.jit(lambda x, y: x @ y)
        _MM["f"](_MM["a"], _MM["b"]).block_until_ready()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        _MM["f"](_MM["a"], _MM["b"]).block_until_ready()
        ts.append(time.perf_counter() - t)
    return [2 * 4096 ** 3 / t / 1e9 for t in ts]


def block(x):
    import jax

    return jax.block_until_ready(x)


def time_calls(call, warmup, reps):
    """call() -> result; returns the list of seconds of ``reps`` calls after ``warmup``."""
    for _ in range(warmup):
        block(call())
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        block(call())
        ts.append(time.perf_counter() - t)
    return ts


def program_gb(compiled) -> "float | None":
    """GB a compiled program holds at once (arguments, outputs and temporaries, as XLA plans
    them), or None where the backend does not say. A step run as several programs in turn (the
    trainer's halves, ``.parts``): the most any of them holds."""
    parts = getattr(compiled, "parts", None)
    if parts is not None:
        gbs = [program_gb(p) for p in parts]
        return None if None in gbs else max(gbs)
    try:
        m = compiled.memory_analysis()
        return (m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
                - m.alias_size_in_bytes) / 1e9
    except Exception:
        return None


def over_cap(compiled, opts, res=None) -> "str | None":
    """Why a compiled program is not run (its planned memory over ``--mem-cap-gb``), else None;
    the plan's GB go into ``res['program_gb']``."""
    cap = getattr(opts, "mem_cap_gb", None)
    if not cap:
        return None
    need = program_gb(compiled)
    if res is not None:
        res["program_gb"] = need
    if need is not None and need > cap:
        return f"skipped: its program needs {need:.3g} GB > --mem-cap-gb {cap:g}"
    return None


def device_peak_bytes():
    import jax

    try:
        st = jax.devices()[0].memory_stats() or {}
        return st.get("peak_bytes_in_use")
    except Exception:
        return None


def _dtype(name):
    import jax.numpy as jnp

    return None if name in (None, "float32") else jnp.dtype(name)


def _set_compute(cfg, opts):
    """--impl / --conv / --upfirdn / --resize / --dtype into the config's compute section (the
    models read their forms from it; 'auto' where an option is not given). --upfirdn: 'slices'
    (the default: pad + sums of strided slices, one axis at a time), 'conv' (depthwise
    convolutions, one per axis), 'ref' (the literal four steps). --resize: 'dense' (the default:
    banded interpolation matmuls) or 'gather' (take + weighted sums; scatter-add gradients).
    --set KEY=VALUE: any other field of the experiment's config, as ``pegan train --set`` takes it
    (e.g. ``train.batch_gpu=1``: the step in accumulation passes of one image)."""
    from pegan.configs import apply_overrides

    for field, value in (("modconv_impl", opts.impl), ("conv_impl", opts.conv), ("upfirdn_impl", opts.upfirdn),
                         ("resize_impl", getattr(opts, "resize", None)), ("dtype", getattr(opts, "dtype", None))):
        if value:
            cfg.compute[field] = value
    return apply_overrides(cfg, getattr(opts, "set", None), flag="--set ")


def stylegan_models(model, opts):
    from pegan.configs import load_experiment
    from pegan.models.stylegan2 import build_discriminator, build_generator

    cfg = _set_compute(load_experiment(MODELS[model], getattr(opts, "variant", None)), opts)
    return cfg, build_generator(cfg), build_discriminator(cfg)


def init_g(G):
    import jax
    import jax.numpy as jnp

    return jax.jit(lambda k: G.init(k, jnp.zeros((1, G.style_channels)), noise="const"))(jax.random.PRNGKey(0))


def init_d(D):
    import jax
    import jax.numpy as jnp

    return jax.jit(lambda k: D.init(k, jnp.zeros((1, D.in_size, D.in_size, 3))))(jax.random.PRNGKey(1))


# ---------------------------------------------------------------------------------------------
# cases
# ---------------------------------------------------------------------------------------------

def profile_call(call, opts, res, top=25):
    """One call under jax.profiler; the ops that took the most time go into res['profile_top'],
    keyed by program and op (two programs number their fusions alike), each with its shape, the
    model path XLA records and what it holds; res['profile_by_kind']: seconds per kind of op."""
    import collections
    import glob
    import gzip

    import jax

    if not opts.profile:
        return
    d = os.path.join(opts.profile, res["case"].replace(":", "_"))
    jax.profiler.start_trace(d, create_perfetto_trace=True)
    block(call())
    jax.profiler.stop_trace()
    path = sorted(glob.glob(os.path.join(d, "plugins/profile/*/perfetto_trace.json.gz")))[-1]
    ev = json.load(gzip.open(path))
    ev = ev["traceEvents"] if isinstance(ev, dict) else ev
    agg = collections.defaultdict(float)
    for e in ev:
        a = e.get("args") or {}
        if e.get("ph") == "X" and "dur" in e and "hlo_op" in a:
            agg[(a.get("hlo_module", ""), a["hlo_op"])] += e["dur"] / 1e6
    meta = _hlo_metadata(os.path.join(opts.profile, "hlo_" + res["case"].replace(":", "_")))
    res["profile_total_op_s"] = sum(agg.values())
    kinds = collections.defaultdict(float)
    for key, sec in agg.items():
        kinds[meta.get(key, {}).get("kind", "other")] += sec
    res["profile_by_kind"] = dict(sorted(kinds.items(), key=lambda kv: -kv[1]))
    res["profile_top"] = []
    for (module, op), sec in sorted(agg.items(), key=lambda kv: -kv[1])[:top]:
        m = meta.get((module, op))
        desc = f"  [{m['kind']}: {m['shape']} {m['op_name'][-100:]}]" if m else ""
        res["profile_top"].append((f"{module.removeprefix('jit_')}/{op}{desc}", sec))
    res["profile_dir"] = d


def _op_kind(ops) -> str:
    """The kind of an HLO instruction (or of a fusion, from the ops it holds)."""
    ops = set(ops) - {"parameter", "constant", "bitcast", "broadcast", "get-tuple-element", "tuple"}
    if ops & {"while", "conditional", "call", "custom-call"}:
        return "control flow / call"
    for kind in ("convolution", "dot", "reduce", "pad"):
        if kind in ops:
            return kind
    if ops & {"transpose", "copy"}:
        return "transpose / copy"
    if ops and ops <= {"slice", "dynamic-slice", "concatenate", "reshape"}:
        return "slice / concatenate"
    return "elementwise" if ops else "other"


def hlo_dumps(folder) -> dict:
    """program name -> the largest optimised HLO module XLA dumped for it in ``folder``
    (``--xla_dump_to``), as a Path; {} when there is none."""
    import re

    largest = {}
    for f in Path(folder).glob("*after_optimizations.txt") if folder and Path(folder).is_dir() else []:
        with f.open(errors="replace") as fh:
            m = re.match(r"HloModule (\S+?),", fh.readline())
        if m and f.stat().st_size > largest.get(m.group(1), (None, -1))[1]:
            largest[m.group(1)] = (f, f.stat().st_size)
    return {module: f for module, (f, _) in largest.items()}


def _hlo_metadata(folder):
    """(program, instruction) -> {'shape', 'op_name', 'kind'} from the optimised HLO modules
    dumped there (``hlo_dumps``)."""
    import re

    header = re.compile(r"^(?:ENTRY )?%?([\w.\-]+) .*\{$")
    instr = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = (\((?:[^()]|\([^()]*\))*\)|\S+) ([\w\-]+)\((.*)$")
    out = {}
    for module, f in hlo_dumps(folder).items():
        bodies, comp, found = {}, None, []      # computation -> the ops it holds; every instruction
        for line in f.read_text(errors="replace").splitlines():
            if (c := header.match(line)):
                comp = c.group(1)
                bodies[comp] = []
            elif (m := instr.match(line)):
                iname, shape, op, rest = m.groups()
                if comp:
                    bodies[comp].append(op)
                found.append((iname, shape, op, rest))
        for iname, shape, op, rest in found:
            called = re.search(r"calls=%?([\w.\-]+)", rest)
            kind = _op_kind(bodies.get(called.group(1), [op]) if called and op == "fusion" else [op])
            op_name = re.search(r'op_name="([^"]*)"', rest)
            out.setdefault((module, iname), {"shape": shape, "op_name": op_name.group(1) if op_name else "",
                                             "kind": kind})
    return out


def run_timed(res, fn, args, reps, warmup, clog, step_like=False, opts=None):
    """Compile (timed), count FLOPs, warm up, time. ``step_like``: fn(state, *rest) -> (state, out),
    threaded through the calls (state donated)."""

    c0, s0 = clog.compiles, clog.seconds
    t = time.perf_counter()
    out = block(fn(*args))
    res["first_call_s"] = time.perf_counter() - t
    res["compile_s"] = clog.seconds - s0
    res["compilations_warmup"] = clog.compiles - c0
    holder = {"args": list(args)}
    if step_like:
        holder["args"][0] = out[0]

    def call():
        o = fn(*holder["args"])
        if step_like:
            holder["args"][0] = o[0]
        return o

    c1 = clog.compiles
    ts = time_calls(call, max(warmup - 1, 0), reps)
    res["compilations_after_warmup"] = clog.compiles - c1
    res["times"] = ts
    res["seconds"] = statistics.median(ts)
    if opts is not None:
        profile_call(call, opts, res)
    return holder["args"]


def case_gfwd(name, opts, res, clog):
    import jax

    from pegan.models.stylegan2 import image_size

    _, model, scale, batch = name.split(":")
    scale, batch = int(scale), int(batch)
    cfg, G, _ = stylegan_models(model, opts)
    v = init_g(G)
    z = jax.random.normal(jax.random.PRNGKey(1), (batch, G.style_channels))
    key = jax.random.PRNGKey(2)
    f = lambda v, z, k: G.apply(v, z, scale, rng=k)
    res["gflop"] = flops_of(f, v, z, key)[0] / 1e9
    res["size"] = list(image_size(G.out_size, scale))
    fn = jax.jit(f)
    if not _capped_run(res, fn, (v, z, key), opts, clog):
        return
    res["images_per_s"] = batch / res["seconds"]


def case_dfwd(name, opts, res, clog):
    import jax

    from pegan.models.stylegan2 import image_size

    _, scale, batch = name.split(":")
    scale, batch = int(scale), int(batch)
    cfg, G, D = stylegan_models("f", opts)
    p = init_d(D)["params"]
    h, w = image_size(G.out_size, scale)
    x = jax.random.normal(jax.random.PRNGKey(3), (batch, h, w, 3))
    f = lambda p, x: D.apply({"params": p}, x)
    res["gflop"] = flops_of(f, p, x)[0] / 1e9
    res["size"] = [h, w]
    run_timed(res, jax.jit(f), (p, x), opts.reps, opts.warmup, clog, opts=opts)
    res["images_per_s"] = batch / res["seconds"]


def _capped_run(res, fn, args, opts, clog, step_like=False) -> bool:
    """``run_timed`` of a jitted ``fn``; under ``--mem-cap-gb`` it is compiled first and not run
    (False, ``res['error']`` says why) when its program is over the cap."""
    if not getattr(opts, "mem_cap_gb", None):
        run_timed(res, fn, args, opts.reps, opts.warmup, clog, step_like=step_like, opts=opts)
        return True
    s0 = clog.seconds
    compiled = fn.lower(*args).compile()
    compile_s = clog.seconds - s0
    why = over_cap(compiled, opts, res)
    if why:
        res["error"] = why
        return False
    run_timed(res, compiled, args, opts.reps, opts.warmup, clog, step_like=step_like, opts=opts)
    res["compile_s"] = compile_s
    return True


def _train_setup(opts, scale, batch):
    import jax

    from pegan.models.stylegan2 import image_size
    from pegan.train import stylegan2 as tr

    cfg, G, D = stylegan_models("f", opts)
    tcfg = cfg.train
    state = tr.init_state(G, D, tcfg, jax.random.PRNGKey(0), g_vars=init_g(G), d_vars=init_d(D))
    h, w = image_size(G.out_size, scale)
    real = jax.random.uniform(jax.random.PRNGKey(4), (batch, h, w, 3), minval=-1, maxval=1)
    return cfg, G, D, tcfg, state, real


def _phase_case(name, opts, res, clog, which):
    """``dstep`` / ``gstep``: one phase of the iteration (``tr.d_phase`` or ``tr.g_phase``, the
    public training pieces) and its Adam step, jitted with the state donated."""
    import jax
    import optax

    from pegan.train import stylegan2 as tr

    _, kind, scale, batch = name.split(":")
    scale, batch, lazy = int(scale), int(batch), kind in ("r1", "pl")
    cfg, G, D, tcfg, state, real = _train_setup(opts, scale, batch)
    opt_g, opt_d = tr.make_optimizers(tcfg)
    pl_batch = max(1, batch // tcfg.pl_batch_shrink)
    kw = dict(G=G, D=D, tcfg=tcfg, scale=scale)

    def step(state, real):
        k = jax.random.fold_in(state.key, state.step)
        rnd = tr.draw_randomness(k, G, scale, batch, pl_batch, tcfg.mix_prob)
        if which == "d":
            grads, terms = tr.d_phase(state, real, rnd, do_r1=lazy, **kw)
            upd, opt = opt_d.update(grads, state.opt_d, state.d_params)
            return state.replace(step=state.step + 1, d_params=optax.apply_updates(state.d_params, upd),
                                 opt_d=opt), terms["d_loss"]
        grads, terms = tr.g_phase(state, state.d_params, rnd, do_pl=lazy, **kw)
        upd, opt = opt_g.update(grads, state.opt_g, state.g_params)
        return state.replace(step=state.step + 1, g_params=optax.apply_updates(state.g_params, upd),
                             opt_g=opt, pl_mean=terms["pl_mean"]), terms["g_loss"]

    res["gflop"] = flops_of(step, state, real)[0] / 1e9
    _capped_run(res, jax.jit(step, donate_argnums=(0,)), (state, real), opts, clog, step_like=True)


def case_dstep(name, opts, res, clog):
    """``dstep:<r1|nor1>:<scale>:<batch>``."""
    _phase_case(name, opts, res, clog, "d")


def case_gstep(name, opts, res, clog):
    """``gstep:<pl|nopl>:<scale>:<batch>``."""
    _phase_case(name, opts, res, clog, "g")


class _NoData:
    """Stands in for ImageFolder: the benchmark feeds the step function itself."""
    size = 512

    def __len__(self):
        return 1


def _pass_sizes(batch, devices, batch_gpu):
    """The images per device per pass to try, largest first: the config's, then each smaller
    divisor of a device's share (gradient accumulation in more passes, the same step)."""
    share = batch // devices
    first = min(share, int(batch_gpu)) if batch_gpu else share
    return [first] + [d for d in range(first - 1, 0, -1) if share % d == 0]


def case_iter(name, opts, res, clog):
    """The training loop's own compiled steps (``Trainer.program``) at every scale of ``name``.
    Under ``--mem-cap-gb``, a scale whose programs plan more than the cap is run in accumulation
    passes of fewer images (``train.batch_gpu``, as a user short of memory would), and skipped only
    where one image per pass is still over it; each scale's ``batch_gpu`` is reported."""
    import copy

    import jax
    import jax.numpy as jnp

    from pegan.models.stylegan2 import image_size
    from pegan.train import stylegan2 as tr
    from pegan.train.stylegan2_loop import Trainer

    _, scales, batch = name.split(":")
    scales, batch = [int(s) for s in scales.split("-")], int(batch)
    cfg, G, D = stylegan_models("f", opts)
    cfg.scales = scales
    sizes = _pass_sizes(batch, jax.device_count(), cfg.train.batch_gpu)
    trainers = {}                                  # images per pass -> its Trainer (one state)

    def trainer_for(per_pass):
        if per_pass not in trainers:
            c = copy.deepcopy(cfg)
            c.train.batch_gpu = per_pass
            with tempfile.TemporaryDirectory() as tmp:
                t = Trainer(c, _NoData(), Path(tmp) / "run", log=lambda m: None)
            trainers[per_pass] = t                 # its state is replaced by the run's (run)
        return trainers[per_pass]

    trainer_for(sizes[0])
    reals = {s: jax.random.uniform(jax.random.PRNGKey(5 + s), (batch,) + image_size(G.out_size, s) + (3,),
                                   minval=-1, maxval=1) for s in scales}
    kinds = {"none": 1, "pl": 4, "r1+pl": 16}   # step % 16 / % 4 select the lazy terms
    reps = {"none": opts.reps, "pl": max(1, opts.reps // 2), "r1+pl": max(1, opts.reps // 2)}
    per_scale, used, state = {}, {}, [next(iter(trainers.values())).state]

    class Skip(Exception):
        pass

    def run(s, step, trainer):
        # the loop's program for this step: one per scale with the lazy terms behind lax.cond, or
        # one per scale and kind of step (compute.lazy_branches, 'static' by default on CPU)
        trainer.state = state[0]                   # one state for all the trainers
        fn = trainer.program(s, batch, trainer.step_kind(step), reals[s])    # compiled ahead of time, once
        why = over_cap(fn, opts)
        if why:
            raise Skip(why)
        st = state[0].replace(step=jnp.asarray(step, jnp.int32))
        t = time.perf_counter()
        state[0], m = fn(st, reals[s])
        block(m)
        return time.perf_counter() - t

    # warm-up round: every program of every scale compiled once, in the fewest passes that fit
    # --mem-cap-gb (a scale over it even in passes of one image: skipped)
    skipped = {}
    for s in scales:
        for per_pass in sizes:
            trainer = trainer_for(per_pass)
            s0, n0 = clog.seconds, len(trainer.compile_seconds)
            try:
                first = run(s, 1, trainer)
                for step in sorted({kinds[k] for k in kinds} - {1}):
                    run(s, step, trainer)
            except Skip as e:
                skipped[s] = {"error": str(e), "size": list(image_size(G.out_size, s)), "batch_gpu": per_pass,
                              "compile_s": trainer.compile_wall_seconds.get((s, batch), clog.seconds - s0)}
                continue
            skipped.pop(s, None)
            used[s] = trainer
            # the wall time of the scale's compiles (the trainer compiles a step's halves side by side)
            per_scale[s] = {"compile_s": trainer.compile_wall_seconds[(s, batch)], "first_call_s": first,
                            "programs": len(trainer.compile_seconds) - n0, "batch_gpu": per_pass,
                            "passes": batch // jax.device_count() // per_pass,
                            "size": list(image_size(G.out_size, s))}
            break
        if s not in per_scale:
            continue
        # FLOPs of each kind: the lazy terms fixed when tracing (a lax.cond would count its
        # dearer branch for every kind)
        tcfg = used[s].cfg.train
        for kind, step in kinds.items():
            def traced(state, real, step=step, s=s):
                k = jax.random.fold_in(state.key, jnp.int32(step))
                rnd = tr.draw_randomness(k, G, s, batch, max(1, batch // tcfg.pl_batch_shrink), tcfg.mix_prob)
                st = state.replace(step=jnp.asarray(step, jnp.int32))
                return tr.train_step(st, real, rnd, G=G, D=D, tcfg=tcfg, scale=s,
                                     lazy=tr.lazy_kind(tcfg, step))[1]
            per_scale[s][f"gflop_{kind}"] = flops_of(traced, state[0], reals[s])[0] / 1e9
    compiled = lambda: sum(t.compilations() for t in trainers.values())   # noqa: E731
    res["compilations_warmup"] = compiled()
    c1 = clog.compiles
    # timed rounds: every scale, every kind, after warm-up
    for s in per_scale:
        for kind, step in kinds.items():
            if kind != "none" and s != scales[0] and not opts.all_kinds:
                continue
            ts = [run(s, step, used[s]) for _ in range(reps[kind] if s == scales[0] else 1)]
            per_scale[s][f"times_{kind}"] = ts
            per_scale[s][f"seconds_{kind}"] = statistics.median(ts)
    res["compilations_after_warmup"] = clog.compiles - c1 + (compiled() - res["compilations_warmup"])
    for s, r in per_scale.items():
        if all(f"seconds_{k}" in r for k in kinds):
            r["seconds"] = (12 * r["seconds_none"] + 3 * r["seconds_pl"] + r["seconds_r1+pl"]) / 16
            r["gflop"] = (12 * r["gflop_none"] + 3 * r["gflop_pl"] + r["gflop_r1+pl"]) / 16
            r["sec_per_kimg"] = r["seconds"] / batch * 1000
    res["per_scale"] = {str(s): r for s, r in sorted({**per_scale, **skipped}.items())}
    if scales[0] not in per_scale:
        res["error"] = skipped[scales[0]]["error"]
        return
    first = per_scale[scales[0]]
    for k in ("seconds", "gflop", "sec_per_kimg", "compile_s"):
        if k in first:
            res[k] = first[k]
    res["compile_s_max"] = max(r["compile_s"] for r in {**per_scale, **skipped}.values())


def case_loop(name, opts, res, clog):
    """``loop:<f|h|a>:<steps>``: the real training loop (``Trainer.run``: data plan, uint8 batches
    to the devices, metrics fetched at log steps) on an in-memory synthetic dataset, and its
    host-blocked fraction (``measure_host_blocked``: 1 - device step time / loop wall time per
    step over ``steps`` steps after warm-up; the device time replays the same programs back to
    back). ``--variant tiny`` (the default for this case in quick mode) or full."""
    from pegan.data import SyntheticImages
    from pegan.train.stylegan2_loop import Trainer, measure_host_blocked

    _, model, steps = name.split(":")
    cfg, G, _ = stylegan_models(model, opts)
    cfg.scales = [0]
    cfg.train.batch = opts.loop_batch or cfg.train.batch
    stored = G.out_size // 4 * (4 + max(cfg.scales))
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, SyntheticImages(64, stored), Path(tmp) / "run", log=lambda m: None)
        out = measure_host_blocked(trainer, steps=int(steps))
    res.update(out)
    res["batch"] = cfg.train.batch
    res["sec_per_kimg"] = out["loop_seconds_per_step"] / cfg.train.batch * 1000
    res["compile_s"] = sum(trainer.compile_wall_seconds.values())
    res["compilations"] = trainer.compilations()


def _singan_setup(opts):
    import jax
    import numpy as np

    from pegan.configs import load_experiment
    from pegan.train import singan as st

    cfg = _set_compute(load_experiment(SINGAN), argparse.Namespace(**{**vars(opts), "dtype": None, "set": None}))
    h, w = SINGAN_SIZE
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([(np.sin(xx / 9.0) + 1) * 120, (np.cos(yy / 7.0) + 1) * 120,
                    (np.sin((xx + yy) / 13.0) + 1) * 120], -1).astype(np.uint8)
    stop, reals = st.create_real_pyramid(img, cfg.data.min_size, max(h, w), cfg.data.scale_factor)
    cfg = st.fit_config_to_pyramid(cfg, stop)
    trainer = st.SinGANTrainer(cfg, reals, jax.random.PRNGKey(0))
    trainer.state["noise_weights"] = [1.0] + [0.1] * stop
    trainer.state["next_stage"] = stop
    return cfg, trainer, stop


def case_singan_iter(name, opts, res, clog):
    import jax
    import jax.numpy as jnp

    cfg, trainer, t = _singan_setup(opts)
    opt_d, opt_g, d_step, g_step, _ = trainer.stage_steps(t)
    gvars, dvars = trainer.state["generator"], trainer.state["discriminator"]
    blk = f"blocks_{t}"
    od, og = opt_d.init(dvars["params"][blk]), opt_g.init(gvars["params"][blk])
    nw = jnp.asarray(trainer.state["noise_weights"], jnp.float32)
    fixed = trainer.state["fixed_noises"]
    key = jax.random.PRNGKey(7)
    gf = (flops_of(d_step, gvars, dvars, od, nw, key)[0] * cfg.train.d_steps
          + flops_of(g_step, gvars, dvars, og, nw, fixed, key)[0] * cfg.train.g_steps)
    res["gflop"] = gf / 1e9
    res["size"] = list(trainer.sizes[t])
    res["stage"] = t
    box = {"g": gvars, "d": dvars, "od": od, "og": og, "key": key}

    def iteration():
        for _ in range(cfg.train.d_steps):
            box["key"], k = jax.random.split(box["key"])
            box["g"], box["d"], box["od"], dl = d_step(box["g"], box["d"], box["od"], nw, k)
        for _ in range(cfg.train.g_steps):
            box["key"], k = jax.random.split(box["key"])
            box["g"], box["d"], box["og"], gl, mse = g_step(box["g"], box["d"], box["og"], nw, fixed, k)
        return gl

    c0, s0 = clog.compiles, clog.seconds
    t0 = time.perf_counter()
    block(iteration())
    res["first_call_s"] = time.perf_counter() - t0
    res["compile_s"] = clog.seconds - s0
    res["compilations_warmup"] = clog.compiles - c0
    c1 = clog.compiles
    res["times"] = time_calls(iteration, max(opts.warmup - 1, 0), opts.reps)
    res["seconds"] = statistics.median(res["times"])
    res["compilations_after_warmup"] = clog.compiles - c1
    profile_call(iteration, opts, res)


def case_singan_sample(name, opts, res, clog):
    import jax
    import jax.numpy as jnp

    from pegan.models import singan as sm

    cfg, trainer, t = _singan_setup(opts)
    G = trainer.G
    gvars = trainer.state["generator"]
    nw = jnp.asarray(trainer.state["noise_weights"], jnp.float32)
    shapes = sm.noise_shapes(cfg, trainer.sizes)
    f = lambda v, k: G.apply(v, sm.draw_noises(k, shapes, 1), nw, t)
    key = jax.random.PRNGKey(3)
    res["gflop"] = flops_of(f, gvars, key)[0] / 1e9
    res["size"] = list(trainer.sizes[t])
    run_timed(res, jax.jit(f), (gvars, key), max(opts.reps, 5), max(opts.warmup, 2), clog)


def case_matmul(name, opts, res, clog):
    g = matmul_gflops(max(opts.reps, 5))
    res["gflop"] = 2 * 4096 ** 3 / 1e9
    res["seconds"] = statistics.median(2 * 4096 ** 3 / 1e9 / x for x in g)
    res["times"] = [2 * 4096 ** 3 / 1e9 / x for x in g]


def case_bf16diff(name, opts, res, clog):
    """max / mean |image difference| of the bf16 generator against float32 (same weights, noise,
    z), images in [-1, 1]; and of the D logits."""
    import jax
    import numpy as np

    from pegan.models.stylegan2 import build_discriminator, build_generator, image_size

    _, model, scale, batch = name.split(":")
    scale, batch = int(scale), int(batch)
    o32 = argparse.Namespace(**{**vars(opts), "dtype": "float32"})
    cfg, G32, D32 = stylegan_models(model, o32)
    G16 = build_generator(cfg, dtype="bfloat16")
    D16 = build_discriminator(cfg, dtype="bfloat16")
    v = init_g(G32)
    pd = init_d(D32)
    z = jax.random.normal(jax.random.PRNGKey(1), (batch, G32.style_channels))
    noise = G32.bind(v).resolve_noise(None, batch, scale, jax.random.PRNGKey(2))
    outs = {}
    for tag, G, D in (("f32", G32, D32), ("bf16", G16, D16)):
        f = jax.jit(lambda v, z, n, p: (lambda img: (img, D.apply(p, img)))(G.apply(v, z, scale, noise=n)))
        t = time.perf_counter()
        block(f(v, z, noise, pd))
        res[f"compile_s_{tag}"] = time.perf_counter() - t
        ts = time_calls(lambda: f(v, z, noise, pd), 0, opts.reps)
        res[f"seconds_{tag}"] = statistics.median(ts)
        outs[tag] = [np.asarray(x, np.float32) for x in f(v, z, noise, pd)]
    di = np.abs(outs["bf16"][0] - outs["f32"][0])
    dl = np.abs(outs["bf16"][1] - outs["f32"][1])
    res["image_max_abs_diff"] = float(di.max())
    res["image_mean_abs_diff"] = float(di.mean())
    res["image_std_f32"] = float(outs["f32"][0].std())
    res["logit_max_abs_diff"] = float(dl.max())
    res["seconds"] = res["seconds_bf16"]
    res["size"] = list(image_size(G32.out_size, scale))


CASES = {"gfwd": case_gfwd, "dfwd": case_dfwd, "dstep": case_dstep, "gstep": case_gstep, "iter": case_iter,
         "singan_iter": case_singan_iter, "singan_sample": case_singan_sample, "matmul": case_matmul,
         "bf16diff": case_bf16diff, "loop": case_loop}


def run_case(name, opts):
    """Run one case in this process; returns its result dict."""
    import jax

    from pegan import compute

    clog = CompileLog()
    forms = compute.resolve({"conv_impl": opts.conv or "auto", "upfirdn_impl": opts.upfirdn or "auto",
                             "modconv_impl": opts.impl or "auto", "resize_impl": opts.resize or "auto"})
    res = {"case": name, "impl": forms["modconv_impl"], "dtype": opts.dtype, "upfirdn": forms["upfirdn_impl"],
           "conv": forms["conv_impl"], "resize": forms["resize_impl"],
           "device": str(jax.devices()[0].device_kind), "platform": jax.devices()[0].platform,
           "num_devices": jax.device_count(), "set": opts.set or []}
    mm = [] if name == "matmul" else matmul_gflops(opts.mm_reps)
    t0 = time.perf_counter()
    CASES[name.split(":")[0]](name, opts, res, clog)
    res["wall_s"] = time.perf_counter() - t0
    if name != "matmul":
        mm += matmul_gflops(opts.mm_reps)
        res["matmul_gflops_samples"] = mm
        res["matmul_gflops"] = statistics.median(mm)
    else:
        res["matmul_gflops"] = res["gflop"] / res["seconds"]
    if res.get("seconds") and res.get("gflop"):
        res["gflops"] = res["gflop"] / res["seconds"]
    res["peak_host_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    res["peak_device_gb"] = (device_peak_bytes() or 0) / 1e9 or None
    return res


# ---------------------------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------------------------

def _fmt(x, nd=2):
    if x is None:
        return ""
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return str(x)


def verdict(res, variant="full"):
    name = res["case"]
    if name.startswith("iter:"):                     # iter:0-2-4:3 -> the reference's iter:0:3
        _, scales, batch = name.split(":")
        name = f"iter:{scales.split('-')[0]}:{batch}"
    ref = REFERENCE.get(name)
    if not ref or "seconds" not in res or variant != "full" or res.get("dtype", "float32") != "float32":
        return {}
    norm = res["seconds"] * res["matmul_gflops"] / REF_MATMUL_GFLOPS
    out = {"normalised_s": norm, "ref_s": ref["seconds"], "ref_gflops": ref.get("gflops"),
           "target_s": ref.get("target"), "speedup_vs_ref": ref["seconds"] / norm}
    if ref.get("target") is not None:
        out["meets_target"] = norm <= ref["target"] * (1 + 1e-9)
    if ref.get("mem_gb") is not None:
        out["ref_mem_gb"] = ref["mem_gb"]
        out["meets_memory"] = res["peak_host_gb"] <= ref["mem_gb"]
    if ref.get("compile_target") is not None and "compile_s_max" in res:
        out["meets_compile"] = res["compile_s_max"] <= ref["compile_target"]
    if ref.get("gflops"):
        out["ref_gflop"] = ref["seconds"] * ref["gflops"]
    return out


def table(results):
    head = ("| case | size | s (median) | matmul GF/s now | normalised s | ref s | target s | verdict | "
            "GFLOP | GFLOP/s | % of matmul | ref GFLOP/s (% of 141) | compile s | recompiles | peak host GB |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['case']} | error: {r['error'][:120]} |" + " |" * 13)
            continue
        v = r.get("verdict", {})
        ok = ""
        if "meets_target" in v:
            ok = ("meets" if v["meets_target"] else "MISSES") + f" ({v['speedup_vs_ref']:.2f}x ref)"
        if v.get("meets_memory") is False:
            ok += ", memory over ref"
        if v.get("meets_compile") is False:
            ok += ", compile over 60 s"
        size = "x".join(str(x) for x in r.get("size", [])) or ""
        pct = 100 * r["gflops"] / r["matmul_gflops"] if r.get("gflops") and r.get("matmul_gflops") else None
        refg = v.get("ref_gflops")
        refc = f"{refg:.0f} ({100 * refg / REF_MATMUL_GFLOPS:.0f}%)" if refg else ""
        lines.append("| " + " | ".join([
            r["case"], size, _fmt(r.get("seconds"), 3), _fmt(r.get("matmul_gflops"), 1), _fmt(v.get("normalised_s"), 3),
            _fmt(v.get("ref_s")), _fmt(v.get("target_s")), ok, _fmt(r.get("gflop"), 1), _fmt(r.get("gflops"), 1),
            _fmt(pct, 0), refc, _fmt(r.get("compile_s"), 1), _fmt(r.get("compilations_after_warmup")),
            _fmt(r.get("peak_host_gb"), 2)]) + " |")
    extra = []
    for r in results:
        if r.get("per_scale"):
            extra.append(f"\n{r['case']}: per scale (compilations after warm-up: {r.get('compilations_after_warmup')})")
            extra.append("| scale | size | images per pass (passes) | compile s | none s | PL s | R1+PL s | "
                         "amortised s/iter | s/kimg | GFLOP/iter |")
            extra.append("|---|---|---|---|---|---|---|---|---|---|")
            for s, p in r["per_scale"].items():
                accum = f"{p['batch_gpu']} ({p['passes']})" if "passes" in p else ""
                cells = ([p["error"]] + [""] * 5 if "error" in p else
                         [_fmt(p.get("seconds_none")), _fmt(p.get("seconds_pl")), _fmt(p.get("seconds_r1+pl")),
                          _fmt(p.get("seconds")), _fmt(p.get("sec_per_kimg"), 0), _fmt(p.get("gflop"), 0)])
                extra.append("| " + " | ".join([s, "x".join(map(str, p["size"])), accum,
                                                _fmt(p["compile_s"], 1)] + cells) + " |")
        if r.get("profile_top"):
            extra.append(f"\n{r['case']}: profile of one call ({r['profile_total_op_s']:.1f} s in ops), longest ops:")
            extra += [f"    {sec:8.3f} s  {name}" for name, sec in r["profile_top"][:15]]
            if r.get("profile_by_kind"):
                extra.append("  by kind: " + ", ".join(f"{k} {v:.2f} s" for k, v in r["profile_by_kind"].items()))
        if r["case"].startswith("loop") and "host_blocked_fraction" in r:
            extra.append(f"\n{r['case']}: the training loop, batch {r['batch']}: {r['loop_seconds_per_step'] * 1e3:.1f} ms "
                         f"per step ({r['sec_per_kimg']:.1f} s/kimg), the same programs back to back "
                         f"{r['device_seconds_per_step'] * 1e3:.1f} ms: host-blocked fraction "
                         f"{100 * r['host_blocked_fraction']:.1f}% ({r['compilations']} programs)")
        if r["case"].startswith("bf16diff") and "image_max_abs_diff" in r:
            extra.append(f"\n{r['case']}: bf16 vs float32 images in [-1, 1]: max |diff| {r['image_max_abs_diff']:.4f}, "
                         f"mean |diff| {r['image_mean_abs_diff']:.5f} (image std {r['image_std_f32']:.3f}); "
                         f"D logits max |diff| {r['logit_max_abs_diff']:.4f}; G+D forward "
                         f"{r['seconds_f32']:.2f} s f32 vs {r['seconds_bf16']:.2f} s bf16")
    return "\n".join(lines + extra)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mode", choices=("quick", "full", "scaling"), default="quick",
                    help="scaling: G images/s against batch and output size, the iteration against scale "
                    "(tables and --plot)")
    ap.add_argument("--cases", default=None, help="comma-separated case names (default: those of the mode)")
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--reps", type=int, default=None, help="timed repetitions (quick 2-3, full 5 / 3 for steps)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed calls, the compiling one included")
    ap.add_argument("--mm-reps", type=int, default=None, help="matmul timings before and after each case")
    ap.add_argument("--impl", choices=("scale", "grouped", "vmap"), default=None, help="modulated conv form")
    ap.add_argument("--upfirdn", choices=("slices", "conv", "ref"), default=None, help="upfirdn2d form")
    ap.add_argument("--conv", choices=("auto", "xla", "taps"), default=None, help="convolution form (pegan.ops.conv)")
    ap.add_argument("--resize", choices=("dense", "gather"), default=None, help="resize form (pegan.ops.resize)")
    ap.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                    help="compute dtype of the StyleGAN2 cases (params and losses stay float32)")
    ap.add_argument("--variant", choices=("full", "tiny"), default="full",
                    help="model size: 'tiny' (the fixtures' widths) only checks that the cases run")
    ap.add_argument("--all-kinds", action="store_true", help="iter: time every kind at every scale (always in scaling mode)")
    ap.add_argument("--loop-batch", type=int, default=None, help="loop: images per step (default: the config's)")
    ap.add_argument("--inline", action="store_true", help="run cases in this process (peak memory is then cumulative)")
    ap.add_argument("--profile", default=None, help="write a jax.profiler trace of one more call per case "
                    "under this folder and print the ops that took longest")
    ap.add_argument("--mem-cap-gb", type=float, default=None, help="gfwd, dstep, gstep, iter: skip (and say so) a case (an iter scale) whose compiled "
                    "program needs more memory than this (default: no cap; scaling mode: 16)")
    ap.add_argument("--plot", default=None, help="scaling mode: write the picture here (default scaling.png)")
    ap.add_argument("--set", action="append", metavar="KEY=VALUE", default=None,
                    help="StyleGAN2 cases: a field of the experiment's config, as pegan train --set "
                    "(e.g. train.batch_gpu=1)")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--run-case", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--result-file", default=None, help=argparse.SUPPRESS)
    opts = ap.parse_args(argv)

    if opts.list:
        print("\n".join(["matmul"] + full_cases()))
        return 0
    if opts.set and not opts.run_case:           # a bad --set: one line now, not one per case
        from pegan.configs import load_experiment
        from pegan.errors import InputError

        try:
            _set_compute(load_experiment(MODELS["f"], opts.variant), opts)
        except InputError as e:
            print(f"bench: error: {e}", file=sys.stderr)
            return 2
    if opts.run_case:
        opts.reps = opts.reps or 3
        opts.mm_reps = opts.mm_reps or 3
        try:
            res = run_case(opts.run_case, opts)
        except Exception as e:  # report, don't hide
            import traceback

            traceback.print_exc()
            res = {"case": opts.run_case, "error": f"{type(e).__name__}: {e}"}
        Path(opts.result_file).write_text(json.dumps(res))
        return 0

    if opts.mode == "scaling":
        if opts.mem_cap_gb is None:
            opts.mem_cap_gb = 16.0
        opts.all_kinds = True                    # the iteration amortised (R1 / PL) at every scale
    default = {"quick": QUICK, "full": full_cases(), "scaling": scaling.cases()}[opts.mode]
    cases = opts.cases.split(",") if opts.cases else (["matmul"] + default)
    t_all = time.perf_counter()
    results = []
    for name in cases:
        slow = name.split(":")[0] in ("dstep", "gstep", "iter", "singan_iter")
        reps = opts.reps or ((2 if slow else 3) if opts.mode == "quick" else (3 if slow else 5))
        mm_reps = opts.mm_reps or (2 if opts.mode == "quick" else 3)
        sub = argparse.Namespace(**{**vars(opts), "reps": reps, "mm_reps": mm_reps})
        t = time.perf_counter()
        if opts.inline:
            res = run_case(name, sub)
        else:
            with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
                path = f.name
            cmd = [sys.executable, str(ROOT / "scripts" / "bench.py"), "--run-case", name, "--result-file", path,
                   "--reps", str(reps), "--warmup", str(opts.warmup), "--mm-reps", str(mm_reps),
                   "--dtype", opts.dtype, "--variant", opts.variant] + (["--impl", opts.impl] if opts.impl else []) + \
                  (["--upfirdn", opts.upfirdn] if opts.upfirdn else []) + (["--conv", opts.conv] if opts.conv else []) + \
                  (["--resize", opts.resize] if opts.resize else []) + \
                  (["--all-kinds"] if opts.all_kinds else []) + (["--profile", opts.profile] if opts.profile else []) + \
                  (["--mem-cap-gb", str(opts.mem_cap_gb)] if opts.mem_cap_gb else []) + \
                  [a for kv in opts.set or [] for a in ("--set", kv)]
            env = dict(os.environ)
            if opts.profile:
                dump = os.path.join(opts.profile, "hlo_" + name.replace(":", "_"))
                env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + f" --xla_dump_to={dump}").strip()
            p = subprocess.run(cmd, cwd=str(ROOT), env=env)
            try:
                res = json.loads(Path(path).read_text())
            except Exception:
                res = {"case": name, "error": f"subprocess exited {p.returncode} without a result"}
            finally:
                os.unlink(path)
        res["case_wall_s"] = time.perf_counter() - t
        res["verdict"] = verdict(res, opts.variant) if "error" not in res else {}
        results.append(res)
        r = res
        print(f"[bench] {name}: " + (f"{r['seconds']:.3f} s, matmul {r['matmul_gflops']:.0f} GF/s, "
                                     f"{r.get('gflops', 0):.1f} GF/s, case {r['case_wall_s']:.0f} s"
                                     if "seconds" in r else r.get("error", "?")), file=sys.stderr, flush=True)
    total = time.perf_counter() - t_all
    conv = results[-1].get("conv", opts.conv) if results else opts.conv
    dev = results[-1].get("device", "") if results else ""
    print(f"\n## pegan benchmark ({opts.mode} mode on {dev}: modconv {opts.impl or 'scale'}, conv {conv}, "
          f"upfirdn {opts.upfirdn or 'slices'}, resize {opts.resize or 'dense'}, {opts.dtype}"
          + "".join(f", {kv}" for kv in opts.set or []) + f"; {total:.0f} s)\n")
    print(table(results))
    if opts.mode == "scaling":
        print("\n" + scaling.tables(results))
        print(f"\npicture: {scaling.plot(results, opts.plot or 'scaling.png')}")
    if opts.json:
        Path(opts.json).write_text(json.dumps({"mode": opts.mode, "total_s": total, "argv": sys.argv[1:],
                                               "reference_matmul_gflops": REF_MATMUL_GFLOPS,
                                               "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
