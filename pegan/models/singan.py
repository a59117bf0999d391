"""PE-SinGAN (REFERENCE §2.16-2.17): a pyramid of residual generator blocks with a positional
encoding (CSG or SPE) added to the first stage's noise, and per-stage patch discriminators.

All arrays are NHWC. Noise handling is explicit: the generator takes one noise map per stage
(``fixed_noises`` for reconstruction, fresh draws of the same shapes for random samples, see
``draw_noises``); stage 0 noise has ``first_fixed_noises_ch`` channels, later stages one
channel broadcast over RGB (as PESinGAN). ``train=True`` runs BatchNorm on batch statistics and
updates the running statistics of every block that runs (``mutable=['batch_stats']``), as the
reference's train-mode forwards do; ``train=False`` uses the running statistics.

Variables: ``params`` (conv ``kernel`` [3, 3, in, out] / ``bias``, BN ``scale`` / ``bias``) and
``batch_stats`` (BN ``mean`` / ``var``), under ``blocks_{t}/{head|block1|block2|block3|tail}``.
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from pegan import encodings, ops
from pegan.compute import forms_for
from pegan.errors import InputError
from pegan.models._config import module_kwargs
from pegan.ops.forms import Forms

__all__ = ["stage_widths", "BatchNorm", "GeneratorBlock", "DiscriminatorBlock", "SinGANGenerator",
           "SinGANDiscriminator", "draw_noises", "PAD_HEAD", "build_generator", "build_discriminator",
           "noise_shapes", "abstract_variables"]

PAD_HEAD = 5           # (kernel_size - 1) / 2 * num_layers: what one block's valid convs remove


def stage_widths(stage: int, base_channels: int, min_feat_channels: int) -> List[Tuple[int, int]]:
    """(in, out) widths of the head's output and the three body convs at ``stage``; the head
    input and the tail output (3 or 1) are added by the blocks (REFERENCE §2.16)."""
    base = min(base_channels * 2 ** (stage // 4), 128)
    minf = min(min_feat_channels * 2 ** (stage // 4), 128)
    widths = [(None, base)]
    for i in range(1, 4):
        f = int(base / 2 ** i)
        widths.append((max(2 * f, minf), max(f, minf)))
    return widths


class BatchNorm(nn.Module):
    """PyTorch BatchNorm2d semantics: batch statistics with the biased variance for the
    normalisation, running variance updated with the unbiased one, momentum 0.1, eps 1e-5."""
    momentum: float = 0.1
    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x, train: bool):
        c = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (c,))
        bias = self.param("bias", nn.initializers.zeros, (c,))
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((c,), jnp.float32))
        ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((c,), jnp.float32))
        if train:
            axes = (0, 1, 2)
            mean = jnp.mean(x, axes)
            var = jnp.mean(jnp.square(x - mean), axes)
            if not self.is_initializing() and self.is_mutable_collection("batch_stats"):
                n = x.shape[0] * x.shape[1] * x.shape[2]
                unbiased = var * (n / max(n - 1, 1))
                m = self.momentum
                ra_mean.value = (1 - m) * ra_mean.value + m * jax.lax.stop_gradient(mean)
                ra_var.value = (1 - m) * ra_var.value + m * jax.lax.stop_gradient(unbiased)
        else:
            mean, var = ra_mean.value, ra_var.value
        return (x - mean) * jax.lax.rsqrt(var + self.epsilon) * scale + bias


class ConvLayer(nn.Module):
    """3x3 conv (explicit zero padding ``padding``) -> optional BN -> optional LeakyReLU(0.2)."""
    features: int
    padding: int = 0
    use_bias: bool = False
    norm: bool = True
    act: bool = True
    forms: Forms = Forms()

    @nn.compact
    def __call__(self, x, train: bool):
        k = self.param("kernel", nn.initializers.normal(0.02), (3, 3, x.shape[-1], self.features))
        y = ops.conv2d(x, k.astype(x.dtype), padding=self.padding, impl=self.forms.conv)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,)).astype(x.dtype)
        if self.norm:
            y = BatchNorm(name="bn")(y, train)
        if self.act:
            y = jnp.where(y >= 0, y, 0.2 * y)
        return y


class GeneratorBlock(nn.Module):
    """head -> body (3 conv+BN+LReLU) -> tail conv -> tanh; returns that + ``prev``."""
    stage: int
    base_channels: int = 32
    min_feat_channels: int = 32
    padding: int = 0
    forms: Forms = Forms()

    @nn.compact
    def __call__(self, x, prev, train: bool = False):
        w = stage_widths(self.stage, self.base_channels, self.min_feat_channels)
        f = self.forms
        y = ConvLayer(w[0][1], self.padding, forms=f, name="head")(x, train)
        for i in range(1, 4):
            y = ConvLayer(w[i][1], self.padding, forms=f, name=f"block{i}")(y, train)
        y = ConvLayer(3, self.padding, use_bias=True, norm=False, act=False, forms=f, name="tail")(y, train)
        return jnp.tanh(y) + prev


class DiscriminatorBlock(nn.Module):
    """5 valid 3x3 convs: a patch map of (H - 10, W - 10). With BN the head/body convs have no bias."""
    stage: int
    base_channels: int = 32
    min_feat_channels: int = 32
    use_bn: bool = True
    forms: Forms = Forms()

    @nn.compact
    def __call__(self, x, train: bool = False):
        w = stage_widths(self.stage, self.base_channels, self.min_feat_channels)
        bias, f = not self.use_bn, self.forms
        y = ConvLayer(w[0][1], 0, use_bias=bias, norm=self.use_bn, forms=f, name="head")(x, train)
        for i in range(1, 4):
            y = ConvLayer(w[i][1], 0, use_bias=bias, norm=self.use_bn, forms=f, name=f"block{i}")(y, train)
        return ConvLayer(1, 0, use_bias=True, norm=False, act=False, forms=f, name="tail")(y, train)


def draw_noises(key, shapes: Sequence[Tuple[int, ...]], num: int = 1, dtype=jnp.float32):
    """Fresh N(0, 1) noises [num, H, W, C] of the given per-stage (H, W, C) shapes ('rand' mode)."""
    keys = jax.random.split(key, len(shapes))
    return [jax.random.normal(k, (num,) + tuple(s), dtype) for k, s in zip(keys, shapes)]


class SinGANGenerator(nn.Module):
    num_scales: int = 10                      # stages 0..num_scales
    base_channels: int = 32
    min_feat_channels: int = 32
    padding: int = 0                          # conv padding inside blocks (0 or 1)
    pad_at_head: bool = True                  # pad the block input by 5 px (padding 0 configs)
    interp_pad: bool = False                  # ... by bicubic resizing instead of zeros
    noise_with_pad: bool = False              # the noises already carry the 2 * 5 px
    positional_encoding: Any = None           # None | {'type': 'CSG'} | {'type': 'SPE', ...}
    first_stage_in_channels: Optional[int] = None
    forms: Forms = Forms()                    # forms of the ops (pegan.ops.forms; pegan.compute)

    def setup(self):
        self.blocks = [GeneratorBlock(t, self.base_channels, self.min_feat_channels, self.padding, self.forms)
                       for t in range(self.num_scales + 1)]
        cfg = self.positional_encoding
        self.pos_enc = encodings.encoding_from_config(dict(cfg) if cfg is not None else None)

    def image_size(self, noise_shape) -> Tuple[int, int]:
        """Stage image size from its noise's (H, W)."""
        h, w = noise_shape[:2]
        p = 2 * PAD_HEAD if self.noise_with_pad else 0
        return h - p, w - p

    def _stage_input(self, t, noise, g, weight):
        if t == 0 and self.pos_enc is not None:
            h, w = noise.shape[1:3]
            noise = noise + self.pos_enc.grid(h, w, 1, noise.dtype)
        if self.pad_at_head:
            if self.interp_pad:
                if self.noise_with_pad:
                    size = noise.shape[1:3]
                else:
                    size = (noise.shape[1] + 2 * PAD_HEAD, noise.shape[2] + 2 * PAD_HEAD)
                    noise = ops.resize_bicubic(noise, size, align_corners=True, impl=self.forms.resize)
                g_pad = ops.resize_bicubic(g, size, align_corners=True, impl=self.forms.resize)
            else:
                if not self.noise_with_pad:
                    noise = ops.pad2d(noise, PAD_HEAD, "zero")
                g_pad = ops.pad2d(g, PAD_HEAD, "zero")
        else:
            g_pad = g
        if t == 0 and self.pos_enc is not None:
            return noise * weight
        return noise * weight + g_pad

    def __call__(self, noises: Sequence, noise_weights: Sequence[float], curr_scale: Optional[int] = None,
                 input_sample=None, train: bool = False, return_stages: bool = False,
                 start_stage: int = 0):
        """Run stages ``start_stage..curr_scale``.

        noises: one [N or 1, H_t, W_t, C_t] map per stage (at least up to ``curr_scale``);
        a batch-1 noise is broadcast over the batch. noise_weights: the per-stage amplitudes.
        input_sample: the image entering ``start_stage`` (default: zeros of the stage-0 image
        size, with the batch of the noises); for ``start_stage > 0`` it is the (already resized)
        image the pyramid continues from (SinGAN editing / harmonisation).
        Returns the image [N, H, W, 3] (and the per-stage outputs before upsampling).
        """
        curr_scale = self.num_scales if curr_scale is None else curr_scale
        n = max(int(x.shape[0]) for x in noises[start_stage:curr_scale + 1])
        if input_sample is None:
            if start_stage != 0:
                raise ValueError("starting at a later stage needs the input image")
            h, w = self.image_size(noises[0].shape[1:3])
            input_sample = jnp.zeros((n, h, w, 3), noises[0].dtype)
        g = input_sample
        outs = []
        for t in range(start_stage, curr_scale + 1):
            noise = noises[t]
            x = self._stage_input(t, noise, g, jnp.asarray(noise_weights[t], g.dtype))
            if x.shape[0] != g.shape[0]:
                x = jnp.broadcast_to(x, (max(x.shape[0], g.shape[0]),) + x.shape[1:])
            g = self.blocks[t](jax.lax.stop_gradient(x), g, train)
            outs.append(g)
            if t < curr_scale:
                g = ops.resize_bicubic(g, self.image_size(noises[t + 1].shape[1:3]), align_corners=True,
                                       impl=self.forms.resize)
        return (g, outs) if return_stages else g


