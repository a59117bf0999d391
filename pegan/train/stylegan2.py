"""StyleGAN2 / MS-PIE training steps (REFERENCE §1.2-1.3, §3.1-3.3).

One iteration, as the reference loop: a discriminator step (non-saturating logistic loss, plus
80 x R1 on the reals at the current scale when ``step % 16 == 0``), then a generator step with
the updated discriminator (non-saturating loss, plus 8 x path-length penalty at chosen scale 0
on half the batch when ``step % 4 == 0``; the new running mean is not detached inside the
penalty, as in the reference), then the EMA of the generator parameters. The lazy terms sit
behind ``lax.cond`` so one compiled step serves every iteration of a (scale, batch) shape.

All randomness of an iteration is one explicit pytree (``Randomness``), drawn by
``draw_randomness`` from the state's key or given by a test: z pairs with their inject index
(mixing with probability 0.9, else index = num_latents), per-sample noises, the path-length
``randn``.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Optional, Sequence, Tuple

import flax
import jax
import jax.numpy as jnp
import optax

from pegan.errors import InputError
from pegan import ops
from pegan.models.stylegan2 import Discriminator, Generator, image_size
from pegan.nn.layers import random_noise
from pegan.train import augment as ada

__all__ = ["TrainState", "Randomness", "draw_randomness", "step_randomness", "pl_scale_of", "r1_penalty", "regularisation_mode",
           "static_lazy_terms", "lazy_kind", "pass_randomness", "make_optimizers", "init_state", "augment_mode",
           "augmenter", "frozen_d_blocks",
           "d_loss_fn", "g_loss_fn", "train_step", "d_half", "g_half", "d_metrics", "g_metrics", "reals_to_float", "resize_reals", "ema_update", "d_phase", "g_phase"]


@flax.struct.dataclass
class TrainState:
    step: jnp.ndarray
    g_params: Any
    g_buffers: Any
    d_params: Any
    ema_params: Any
    opt_g: Any
    opt_d: Any
    pl_mean: jnp.ndarray
    key: jnp.ndarray
    ada: Any = None        # the ADA state (pegan.train.augment.init_ada) with train.augment on, else None


class Randomness(NamedTuple):
    z_d: Tuple[jnp.ndarray, jnp.ndarray]
    idx_d: jnp.ndarray
    noise_d: Sequence[jnp.ndarray]
    z_g: Tuple[jnp.ndarray, jnp.ndarray]
    idx_g: jnp.ndarray
    noise_g: Sequence[jnp.ndarray]
    z_pl: Tuple[jnp.ndarray, jnp.ndarray]
    idx_pl: jnp.ndarray
    noise_pl: Sequence[jnp.ndarray]
    pl_randn: jnp.ndarray
    aug: Any = None        # the key of the discriminator's augmentations (train.augment), or None


AUG_SALT = 0x41_44_41          # folded into an iteration's key for its augmentation key ("ADA")


def frozen_d_blocks(tcfg, D: Optional[Discriminator] = None) -> Tuple[str, ...]:
    """FreezeD (``train.freeze_d`` = k): the parameter groups of the k input-side discriminator
    blocks (block 1 is the fromRGB layer and the first residual block): no gradient, no Adam
    state, the weights of the start. 0: none."""
    k = int(tcfg.get("freeze_d", 0) or 0)
    if k <= 0:
        return ()
    if D is not None:
        blocks = int(math.log2(D.in_size)) - 2
        if k > blocks:
            raise InputError(f"train.freeze_d is {k}, but the discriminator has {blocks} blocks: use 0 to {blocks}")
    return tuple(f"convs_{j}" for j in range(k + 1))


def _label(frozen):
    return lambda params: {k: jax.tree.map(lambda _: "frozen" if k in frozen else "train", v)
                           for k, v in params.items()}


def make_optimizers(tcfg):
    """Adam for G and D with the lazy-regularisation lr / beta scaling of the config; with
    FreezeD (``frozen_d_blocks``) D's frozen groups get no update and keep no Adam state."""
    g = optax.adam(tcfg.g_lr, b1=tcfg.g_betas[0], b2=tcfg.g_betas[1], eps=tcfg.adam_eps)
    d = optax.adam(tcfg.d_lr, b1=tcfg.d_betas[0], b2=tcfg.d_betas[1], eps=tcfg.adam_eps)
    frozen = frozen_d_blocks(tcfg)
    if frozen:
        d = optax.multi_transform({"train": d, "frozen": optax.set_to_zero()}, _label(frozen))
    return g, d


