"""Projection of real images into a StyleGAN2 / MS-PIE generator, at any scale and aspect.

The schedule is NVIDIA's ``projector.py`` (stylegan2-ada-pytorch) as its defaults describe it:
start from the mean latent w_avg of ``w_avg_samples`` mapped z, optimise w (one style,
broadcast to every layer; ``wplus``: one per layer) and every noise map with Adam (betas 0.9,
0.999); the learning rate ramps up over the first 5% of the steps and down (cosine) over the
last 25%; w gets Gaussian noise of ``w_std * noise_factor * max(0, 1 - t / 0.75)^2`` at step
fraction t; the noise maps are regularised by the squared autocorrelation of each map at shifts
of one pixel along both axes over a pyramid of 2x average-pooled versions (down to 8 px), weight
1e5, and renormalised to mean 0 and std 1 after each step.

The distance is ``pegan.eval.vgg.perceptual_distance`` (passed in by the caller, so that this
module needs neither the eval extra nor ``pegan.eval``) on torchvision VGG16 features (LPIPS's
layers with equal weights; LPIPS's learned weights are not readable here), plus
``pixel_weight`` x the mean squared pixel error; without VGG16 weights, the pixel error alone.

One jitted step serves every iteration (the step number is an argument, the schedule is
computed on the device), and several targets are projected at once, independently (their
losses add, Adam is elementwise), sharded over the local devices when they divide evenly.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, List, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from pegan import checks
from pegan.errors import InputError
from pegan.latent import Latents, to_w
from pegan.models.stylegan2 import Generator, image_size, scale_pair
from pegan.nn.layers import random_noise

__all__ = ["ProjectSettings", "Projection", "default_scale", "prepare_target", "w_statistics", "project",
           "noise_regularisation", "learning_rate"]


@dataclass
class ProjectSettings:
    steps: int = 1000                  # NVIDIA's num_steps
    wplus: bool = False                # one style per layer (W+) instead of one w
    lr: float = 0.1                    # initial_learning_rate
    lr_rampup: float = 0.05            # fraction of the steps
    lr_rampdown: float = 0.25
    noise_factor: float = 0.05         # initial w noise, x w_std
    noise_ramp: float = 0.75           # fraction of the steps over which it falls to 0
    noise_reg: float = 1e5             # regularize_noise_weight
    w_avg_samples: int = 10000
    pixel_weight: float = 0.0          # x mean squared pixel error (1.0 when there is no VGG16)
    seed: int = 0                      # w_avg's z, the w noise, the initial noise maps

    def check(self) -> "ProjectSettings":
        checks.at_least(self.steps, 1, "--steps")
        checks.at_least(self.w_avg_samples, 1, "--w-avg-samples")
        for name in ("lr", "noise_factor", "noise_reg", "pixel_weight"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise InputError(f"projection setting {name} must be a finite number >= 0, got {v}")
        for name in ("lr_rampup", "lr_rampdown", "noise_ramp"):
            v = getattr(self, name)
            if not (0 < v <= 1):
                raise InputError(f"projection setting {name} must be in (0, 1], got {v}")
        return self


@dataclass
class Projection:
    latents: Latents                    # the projected w / W+ (no w noise) and noise maps
    images: np.ndarray                  # [N, H, W, 3] in [-1, 1], rendered from them
    targets: np.ndarray                 # [N, H, W, 3] in [-1, 1], the prepared targets
    losses: List[float]                 # the mean loss of each step
    frames: List[np.ndarray]            # images every ``frame_every`` steps (for a progress video)


def _units(side: int, out_size: int) -> int:
    return side * 4 // out_size


def default_scale(model: Generator, target_hw: Tuple[int, int], max_side: Optional[int] = None):
    """Among the chosen scales whose sides do not exceed the target's, the largest whose aspect is
    within 2% of the nearest aspect any of them has to the target's. An InputError when the
    target is smaller than the smallest scale (offset -3: a quarter of the native size)."""
    h, w = target_hw
    step = model.out_size // 4           # px per scale offset
    cands = []
    for sh in range(-3, h // step - 4 + 1):
        for sw in range(-3, w // step - 4 + 1):
            hh, ww = image_size(model.out_size, (sh, sw))
            if hh <= h and ww <= w and (max_side is None or max(hh, ww) <= max_side):
                err = abs(math.log((hh / ww) / (h / w)))
                cands.append((err, hh * ww, (sh, sw)))
    if not cands:
        raise InputError(f"the target is {h}x{w} px, smaller than this generator's smallest scale "
                         f"({step}x{step} px): use a larger image")
    best = min(c[0] for c in cands)
    return max((c for c in cands if c[0] <= best + 0.02), key=lambda c: c[1])[2]


def prepare_target(image: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """uint8 [H, W, 3] -> float32 [h, w, 3] in [-1, 1]: centre-cropped to the aspect of ``size``,
    then Lanczos-resized to it (as ``pegan prepare`` treats images)."""
    from PIL import Image

    H, W = image.shape[:2]
    h, w = size
    if H * w > W * h:                      # too tall: crop rows
        ch, cw = max(1, round(W * h / w)), W
    else:
        ch, cw = H, max(1, round(H * w / h))
    top, left = (H - ch) // 2, (W - cw) // 2
    im = Image.fromarray(np.ascontiguousarray(image[top:top + ch, left:left + cw]))
    if im.size != (w, h):
        im = im.resize((w, h), Image.LANCZOS)
    return np.asarray(im, np.float32) / 127.5 - 1.0


def w_statistics(loaded, samples: int, seed: int):
    """(w_avg [S], w_std) of ``samples`` mapped z ~ N(0, I): NVIDIA's start and noise scale
    (w_std = sqrt(sum |w - w_avg|^2 / samples))."""
    model: Generator = loaded.model
    z = np.asarray(jax.random.normal(jax.random.PRNGKey(int(seed)), (samples, model.style_channels)))
    ws = np.concatenate([to_w(loaded, z[i:i + 1024])[:, 0] for i in range(0, samples, 1024)]).astype(np.float64)
    avg = ws.mean(0)
    return avg.astype(np.float32), float(np.sqrt(np.sum((ws - avg) ** 2) / samples))


def noise_regularisation(noises) -> jnp.ndarray:
    """Per image [N]: the sum over maps and pyramid levels (2x average pools down to 8 px) of
    the squared mean products of each map with itself shifted by one pixel along x and along y."""
    total = 0.0
    for n in noises:
        x = n[..., 0]
        while True:
            total = total + jnp.square(jnp.mean(x * jnp.roll(x, 1, axis=2), axis=(1, 2)))
            total = total + jnp.square(jnp.mean(x * jnp.roll(x, 1, axis=1), axis=(1, 2)))
            if x.shape[1] <= 8 or x.shape[2] <= 8 or x.shape[1] % 2 or x.shape[2] % 2:
                break
            x = x.reshape(x.shape[0], x.shape[1] // 2, 2, x.shape[2] // 2, 2).mean(axis=(2, 4))
    return total


def learning_rate(s: ProjectSettings, step):
    """NVIDIA's ramp at step ``step`` (may be traced)."""
    t = step / s.steps
    ramp = jnp.minimum(1.0, (1.0 - t) / s.lr_rampdown)
    ramp = 0.5 - 0.5 * jnp.cos(ramp * jnp.pi)
    ramp = ramp * jnp.minimum(1.0, t / s.lr_rampup)
    return s.lr * ramp


