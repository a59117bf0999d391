"""PE-SinGAN training on one image (REFERENCE §2.18, §3.4, pitfalls 20, 24, 25).

Stage by stage (0..num_scales): a fresh Adam (lr 5e-4, betas (0.5, 0.999)) over the current
generator and discriminator blocks only, the lr divided by 10 after ``lr_milestones``
iterations, and per iteration 3 discriminator steps (WGAN-GP with the per-pixel gradient norm,
weight 0.1) then 3 generator steps (adversarial + 10 x reconstruction MSE). All blocks run in
train mode, so BatchNorm normalises with batch statistics and updates the running statistics of
every block that runs, as the reference does. A new stage starts from a copy of the previous
block (weights and BN statistics) when the widths match. The noise amplitude of stage t + 1 is
0.1 x RMSE between the stage-t reconstruction (nearest-upsampled) and the real image at t + 1,
measured after the *first* iteration of stage t as mmgeneration does (``amplitude=
'first_iteration'``), or after its last one as mmagic does (``'last_iteration'``).

One ``jax.jit`` per stage and step kind: nothing recompiles within a stage. The run
checkpoints after every stage (``pegan.checkpoint`` layout, items generator, discriminator,
singan) and resumes from the last completed stage.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from pegan.errors import DataError, InputError, NonFiniteError
from pegan import checkpoint as ckpt
from pegan import checks, compute, ops
from pegan.configs import changed_fields, changes_line
from pegan.models import singan as sm

__all__ = ["pyramid_sizes", "create_real_pyramid", "d_loss", "g_loss", "SinGANTrainer",
           "noise_amplitude", "run", "fit_config_to_pyramid"]


# -- the image pyramid ------------------------------------------------------------------------

def _rescale_size(h: int, w: int, scale: float) -> Tuple[int, int]:
    """mmcv.imrescale with a float scale: (int(h * s + 0.5), int(w * s + 0.5))."""
    return int(h * scale + 0.5), int(w * scale + 0.5)


def pyramid_sizes(h: int, w: int, min_size: int, max_size: int, scale_factor: float = 0.75):
    """(num_scales, [(H_t, W_t)] for t = 0..num_scales) as ``create_real_pyramid`` makes them."""
    r = scale_factor
    n = math.ceil(math.log(min_size / min(h, w)) / math.log(r)) + 1
    q = math.ceil(math.log(min(max_size, max(h, w)) / max(h, w)) / math.log(r))
    stop = n - q
    if stop < 1:
        raise DataError(f"image {h}x{w} is too small for min_size {min_size}")
    hm, wm = _rescale_size(h, w, min(max_size / max(h, w), 1.0))
    factor = (min_size / min(hm, wm)) ** (1.0 / stop)
    return stop, [_rescale_size(h, w, factor ** (stop - i)) for i in range(stop + 1)]


def _bilinear_cv(img: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """OpenCV INTER_LINEAR (half-pixel centres, no antialiasing, clamped borders), float64."""
    oh, ow = size
    h, w = img.shape[:2]

    def taps(n_in, n_out):
        src = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
        src = np.maximum(src, 0.0)
        i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
        i1 = np.minimum(i0 + 1, n_in - 1)
        f = src - i0
        return i0, i1, f

    y0, y1, fy = taps(h, oh)
    x0, x1, fx = taps(w, ow)
    img = img.astype(np.float64)
    rows = img[y0] * (1 - fy)[:, None, None] + img[y1] * fy[:, None, None]
    return rows[:, x0] * (1 - fx)[None, :, None] + rows[:, x1] * fx[None, :, None]


def create_real_pyramid(image_uint8: np.ndarray, min_size: int, max_size: int, scale_factor: float = 0.75):
    """uint8 [H, W, 3] -> (num_scales, [float32 [1, H_t, W_t, 3] in [-1, 1]]). Every level is
    rescaled from the original image and rounded to uint8 first, as the reference does; the
    top level is the original (REFERENCE pitfall 25)."""
    h, w = image_uint8.shape[:2]
    stop, sizes = pyramid_sizes(h, w, min_size, max_size, scale_factor)
    reals = []
    for s in sizes:
        lvl = image_uint8 if s == (h, w) else np.clip(np.rint(_bilinear_cv(image_uint8, s)), 0, 255)
        reals.append(((np.asarray(lvl, np.float32) / 255.0 - 0.5) * 2.0)[None])
    return stop, reals


# -- losses (pure functions of full variable trees) -------------------------------------------

def _d_apply(D, dvars, x, t):
    out, new = D.apply(dvars, x, t, train=True, mutable=["batch_stats"])
    return out, {**dvars, **new}


def _g_apply(G, gvars, noises, nw, t):
    out, new = G.apply(gvars, noises, nw, t, train=True, mutable=["batch_stats"])
    return out, {**gvars, **new}


def d_loss(dparams, dvars, D, real, fake, t: int, alpha, gp_weight: float = 0.1):
    """WGAN-GP discriminator loss at stage ``t`` -> (loss, (terms, new batch_stats))."""
    dv = {**dvars, "params": dparams}
    pf, dv = _d_apply(D, dv, fake, t)
    pr, dv = _d_apply(D, dv, real, t)
    x_hat = alpha * real + (1.0 - alpha) * fake

    def d_sum(x):
        out, new = D.apply({**dv, "params": dparams}, x, t, train=True, mutable=["batch_stats"])
        return jnp.sum(out), new.get("batch_stats", {})

    grad, bs = jax.grad(d_sum, has_aux=True)(x_hat)
    norm = jnp.sqrt(jnp.sum(jnp.square(grad), axis=-1))
    gp = jnp.mean(jnp.square(norm - 1.0))
    loss = jnp.mean(pf) - jnp.mean(pr) + gp_weight * gp
    terms = {"loss_disc_fake": jnp.mean(pf), "loss_disc_real": -jnp.mean(pr), "gp_unweighted": gp,
             "loss_total": loss, "disc_pred_fake": pf, "disc_pred_real": pr}
    return loss, (terms, jax.lax.stop_gradient(bs))


def g_loss(gparams, gvars, G, dvars, D, real, rand_noises, fixed_noises, nw, t: int,
           rec_weight: float = 10.0):
    """Generator loss at stage ``t`` -> (loss, (terms, new G batch_stats, new D batch_stats))."""
    gv = {**gvars, "params": gparams}
    fake, gv = _g_apply(G, gv, rand_noises, nw, t)
    pf, dv = _d_apply(D, dvars, fake, t)
    recon, gv = _g_apply(G, gv, fixed_noises, nw, t)
    mse = jnp.mean(jnp.square(recon - real))
    loss = -jnp.mean(pf) + rec_weight * mse
    terms = {"loss_disc_fake_g": -jnp.mean(pf), "mse_unweighted": mse, "loss_total": loss,
             "fake_imgs": fake, "recon_imgs": recon, "disc_pred_fake_g": pf}
    return loss, (terms, gv["batch_stats"], dv["batch_stats"])


def noise_amplitude(recon, real_next, weight: float = 0.1, impl: str = "dense"):
    """0.1 x RMSE(nearest-resized recon, next real) (mmgen's SinGAN); ``impl``: the resize form
    (``compute.resize_impl``)."""
    up = ops.resize_nearest(recon, real_next.shape[1:3], impl=impl)
    return weight * jnp.sqrt(jnp.mean(jnp.square(up - real_next)))


# -- the trainer ------------------------------------------------------------------------------

def _block(tree, t):
    return tree[f"blocks_{t}"]


def _with_block(tree, t, sub):
    return {**tree, f"blocks_{t}": sub}


def _same_shapes(a, b) -> bool:
    sa = jax.tree.map(lambda x: tuple(x.shape), a)
    sb = jax.tree.map(lambda x: tuple(x.shape), b)
    return jax.tree.structure(a) == jax.tree.structure(b) and sa == sb


@dataclass
class StageReport:
    stage: int
    size: Tuple[int, int]
    iters: int
    seconds: float
    compile_seconds: float
    d_loss: float
    g_loss: float
    mse: float
    noise_weight: float


class SinGANTrainer:
    """Train a PE-SinGAN experiment config on one image (``reals`` from ``create_real_pyramid``).

    ``state`` holds everything a checkpoint needs: generator / discriminator variables (all
    stages), fixed noises, noise weights, the next stage to train and the pyramid sizes.
    """

    def __init__(self, cfg, reals: Sequence[np.ndarray], key):
        self.cfg = cfg
        self.compute = compute.resolve(cfg)          # 'auto' resolved once, for this backend
        if self.compute["dtype"] != "float32":
            raise InputError("compute.dtype=bfloat16 is for StyleGAN2 / MS-PIE; PE-SinGAN trains in float32")
        self.forms = forms = compute.forms_of(self.compute)
        self.G, self.D = sm.build_generator(cfg, forms), sm.build_discriminator(cfg, forms)
        self.reals = [jnp.asarray(r) for r in reals]
        self.sizes = [tuple(r.shape[1:3]) for r in reals]
        if len(self.sizes) != cfg.generator.num_scales + 1:
            raise InputError(f"the pyramid has {len(self.sizes)} levels, the config "
                             f"{cfg.generator.num_scales + 1} stages")
        k_n, k_g, k_d = jax.random.split(key, 3)
        shapes = sm.noise_shapes(cfg, self.sizes)
        fixed = [jax.random.normal(k_n, (1,) + shapes[0])] + [jnp.zeros((1,) + s) for s in shapes[1:]]
        n = cfg.generator.num_scales
        self.state = {
            "generator": self.G.init(k_g, fixed, [1.0] * (n + 1)),
            "discriminator": self.D.init(k_d, self.sizes, method=sm.SinGANDiscriminator.init_all),
            "fixed_noises": fixed,
            "noise_weights": [1.0],
            "next_stage": 0,
        }
        self._step_fns: Dict[int, Any] = {}     # stage -> its compiled (d_step, g_step, recon_pass)

    def compilations(self, stage: int) -> int:
        """How many programs the steps of ``stage`` compiled (3 when nothing recompiled)."""
        return sum(f._cache_size() for f in self._step_fns.get(stage, ()))

    # pieces of the state as a checkpoint's 'singan' item
    def singan_item(self):
        s = self.state
        nw = list(s["noise_weights"]) + [0.0] * (len(self.sizes) - len(s["noise_weights"]))
        return {"fixed_noises": [np.asarray(x) for x in s["fixed_noises"]],
                "noise_weights": np.asarray(nw, np.float32),
                "num_noise_weights": np.asarray(len(s["noise_weights"])),
                "curr_stage": np.asarray(s["next_stage"] - 1), "next_stage": np.asarray(s["next_stage"]),
                "sizes": np.asarray(self.sizes, np.int32)}

    def load_singan_item(self, item):
        k = int(item["num_noise_weights"])
        self.state["fixed_noises"] = [jnp.asarray(x) for x in item["fixed_noises"]]
        self.state["noise_weights"] = [float(x) for x in np.asarray(item["noise_weights"])[:k]]
        self.state["next_stage"] = int(item["next_stage"])

    def _start_stage(self, t):
        """Copy block t-1 into block t where the shapes allow (REFERENCE §3.4)."""
        if t == 0:
            return
        for name in ("generator", "discriminator"):
            v = self.state[name]
            if _same_shapes(_block(v["params"], t - 1), _block(v["params"], t)):
                self.state[name] = {col: _with_block(tree, t, _block(tree, t - 1)) for col, tree in v.items()}

    def stage_steps(self, t):
        """The programs of stage ``t``: (opt_d, opt_g, d_step, g_step, recon_pass), the two Adam
        transforms (with the stage's learning-rate milestones) and the jitted steps
        ``d_step(gvars, dvars, opt_state, nw, key) -> (gvars, dvars, opt_state, loss)``,
        ``g_step(gvars, dvars, opt_state, nw, fixed, key) -> (gvars, dvars, opt_state, loss, mse)``
        and ``recon_pass(gvars, nw, fixed) -> (image, gvars)``; ``train_stage`` runs them, and the
        benchmark times them."""
        cfg = self.cfg
        tr = cfg.train
        G, D = self.G, self.D
        n_stage_noises = t + 1
        shapes = [tuple(x.shape[1:]) for x in self.state["fixed_noises"][:n_stage_noises]]
        milestone_updates = [m * tr.d_steps - 1 for m in tr.lr_milestones]
        sched_d = optax.piecewise_constant_schedule(tr.lr_d, {b: tr.lr_gamma for b in milestone_updates})
        sched_g = optax.piecewise_constant_schedule(
            tr.lr_g, {m * tr.g_steps - 1: tr.lr_gamma for m in tr.lr_milestones})
        opt_d = optax.adam(sched_d, b1=tr.betas[0], b2=tr.betas[1], eps=1e-8)
        opt_g = optax.adam(sched_g, b1=tr.betas[0], b2=tr.betas[1], eps=1e-8)
        real = self.reals[t]
        jit = partial(jax.jit, compiler_options=compute.compiler_options(self.compute))

        def draw(key):
            return sm.draw_noises(key, shapes, 1)

        @jit
        def d_step(gvars, dvars, opt_state, nw, key):
            k_noise, k_alpha = jax.random.split(key)
            fake, new_g = G.apply(gvars, draw(k_noise), nw, t, train=True, mutable=["batch_stats"])
            gvars = {**gvars, **new_g}
            fake = jax.lax.stop_gradient(fake)
            alpha = jax.random.uniform(k_alpha, (1, 1, 1, 1))

            def loss_fn(bp):
                params = _with_block(dvars["params"], t, bp)
                return d_loss(params, dvars, D, real, fake, t, alpha, tr.gp_weight)

            (loss, (terms, bs)), grads = jax.value_and_grad(loss_fn, has_aux=True)(_block(dvars["params"], t))
            updates, opt_state = opt_d.update(grads, opt_state)
            bp = optax.apply_updates(_block(dvars["params"], t), updates)
            dvars = {**dvars, "params": _with_block(dvars["params"], t, bp), "batch_stats": bs}
            return gvars, dvars, opt_state, loss

        @jit
        def g_step(gvars, dvars, opt_state, nw, fixed, key):
            def loss_fn(bp):
                params = _with_block(gvars["params"], t, bp)
                return g_loss(params, gvars, G, dvars, D, real, draw(key), fixed, nw, t, tr.rec_weight)

            (loss, (terms, gbs, dbs)), grads = jax.value_and_grad(loss_fn, has_aux=True)(_block(gvars["params"], t))
            updates, opt_state = opt_g.update(grads, opt_state)
            bp = optax.apply_updates(_block(gvars["params"], t), updates)
            gvars = {**gvars, "params": _with_block(gvars["params"], t, bp), "batch_stats": gbs}
            dvars = {**dvars, "batch_stats": dbs}
            return gvars, dvars, opt_state, loss, terms["mse_unweighted"]

        @jit
        def recon_pass(gvars, nw, fixed):
            out, new = G.apply(gvars, fixed, nw, t, train=True, mutable=["batch_stats"])
            return out, {**gvars, **new}

        return opt_d, opt_g, d_step, g_step, recon_pass

    def train_stage(self, key, iters: Optional[int] = None, progress: Optional[Callable[[int, int], None]] = None,
                    check_finite: bool = True) -> StageReport:
        """Train the next stage. Raises FloatingPointError on a non-finite loss (nothing of
        that stage is kept)."""
        cfg = self.cfg
        t = self.state["next_stage"]
        if t > cfg.generator.num_scales:
            raise InputError("all stages are trained")
        iters = cfg.train.iters_per_scale if iters is None else iters
        last = cfg.generator.num_scales
        saved = dict(self.state)
        self._start_stage(t)
        opt_d, opt_g, d_step, g_step, recon_pass = self.stage_steps(t)
        self._step_fns[t] = (d_step, g_step, recon_pass)
        gvars, dvars = self.state["generator"], self.state["discriminator"]
        opt_d_state = opt_d.init(_block(dvars["params"], t))
        opt_g_state = opt_g.init(_block(gvars["params"], t))
        nw = jnp.asarray(self.state["noise_weights"][: t + 1], jnp.float32)
        fixed = self.state["fixed_noises"][: t + 1]
        amp_when = 0 if cfg.noise.amplitude == "first_iteration" else iters - 1
        if cfg.noise.amplitude not in ("first_iteration", "last_iteration"):
            raise InputError(f"noise.amplitude must be 'first_iteration' or 'last_iteration', "
                             f"got {cfg.noise.amplitude!r}")
        t0 = time.time()
        compile_s = 0.0
        next_weight = float("nan")
        dl = gl = mse = float("nan")
        for it in range(iters):
            tic = time.time()
            for _ in range(cfg.train.d_steps):
                key, k = jax.random.split(key)
                gvars, dvars, opt_d_state, dl = d_step(gvars, dvars, opt_d_state, nw, k)
            for _ in range(cfg.train.g_steps):
                key, k = jax.random.split(key)
                gvars, dvars, opt_g_state, gl, mse = g_step(gvars, dvars, opt_g_state, nw, fixed, k)
            if it == amp_when and t < last:
                recon, gvars = recon_pass(gvars, nw, fixed)
                next_weight = float(noise_amplitude(recon, self.reals[t + 1], cfg.noise.noise_weight_init,
                                                    self.forms.resize))
            if it == 0:
                jax.block_until_ready(gl)
                compile_s = time.time() - tic
                if check_finite and not (np.isfinite(float(dl)) and np.isfinite(float(gl))):
                    self.state = saved
                    raise NonFiniteError(f"stage {t}: non-finite loss at iteration 0 (D {float(dl)}, G {float(gl)})")
            if progress is not None:
                progress(it + 1, iters)
        dl, gl, mse = float(dl), float(gl), float(mse)
        if check_finite and not all(np.isfinite([dl, gl, mse])):
            self.state = saved
            raise NonFiniteError(f"stage {t}: non-finite loss (D {dl}, G {gl}, MSE {mse}); the stage "
                                     "was not kept: lower the learning rate or check the image")
        self.state = dict(self.state, generator=gvars, discriminator=dvars, next_stage=t + 1)
        if t < last:
            self.state["noise_weights"] = list(self.state["noise_weights"]) + [next_weight]
        return StageReport(t, self.sizes[t], iters, time.time() - t0, compile_s, dl, gl, mse, next_weight)


# -- a whole run: pyramid, stages, checkpoints, resume -----------------------------------------

def fit_config_to_pyramid(cfg, num_scales: int):
    """Set the stage count of a config to the pyramid's (configs hard-code 8 or 10 for their
    images; another image gives another count)."""
    cfg = cfg.copy_and_resolve_references() if hasattr(cfg, "copy_and_resolve_references") else cfg
    cfg.generator.num_scales = num_scales
    cfg.discriminator.num_scales = num_scales
    return cfg


def check_config(cfg) -> None:
    """Refuse, before anything is built, a PE-SinGAN config the trainer cannot run."""
    t, d = cfg.train, cfg.data
    for name in ("iters_per_scale", "d_steps", "g_steps"):
        checks.at_least(t[name], 1, f"train.{name}")
    checks.at_least(d.min_size, 1, "data.min_size")
    checks.at_least(d.max_size, d.min_size, "data.max_size (at least data.min_size)")
    if not 0 < float(d.scale_factor) < 1:
        raise InputError(f"data.scale_factor must be between 0 and 1, got {d.scale_factor}")
    checks.seed(t.seed, "train.seed")
    for name in ("lr_g", "lr_d", "lr_gamma"):
        checks.number_in(t[name], f"train.{name}", 0, lo_open=True)
    for name in ("gp_weight", "rec_weight"):
        checks.number_in(t[name], f"train.{name}", 0)
    if not isinstance(t.betas, (list, tuple)) or len(t.betas) != 2:
        raise InputError(f"train.betas must be two numbers in [0, 1), got {t.betas!r}")
    for b in t.betas:
        checks.number_in(b, "each of train.betas", 0, 1, hi_open=True)
    for m in t.lr_milestones or []:
        checks.at_least(m, 0, "each of train.lr_milestones")
    if cfg.noise.amplitude not in ("first_iteration", "last_iteration"):
        raise InputError(f"noise.amplitude must be 'first_iteration' or 'last_iteration', got {cfg.noise.amplitude!r}")


# what a resumed PE-SinGAN run may change: how it computes, and what the run records itself
SINGAN_RESUME_MAY_CHANGE = ("compute", "compute_resolved", "pyramid", "data.image")


def run(cfg, image_uint8: np.ndarray, out_dir, seed: Optional[int] = None, iters: Optional[int] = None,
        progress_factory=None, log: Callable[[str], None] = print, image_name: str = "image",
        step: Optional[int] = None):
    """Train all remaining stages, checkpointing into ``out_dir`` after each; resumes a run
    found there from its latest step, or from ``step`` (the later steps are moved aside into
    ``out_dir/superseded``); ``out_dir`` must be new, empty or a pegan run
    (``checkpoint.check_run_dir``). ``seed`` and ``iters`` (per stage), when given, replace the
    config's ``train.seed`` and ``train.iters_per_scale`` (and are recorded so). The run's
    ``config.json`` holds the config, its resolved compute section (``compute_resolved``) and
    the pyramid. Returns (trainer, [StageReport])."""

    ckpt.check_run_dir(out_dir, "out_dir")
    cfg = cfg.copy_and_resolve_references()
    if seed is not None:
        cfg.train.seed = int(seed)
    if iters is not None:
        cfg.train.iters_per_scale = checks.at_least(iters, 1, "iterations per stage")
    check_config(cfg)
    seed = int(cfg.train.seed)
    stop, reals = create_real_pyramid(image_uint8, cfg.data.min_size, cfg.data.max_size, cfg.data.scale_factor)
    cfg = fit_config_to_pyramid(cfg, stop)
    key = jax.random.PRNGKey(seed)
    k_init, key = jax.random.split(key)
    trainer = SinGANTrainer(cfg, reals, k_init)
    pixels = hashlib.sha256(np.ascontiguousarray(image_uint8).tobytes() + str(image_uint8.shape).encode()).hexdigest()
    info = {"family": "singan", "experiment": cfg.name, "variant": cfg.variant, "color_order": "RGB",
            "source": {"trained_on": image_name, "image_size": list(image_uint8.shape[:2]), "seed": seed,
                       "image_sha256": pixels}}
    if step is not None or (ckpt.is_checkpoint_dir(out_dir) and ckpt.steps(out_dir)):
        step = ckpt.check_step(out_dir, step)
        old = ckpt.read_config(out_dir)
        if old.name != cfg.name or list(map(tuple, old.get("pyramid", []))) != [tuple(s) for s in trainer.sizes]:
            raise ckpt.CheckpointError(f"{out_dir} holds another run ({old.name}, pyramid {old.get('pyramid')}); "
                                       "use a new directory to train this one")
        source = ckpt.read_info(out_dir).get("source")
        held = source.get("image_sha256") if isinstance(source, dict) else None
        if held is not None and held != pixels:     # (runs before the digest was recorded: not compared)
            raise InputError(f"{out_dir} was trained on another image ({str(source.get('trained_on'))[:80]}); "
                             "resume it with that image, or use a new directory for this one")
        changed = changed_fields(old, cfg, SINGAN_RESUME_MAY_CHANGE)
        if changed:
            raise InputError(f"{out_dir} was trained with other settings ({changes_line(changed)}); a resumed run "
                             "keeps its config (its config.json records it): pass the same values, or use a new "
                             "directory (only the compute settings may change)")
        abstract = {"generator": sm.abstract_variables(trainer.G, cfg, trainer.sizes),
                    "discriminator": sm.abstract_variables(trainer.D, cfg, trainer.sizes)}
        got = ckpt.restore(out_dir, ["generator", "discriminator", "singan"], step, abstract)
        trainer.state["generator"] = jax.tree.map(jnp.asarray, got["generator"])
        trainer.state["discriminator"] = jax.tree.map(jnp.asarray, got["discriminator"])
        trainer.load_singan_item(got["singan"])
        ckpt.set_aside_later_steps(out_dir, step, log)
        changed = compute.changes_since(old, trainer.compute)
        if changed:
            log(compute.change_note(changed))
        if trainer.state["next_stage"] > stop:
            log(f"{out_dir} has trained all {stop + 1} stages: nothing left to train")
        else:
            log(f"resuming {out_dir} at stage {trainer.state['next_stage']} of stages 0-{stop}")
    cfg.pyramid = [list(s) for s in trainer.sizes]               # records (base.RECORDS)
    cfg.compute_resolved = dict(trainer.compute)
    reports = []
    for t in range(trainer.state["next_stage"]):   # a resumed run: the key chain of the stages trained
        key, _ = jax.random.split(jax.random.fold_in(key, t))
    while trainer.state["next_stage"] <= stop:
        t = trainer.state["next_stage"]
        key, k = jax.random.split(jax.random.fold_in(key, t))
        bar = progress_factory(t, trainer.sizes[t], cfg.train.iters_per_scale) if progress_factory else None
        try:
            rep = trainer.train_stage(k, progress=(lambda i, n: bar.update(1)) if bar else None)
        finally:
            if bar is not None:
                bar.close()
        reports.append(rep)
        log(f"stage {t} {rep.size[0]}x{rep.size[1]}: {rep.seconds:.1f} s (compile {rep.compile_seconds:.1f} s), "
            f"D {rep.d_loss:.3f} G {rep.g_loss:.3f} recon MSE {rep.mse:.4f}"
            + (f", next noise amplitude {rep.noise_weight:.4f}" if t < stop else ""))
        with checks.storage_errors(f"stage {t} into {out_dir}", lambda: ckpt.kept_note(out_dir)):
            ckpt.save(out_dir, t + 1, {"generator": trainer.state["generator"],
                                       "discriminator": trainer.state["discriminator"],
                                       "singan": trainer.singan_item()}, cfg, info)
    return trainer, reports