class SinGANDiscriminator(nn.Module):
    num_scales: int = 10
    base_channels: int = 32
    min_feat_channels: int = 32
    use_bn: bool = True
    forms: Forms = Forms()

    def setup(self):
        self.blocks = [DiscriminatorBlock(t, self.base_channels, self.min_feat_channels, self.use_bn, self.forms)
                       for t in range(self.num_scales + 1)]

    def __call__(self, x, curr_scale: int, train: bool = False):
        return self.blocks[curr_scale](x, train)

    def init_all(self, sizes: Sequence[Tuple[int, int]]):
        """Touch every block (for ``init`` / ``eval_shape`` of all variables)."""
        return [self.blocks[t](jnp.zeros((1,) + tuple(s) + (3,)), False) for t, s in enumerate(sizes)]




def _check_padding(g) -> None:
    """The generator's padding settings fit together: a block's five 3x3 convolutions keep the
    size with ``padding`` 1, and remove the 2 * PAD_HEAD px that ``pad_at_head`` adds with
    ``padding`` 0; noises drawn with that padding need it. Else an InputError naming the fields
    (a shape error inside the first stage before)."""
    pad, head, with_pad = g.get("padding"), g.get("pad_at_head"), g.get("noise_with_pad")
    if pad not in (0, 1) or isinstance(pad, bool):
        raise InputError(f"generator.padding must be 0 or 1, got {pad!r}")
    if bool(head) != (pad == 0):
        raise InputError(f"generator.padding {pad} needs generator.pad_at_head {'true' if pad == 0 else 'false'}: "
                         f"a stage's convolutions {'remove' if pad == 0 else 'keep'} the {2 * PAD_HEAD} px "
                         "the head padding adds")
    if with_pad and not head:
        raise InputError("generator.noise_with_pad needs generator.pad_at_head true")