def augment_mode(tcfg) -> Tuple[str, float]:
    """``train.augment`` parsed (``pegan.train.augment.parse_augment``): ('none' | 'ada' |
    'fixed', initial p)."""
    return ada.parse_augment(tcfg.get("augment", "none"))


def init_state(G: Generator, D: Discriminator, tcfg, key, g_vars=None, d_vars=None) -> TrainState:
    k_g, k_d, key = jax.random.split(key, 3)
    if g_vars is None:
        g_vars = G.init(k_g, jnp.zeros((1, G.style_channels)), noise="const")
    if d_vars is None:
        d_vars = D.init(k_d, jnp.zeros((1, D.in_size, D.in_size, 3)))
    opt_g, opt_d = make_optimizers(tcfg)
    mode, p0 = augment_mode(tcfg)
    return TrainState(step=jnp.zeros((), jnp.int32), g_params=g_vars["params"], g_buffers=g_vars["buffers"],
                      d_params=d_vars["params"], ema_params=jax.tree.map(jnp.array, g_vars["params"]),
                      opt_g=opt_g.init(g_vars["params"]), opt_d=opt_d.init(d_vars["params"]),
                      pl_mean=jnp.zeros((), jnp.float32), key=key,
                      ada=None if mode == "none" else ada.init_ada(p0))


def pl_scale_of(tcfg, scale):
    """The chosen scale of the path-length term: ``train.pl_scale`` (0, the reference, REFERENCE
    §1.3), or the scale of the step with ``train.pl_at_current_scale``."""
    return scale if tcfg.pl_at_current_scale else tcfg.pl_scale


def draw_randomness(key, G: Generator, scale, batch: int, pl_batch: int, mix_prob: float,
                    pl_scale=0) -> Randomness:
    L = G.num_latents
    ks = jax.random.split(key, 10)

    def zpair(k, n):
        a, b = jax.random.split(k)
        return (jax.random.normal(a, (n, G.style_channels)), jax.random.normal(b, (n, G.style_channels)))

    def index(k):
        a, b = jax.random.split(k)
        mix = jax.random.uniform(a) < mix_prob
        return jnp.where(mix, jax.random.randint(b, (), 1, L), L)   # L = no mixing

    shapes, shapes0 = G.noise_shapes(scale), G.noise_shapes(pl_scale)
    h, w = image_size(G.out_size, pl_scale)
    return Randomness(zpair(ks[0], batch), index(ks[1]), random_noise(ks[2], shapes, batch),
                      zpair(ks[3], batch), index(ks[4]), random_noise(ks[5], shapes, batch),
                      zpair(ks[6], pl_batch), index(ks[7]), random_noise(ks[8], shapes0, pl_batch),
                      jax.random.normal(ks[9], (pl_batch, h, w, 3)), jax.random.fold_in(key, AUG_SALT))


