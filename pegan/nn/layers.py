"""Flax building blocks over ``pegan.ops``: equalized-lr layers and the StyleGAN2 style layers.

Raw weights are stored as parameters (what the reference calls ``weight_orig``) and the
equalized-learning-rate scale ``lr_mul / sqrt(fan_in)`` is applied in the forward pass
(REFERENCE §2.4, §4.7), so Adam sees the same parameterisation as the reference. All gains
are 1 in these models. Layout: NHWC activations, HWIO kernels, [in, out] dense kernels.
"""

from __future__ import annotations

import math
from typing import Optional, Union

import flax.linen as nn
import jax
import jax.numpy as jnp

from pegan import ops
from pegan.ops.forms import Forms

__all__ = ["EqualDense", "EqualConv", "ModulatedConv", "StyleConv", "ToRGB", "NoiseInjection"]


def _normal(stddev: float):
    return nn.initializers.normal(stddev=stddev)


class EqualDense(nn.Module):
    """``y = x @ (W * lr_mul / sqrt(in)) + b * lr_mul``, optionally with the fused bias-lrelu."""

    features: int                  # output width
    lr_mul: float = 1.0            # learning-rate multiplier (0.01 in the mapping network)
    bias_init: float = 0.0         # 1.0 for style modulation
    activation: bool = False       # True: sqrt(2) * lrelu_0.2(y + b * lr_mul)

    @nn.compact
    def __call__(self, x):
        x = x.reshape(x.shape[0], -1)
        fan_in = x.shape[-1]
        kernel = self.param("kernel", _normal(1.0 / self.lr_mul), (fan_in, self.features))
        bias = self.param("bias", nn.initializers.constant(self.bias_init), (self.features,))
        y = x @ (kernel * (self.lr_mul / math.sqrt(fan_in))).astype(x.dtype)
        b = (bias * self.lr_mul).astype(y.dtype)
        return ops.bias_leaky_relu(y, b) if self.activation else y + b


class EqualConv(nn.Module):
    """Equalized-lr convolution (raw weight ~ N(0, 1), scaled by 1/sqrt(in*k*k)), optional
    blur before a stride-2 conv and fused bias-lrelu after, as the reference ``ConvDownLayer``."""

    features: int
    kernel_size: int
    stride: int = 1
    padding: Union[int, str] = 0
    use_bias: bool = True                 # the bias of the fused activation (or a plain bias)
    activation: bool = True               # fused bias + lrelu with gain sqrt(2)
    blur_pad: Optional[tuple] = None      # ((y0, y1), (x0, x1)) blur with [1,3,3,1] before the conv
    forms: Forms = Forms()                # conv and blur forms (pegan.ops.forms)

    @nn.compact
    def __call__(self, x):
        k, cin = self.kernel_size, x.shape[-1]
        weight = self.param("weight", _normal(1.0), (k, k, cin, self.features))
        if self.blur_pad is not None:
            x = ops.upfirdn2d(x, ops.fir_kernel(), pad=self.blur_pad, impl=self.forms.upfirdn)
        y = ops.conv2d(x, weight * (1.0 / math.sqrt(cin * k * k)), self.padding, self.stride,
                       impl=self.forms.conv)
        if self.use_bias:
            bias = self.param("bias", nn.initializers.zeros, (self.features,))
            return ops.bias_leaky_relu(y, bias) if self.activation else y + bias.astype(y.dtype)
        return ops.bias_leaky_relu(y) if self.activation else y


class ModulatedConv(nn.Module):
    """Modulated conv with its style affine (``style_modulation``, bias init 1)."""

    features: int
    kernel_size: int
    demodulate: bool = True
    up: Optional[str] = None            # None | 'transposed' | 'after' | 'before' (ops.modulated_conv2d)
    padding: Union[int, str] = "SAME"
    interp_pad: Optional[int] = None
    forms: Forms = Forms()              # modulated conv / conv / blur / resize forms (numerically equivalent)

    @nn.compact
    def __call__(self, x, w):
        k, cin = self.kernel_size, x.shape[-1]
        style = EqualDense(cin, bias_init=1.0, name="style_modulation")(w)
        weight = self.param("weight", _normal(1.0), (k, k, cin, self.features))
        return ops.modulated_conv2d(x, weight * (1.0 / math.sqrt(cin * k * k)), style,
                                    demodulate=self.demodulate, padding=self.padding, up=self.up,
                                    interp_pad=self.interp_pad, impl=self.forms.modconv,
                                    conv_impl=self.forms.conv, upfirdn_impl=self.forms.upfirdn,
                                    resize_impl=self.forms.resize)


class NoiseInjection(nn.Module):
    """``x + weight * noise`` with noise [N or 1, H, W, 1] broadcast over channels."""

    @nn.compact
    def __call__(self, x, noise):
        weight = self.param("weight", nn.initializers.zeros, (1,))
        if noise.shape[1:3] != x.shape[1:3]:
            raise ValueError(f"noise of spatial size {noise.shape[1:3]} for a feature map of {x.shape[1:3]}")
        return x + (weight * noise).astype(x.dtype)


class StyleConv(nn.Module):
    """Modulated conv -> noise -> fused bias-lrelu (REFERENCE §2.11)."""

    features: int
    kernel_size: int = 3
    up: Optional[str] = None
    padding: Union[int, str] = "SAME"
    interp_pad: Optional[int] = None
    forms: Forms = Forms()

    @nn.compact
    def __call__(self, x, w, noise):
        x = ModulatedConv(self.features, self.kernel_size, True, self.up, self.padding,
                          self.interp_pad, self.forms, name="conv")(x, w)
        x = NoiseInjection(name="noise_injector")(x, noise)
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        return ops.bias_leaky_relu(x, bias)


class ToRGB(nn.Module):
    """1x1 modulated conv without demodulation + bias (+ the x2 FIR-upsampled skip)."""

    out_channels: int = 3
    forms: Forms = Forms()

    @nn.compact
    def __call__(self, x, w, skip=None):
        y = ModulatedConv(self.out_channels, 1, False, None, 0, None, self.forms, name="conv")(x, w)
        bias = self.param("bias", nn.initializers.zeros, (self.out_channels,))
        y = y + bias.astype(y.dtype)
        if skip is not None:
            y = y + ops.upsample2d(skip, impl=self.forms.upfirdn)
        return y


def random_noise(key, shapes, batch: int, dtype=jnp.float32):
    """Fresh N(0, 1) noise maps [batch, H, W, 1], one per shape (the reference's randomize_noise)."""
    keys = jax.random.split(key, len(shapes))
    return [jax.random.normal(k, (batch,) + tuple(s) + (1,), dtype) for k, s in zip(keys, shapes)]