def build_generator(cfg, forms: Optional[Forms] = None) -> SinGANGenerator:
    """``forms``: the ops' forms (default: ``cfg.compute`` resolved for this backend)."""
    _check_padding(cfg.generator)
    encodings.checked_encoding(cfg.generator.get("positional_encoding"), "generator.positional_encoding")
    return SinGANGenerator(**module_kwargs(cfg.generator), forms=forms or forms_for(cfg))


def build_discriminator(cfg, forms: Optional[Forms] = None) -> SinGANDiscriminator:
    return SinGANDiscriminator(**module_kwargs(cfg.discriminator), forms=forms or forms_for(cfg))


def noise_shapes(cfg, sizes: Sequence[Tuple[int, int]]) -> List[Tuple[int, int, int]]:
    """Per-stage (H, W, C) of the noises for image sizes ``sizes`` (the pyramid)."""
    pad = 2 * PAD_HEAD if cfg.noise.fixed_noise_with_pad else 0
    return [(h + pad, w + pad, cfg.noise.first_fixed_noises_ch if t == 0 else 1)
            for t, (h, w) in enumerate(sizes)]


def dummy_pyramid(num_scales: int, base: Tuple[int, int] = (25, 25)) -> List[Tuple[int, int]]:
    return [(base[0] + 2 * t, base[1] + 2 * t) for t in range(num_scales + 1)]


def abstract_variables(model, cfg, sizes=None):
    """``jax.eval_shape`` of all variables (every stage) of a SinGAN generator or discriminator."""
    n = cfg.generator.num_scales
    sizes = sizes or dummy_pyramid(n)
    key = jax.random.PRNGKey(0)
    if isinstance(model, SinGANGenerator):
        noises = [jnp.zeros((1,) + s) for s in noise_shapes(cfg, sizes)]
        return jax.eval_shape(lambda: model.init(key, noises, [1.0] * (n + 1)))
    return jax.eval_shape(lambda: model.init(key, sizes, method=SinGANDiscriminator.init_all))