def step_randomness(key, G: Generator, tcfg, scale, batch: int) -> Randomness:
    """The randomness of one iteration of ``batch`` images as the config sets it (path length on
    ``batch // pl_batch_shrink`` samples at ``pl_scale_of(tcfg, scale)``)."""
    return draw_randomness(key, G, scale, batch, max(1, batch // tcfg.pl_batch_shrink), tcfg.mix_prob,
                           pl_scale_of(tcfg, scale))


def reals_to_float(x):
    """The loaders' uint8 pixels as float32 in [-1, 1] (x / 127.5 - 1, on the device); float
    reals pass through."""
    if x.dtype == jnp.uint8:
        return x.astype(jnp.float32) / 127.5 - 1.0
    return x


def resize_reals(x, size: Tuple[int, int], impl: str = "dense"):
    """The reals of a step at its size: uint8 or float in, float32 in [-1, 1] out, resized as the
    reference does on the fly (bilinear, align_corners=True, no antialiasing); ``impl``: the
    resize form of the compute section (``compute.resize_impl``)."""
    x = reals_to_float(x)
    if tuple(x.shape[1:3]) == tuple(size):
        return x
    return ops.resize_bilinear(x, size, align_corners=True, impl=impl)


def _gen(G, params, buffers, z, idx, noise, scale, return_latents=False):
    return G.apply({"params": params, "buffers": buffers}, z[0], scale, noise=list(noise), z2=z[1],
                   inject_index=idx, return_latents=return_latents)


def _when(pred, yes, no, operand):
    """``yes(operand)`` if ``pred`` else ``no(operand)``: a Python bool (known when tracing) runs
    one branch, a traced predicate goes through ``lax.cond``."""
    if isinstance(pred, bool):
        return (yes if pred else no)(operand)
    return jax.lax.cond(pred, yes, no, operand)


def _seen(aug, which: int):
    """What D sees of an image batch: ``aug(x, which)`` (the augmentation, ``augmenter``), or x."""
    return (lambda x: x) if aug is None else (lambda x: aug(x, which))


# the draws of an iteration's augmentations: reals, fakes of the D step, fakes of the G step, reals of R1 alone
AUG_REAL, AUG_FAKE_D, AUG_FAKE_G, AUG_R1 = range(4)


def augmenter(tcfg, state, rnd: Randomness, D: Discriminator):
    """``aug(x, which) -> x``: the ADA pipeline at the state's p with draw ``which`` of the
    iteration's augmentation key (``rnd.aug``), its filters in D's upfirdn form
    (``compute.upfirdn_impl``); None with ``train.augment`` 'none'."""
    if augment_mode(tcfg)[0] == "none":
        return None
    if rnd.aug is None or state.ada is None:
        raise InputError("train.augment is on, but the state or the randomness has no augmentation (made with "
                         "augment 'none'?)")
    impl = D.forms.upfirdn
    return lambda x, which: ada.augment(x, jax.random.fold_in(rnd.aug, which), state.ada["p"],
                                        impl=impl).astype(x.dtype)


def d_loss_fn(d_params, D, real, fake, do_r1, r1_weight: float, aug=None):
    """``aug``: the augmentation of what D sees (``augmenter``; the reals of the R1 term are the
    same augmented reals, and R1 differentiates through the augmentation), or None."""
    def disc(p, x):
        return D.apply({"params": p}, x)

    see_real = _seen(aug, AUG_REAL)
    pf = disc(d_params, _seen(aug, AUG_FAKE_D)(fake))
    pr = disc(d_params, see_real(real))
    loss_fake = jnp.mean(jax.nn.softplus(pf))
    loss_real = jnp.mean(jax.nn.softplus(-pr))

    def no_r1(p):
        return jnp.zeros((), real.dtype)

    r1_val = _when(do_r1, lambda p: r1_penalty(p, D, real, see_real), no_r1, d_params)
    loss = loss_fake + loss_real + r1_weight * r1_val
    return loss, {"d_loss": loss, "loss_disc_fake": loss_fake, "loss_disc_real": loss_real,
                  "r1_penalty": r1_val, "disc_pred_fake": pf, "disc_pred_real": pr}


def g_loss_fn(g_params, G, buffers, d_params, D, rnd: Randomness, scale, pl_mean, do_pl, pl_weight: float,
              pl_decay: float, pl_scale=0, pl_detach_mean: bool = False, adversarial: bool = True, aug=None):
    """``adversarial=False``: the path-length term alone (NVIDIA's separate regularisation step).
    ``aug``: the augmentation of the fakes D sees (``augmenter``), or None."""
    if adversarial:
        fake = _gen(G, g_params, buffers, rnd.z_g, rnd.idx_g, rnd.noise_g, scale)
        pf = D.apply({"params": d_params}, _seen(aug, AUG_FAKE_G)(fake))
        adv = jnp.mean(jax.nn.softplus(-pf))
    else:
        fake = pf = None
        adv = jnp.zeros((), jnp.float32)

    def pl(p):
        v = {"params": p, "buffers": buffers}
        _, latent = _gen(G, p, buffers, rnd.z_pl, rnd.idx_pl, rnd.noise_pl, pl_scale, return_latents=True)
        n, h, w, _ = rnd.pl_randn.shape
        y = rnd.pl_randn / math.sqrt(h * w)

        def proj(lat):
            img = G.apply(v, lat, pl_scale, noise=list(rnd.noise_pl), input_is_latent=True)
            return jnp.sum(img * y)

        g = jax.grad(proj)(latent)
        lengths = jnp.sqrt(jnp.mean(jnp.sum(jnp.square(g), axis=2), axis=1))
        new_mean = pl_mean + pl_decay * (jnp.mean(lengths) - pl_mean)   # not detached (reference)
        if pl_detach_mean:                                                 # NVIDIA's form
            new_mean = jax.lax.stop_gradient(new_mean)
        return jnp.mean(jnp.square(lengths - new_mean)), (lengths, new_mean)

    def no_pl(p):
        return jnp.zeros((), adv.dtype), (jnp.zeros(rnd.pl_randn.shape[:1], adv.dtype), pl_mean)

    pen, (lengths, new_mean) = _when(do_pl, pl, no_pl, g_params)
    loss = adv + pl_weight * pen
    return loss, {"g_loss": loss, "loss_disc_fake_g": adv, "pl_penalty": pen, "path_lengths": lengths,
                  "pl_mean": jax.lax.stop_gradient(new_mean), "fake_imgs": fake, "disc_pred_fake_g": pf}


def ema_update(ema, params, momentum: float):
    """ema <- params + (ema - params) * m (mmgen's lerp), parameters only."""
    return jax.tree.map(lambda e, p: p + (e - p) * momentum, ema, params)


def r1_penalty(d_params, D, real, see=None):
    """R1: mean over the batch of the summed squared gradient of D's logits w.r.t. the reals
    (through ``see``, the augmentation of what D sees, when given)."""
    see = see or (lambda x: x)
    g = jax.grad(lambda x: jnp.sum(D.apply({"params": d_params}, see(x))))(real)
    return jnp.mean(jnp.sum(jnp.square(g), axis=(1, 2, 3)))


def regularisation_mode(tcfg) -> str:
    """``train.regularisation``: 'joint' (the reference: the lazy R1 / path-length terms are added
    to the loss of the same Adam step) or 'separate' (NVIDIA's stylegan2-ada: a second Adam step
    on the regulariser alone, at the parameters the main step produced)."""
    mode = tcfg.regularisation
    if mode not in ("joint", "separate"):
        raise InputError(f"train.regularisation must be 'joint' or 'separate', got {mode!r}")
    return mode


def _unfrozen(tcfg, d_params):
    """FreezeD: no gradient flows into the frozen blocks (so none is computed for them)."""
    frozen = frozen_d_blocks(tcfg)
    return {k: (jax.lax.stop_gradient(v) if k in frozen else v) for k, v in d_params.items()}


def d_phase(state: TrainState, real, rnd: Randomness, *, G, D, tcfg, scale, do_r1=None):
    """Discriminator loss terms and gradients of one iteration (before any reduction)."""
    if do_r1 is None:
        do_r1 = lazy_kind(tcfg, state.step)[0]
    fake = jax.lax.stop_gradient(_gen(G, state.g_params, state.g_buffers, rnd.z_d, rnd.idx_d, rnd.noise_d, scale))
    def loss(p):
        return d_loss_fn(_unfrozen(tcfg, p), D, real, fake, do_r1, tcfg.r1_weight, augmenter(tcfg, state, rnd, D))

    (dl, terms), grads = jax.value_and_grad(loss, has_aux=True)(state.d_params)
    return grads, terms


def g_phase(state: TrainState, d_params, rnd: Randomness, *, G, D, tcfg, scale, do_pl=None, adversarial=True,
            g_params=None):
    """Generator loss terms and gradients against the updated discriminator ``d_params``."""
    if do_pl is None:
        do_pl = lazy_kind(tcfg, state.step)[1]
    (gl, terms), grads = jax.value_and_grad(g_loss_fn, has_aux=True)(
        state.g_params if g_params is None else g_params, G, state.g_buffers, d_params, D, rnd, scale,
        state.pl_mean, do_pl, tcfg.pl_weight, tcfg.pl_decay, pl_scale_of(tcfg, scale),
        bool(tcfg.pl_detach_mean), adversarial, augmenter(tcfg, state, rnd, D) if adversarial else None)
    return grads, terms


def _adam(opt, grads, opt_state, params):
    upd, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, upd), opt_state


