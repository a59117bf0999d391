"""The computational forms of pegan's ops, chosen by value (an argument), never by a global.

Each op with several numerically equivalent forms takes an ``impl`` argument; the layers and
models hold one ``Forms`` value and pass its fields down, so a module (and every program traced
from it) carries the forms it was built with. ``pegan.compute`` turns a config's ``compute``
section into a ``Forms`` for the backend at hand ('auto' resolved there, once).
"""

from __future__ import annotations

import dataclasses

__all__ = ["Forms", "CONV_IMPLS", "UPFIRDN_IMPLS", "MODCONV_IMPLS", "RESIZE_IMPLS", "check_impl"]

CONV_IMPLS = ("xla", "taps")                 # ops.conv: XLA's own convolution | custom-VJP taps
UPFIRDN_IMPLS = ("slices", "conv", "ref")    # ops.upfirdn: strided slices | depthwise conv | literal
MODCONV_IMPLS = ("scale", "grouped", "vmap")  # ops.modconv: input scaling | grouped conv | vmap
RESIZE_IMPLS = ("dense", "gather")           # ops.resize (and interp padding): banded matmuls | take + sums


def check_impl(kind: str, impl: str, allowed) -> str:
    if impl not in allowed:
        raise ValueError(f"unknown {kind} impl {impl!r}; use one of {', '.join(allowed)}")
    return impl


@dataclasses.dataclass(frozen=True)
class Forms:
    """Which form each op takes (hashable: a Flax module field)."""

    conv: str = "xla"
    upfirdn: str = "slices"
    modconv: str = "scale"
    resize: str = "dense"

    def __post_init__(self):
        check_impl("conv", self.conv, CONV_IMPLS)
        check_impl("upfirdn", self.upfirdn, UPFIRDN_IMPLS)
        check_impl("modulated conv", self.modconv, MODCONV_IMPLS)
        check_impl("resize", self.resize, RESIZE_IMPLS)
