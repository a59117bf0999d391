"""The StyleGAN2 / MS-PIE training loop: scales, data, checkpoints, resume, samples.

* Scale of step k: a deterministic function of (seed, k), known before the batch is built and
  the same on every host. Default: uniform over ``cfg.scales`` (what the reference really does,
  REFERENCE §1.3); ``train.scale_sampling = 'configured'`` uses ``train.scale_probs``.
* Per-scale batch: ``train.batch_per_scale`` ({scale: batch}) overrides ``train.batch`` (the
  batch of one step on this machine). One compiled step per (scale, batch). ``check_config``
  refuses scales and batches the loop cannot run before anything is built.
* Gradient accumulation: ``train.batch_gpu`` (NVIDIA's ``--batch-gpu``) images per device per
  pass; a device's share of a step runs as share / batch_gpu passes whose gradients are
  averaged, each pass exactly what one more device would do (``pegan.train.stylegan2.train_step``).
* Data: ``pegan.data`` (``ImageFolder`` in memory, or a ``pegan prepare`` dataset, one batch
  plan); uint8 batches go to the devices, which normalise and resize them. The images of step k
  follow from (seed, k), so the data position is the step counter and a resumed run sees
  exactly what a straight run sees.
* The host never waits for the device without need: the step counter lives on the host, each
  step's metrics stay on the device until a log, checkpoint, sample or evaluation step fetches
  the steps since the last fetch (checked for non-finite losses there: a non-finite state is
  never saved), and with several processes the stop vote runs at those steps only. Each
  program is compiled ahead of time (``lower(...).compile()``), once, and its seconds recorded:
  one per (scale, batch) with the lazy terms behind ``lax.cond``, else the step's D and G halves
  as two programs, each fixed by its own lazy term (``Trainer.phases``: 4 per (scale, batch)). ``measure_host_blocked`` gives the loop's host-blocked fraction.
* Checkpoints: ``pegan.checkpoint`` layout, items generator_ema / generator / discriminator
  (what ``pegan sample`` reads) and train_state (everything for an exact resume). SIGTERM and
  Ctrl-C save and exit cleanly; a write that fails (a full disk) is one ``StorageError`` and
  the last complete checkpoint is kept.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import math
import os
import signal
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import flax
import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from pegan.errors import InputError, NonFiniteError, PeganError
from pegan import checkpoint as ckpt
from pegan.data import ImageFolder
from pegan.imageio import image_grid, labelled_row, save_png, stack_rows, to_uint8
from pegan import checks
from pegan import compute
from pegan.configs import changed_fields, changes_line, eval_scale
from pegan.models.stylegan2 import build_discriminator, build_generator, checked_scale, compute_mean_latent
from pegan.train import augment as ada
from pegan.train import finetune
from pegan.train import sharded
from pegan.train import stylegan2 as tr

__all__ = ["ImageFolder", "choose_scale", "batch_for_scale", "passes_for", "check_config", "Trainer", "measure_host_blocked"]


def choose_scale(seed: int, step: int, scales, probs=None) -> int:
    rng = np.random.default_rng([seed, 3, step])
    return int(scales[rng.choice(len(scales), p=probs)])


def batch_for_scale(tcfg, scale: int) -> int:
    per = tcfg.batch_per_scale
    if per:
        per = dict(per)
        if str(scale) in per:
            return int(per[str(scale)])
        if scale in per:
            return int(per[scale])
    return int(tcfg.batch)


def passes_for(tcfg, batch: int, devices: int) -> int:
    """Accumulation passes of a step of ``batch`` images on ``devices`` devices:
    ``train.batch_gpu`` images per device per pass (None, or at least the device's share: one)."""
    share, per_pass = batch // devices, tcfg.batch_gpu
    if not per_pass or per_pass >= share:
        return 1
    return share // int(per_pass)


_CHOICES = {"train.scale_sampling": ("uniform", "configured"), "train.regularisation": ("joint", "separate"),
            "train.statistics": ("per_device", "global"), "data.on_error": ("raise", "skip")}


def check_config(cfg, devices: int, statistics: Optional[str] = None) -> None:
    """Refuse, before anything is built, a config the loop cannot train on ``devices`` devices:
    the run length and intervals must be counts, the switches known values, every entry of
    ``scales`` (and ``eval.scale``) must make an image (``checked_scale``); ``train.batch`` and
    each ``train.batch_per_scale`` entry must be a positive multiple of ``devices`` whose share
    (per device with ``statistics`` 'per_device', else all of it) the discriminator's
    minibatch-stddev layer can group: at most ``discriminator.mbstd_group_size`` images or a
    multiple of it; with ``train.batch_gpu`` that share must split into passes of that many
    images per device, and the groups are formed within a pass."""
    t = cfg.train
    checks.at_least(t.total_iters, 1, "train.total_iters")
    checks.number_in(cfg.generator.lr_mlp, "generator.lr_mlp", 0, lo_open=True)   # (NaN gave a NaN loss)
    if t.get("init_from") is not None and not Path(str(t.init_from)).exists():     # before any model is built
        finetune.parent_models(t.init_from, cfg)
    if t.keep_checkpoints is not None:       # 0 would keep no step at all: the run lost
        checks.at_least(t.keep_checkpoints, 1, "train.keep_checkpoints (null keeps every step)")
    for name in ("r1_interval", "pl_interval", "pl_batch_shrink", "ada_interval"):
        checks.at_least(t[name], 1, f"train.{name}")
    checks.seed(t.seed, "train.seed")
    checks.at_least(cfg.discriminator.mbstd_group_size, 1, "discriminator.mbstd_group_size")
    for name in ("g_lr", "d_lr", "adam_eps"):
        checks.number_in(t[name], f"train.{name}", 0, lo_open=True)
    for name in ("r1_weight", "pl_weight"):
        checks.number_in(t[name], f"train.{name}", 0)
    for name in ("mix_prob", "ema_momentum", "pl_decay"):
        checks.number_in(t[name], f"train.{name}", 0, 1)
    for name in ("g_betas", "d_betas"):
        if not isinstance(t[name], (list, tuple)) or len(t[name]) != 2:
            raise InputError(f"train.{name} must be two numbers in [0, 1), got {t[name]!r}")
        for b in t[name]:
            checks.number_in(b, f"each of train.{name}", 0, 1, hi_open=True)
    checked_scale(cfg.generator.out_size, t.pl_scale, what=f"train.pl_scale {t.pl_scale}")
    for name in ("checkpoint_every", "sample_every", "log_every"):
        checks.at_least(t[name], 1 if name == "log_every" else 0, f"train.{name}")
    checks.at_least(cfg.eval.every, 0, "eval.every")
    checks.at_least(cfg.eval.batch, 1, "eval.batch")
    for key, allowed in _CHOICES.items():
        sec, field = key.split(".")
        if cfg[sec][field] not in allowed:
            raise InputError(f"{key} must be one of {', '.join(allowed)}, got {cfg[sec][field]!r}")
    ada.parse_augment(t.augment)
    checks.at_least(t.ada_interval, 1, "train.ada_interval")
    if not (float(t.ada_kimg) > 0 and -1.0 < float(t.ada_target) < 1.0):
        raise InputError(f"train.ada_kimg must be > 0 and train.ada_target in (-1, 1) (the range of r_t); got "
                         f"{t.ada_kimg} and {t.ada_target}")
    if checks.at_least(t.freeze_d, 0, "train.freeze_d"):
        tr.frozen_d_blocks(t, build_discriminator(cfg))
    finetune.check_reinit(t)
    if t.scale_sampling == "configured" and (t.scale_probs is None or len(t.scale_probs) != len(cfg.scales)):
        raise InputError(f"train.scale_sampling 'configured' needs train.scale_probs, one per entry of scales "
                         f"({len(cfg.scales)})")
    if t.scale_sampling == "configured":
        probs = [checks.number_in(v, "each of train.scale_probs", 0) for v in t.scale_probs]
        if abs(sum(probs) - 1.0) > 1e-6:
            raise InputError(f"train.scale_probs must sum to 1, got {list(t.scale_probs)} (sum {sum(probs):g})")
    if not cfg.scales:
        raise InputError("scales is empty: train on at least one chosen scale, e.g. [0]")
    for s in cfg.scales:
        checked_scale(cfg.generator.out_size, s, max_side=checks.MAX_STORED_SIDE, what=f"scales entry {s}")
    if cfg.eval.scale is not None:
        checked_scale(cfg.generator.out_size, cfg.eval.scale, max_side=checks.MAX_SIDE, what="eval.scale")
    per = t.batch_per_scale or {}
    if not hasattr(per, "items"):
        raise InputError(f"train.batch_per_scale maps scales to batches, e.g. {{\"4\": 16}}; got {per!r}")
    for s in per:
        if str(s) not in {str(x) for x in cfg.scales}:
            raise InputError(f"train.batch_per_scale has the key {str(s)[:20]!r}; its keys are entries of scales "
                             f"{list(cfg.scales)}")
    per_device = (statistics or t.statistics) == "per_device"
    group = int(cfg.discriminator.mbstd_group_size)
    if t.batch_gpu is not None:
        checks.at_least(t.batch_gpu, 1, "train.batch_gpu")
    for what, b in [("train.batch", t.batch)] + [(f"train.batch_per_scale[{s}]", b) for s, b in per.items()]:
        share = checks.batch_size(b, what, devices) // devices
        passes = passes_for(t, b, devices)
        if t.batch_gpu and int(t.batch_gpu) < share and share % int(t.batch_gpu):
            raise InputError(f"{what} is {b} images, {share} per device, which do not split into passes of "
                             f"train.batch_gpu = {t.batch_gpu}: use a divisor of {share}")
        n = share // passes * (1 if per_device else devices)
        if n > group and n % group:
            unit = "pass" if passes > 1 else ("device" if per_device else "step")
            raise InputError(f"{what} is {b} images, {n} per {unit} for the "
                             f"discriminator's minibatch-stddev groups of {group} "
                             "(discriminator.mbstd_group_size): use at most that or a multiple of it")


# what a resumed run may change: how long, how often it saves / logs / samples / evaluates,
# where its data is, the compute forms (the run's record is of its first start); not the model,
# the losses, the optimiser, the batches or the seed
RESUME_MAY_CHANGE = ("compute", "compute_resolved", "eval", "data.path", "data.on_error", "train.total_iters",
                     "train.checkpoint_every", "train.sample_every", "train.log_every", "train.keep_checkpoints",
                     "train.tensorboard", "train.batch_gpu", "train.init_from")


def resume_changes(held, cfg) -> List[tuple]:
    """(field, stored, now) of each setting a resumed run would change against the config
    stored with the run (``RESUME_MAY_CHANGE`` aside; ``configs.changed_fields``)."""
    return changed_fields(held, cfg, RESUME_MAY_CHANGE)


def _due(step: int, every) -> bool:
    """A periodic action at ``step`` (``every`` 0 or None: never)."""
    return bool(every) and step % every == 0


def _shape_name(scale: int, batch: int, kind) -> str:
    """'scale_2_batch_4', plus the half of the step and its lazy term ('_d', '_d_r1', '_g',
    '_g_pl', ``Trainer.phases``) when they are fixed per program (or a whole step's terms:
    '_r1_pl', '_pl', '_plain')."""
    name = f"scale_{scale}_batch_{batch}"
    if isinstance(kind, str):           # one half of a step (Trainer.phases)
        return f"{name}_{kind}"
    if kind is not None:
        name += "".join(f"_{t}" for t, on in zip(("r1", "pl"), kind) if on) or "_plain"
    return name


# a step's halves (Trainer.phases): the program ('d' or 'g') and the lazy terms fixed in it (the
# other half's term is unused there)
_PHASES = {"d": ("d", (False, False)), "d_r1": ("d", (True, False)),
           "g": ("g", (False, False)), "g_pl": ("g", (False, True))}


class TwoPhases:
    """A step as its two compiled halves (``Trainer.phases``): ``(state, real) -> (state,
    metrics)``, the D program then the G program on the state and sign it returns."""

    def __init__(self, d, g):
        self.parts = (d, g)

    def __call__(self, state, real):
        state, dm, sign = self.parts[0](state, real)
        state, gm = self.parts[1](state, sign)
        return state, dict(dm, **gm)


class Trainer:
    """The MS-PIE / StyleGAN2 training loop over a device mesh (default: every device of every
    process). ``train.batch`` (or ``train.batch_per_scale``) is the global batch of a step,
    split evenly over the devices; ``train.statistics`` ('per_device', the reference, or
    'global') picks the sharded step (``pegan.train.sharded``). A ``workdir`` that holds the run
    resumes from its latest step, or from ``step``: the later steps are then moved aside into
    ``workdir/superseded`` (``pegan.checkpoint.set_aside_later_steps``)."""

    def __init__(self, cfg, data: ImageFolder, workdir, seed: Optional[int] = None, log: Callable[[str], None] = print,
                 mesh=None, statistics: Optional[str] = None, writer=None, step: Optional[int] = None):
        if seed is not None:              # an explicit seed is the run's train.seed (and recorded so)
            cfg.train.seed = int(seed)
        self.cfg, self.data, self.workdir, self.log = cfg, data, Path(workdir), log
        self.seed = int(cfg.train.seed)
        self.mesh = mesh if mesh is not None else sharded.make_mesh()
        check_config(cfg, self.mesh.devices.size, statistics)
        source = cfg.data.get("path")
        if source and checks.within(self.workdir, source):
            raise InputError(f"the workdir {self.workdir} is inside the data {source}: its sample grids would be "
                             "read as training images when the run resumes; choose a workdir outside it")
        ckpt.check_run_dir(self.workdir, "workdir")
        resume = ckpt.is_checkpoint_dir(self.workdir) and bool(ckpt.steps(self.workdir))
        held = ckpt.read_config(self.workdir) if resume else cfg
        if held.name != cfg.name:
            raise ckpt.CheckpointError(f"{self.workdir} holds a run of {held.name}, not {cfg.name}; use another directory")
        if resume and held.get("variant") != cfg.get("variant"):
            raise InputError(f"{self.workdir} holds a {held.get('variant')} run of {cfg.name}, this config is "
                             f"{cfg.get('variant')}: pass the same variant (:{held.get('variant')}), or use a new "
                             "--workdir")
        if resume:
            changed = resume_changes(held, cfg)
            if changed:
                raise InputError(f"{self.workdir} was trained with other settings ({changes_line(changed)}); a resumed run keeps "
                                 "its config (its config.json records it): pass the same values, or use a new "
                                 "--workdir (only the run length, intervals, logging, evaluation, data path and "
                                 "compute may change)")
        if step is not None:
            ckpt.check_step(self.workdir, step)          # before the state is built: fail fast
        self.compute = compute.resolve(cfg)          # 'auto' resolved once, for this backend
        forms, dtype = compute.forms_of(self.compute), compute.module_dtype(self.compute)
        self.G = build_generator(cfg, forms, dtype=dtype)
        self.D = build_discriminator(cfg, forms, dtype=dtype)
        self.tcfg = cfg.train
        self.statistics = statistics or self.tcfg.statistics
        self.writer = writer
        self.offset = 0
        self.compile_seconds: Dict[tuple, float] = {}      # by program: its own trace + compile seconds
        self.compile_wall_seconds: Dict[tuple, float] = {}  # by (scale, batch): the wall time of its compiles
        self._fns: Dict[tuple, Callable] = {}           # jitted steps, by (scale, batch, kind)
        self._programs: Dict[tuple, Callable] = {}      # their compiled programs (ahead of time)
        self._sample_fns: Dict[int, Callable] = {}
        self._mean_latent_fn = None
        self._real_sharding = NamedSharding(self.mesh, P("data"))
        self._static_lazy = tr.static_lazy_terms(self.compute)
        n = self.mesh.devices.size
        # path-length running means per device: one per accumulation pass (the most any scale takes)
        self.slots = max(passes_for(self.tcfg, batch_for_scale(self.tcfg, s), n) for s in cfg.scales)
        self.state = sharded.init_state(self.G, self.D, self.tcfg, self.seed, self.mesh, self.statistics, self.slots)
        self.step = 0                     # the host's step counter (the state's, never read back per step)
        self._stop = False
        self._ckpt: Optional[ckpt.CheckpointWriter] = None
        if step is not None or resume:
            self._restore(step)
        elif self.tcfg.init_from:         # fine-tuning: the parent's models, everything else fresh
            host = finetune.start_from(self.host_state(), cfg, log=self.log)
            self.state = sharded.put_state(host, self.mesh, self.statistics, self.slots)

    # -- steps ---------------------------------------------------------------------------
    def step_kind(self, step: int):
        """The lazy terms due at ``step`` when they are fixed per program (``tr.static_lazy_terms``),
        else None (one program decides them with ``lax.cond``)."""
        return tr.lazy_kind(self.tcfg, step) if self._static_lazy else None

    def phases(self, kind):
        """The programs of a step of ``kind`` (``step_kind``): with the lazy terms fixed per
        program, its two halves, each fixed by its own term (('d' or 'd_r1'), ('g' or 'g_pl'):
        a (scale, batch) has 4 programs on CPU, not one per combination); else the one 'step'
        program (None)."""
        if kind is None:
            return (None,)
        r1, pl = kind
        return ("d_r1" if r1 else "d", "g_pl" if pl else "g")

    def _step_fn(self, scale: int, batch: int, kind=None):
        key = (scale, batch, kind)
        if key not in self._fns:
            n = self.mesh.devices.size        # check_config made the batch a multiple of it
            phase, lazy = _PHASES.get(kind, ("step", None))
            self._fns[key] = sharded.make_sharded_step(self.mesh, self.G, self.D, self.tcfg, scale, batch // n,
                                                       self.statistics, state=self.state, lazy=lazy,
                                                       passes=passes_for(self.tcfg, batch, n), phase=phase)
        return self._fns[key]

    def compilations(self) -> int:
        """Programs compiled so far: one per (scale, batch, phase) met (``phases``; a compiled
        program cannot recompile: a call that does not fit it is an error)."""
        return len(self._programs)

    def _run_phases(self):
        """Every half (``phases``) a run's steps use: the kinds of one R1 and path-length cycle."""
        t = self.tcfg
        cycle = math.lcm(max(1, int(t.r1_interval)), max(1, int(t.pl_interval)))
        names = {p for s in range(cycle) for p in self.phases(self.step_kind(s))}
        return sorted(names, key=lambda p: (p[0] != "d", p))

    def _compile(self, scale: int, batch: int, names, real):
        """Compile the programs ``names`` of (scale, batch) ahead of time: traced one after the
        other, then compiled by XLA side by side (one thread each, up to the CPU count: the
        halves of a step are independent programs). Each program's own seconds (trace and
        compile) go to ``compile_seconds``, the wall time of the lot to ``compile_wall_seconds``."""
        t0 = time.time()
        sign = jax.ShapeDtypeStruct((), np.float32, sharding=NamedSharding(self.mesh, P()))
        opts = compute.compiler_options(self.compute)
        lowered = {}
        for name in names:
            t1 = time.time()
            arg = sign if _PHASES.get(name, ("step",))[0] == "g" else real
            lowered[name] = (self._step_fn(scale, batch, name).lower(self.state, arg), time.time() - t1)

        def one(name):
            low, secs = lowered[name]
            t1 = time.time()
            return name, low.compile(compiler_options=opts), secs + time.time() - t1

        workers = max(1, min(len(names), os.cpu_count() or 1))
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            done = list(pool.map(one, names))
        for name, compiled, secs in done:
            key = (scale, batch, name)
            self._programs[key] = compiled
            self.compile_seconds[key] = secs
            self._write_scalars(self.step, {f"compile_seconds/{_shape_name(scale, batch, name)}": secs})
        self.compile_wall_seconds[(scale, batch)] = self.compile_wall_seconds.get((scale, batch), 0.0) + time.time() - t0

    def program(self, scale: int, batch: int, kind, real):
        """The compiled step for (scale, batch, kind) (``step_kind``): ``fn(state, real) ->
        (state, metrics)``. Its programs are compiled ahead of time when (scale, batch) is first
        met, with the state and ``real`` as the argument shapes: the one program with the lazy
        terms behind ``lax.cond``, else every half the run will use (``phases``), at once."""
        names = self.phases(kind)
        if any((scale, batch, name) not in self._programs for name in names):
            todo = names if names == (None,) else self._run_phases()
            self._compile(scale, batch, [n for n in todo if (scale, batch, n) not in self._programs], real)
        parts = [self._programs[(scale, batch, name)] for name in names]
        return parts[0] if names == (None,) else TwoPhases(*parts)

    def schedule_batch(self, scale: int) -> int:
        return batch_for_scale(self.tcfg, scale)

    def schedule(self, step: int):
        t = self.tcfg
        probs = None
        if t.scale_sampling == "configured":
            probs = list(t.scale_probs)
        scale = choose_scale(self.seed, step, list(self.cfg.scales), probs)
        return scale, batch_for_scale(t, scale)

    def global_batch(self, step: int, batch: int):
        """The real images of ``step`` as one array sharded over the mesh (each host reads its rows)."""
        local = self.data.batch(self.seed, step, batch, self.offset)
        shape = (batch,) + tuple(local.shape[1:])
        return jax.make_array_from_process_local_data(self._real_sharding, local, shape)

    def _any_stop(self) -> bool:
        """A signal seen by any process stops every process at the same step (called at the same
        steps on every host)."""
        if jax.process_count() == 1:
            return self._stop
        from jax.experimental import multihost_utils

        return bool(np.max(multihost_utils.process_allgather(np.int32(self._stop))))

    def _fetch(self, window) -> List[dict]:
        """The metrics of the steps in ``window`` [(step, scale, batch, device metrics)] as host
        rows; a non-finite loss stops the run here (before anything is saved)."""
        host = jax.device_get([m for _, _, _, m in window])
        rows = []
        for (step, scale, batch, _), m in zip(window, host):
            row = {k: float(np.mean(v)) for k, v in m.items()}
            if not np.isfinite(row["d_loss"]) or not np.isfinite(row["g_loss"]):
                last = ckpt.steps(self.workdir) if ckpt.is_checkpoint_dir(self.workdir) else []
                kept = (f"the last checkpoint (step {last[-1]}) in {self.workdir} is kept" if last else
                        "no checkpoint was saved yet: lower the learning rates or check the data and config")
                raise NonFiniteError(f"non-finite loss at step {step} (D {row['d_loss']}, G {row['g_loss']}); {kept}")
            row.update(step=step, scale=scale, batch=batch)
            rows.append(row)
        return rows

    def run(self, num_steps: Optional[int] = None, checkpoint_every: Optional[int] = None,
            sample_every: Optional[int] = None, progress=None, evaluator=None, eval_every: Optional[int] = None,
            log_every: Optional[int] = None, final_save: bool = True) -> List[dict]:
        """Train until the step counter reaches ``num_steps`` (default ``train.total_iters``). A
        checkpoint every ``checkpoint_every`` steps, sample grids every ``sample_every``, the
        ``evaluator`` every ``eval_every`` (defaults: the config's ``train.checkpoint_every``,
        ``train.sample_every``, ``eval.every``; 0: only at the end, or never for evaluation).
        Metrics are fetched from the device at those steps and every ``log_every`` (default
        ``train.log_every``); with a ``writer`` (clu MetricWriter interface) their means are
        written then, with kimg, sec/kimg and the compile seconds of new programs.
        ``progress(m)`` is called after every step with its step, scale and batch, and with the
        losses too at the steps that fetched them. The step reached is saved at the end (unless
        ``final_save`` is False: a benchmark's run). Returns every step's metrics."""
        history: List[dict] = []
        t = self.tcfg
        num_steps = int(t.total_iters if num_steps is None else num_steps)
        checkpoint_every = t.checkpoint_every if checkpoint_every is None else checkpoint_every
        sample_every = t.sample_every if sample_every is None else sample_every
        if evaluator is not None and eval_every is None:
            eval_every = self.cfg.eval.every
        log_every = log_every or int(t.log_every)
        window: list = []
        logged: List[dict] = []
        t_window, kimg_window = time.time(), 0.0
        with self._running():
            while self.step < num_steps:
                step = self.step
                vote = jax.process_count() == 1 or _due(step, log_every) or _due(step, checkpoint_every)
                if vote and self._any_stop():     # the same steps on every host
                    break
                scale, batch = self.schedule(step)
                real = self.global_batch(step, batch)
                self._hint_next(step, batch, num_steps)
                kind = self.step_kind(step)
                before = len(self._programs)
                fn = self.program(scale, batch, kind, real)
                if len(self._programs) != before:
                    t_window, kimg_window = time.time(), 0.0       # sec/kimg without the compilation
                self.state, metrics = fn(self.state, real)
                self.offset += batch
                self.step = done = step + 1
                window.append((step, scale, batch, metrics))
                kimg_window += batch / 1000
                save, samples = _due(done, checkpoint_every), _due(done, sample_every)
                ev = evaluator is not None and _due(done, eval_every)
                log = _due(done, log_every) or done == num_steps
                if log or save or samples or ev:
                    rows = self._fetch(window)
                    window = []
                    history += rows
                    logged += rows
                    if progress is not None:
                        progress(dict(rows[-1]))
                elif progress is not None:
                    progress({"step": step, "scale": scale, "batch": batch})
                if log and self.writer is not None:
                    self._log_window(done, logged, time.time() - t_window, kimg_window)
                    logged, t_window, kimg_window = [], time.time(), 0.0
                elif log:
                    logged = []
                if save:
                    self.save()
                if samples:
                    self.write_samples()
                if ev:
                    self.evaluate(evaluator)
            history += self._fetch(window)        # a stop between fetches: check before saving
            if self._stop:
                self.log(f"stopping at step {self.step}: saving")
            if final_save or self._stop:
                self.save()
            self.close()
        return history

    @contextlib.contextmanager
    def _running(self):
        """Around the loop: SIGTERM and Ctrl-C ask it to stop (it saves the step reached), a write
        that fails (a full disk) becomes one ``StorageError``, and after any failure the checkpoint
        in flight is finished and the writer released."""
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            with checks.storage_errors(f"into the run directory {self.workdir}", lambda: ckpt.kept_note(self.workdir)):
                yield
        except BaseException:
            self._abandon_writes()
            raise
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    def _write_scalars(self, step: int, values: dict):
        if self.writer is not None:
            self.writer.write_scalars(step, values)

    def _log_window(self, step: int, window: List[dict], seconds: float, kimg: float):
        keys = ("d_loss", "g_loss", "loss_disc_fake", "loss_disc_real", "r1_penalty", "loss_disc_fake_g",
                "pl_penalty", "pl_mean")
        vals = {f"loss/{k}": float(np.mean([w[k] for w in window])) for k in keys if k in window[0]}
        r1 = [w["r1_penalty"] for w in window if w["step"] % self.tcfg.r1_interval == 0]
        pl = [w["pl_penalty"] for w in window if w["step"] % self.tcfg.pl_interval == 0]
        if r1:
            vals["loss/r1_penalty"] = float(np.mean(r1))        # mean over the steps that ran it
        if pl:
            vals["loss/pl_penalty"] = float(np.mean(pl))
        if "ada_p" in window[-1]:              # ADA: p and r_t at the end of the window
            vals["augment/p"] = window[-1]["ada_p"]
            vals["augment/rt"] = window[-1]["ada_rt"]
        vals["progress/kimg"] = self.offset / 1000
        if kimg > 0:
            vals["speed/sec_per_kimg"] = seconds / kimg
        self.writer.write_scalars(step, vals)
        self.writer.flush()

    def _hint_next(self, step: int, batch: int, num_steps: int, ahead: int = 2):
        """Name the next steps' batches to a loader that prefetches (``pegan.data.PreparedImages``)."""
        hint = getattr(self.data, "prefetch", None)
        if hint is None:
            return
        off = self.offset + batch
        for k in range(step + 1, min(step + 1 + ahead, num_steps)):
            nb = self.schedule(k)[1]
            hint(self.seed, k, nb, off)
            off += nb

    def _on_signal(self, signum, frame):
        self._stop = True

    # -- checkpoints ---------------------------------------------------------------------
    def _generator_item(self, params, buffers):
        buffers = dict(buffers)
        v = {"params": params, "buffers": buffers}
        if self._mean_latent_fn is None:      # traced once per run, not per save
            self._mean_latent_fn = jax.jit(lambda v: compute_mean_latent(self.G, v, jax.random.PRNGKey(0), 4096))
        buffers["mean_latent"] = np.asarray(self._mean_latent_fn(v))
        return {"params": params, "buffers": buffers}

    def host_state(self):
        """The train state as NumPy arrays (every process must call it: it may gather)."""
        return sharded.to_host(self.state)

    def save(self):
        """Save the current step (asynchronously; ``close`` or the next save waits for it)."""
        step = self.step
        if step in ckpt.steps(self.workdir):
            return
        host = self.host_state()
        if self._ckpt is None:
            info = {"family": "stylegan2", "experiment": self.cfg.name, "variant": self.cfg.variant,
                    "color_order": "RGB", "source": {"trained_by": "pegan", "seed": self.seed}}
            # config.json: the config as requested, plus the compute section as resolved here
            stored = {**self.cfg.to_dict(), "compute_resolved": dict(self.compute)}
            self._ckpt = ckpt.CheckpointWriter(self.workdir, stored, info,
                                               max_to_keep=self.tcfg.keep_checkpoints)
        items = {"generator_ema": self._generator_item(host.ema_params, host.g_buffers),
                 "generator": self._generator_item(host.g_params, host.g_buffers),
                 "discriminator": {"params": host.d_params},
                 # the path-length means (one per device and accumulation pass) in an item of
                 # their own: their shape follows the device count, the rest of the state does not
                 "train_state": {"state": self._state_dict(host), "data_offset": np.asarray(self.offset)},
                 "train_pl_means": {"pl_mean": np.asarray(host.pl_mean).reshape(-1)}}
        if host.ada is not None:        # ADA's p, r_t and sums: an item of their own (absent without ADA)
            items["train_augment"] = {k: np.asarray(v) for k, v in host.ada.items()}
        self._ckpt.save(step, items)

    def close(self):
        """Wait for the checkpoint being written and release the writer."""
        if self._ckpt is not None:
            self._ckpt.close()
            self._ckpt = None
        if self.writer is not None:
            self.writer.flush()

    def _abandon_writes(self):
        """After a failure: let the checkpoint in flight finish and release the writer; a failure
        of that write too is dropped (the first error is the one reported)."""
        if self._ckpt is not None:
            try:
                self._ckpt.close()
            except PeganError:
                pass
            self._ckpt = None

    @staticmethod
    def _fixed_shape(host):
        return host.replace(pl_mean=np.asarray(np.mean(host.pl_mean), np.float32), ada=None)

    def _state_dict(self, host):
        """The train_state item: the state without the per-device means and the ADA state (items
        of their own), so that a run of any device count or augmentation reads it."""
        d = flax.serialization.to_state_dict(self._fixed_shape(host))
        d.pop("ada", None)
        return d

    def _restore(self, step: Optional[int] = None):
        step = ckpt.check_step(self.workdir, step)
        old = ckpt.read_config(self.workdir)
        if old.name != self.cfg.name:
            raise ckpt.CheckpointError(f"{self.workdir} holds a run of {old.name}, not {self.cfg.name}")
        changed = compute.changes_since(old, self.compute)
        if changed:
            self.log(compute.change_note(changed))
        fresh = self.host_state()
        host = self._fixed_shape(fresh)
        abstract = {"state": self._state_dict(fresh), "data_offset": np.asarray(0)}
        spec = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype), abstract)
        held = ckpt.items_at(self.workdir, step)
        per_device = "train_pl_means" in held
        augmented = "train_augment" in held and fresh.ada is not None
        items = ckpt.restore(self.workdir, ["train_state"] + ["train_pl_means"] * per_device
                             + ["train_augment"] * augmented, step, {"train_state": spec})
        got = items["train_state"]
        restored = flax.serialization.from_state_dict(host, {**got["state"], "ada": None})
        if fresh.ada is not None:
            if augmented:
                restored = restored.replace(ada={k: np.asarray(items["train_augment"][k], np.float32)
                                                 for k in fresh.ada})
            else:
                self.log(f"note: step {step} of {self.workdir} was trained without augmentation: ADA starts "
                         f"at p = {float(fresh.ada['p']):.3f}")
                restored = restored.replace(ada=fresh.ada)
        elif "train_augment" in held:
            self.log(f"note: step {step} of {self.workdir} was trained with augmentation (train.augment); this run "
                     "has none")
        pl = np.asarray(items["train_pl_means"]["pl_mean"] if per_device else restored.pl_mean).reshape(-1)
        want = int(np.prod(sharded.pl_shape(self.mesh, self.statistics, self.slots)))
        if pl.size != want:
            self.log(f"note: the run was saved with {pl.size} path-length means and resumes with {want} (devices "
                     f"x accumulation passes): they restart from their average {float(pl.mean()):.4f}")
        self.state = sharded.put_state(restored.replace(pl_mean=pl), self.mesh, self.statistics, self.slots)
        self.offset = int(got["data_offset"])
        self.step = int(restored.step)
        ckpt.set_aside_later_steps(self.workdir, step, self.log)
        self.log(f"resumed {self.workdir} at step {self.step}")

    def evaluate(self, evaluator, scales=None) -> dict:
        """Metrics of the EMA generator (``pegan.eval.evaluate.Evaluator``) at ``scales`` (default:
        the experiment's ``eval.scale``, else its largest scale, where the paper reports), appended to
        ``workdir/metrics.jsonl`` and logged."""
        import json

        v = sharded.to_host({"params": self.state.ema_params, "buffers": self.state.g_buffers})
        step = self.step
        out = {"step": step, "kimg": round(self.offset / 1000, 3)}
        for s in scales or [eval_scale(self.cfg)]:
            res = evaluator(self.G, v, s)
            out[f"scale_{s}"] = {k: r for k, r in res.items() if not k.startswith("_")}
            for name, r in out[f"scale_{s}"].items():
                vals = ", ".join(f"{k} {r[k]:.4f}" for k in ("fid", "precision", "recall", "kid") if k in r)
                self.log(f"step {step} scale {s}: {name} {vals}")
        if jax.process_index() == 0:
            self.workdir.mkdir(parents=True, exist_ok=True)
            with open(self.workdir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(out) + "\n")
        return out

    def write_samples(self, num: int = 4, path=None):
        """A grid of EMA samples at every scale (fixed latents and noise) as
        ``workdir/samples_<step>.png`` (process 0), also written to the metric writer."""

        v = sharded.to_host({"params": self.state.ema_params, "buffers": self.state.g_buffers})
        z = jax.random.normal(jax.random.PRNGKey(1234), (num, self.G.style_channels))
        rows, grids = [], {}
        for s in self.cfg.scales:
            if s not in self._sample_fns:     # compiled once per scale, not per save
                self._sample_fns[s] = jax.jit(lambda v, z, s=s: self.G.apply(v, z, s, rng=jax.random.PRNGKey(5678)))
            img = self._sample_fns[s](v, z)
            h, w = img.shape[1:3]
            grid = image_grid(to_uint8(np.asarray(img)), ncol=num)
            grids[f"samples/scale_{s}_{h}x{w}"] = grid
            rows.append(labelled_row([grid], [f"EMA generator, chosen scale {s}: {h}x{w}"]))
        step = self.step
        if self.writer is not None:
            self.writer.write_images(step, grids)
        path = path or self.workdir / f"samples_{step:07d}.png"
        if jax.process_index() != 0:
            return Path(path)
        return save_png(path, stack_rows(rows))