def static_lazy_terms(resolved_compute) -> bool:
    """``compute.lazy_branches`` (resolved, ``pegan.compute``): 'cond' (one program per shape;
    R1 / path length behind ``lax.cond`` on the step counter) or 'static' (one program per shape
    and kind of step, the lazy terms fixed when tracing). 'auto' resolves to 'static' on the CPU
    backend, where XLA runs the branches of a conditional several times slower than the same code
    outside it (a 256 px config-f iteration with path length: 163 s inside vs 27 s outside,
    docs/PERF_NOTES.md), and to 'cond' elsewhere."""
    return resolved_compute["lazy_branches"] == "static"


def lazy_kind(tcfg, step) -> Tuple[Any, Any]:
    """(R1 due, path length due) at ``step``, as the reference schedules them: Python bools for
    a Python int, traced booleans for a traced step counter."""
    return step % tcfg.r1_interval == 0, step % tcfg.pl_interval == 0


def pass_randomness(key, G: Generator, tcfg, scale, batch: int, passes: int, first: int = 0) -> Randomness:
    """The randomness of ``passes`` accumulation passes of ``batch`` images, stacked on a leading
    pass axis: pass p draws ``step_randomness(fold_in(key, first + p), ...)``, what the device of
    index ``first + p`` draws with one pass each (so k passes on n devices equal 1 pass on k*n)."""
    rnds = [step_randomness(jax.random.fold_in(key, first + p), G, tcfg, scale, batch) for p in range(passes)]
    return jax.tree.map(lambda *xs: jnp.stack(xs), *rnds)


