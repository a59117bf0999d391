"""MS-PIE StyleGAN2 generator and discriminator; the StyleGAN2 baselines (configs a/b) are the
same classes with ``deconv2conv=False`` and ``with_adaptive_pool=False``.

Generator (REFERENCE §2.3-2.14): mapping (PixelNorm + 8 equalized-lr layers, lr_mul 0.01) ->
head (learned constant, or an SPE/CSG grid at ``head_pos_size + chosen_scale`` or resized to it)
-> conv1 -> log2(out_size) - 2 up-blocks of two style convs and a ToRGB skip. ``chosen_scale``
``s`` (int or (s_h, s_w)) adds to the 4x4 head, so the image is ``(4 + s) * out_size / 4``.

Discriminator (§2.15): 1x1 conv, ResBlocks with blurred stride-2 convs, minibatch stddev,
3x3 conv, then a 2x2 adaptive average pool (MS-PIE, any input size) or the 4x4 flatten
(baselines), and two equalized-lr dense layers. Flatten order is the reference's NCHW order.

Intermediate outputs are sown into the ``intermediates`` collection as ``out.<reference module
name>`` (``out.head_input``, ``out.conv1``, ``out.convs.3``, ``out.mbstd_layer``, ...): apply with
``mutable=['intermediates']`` to get them.

Variables: ``params`` (raw weights) and, for the generator, ``buffers``:
``injected_noise_{i}`` [1, H, W, 1] (the reference's fixed noise at scale 0) and
``mean_latent`` [1, style_channels] (for truncation; computed by ``compute_mean_latent``).
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from pegan import checks, encodings, ops
from pegan.errors import InputError
from pegan.nn.layers import EqualConv, EqualDense, StyleConv, ToRGB, random_noise
from pegan.compute import forms_of, module_dtype, resolve as resolve_compute
from pegan.models._config import module_kwargs
from pegan.ops.forms import Forms

__all__ = ["channel_table", "Generator", "Discriminator", "scale_pair", "compute_mean_latent",
           "image_size", "checked_scale", "build_generator", "build_discriminator", "abstract_variables"]

Scale = Union[int, Tuple[int, int], Sequence[int]]


def channel_table(channel_multiplier: int = 2, channels=None) -> Dict[int, int]:
    """Resolution -> width. ``channels`` (a dict or pairs) overrides the reference table."""
    if channels is not None:
        return {int(k): int(v) for k, v in dict(channels).items()}
    cm = channel_multiplier
    return {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * cm, 128: 128 * cm, 256: 64 * cm,
            512: 32 * cm, 1024: 16 * cm}


def scale_pair(chosen_scale: Scale) -> Tuple[int, int]:
    if isinstance(chosen_scale, (int, np.integer)):
        return int(chosen_scale), int(chosen_scale)
    sh, sw = chosen_scale
    return int(sh), int(sw)


def image_size(out_size: int, chosen_scale: Scale) -> Tuple[int, int]:
    """Output (H, W) of a generator with ``out_size`` at ``chosen_scale``."""
    sh, sw = scale_pair(chosen_scale)
    f = out_size // 4
    return (4 + sh) * f, (4 + sw) * f


def checked_scale(out_size: int, chosen_scale: Scale, max_side: Optional[int] = checks.MAX_SIDE,
                  what: Optional[str] = None) -> Tuple[int, int]:
    """``scale_pair(chosen_scale)`` when it makes an image: every offset at least -3 (a head of
    at least 1 x 1) and no side over ``max_side`` px (None: no bound); else an InputError."""
    sh, sw = scale_pair(chosen_scale)
    what = what or f"chosen scale {sh},{sw}"
    if min(sh, sw) < -3:
        raise InputError(f"{what}: every scale offset must be at least -3 (the image side is (4 + S) * "
                         f"{out_size // 4} px at out_size {out_size})")
    checks.image_size(image_size(out_size, (sh, sw)), what, max_side)
    return sh, sw


class Generator(nn.Module):
    out_size: int = 256                       # native output size (scale 0)
    style_channels: int = 512                 # z and w width
    num_mlps: int = 8                         # mapping depth
    channel_multiplier: int = 2
    channels: Any = None                      # optional {resolution: width} override (tiny models)
    lr_mlp: float = 0.01                      # mapping lr multiplier
    head_pos_encoding: Any = None             # None | {'type': 'SPE', ...} | {'type': 'CSG'}
    head_pos_size: Tuple[int, int] = (4, 4)   # grid size of the head at scale 0 (PE heads)
    interp_head: bool = False                 # PE heads: build at head_pos_size, then resize
    no_pad: bool = False                      # 3x3 convs without padding (configs h-k), 6x6 constant
    deconv2conv: bool = False                 # False: transposed conv + blur (baselines)
    up_after_conv: bool = False               # deconv2conv: conv then x2 (c-g) or x2 then conv (h-k)
    interp_pad: Optional[int] = None          # extra pixels of the bilinear resize before a conv
    forms: Forms = Forms()                    # forms of the ops (pegan.ops.forms; pegan.compute)
    dtype: Any = None                         # compute dtype of the synthesis network (e.g.
    # 'bfloat16' for mixed precision: parameters, mapping network and the returned image and
    # latents stay float32); None computes in the dtype of z

    # -- structure ------------------------------------------------------------------------
    @property
    def log_size(self) -> int:
        return int(math.log2(self.out_size))

    @property
    def num_latents(self) -> int:
        return 2 * self.log_size - 2

    @property
    def num_injected_noises(self) -> int:
        return self.num_latents - 1

    @property
    def channel_dict(self) -> Dict[int, int]:
        return channel_table(self.channel_multiplier, self.channels)

    def encoding(self):
        cfg = self.head_pos_encoding
        return encodings.encoding_from_config(dict(cfg) if cfg is not None else None)

    def noise_shapes(self, chosen_scale: Scale = 0) -> List[Tuple[int, int]]:
        """Spatial size of every injected noise at ``chosen_scale`` (REFERENCE §2.12)."""
        sh, sw = scale_pair(chosen_scale)
        bh, bw = 4 + sh, 4 + sw
        shapes = [(bh, bw)]
        extra = 2 if (self.no_pad and not self.up_after_conv and self.deconv2conv) else 0
        for i in range(3, self.log_size + 1):
            f = 2 ** (i - 2)
            shapes += [(bh * f + extra, bw * f + extra), (bh * f, bw * f)]
        return shapes

    def setup(self):
        ch = self.channel_dict
        enc = self.encoding()
        self.head_enc = enc
        self.style_mapping = [EqualDense(self.style_channels, self.lr_mlp, activation=True)
                              for _ in range(self.num_mlps)]
        if enc is None:
            size = 6 if self.no_pad else 4
            self.constant_input = self.param("constant_input", nn.initializers.normal(1.0),
                                             (1, size, size, ch[4]))
        pad = 0 if self.no_pad else 1
        self.conv1 = StyleConv(ch[4], 3, padding=pad, forms=self.forms)
        self.to_rgb1 = ToRGB(forms=self.forms)
        if self.deconv2conv:
            up = "after" if self.up_after_conv else "before"
        else:
            up = "transposed"
        convs, to_rgbs = [], []
        for i in range(3, self.log_size + 1):
            c_out = ch[2 ** i]
            convs.append(StyleConv(c_out, 3, up=up, padding=pad, interp_pad=self.interp_pad,
                                   forms=self.forms))
            convs.append(StyleConv(c_out, 3, padding=pad, forms=self.forms))
            to_rgbs.append(ToRGB(forms=self.forms))
        self.convs, self.to_rgbs = convs, to_rgbs
        shapes = self.noise_shapes(0)
        self.injected_noise = [
            self.variable("buffers", f"injected_noise_{i}",
                          lambda s=s: jax.random.normal(self.make_rng("params"), (1,) + s + (1,)))
            for i, s in enumerate(shapes)]
        self.mean_latent = self.variable("buffers", "mean_latent",
                                         lambda: jnp.zeros((1, self.style_channels)))

    # -- pieces ---------------------------------------------------------------------------
    def mapping(self, z):
        """z [N, S] -> w [N, S]."""
        x = ops.pixel_norm(z)
        for layer in self.style_mapping:
            x = layer(x)
        return x

    def head(self, batch: int, chosen_scale: Scale = 0, dtype=jnp.float32):
        """The input of conv1 [N, h, w, C] at ``chosen_scale``."""
        sh, sw = scale_pair(chosen_scale)
        enc = self.head_enc
        if enc is None:
            x = jnp.broadcast_to(self.constant_input, (batch,) + self.constant_input.shape[1:]).astype(dtype)
            size = self.constant_input.shape[1]
            if (sh, sw) != (0, 0):
                x = ops.resize_bilinear(x, (size + sh, size + sw), align_corners=True, impl=self.forms.resize)
            return x
        hp, wp = self.head_pos_size
        if self.interp_head:
            grid = enc.grid(hp, wp, batch, dtype)
            return ops.resize_bilinear(grid, (hp + sh, wp + sw), align_corners=True, impl=self.forms.resize)
        return enc.grid(hp + sh, wp + sw, batch, dtype)

    def resolve_noise(self, noise, batch: int, chosen_scale: Scale, rng=None, dtype=jnp.float32):
        """Per-layer noise: a list of arrays, 'const' (the buffers, scale 0 only) or None (drawn
        from ``rng``, the reference's ``randomize_noise=True``)."""
        shapes = self.noise_shapes(chosen_scale)
        if noise is None:
            if rng is None:
                raise InputError("generator needs `noise` (a list, or 'const') or an `rng` to draw it")
            return random_noise(rng, shapes, batch, dtype)
        if isinstance(noise, str):
            if noise != "const":
                raise InputError(f"noise must be a list of arrays, 'const' or None; got {noise!r}")
            if scale_pair(chosen_scale) != (0, 0):
                raise InputError("the stored (const) noise exists only at chosen_scale 0; pass noise "
                                 "explicitly or draw it from an rng at other scales")
            return [v.value.astype(dtype) for v in self.injected_noise]
        noise = list(noise)
        if len(noise) != len(shapes):
            raise ValueError(f"expected {len(shapes)} noise maps, got {len(noise)}")
        for i, (n, s) in enumerate(zip(noise, shapes)):
            if tuple(n.shape[1:3]) != s:
                raise ValueError(f"noise {i} has spatial size {tuple(n.shape[1:3])}, expected {s} "
                                 f"at chosen_scale {chosen_scale}")
        return [jnp.asarray(n, dtype) for n in noise]

    def synthesis(self, latent, noise: List, chosen_scale: Scale = 0):
        """latent [N, L, S] + per-layer noise -> image [N, H, W, 3]."""
        n = latent.shape[0]
        x = self.head(n, chosen_scale, latent.dtype)
        self.sow("intermediates", "out.head_input", x)
        x = self.conv1(x, latent[:, 0], noise[0])
        self.sow("intermediates", "out.conv1", x)
        skip = self.to_rgb1(x, latent[:, 1])
        self.sow("intermediates", "out.to_rgb1", skip)
        idx = 1
        for k, to_rgb in enumerate(self.to_rgbs):
            x = self.convs[2 * k](x, latent[:, idx], noise[2 * k + 1])
            self.sow("intermediates", f"out.convs.{2 * k}", x)
            x = self.convs[2 * k + 1](x, latent[:, idx + 1], noise[2 * k + 2])
            self.sow("intermediates", f"out.convs.{2 * k + 1}", x)
            skip = to_rgb(x, latent[:, idx + 2], skip)
            self.sow("intermediates", f"out.to_rgbs.{k}", skip)
            idx += 2
        return skip

    def __call__(self, z, chosen_scale: Scale = 0, *, noise=None, rng=None,
                 truncation: float = 1.0, mean_latent=None, z2=None, inject_index=None,
                 input_is_latent: bool = False, return_latents: bool = False):
        """Generate images.

        z: [N, S] latent codes (or w [N, S] / per-layer w [N, L, S] with ``input_is_latent``).
        chosen_scale: int or (s_h, s_w). noise: see ``resolve_noise``.
        truncation < 1: ``w = mean + t * (w - mean)`` against ``mean_latent`` (default: the
        stored buffer); a Python number is fixed in the program, a (traced) array is an input. z2 + inject_index: style mixing, layers < inject_index use z, the rest
        z2 (inject_index may be a traced int; ``num_latents`` means no mixing).
        Returns the image [N, H, W, 3] (and the latent [N, L, S] with ``return_latents``).
        """
        L = self.num_latents
        styles = [z] if z2 is None else [z, z2]
        if not input_is_latent:
            styles = [self.mapping(s) for s in styles]
        traced = not isinstance(truncation, (int, float))   # an array: one program for every value
        if traced or truncation < 1:
            mean = self.mean_latent.value if mean_latent is None else mean_latent
            mean = jnp.asarray(mean, styles[0].dtype)
            if styles[0].ndim == 3:
                mean = mean.reshape(1, 1, -1)
            if traced:       # the same rule, selected: a value >= 1 leaves w exactly as it is
                t = jnp.asarray(truncation, styles[0].dtype)
                styles = [jnp.where(t < 1, mean + t * (s - mean), s) for s in styles]
            else:
                styles = [mean + truncation * (s - mean) for s in styles]
        styles = [s if s.ndim == 3 else jnp.broadcast_to(s[:, None], (s.shape[0], L, s.shape[-1]))
                  for s in styles]
        if len(styles) == 1:
            latent = styles[0]
        else:
            if inject_index is None:
                raise ValueError("style mixing (z2) needs an inject_index in [1, num_latents - 1]")
            layer = jnp.arange(L)[None, :, None]
            latent = jnp.where(layer < inject_index, styles[0], styles[1])
        work = latent if self.dtype is None else latent.astype(self.dtype)
        noises = self.resolve_noise(noise, latent.shape[0], chosen_scale, rng, work.dtype)
        img = self.synthesis(work, noises, chosen_scale)
        if self.dtype is not None:
            img = img.astype(latent.dtype)
        return (img, latent) if return_latents else img


class _ResBlock(nn.Module):
    features: int
    forms: Forms = Forms()

    @nn.compact
    def __call__(self, x):
        cin = x.shape[-1]
        f = self.forms
        y = EqualConv(cin, 3, padding=1, forms=f, name="conv1")(x)
        y = EqualConv(self.features, 3, stride=2, padding=0, blur_pad=((2, 2), (2, 2)), forms=f, name="conv2")(y)
        s = EqualConv(self.features, 1, stride=2, padding=0, use_bias=False, activation=False,
                      blur_pad=((1, 1), (1, 1)), forms=f, name="skip")(x)
        return (y + s) * (1.0 / math.sqrt(2.0))


class Discriminator(nn.Module):
    in_size: int = 256                         # native input size (sets the number of blocks)
    channel_multiplier: int = 2
    channels: Any = None                       # optional {resolution: width} override
    with_adaptive_pool: bool = True            # MS-PIE: 2x2 adaptive pool, any input size
    pool_size: Tuple[int, int] = (2, 2)
    mbstd_group_size: int = 4
    mbstd_channel_groups: int = 1
    dtype: Any = None                          # compute dtype (e.g. 'bfloat16'); logits come back in
    # the input's dtype; None computes in the input's dtype
    forms: Forms = Forms()                     # forms of the ops (pegan.ops.forms; pegan.compute)

    @nn.compact
    def __call__(self, x):
        """x [N, H, W, 3] -> logits [N, 1]."""
        ch = channel_table(self.channel_multiplier, self.channels)
        out_dtype = x.dtype
        if self.dtype is not None:
            x = x.astype(self.dtype)
        log_size = int(math.log2(self.in_size))
        x = EqualConv(ch[self.in_size], 1, use_bias=True, forms=self.forms, name="convs_0")(x)
        self.sow("intermediates", "out.convs.0", x)
        for j, i in enumerate(range(log_size, 2, -1), start=1):
            x = _ResBlock(ch[2 ** (i - 1)], self.forms, name=f"convs_{j}")(x)
            self.sow("intermediates", f"out.convs.{j}", x)
        x = ops.minibatch_stddev(x, self.mbstd_group_size, self.mbstd_channel_groups)
        self.sow("intermediates", "out.mbstd_layer", x)
        x = EqualConv(ch[4], 3, padding=1, forms=self.forms, name="final_conv")(x)
        self.sow("intermediates", "out.final_conv", x)
        if self.with_adaptive_pool:
            x = ops.adaptive_avg_pool2d(x, tuple(self.pool_size))
        elif x.shape[1:3] != (4, 4):
            raise ValueError(f"baseline discriminator needs {self.in_size}px input, got "
                             f"{x.shape[1] * 2 ** (log_size - 2)}px (4x4 before the flatten)")
        x = x.transpose(0, 3, 1, 2).reshape(x.shape[0], -1)   # NCHW flatten order
        x = EqualDense(ch[4], activation=True, name="final_linear_0")(x)
        return EqualDense(1, name="final_linear_1")(x).astype(out_dtype)


def compute_mean_latent(generator: Generator, variables, key, num_samples: int = 4096,
                        batch: int = 1024) -> jnp.ndarray:
    """Mean of mapping(z) over ``num_samples`` z ~ N(0, I) (the reference's get_mean_latent)."""
    buffers = dict(variables.get("buffers", {}))
    buffers.setdefault("mean_latent", jnp.zeros((1, generator.style_channels)))
    variables = {**variables, "buffers": buffers}
    fn = jax.jit(lambda v, z: generator.apply(v, z, method=Generator.mapping))
    total = jnp.zeros((generator.style_channels,), jnp.float32)
    keys = jax.random.split(key, -(-num_samples // batch))
    done = 0
    for k in keys:
        n = min(batch, num_samples - done)
        z = jax.random.normal(k, (n, generator.style_channels))
        total = total + jnp.sum(fn(variables, z), axis=0)
        done += n
    return (total / num_samples)[None]


def _compute_kwargs(cfg, forms: Optional[Forms]) -> dict:
    """forms and dtype from ``cfg.compute`` resolved for this backend (pegan.compute)."""
    res = resolve_compute(cfg)
    return {"forms": forms or forms_of(res), "dtype": module_dtype(res)}


def _check_buildable(module, size_field: str, section: str):
    """``module`` when its config fields can build it: widths and depths of at least 1, a
    positive pool, a known encoding, a size that is a power of two from 8 to 4096 and a channel
    table with a positive width for every resolution from 4 to that size; else an InputError
    naming the fields (a KeyError, ZeroDivisionError or ValueError deep inside the set-up before)."""
    for field in ("style_channels", "num_mlps"):
        if hasattr(module, field) and not (isinstance(getattr(module, field), int) and getattr(module, field) >= 1):
            raise InputError(f"{section}.{field} must be a whole number of at least 1, got {getattr(module, field)!r}")
    pool = getattr(module, "pool_size", None)
    if getattr(module, "with_adaptive_pool", False) and not (
            pool is not None and len(pool) == 2 and all(isinstance(v, int) and v >= 1 for v in pool)):
        raise InputError(f"{section}.pool_size must be two whole numbers of at least 1, got {pool!r}")
    if hasattr(module, "head_pos_encoding"):     # (built outside the module: it is unbound here)
        encodings.checked_encoding(module.head_pos_encoding, f"{section}.head_pos_encoding")
    size = getattr(module, size_field)
    if not (isinstance(size, int) and 8 <= size <= 4096 and size & (size - 1) == 0):
        raise InputError(f"{section}.{size_field} must be a power of two from 8 to 4096, got {size!r}")
    try:
        table = channel_table(module.channel_multiplier, module.channels)
    except (TypeError, ValueError):
        raise InputError(f"{section}.channels must be [resolution, width] pairs, got {module.channels!r}"[:200]) from None
    need = [2 ** i for i in range(2, int(math.log2(size)) + 1)]
    missing = [r for r in need if r not in table]
    if missing:
        raise InputError(f"{section}.{size_field} {size} needs a width for resolution {', '.join(map(str, missing))} "
                         f"in {section}.channels (it has {', '.join(map(str, sorted(table)))})")
    bad = [r for r in need if table[r] < 1]
    if bad:
        raise InputError(f"{section}.channels: the width of resolution {bad[0]} must be at least 1, got {table[bad[0]]}")
    return module


def build_generator(cfg, forms: Optional[Forms] = None, **overrides) -> Generator:
    """Generator of an experiment config (``cfg.generator`` or the whole config). ``forms`` and
    the compute dtype default to ``cfg.compute`` resolved for this backend; ``overrides`` win."""
    g = cfg.generator if hasattr(cfg, "generator") else cfg
    return _check_buildable(Generator(**{**module_kwargs(g), **_compute_kwargs(cfg, forms), **overrides}),
                         "out_size", "generator")


def build_discriminator(cfg, forms: Optional[Forms] = None, **overrides) -> Discriminator:
    d = cfg.discriminator if hasattr(cfg, "discriminator") else cfg
    return _check_buildable(Discriminator(**{**module_kwargs(d), **_compute_kwargs(cfg, forms), **overrides}),
                         "in_size", "discriminator")


def abstract_variables(module):
    """``jax.eval_shape`` of the variables of a Generator or Discriminator (no compute)."""
    key = jax.random.PRNGKey(0)
    if isinstance(module, Generator):
        z = jnp.zeros((1, module.style_channels))
        return jax.eval_shape(lambda: module.init(key, z, noise="const"))
    x = jnp.zeros((1, module.in_size, module.in_size, 3))
    return jax.eval_shape(lambda: module.init(key, x))
