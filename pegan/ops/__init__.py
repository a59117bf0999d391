"""Pure jax.numpy operations (NHWC, no Flax, no state) the models are built from."""

from pegan.ops.act import (SQRT2, adaptive_avg_pool2d, bias_leaky_relu, leaky_relu,
                           minibatch_stddev, pixel_norm)
from pegan.ops.conv import conv2d, conv_transpose2d
from pegan.ops.forms import CONV_IMPLS, MODCONV_IMPLS, RESIZE_IMPLS, UPFIRDN_IMPLS, Forms
from pegan.ops.modconv import modulate_weight, modulated_conv2d
from pegan.ops.padding import PADDING_MODES, interp_pad, pad2d
from pegan.ops.resize import resize, resize_bicubic, resize_bilinear, resize_nearest
from pegan.ops.upfirdn import (blur, downsample2d, fir_kernel, fir_kernel_1d, upfirdn2d,
                               upfirdn2d_conv, upfirdn2d_ref, upfirdn2d_slices, upsample2d)

__all__ = [
    "SQRT2", "adaptive_avg_pool2d", "bias_leaky_relu", "leaky_relu", "minibatch_stddev",
    "pixel_norm", "conv2d", "conv_transpose2d", "Forms", "CONV_IMPLS", "UPFIRDN_IMPLS", "MODCONV_IMPLS", "RESIZE_IMPLS", "modulate_weight", "modulated_conv2d",
    "PADDING_MODES", "interp_pad", "pad2d", "resize", "resize_bicubic", "resize_bilinear",
    "resize_nearest", "blur", "downsample2d", "fir_kernel", "fir_kernel_1d", "upfirdn2d",
    "upfirdn2d_conv", "upfirdn2d_ref", "upfirdn2d_slices", "upsample2d",
]