def _merge_passes(terms, keep=("pl_mean",)):
    """Stacked per-pass terms as the terms of the whole step: a per-pass scalar is averaged (every
    pass has the same number of images), a per-sample array joins the passes' samples; the names
    in ``keep`` stay stacked."""
    def one(name, x):
        if x is None or name in keep:
            return x
        return jnp.mean(x, axis=0) if x.ndim == 1 else x.reshape((-1,) + x.shape[2:])
    return {k: one(k, v) for k, v in terms.items()}


def _accumulate(fn, xs, passes: int):
    """(mean gradient, merged terms) of ``fn(x) -> (grads, terms)`` over the passes of ``xs``
    (leading pass axis), one pass at a time (``lax.scan``: the activations of one pass are alive at
    once, the gradients summed in the carry). ``passes == 1``: ``fn(xs)`` on the unstacked inputs."""
    if passes == 1:
        return fn(xs)
    first = jax.tree.map(lambda x: x[0], xs)
    zeros = jax.tree.map(jnp.zeros_like, jax.eval_shape(lambda x: fn(x)[0], first))

    def body(acc, x):
        g, t = fn(x)
        return jax.tree.map(jnp.add, acc, g), t

    total, terms = jax.lax.scan(body, zeros, xs)
    return jax.tree.map(lambda g: g / passes, total), _merge_passes(terms)


def _pl_slots(state: TrainState, passes: int):
    """(the passes' path-length means, the running-mean slots or None): ``state.pl_mean`` is a
    scalar or a vector of slots, one per pass."""
    slots = state.pl_mean if state.pl_mean.ndim == 1 else None
    if int(passes) > 1:
        return slots[:int(passes)], slots
    return (state.pl_mean if slots is None else slots[0]), slots


def _lazy(tcfg, state, lazy):
    return lazy_kind(tcfg, state.step) if lazy is None else (bool(lazy[0]), bool(lazy[1]))