def _normalise(n):
    n = n - jnp.mean(n, axis=(1, 2, 3), keepdims=True)
    return n * jax.lax.rsqrt(jnp.mean(jnp.square(n), axis=(1, 2, 3), keepdims=True))


def project(loaded, targets: np.ndarray, scale, settings: Optional[ProjectSettings] = None, perceptual=None,
            init: Optional[Latents] = None, progress: Optional[Callable[[int, float], None]] = None,
            frame_every: int = 0, devices=None) -> Projection:
    """Project ``targets`` [N, H, W, 3] (in [-1, 1], already at the size of ``scale``) into the
    generator. ``perceptual``: (maps, distance, params) of the perceptual distance
    (``pegan.eval.vgg.perceptual(load_vgg16(path)[1])``), or None (pixel error only).
    ``init``: start from these latents (w / W+ carried over;
    their noise maps too when they are at ``scale``, else fresh ones from the seed); the schedule
    and Adam start afresh. ``progress(step, loss)`` after every step. ``devices`` (default: the
    local devices): the targets are sharded over them when their count divides evenly."""
    import optax

    s = (settings or ProjectSettings()).check()
    model: Generator = loaded.model
    scale = scale_pair(scale)
    targets = jnp.asarray(targets, jnp.float32)
    n = targets.shape[0]
    hw = image_size(model.out_size, scale)
    if tuple(targets.shape[1:3]) != tuple(hw):
        raise InputError(f"targets are {targets.shape[1]}x{targets.shape[2]} px; chosen scale {scale} makes "
                         f"{hw[0]}x{hw[1]} (prepare them with prepare_target)")
    pixel_weight = s.pixel_weight if perceptual is not None else (s.pixel_weight or 1.0)
    L = model.num_latents
    w_avg, w_std = w_statistics(loaded, s.w_avg_samples, s.seed)
    k_noise, k_steps = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(int(s.seed)), 1))
    if init is not None:
        if len(init) != n:
            raise InputError(f"--init holds {len(init)} latents for {n} targets")
        w0 = np.asarray(init.w, np.float32)
        w0 = w0 if s.wplus else w0.mean(axis=1, keepdims=True)
        noises0 = (init.noises if tuple(init.scale) == scale and init.noises else
                   [np.asarray(x) for x in random_noise(k_noise, model.noise_shapes(scale), n)])
    else:
        w0 = np.broadcast_to(w_avg, (n, L if s.wplus else 1, w_avg.shape[0])).copy()
        noises0 = [np.asarray(x) for x in random_noise(k_noise, model.noise_shapes(scale), n)]
    params = {"w": jnp.asarray(w0), "noise": [_normalise(jnp.asarray(x)) for x in noises0]}

    devices = jax.local_devices() if devices is None else list(devices)
    if len(devices) > 1 and n % len(devices) == 0:   # independent targets: one shard per device
        from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

        shard = NamedSharding(Mesh(np.asarray(devices), ("data",)), P("data"))
        params = jax.device_put(params, shard)
        targets = jax.device_put(targets, shard)

    if perceptual is not None:
        perceptual_maps, perceptual_distance, vparams = perceptual
        target_maps = jax.jit(perceptual_maps)(vparams, targets)
    else:
        vparams, target_maps = None, None

    def synth(variables, w, noise):
        ws = jnp.broadcast_to(w, (w.shape[0], L, w.shape[-1]))
        return model.apply(variables, ws, scale, noise=list(noise), input_is_latent=True)

    def loss_fn(p, variables, vparams, target_maps, targets, key, step):
        t = step / s.steps
        w_noise_scale = w_std * s.noise_factor * jnp.square(jnp.maximum(0.0, 1.0 - t / s.noise_ramp))
        w = p["w"] + jax.random.normal(key, p["w"].shape) * w_noise_scale
        img = synth(variables, w, p["noise"])
        per = pixel_weight * jnp.mean(jnp.square(img - targets), axis=(1, 2, 3))
        if vparams is not None:
            per = per + perceptual_distance(perceptual_maps(vparams, img), target_maps)
        per = per + s.noise_reg * noise_regularisation(p["noise"])
        return jnp.sum(per), per

    opt = optax.adam(lambda count: learning_rate(s, count), b1=0.9, b2=0.999, eps=1e-8)
    opt_state = opt.init(params)

    @jax.jit
    def step_fn(p, opt_state, variables, vparams, target_maps, targets, step):
        key = jax.random.fold_in(k_steps, step)
        (_, per), grads = jax.value_and_grad(loss_fn, has_aux=True)(p, variables, vparams, target_maps, targets,
                                                                   key, step)
        upd, opt_state = opt.update(grads, opt_state, p)
        p = optax.apply_updates(p, upd)
        p = {"w": p["w"], "noise": [_normalise(x) for x in p["noise"]]}
        return p, opt_state, jnp.mean(per)

    render = jax.jit(synth)
    losses, frames = [], []
    for i in range(s.steps):
        params, opt_state, loss = step_fn(params, opt_state, loaded.variables, vparams, target_maps, targets,
                                          jnp.asarray(i, jnp.int32))
        if progress is not None or frame_every:
            loss = float(loss)
            if not math.isfinite(loss):
                raise InputError(f"the projection's loss became {loss} at step {i}: lower --lr")
        losses.append(loss)
        if progress is not None:
            progress(i, loss)
        if frame_every and (i % frame_every == 0 or i == s.steps - 1):
            frames.append(np.asarray(render(loaded.variables, params["w"], params["noise"])))
    losses = [float(v) for v in losses]
    if not all(math.isfinite(v) for v in losses):
        raise InputError("the projection's loss became non-finite: lower --lr")
    images = np.asarray(render(loaded.variables, params["w"], params["noise"]))
    w = np.broadcast_to(np.asarray(params["w"]), (n, L, model.style_channels)).copy()
    settings_out = dict(asdict(s), scale=list(scale), distance="vgg16+pixel" if perceptual is not None else "pixel",
                        pixel_weight=pixel_weight, w_std=w_std)
    lat = Latents(w, [np.asarray(x) for x in params["noise"]], scale, settings_out)
    return Projection(lat, images, np.asarray(targets), losses, frames)