def measure_host_blocked(trainer: Trainer, steps: int = 100, warmup: int = 5) -> dict:
    """The loop's host-blocked fraction: 1 - (device step time / loop wall time per step), over
    ``steps`` steps of ``trainer.run`` after ``warmup`` steps (compilation, first fetches). The
    device step time is that of the same compiled programs dispatched back to back on one batch
    (nothing on the host in between). Trains the trainer ``warmup + steps`` steps further (with
    no checkpoints, samples or logs in between), then replays the programs on a copy of the state."""
    start = trainer.step
    quiet = dict(checkpoint_every=0, sample_every=0, log_every=10**9, final_save=False)
    trainer.run(start + warmup, **quiet)
    t0 = time.time()
    trainer.run(start + warmup + steps, **quiet)
    jax.block_until_ready(trainer.state)
    loop = (time.time() - t0) / steps
    plan = [(trainer.schedule(k), trainer.step_kind(k)) for k in range(start, start + steps)]
    reals = {b: trainer.global_batch(0, b) for (_, b), _ in plan}
    state = sharded.put_state(sharded.to_host(trainer.state), trainer.mesh, trainer.statistics,
                              trainer.slots)      # fresh buffers
    t0 = time.time()
    for (scale, batch), kind in plan:
        state, _ = trainer.program(scale, batch, kind, reals[batch])(state, reals[batch])
    jax.block_until_ready(state)
    device = (time.time() - t0) / steps
    return {"loop_seconds_per_step": loop, "device_seconds_per_step": device,
            "host_blocked_fraction": max(0.0, 1.0 - device / loop)}