def d_half(state: TrainState, real, rnd: Randomness, *, G: Generator, D: Discriminator, tcfg, scale,
           grad_reduce=None, lazy=None, passes: int = 1):
    """The discriminator half of ``train_step``: returns (state with the new ``d_params`` and
    ``opt_d``, D's terms, D's gradients, the mean sign of D's logits on the reals over the shards
    (ADA's r_t, 0 without augmentation)). Everything else of the state is unchanged; ``g_half``
    on its result finishes the iteration (the same ``rnd``, ``lazy``, ``passes``)."""
    reduce = grad_reduce or (lambda g: g)
    _, opt_d = make_optimizers(tcfg)
    separate = regularisation_mode(tcfg) == "separate"
    do_r1, _ = _lazy(tcfg, state, lazy)
    zero = jnp.zeros((), jnp.float32)
    k = int(passes)
    real_k = real if k == 1 or real.ndim == 5 else real.reshape((k, real.shape[0] // k) + real.shape[1:])
    d_grads, d_terms = _accumulate(
        lambda x: d_phase(state, x[0], x[1], G=G, D=D, tcfg=tcfg, scale=scale, do_r1=False if separate else do_r1),
        (real_k, rnd), k)
    d_grads = reduce(d_grads)
    d_params, opt_d_state = _adam(opt_d, d_grads, state.opt_d, state.d_params)
    if separate:        # NVIDIA's Dreg phase: R1 alone, its own Adam step
        def d_reg(args):
            p, o = args
            def r1_pass(x):
                see = _seen(augmenter(tcfg, state, x[1], D), AUG_R1)
                r1, g = jax.value_and_grad(lambda q: r1_penalty(_unfrozen(tcfg, q), D, x[0], see))(p)
                return g, {"r1": r1}

            g, t = _accumulate(r1_pass, (real_k, rnd), k)
            r1 = t["r1"]
            p, o = _adam(opt_d, reduce(jax.tree.map(lambda x: tcfg.r1_weight * x, g)), o, p)
            return p, o, r1

        d_params, opt_d_state, r1 = _when(do_r1, d_reg, lambda a: (*a, zero), (d_params, opt_d_state))
        d_terms = dict(d_terms, r1_penalty=r1, d_loss=d_terms["d_loss"] + tcfg.r1_weight * r1)
    sign = zero
    if state.ada is not None:      # ADA: r_t from the signs of D's logits on the (augmented) reals
        sign = reduce(jnp.mean(jnp.sign(d_terms["disc_pred_real"]).astype(jnp.float32)))
    return state.replace(d_params=d_params, opt_d=opt_d_state), d_terms, d_grads, sign


def g_half(state: TrainState, sign, rnd: Randomness, *, G: Generator, D: Discriminator, tcfg, scale,
           grad_reduce=None, lazy=None, passes: int = 1, images: Optional[int] = None):
    """The generator half of ``train_step`` on the state ``d_half`` returned (its ``d_params``
    are the updated discriminator) and its ``sign``: the G step, the EMA, the path-length means,
    ADA's adjustment and the step counter. ``images``: the reals of the step over all shards
    (ADA's count). Returns (new state, G's terms, G's gradients)."""
    reduce = grad_reduce or (lambda g: g)
    opt_g, _ = make_optimizers(tcfg)
    separate = regularisation_mode(tcfg) == "separate"
    _, do_pl = _lazy(tcfg, state, lazy)
    zero = jnp.zeros((), jnp.float32)
    k = int(passes)
    pl_k, slots = _pl_slots(state, k)
    d_params = state.d_params

    def with_pl(pl):
        return state.replace(pl_mean=pl)

    g_grads, g_terms = _accumulate(
        lambda x: g_phase(with_pl(x[1]), d_params, x[0], G=G, D=D, tcfg=tcfg, scale=scale,
                          do_pl=False if separate else do_pl),
        (rnd, pl_k), k)
    g_grads = reduce(g_grads)
    g_params, opt_g_state = _adam(opt_g, g_grads, state.opt_g, state.g_params)
    if separate:        # NVIDIA's Greg phase: the path-length term alone, its own Adam step
        def g_reg(args):
            p, o = args
            grads, t = _accumulate(
                lambda x: g_phase(with_pl(x[1]), d_params, x[0], G=G, D=D, tcfg=tcfg, scale=scale, do_pl=True,
                                  adversarial=False, g_params=p),
                (rnd, pl_k), k)
            p, o = _adam(opt_g, reduce(grads), o, p)
            return p, o, t["pl_penalty"], t["path_lengths"], t["pl_mean"]

        def g_noreg(args):
            n_pl = rnd.pl_randn.shape[0] * (rnd.pl_randn.shape[1] if k > 1 else 1)
            return (*args, zero, jnp.zeros((n_pl,), jnp.float32), pl_k)

        g_params, opt_g_state, pen, lengths, pl_mean = _when(do_pl, g_reg, g_noreg, (g_params, opt_g_state))
        g_terms = dict(g_terms, pl_penalty=pen, path_lengths=lengths, pl_mean=pl_mean,
                       g_loss=g_terms["g_loss"] + tcfg.pl_weight * pen)
    new_pl = g_terms["pl_mean"]
    if slots is not None:       # the passes' running means back into their slots (the rest unchanged)
        new_pl = jnp.concatenate([jnp.reshape(new_pl, (-1,)), slots[k:]])
    ema = ema_update(state.ema_params, g_params, tcfg.ema_momentum)
    new_ada = state.ada
    if state.ada is not None:
        mode, _ = augment_mode(tcfg)
        n_img = float(math.prod(rnd.z_d[0].shape[:-1]) if images is None else images)
        due = (state.step + 1) % int(tcfg.ada_interval) == 0
        new_ada = ada.adjust(state.ada, sign * n_img, n_img, due, target=float(tcfg.ada_target),
                             kimg=float(tcfg.ada_kimg), adaptive=mode == "ada")
    new = state.replace(step=state.step + 1, g_params=g_params, ema_params=ema,
                        opt_g=opt_g_state, pl_mean=new_pl, ada=new_ada)
    return new, g_terms, g_grads


def d_metrics(d_terms) -> dict:
    """The scalars of the D half that the loop logs."""
    return {k: d_terms[k] for k in ("d_loss", "loss_disc_fake", "loss_disc_real", "r1_penalty")}


def g_metrics(state: TrainState, g_terms) -> dict:
    """The scalars of the G half that the loop logs (``state``: the one ``g_half`` returned)."""
    metrics = {"g_loss": g_terms["g_loss"], "loss_disc_fake_g": g_terms["loss_disc_fake_g"],
               "pl_penalty": g_terms["pl_penalty"], "path_lengths": g_terms["path_lengths"],
               "pl_mean": jnp.mean(g_terms["pl_mean"])}
    if state.ada is not None:
        metrics.update(ada_p=state.ada["p"], ada_rt=state.ada["rt"])
    return metrics


def train_step(state: TrainState, real, rnd: Randomness, *, G: Generator, D: Discriminator, tcfg,
               scale, grad_reduce=None, lazy: Optional[Tuple[bool, bool]] = None, passes: int = 1,
               images: Optional[int] = None):
    """One iteration at chosen ``scale`` (static) on ``real`` (already at its size): ``d_half``
    then ``g_half`` (which the CPU loop compiles as two programs, ``pegan.train.sharded``).

    ``grad_reduce`` (e.g. ``lambda g: lax.pmean(g, 'data')``) averages gradients across data
    shards before each Adam step, as DDP does. Switches (``tcfg``): ``regularisation``
    ('joint' | 'separate', see ``regularisation_mode``), ``pl_scale`` / ``pl_at_current_scale``
    (see ``pl_scale_of``), ``pl_detach_mean``. ``lazy``: (R1 due, path length due) fixed when
    tracing (see ``static_lazy_terms``); None decides them from ``state.step`` with ``lax.cond``.

    ``passes`` > 1: gradient accumulation (NVIDIA's ``--batch-gpu``). ``real`` holds
    ``passes * b`` images, split into ``passes`` consecutive groups of b (or is given as
    [passes, b, H, W, 3]); ``rnd`` is stacked on a
    leading pass axis (``pass_randomness``); ``state.pl_mean`` is a vector of at least ``passes``
    running means, one per pass (a vector with one pass: its first slot is used). Each pass is what one device does in a 1-pass step (its own
    minibatch-stddev groups, path-length batch and running mean), and the gradients are the mean
    over the passes, so the step equals the 1-pass step on ``passes`` times the devices.

    ``train.augment`` on (``augment_mode``): every image D sees goes through the ADA pipeline at
    ``state.ada['p']`` with the draws of ``rnd.aug`` (``augmenter``), and ``state.ada`` is adjusted
    (``pegan.train.augment.adjust``) from the signs of D's logits on the reals, averaged with
    ``grad_reduce`` over the data shards; ``images``: the reals of the step over all shards
    (default: this call's). ``train.freeze_d``: FreezeD (``frozen_d_blocks``).
    Returns (new state, metrics, aux)."""
    kw = dict(G=G, D=D, tcfg=tcfg, scale=scale, grad_reduce=grad_reduce, lazy=lazy, passes=passes)
    mid, d_terms, d_grads, sign = d_half(state, real, rnd, **kw)
    new, g_terms, g_grads = g_half(mid, sign, rnd, images=images, **kw)
    metrics = dict(d_metrics(d_terms), **g_metrics(new, g_terms))
    aux = {"d_grads": d_grads, "g_grads": g_grads, "d_terms": d_terms, "g_terms": g_terms}
    return new, metrics, aux
