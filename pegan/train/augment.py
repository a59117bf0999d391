"""Adaptive discriminator augmentation (ADA; Karras et al., "Training Generative Adversarial
Networks with Limited Data", 2020): NVIDIA's ``bgc`` pipeline and its adjustment of p.

Every image the discriminator sees (reals and fakes, the reals of R1 too) goes through
``augment(x, key, p)``: each transform is applied to each image with probability p times its
weight (all 1 in ``bgc``), with NVIDIA's ranges (``RANGES``):

* geometric, composed into one inverse 2-D transform per image (centred pixel coordinates,
  output -> input): x-flip, 90-degree rotations, integer translation (up to 1/8 of the side),
  isotropic scaling (log2-normal, std 0.2), rotation before and after an anisotropic scaling
  (uniform angle, each with probability 1 - sqrt(1 - p), so one of them with about p), and
  fractional translation (normal, std 1/8 of the side);
* colour, composed into one 4x4 matrix on (r, g, b, 1) in the [-1, 1] pixel range: brightness
  (+ normal, std 0.2), contrast (x log2-normal, std 0.5), luma flip (a Householder reflection
  about the luma axis), hue rotation (about the luma axis, uniform angle), saturation (x
  log2-normal, std 1, away from the luma axis).

The geometric transform is executed as NVIDIA does: reflect padding, a 2x upsampling with the
``sym6`` wavelet, bilinear resampling at the transformed positions, and the matching 2x
downsampling. The resampler gathers four neighbours per output pixel, so its gradient is a
scatter-add: the one place of pegan where a scatter is in the backward pass (every image
operation of the models is dense). The padding is static (the side minus one on every side,
the most NVIDIA's data-dependent margin ever reaches), so one program serves every draw.

An image whose draws are all the identity comes back bit for bit (p = 0 is the identity).
``adjust`` is NVIDIA's heuristic: after every ``train.ada_interval`` steps, p moves by
sign(r_t - target) x (images in the interval) / (ada_kimg x 1000), with r_t = E[sign(D(real))]
over the interval, and stays >= 0.
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from pegan.errors import InputError
from pegan.ops.upfirdn import upfirdn2d

__all__ = ["SYM6", "BGC", "RANGES", "parse_augment", "draw", "identity_params", "geometry", "colour",
           "warp", "recolour", "augment", "init_ada", "adjust", "MODES"]

MODES = ("none", "ada", "fixed:P")
# the low-pass decomposition filter of Daubechies' symlet with 6 vanishing moments ('sym6')
SYM6 = (0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
        0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
        -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036, -0.007800708325034148)
# each transform's weight (the probability is weight x p); NVIDIA's 'bgc'
BGC = {"xflip": 1.0, "rotate90": 1.0, "xint": 1.0, "scale": 1.0, "rotate": 1.0, "aniso": 1.0, "xfrac": 1.0,
       "brightness": 1.0, "contrast": 1.0, "lumaflip": 1.0, "hue": 1.0, "saturation": 1.0}
RANGES = {"xint_max": 0.125, "scale_std": 0.2, "rotate_max": 1.0, "aniso_std": 0.2, "xfrac_std": 0.125,
          "brightness_std": 0.2, "contrast_std": 0.5, "hue_max": 1.0, "saturation_std": 1.0}
_LUMA = np.asarray([1.0, 1.0, 1.0, 0.0]) / np.sqrt(3.0)


def parse_augment(text) -> Tuple[str, float]:
    """``train.augment``: 'none' -> ('none', 0), 'ada' -> ('ada', 0) (p starts at 0 and adapts),
    'fixed:P' -> ('fixed', P) (P in [0, 1], never adjusted)."""
    t = str(text).strip().lower()
    if t in ("none", "ada"):
        return t, 0.0
    if t.startswith("fixed:"):
        try:
            p = float(t[len("fixed:"):])
        except ValueError:
            p = float("nan")
        if 0.0 <= p <= 1.0:
            return "fixed", p
    raise InputError(f"train.augment must be 'none', 'ada' or 'fixed:P' with P in [0, 1] (e.g. fixed:0.2), "
                     f"got {text!r}")


def identity_params(n: int) -> Dict[str, jnp.ndarray]:
    """The draws of ``n`` images that change nothing."""
    z, o = jnp.zeros((n,)), jnp.ones((n,))
    return {"xflip": z, "rotate90": z, "tx_int": z, "ty_int": z, "scale": o, "theta_pre": z, "aniso": o,
            "theta_post": z, "tx_frac": z, "ty_frac": z, "brightness": z, "contrast": o, "lumaflip": z,
            "hue": z, "saturation": o}


def draw(key, n: int, size: Tuple[int, int], p, probs: Optional[Dict[str, float]] = None,
         ranges: Optional[Dict[str, float]] = None) -> Dict[str, jnp.ndarray]:
    """Per-image draws of the ``bgc`` transforms for ``n`` images of ``size`` (h, w) at
    probability ``p`` (a float or a traced scalar): each transform is drawn with probability
    weight x p, and is the identity otherwise. Translations are in pixels."""
    probs = {**BGC, **(probs or {})}
    r = {**RANGES, **(ranges or {})}
    h, w = size
    p = jnp.asarray(p, jnp.float32)
    # two draws in all (each random call is a whole generator program): columns taken in turn
    ku, kn = jax.random.split(key)
    u_cols, n_cols = iter(range(21)), iter(range(7))
    u_all, n_all = jax.random.uniform(ku, (n, 21)), jax.random.normal(kn, (n, 7))

    def on(name, prob=None):
        return u_all[:, next(u_cols)] < (probs[name] * p if prob is None else prob)

    def uni(lo, hi, cols=None):
        if cols is None:
            return lo + (hi - lo) * u_all[:, next(u_cols)]
        return lo + (hi - lo) * jnp.stack([u_all[:, next(u_cols)] for _ in range(cols)], -1)

    def normal(cols=None):
        if cols is None:
            return n_all[:, next(n_cols)]
        return jnp.stack([n_all[:, next(n_cols)] for _ in range(cols)], -1)

    out = identity_params(n)
    out["xflip"] = jnp.where(on("xflip"), jnp.floor(uni(0, 2)), 0.0)
    out["rotate90"] = jnp.where(on("rotate90"), jnp.floor(uni(0, 4)), 0.0)
    t = uni(-1, 1, 2) * r["xint_max"]
    use = on("xint")
    out["tx_int"] = jnp.where(use, jnp.round(t[:, 0] * w), 0.0)
    out["ty_int"] = jnp.where(use, jnp.round(t[:, 1] * h), 0.0)
    out["scale"] = jnp.where(on("scale"), jnp.exp2(normal() * r["scale_std"]), 1.0)
    p_rot = 1.0 - jnp.sqrt(jnp.clip(1.0 - probs["rotate"] * p, 0.0, 1.0))
    out["theta_pre"] = jnp.where(on("rotate", p_rot), uni(-1, 1) * math.pi * r["rotate_max"], 0.0)
    out["aniso"] = jnp.where(on("aniso"), jnp.exp2(normal() * r["aniso_std"]), 1.0)
    out["theta_post"] = jnp.where(on("rotate", p_rot), uni(-1, 1) * math.pi * r["rotate_max"], 0.0)
    t = normal(2) * r["xfrac_std"]
    use = on("xfrac")
    out["tx_frac"] = jnp.where(use, t[:, 0] * w, 0.0)
    out["ty_frac"] = jnp.where(use, t[:, 1] * h, 0.0)
    out["brightness"] = jnp.where(on("brightness"), normal() * r["brightness_std"], 0.0)
    out["contrast"] = jnp.where(on("contrast"), jnp.exp2(normal() * r["contrast_std"]), 1.0)
    out["lumaflip"] = jnp.where(on("lumaflip"), jnp.floor(uni(0, 2)), 0.0)
    out["hue"] = jnp.where(on("hue"), uni(-1, 1) * math.pi * r["hue_max"], 0.0)
    out["saturation"] = jnp.where(on("saturation"), jnp.exp2(normal() * r["saturation_std"]), 1.0)
    return out


# -- matrices (batched, [n, 3, 3] and [n, 4, 4]) ---------------------------------------------
def _m3(rows):
    return jnp.stack([jnp.stack(r, -1) for r in rows], -2)


def _translate2(tx, ty):
    o, z = jnp.ones_like(tx), jnp.zeros_like(tx)
    return _m3([[o, z, tx], [z, o, ty], [z, z, o]])


def _scale2(sx, sy):
    z = jnp.zeros_like(sx)
    return _m3([[sx, z, z], [z, sy, z], [z, z, jnp.ones_like(sx)]])


def _rotate2(theta):
    c, s, z = jnp.cos(theta), jnp.sin(theta), jnp.zeros_like(theta)
    return _m3([[c, -s, z], [s, c, z], [z, z, jnp.ones_like(theta)]])


def _general(params: Dict[str, jnp.ndarray]) -> jnp.ndarray:
    """The inverse transform of the general (resampled) part: scaling, rotations, anisotropic
    scaling, fractional translation."""
    g = _scale2(1.0 / params["scale"], 1.0 / params["scale"])                          # isotropic scaling
    g = g @ _rotate2(params["theta_pre"])                                              # rotation
    g = g @ _scale2(1.0 / params["aniso"], params["aniso"])                            # anisotropic scaling
    g = g @ _rotate2(params["theta_post"])                                             # rotation
    return g @ _translate2(-params["tx_frac"], -params["ty_frac"])                     # fractional translation


def _blits(params: Dict[str, jnp.ndarray]) -> jnp.ndarray:
    flip = params["xflip"]
    g = _scale2(1.0 - 2.0 * flip, jnp.ones_like(flip))                                 # x-flip
    g = g @ _rotate2(math.pi / 2 * params["rotate90"])                                 # 90-degree rotations
    return g @ _translate2(-params["tx_int"], -params["ty_int"])                       # integer translation


def geometry(params: Dict[str, jnp.ndarray]) -> jnp.ndarray:
    """[n, 3, 3]: the inverse transform of each image (a position of the output, in pixels from
    the image centre, x right and y down, to the position of the input it shows): the product
    of each transform's inverse in NVIDIA's order (x-flip, 90-degree rotation, integer
    translation, then the general part)."""
    return _blits(params) @ _general(params)


def colour(params: Dict[str, jnp.ndarray]) -> jnp.ndarray:
    """[n, 4, 4]: the colour transform of each image on (r, g, b, 1)."""
    n = params["brightness"].shape[0]
    eye = jnp.broadcast_to(jnp.eye(4), (n, 4, 4))
    v = jnp.asarray(_LUMA, jnp.float32)
    vv = jnp.outer(v, v)
    b = params["brightness"]
    c = eye.at[:, :3, 3].set(b[:, None])                                                # brightness
    c = (eye * jnp.concatenate([jnp.broadcast_to(params["contrast"][:, None], (n, 3)), jnp.ones((n, 1))],
                               -1)[:, None, :]) @ c                                     # contrast
    c = (eye - 2.0 * vv * params["lumaflip"][:, None, None]) @ c                       # luma flip
    th = params["hue"]
    cos, sin = jnp.cos(th)[:, None, None], jnp.sin(th)[:, None, None]
    k = jnp.asarray([[0, -v[2], v[1], 0], [v[2], 0, -v[0], 0], [-v[1], v[0], 0, 0], [0, 0, 0, 0]], jnp.float32)
    rot = eye + sin * k + (1.0 - cos) * (k @ k)                                        # Rodrigues, about v
    c = rot @ c                                                                         # hue rotation
    s = params["saturation"][:, None, None]
    return (vv + (eye - vv) * s) @ c                                                    # saturation


# -- execution -------------------------------------------------------------------------------
def _bilinear(img, ky, kx):
    """Bilinear samples of ``img`` [n, H, W, c] at fractional indices ``ky``, ``kx`` [n, P]
    (zero outside): [n, P, c]."""
    n, hh, ww, ch = img.shape
    flat = img.reshape(n, hh * ww, ch)
    y0, x0 = jnp.floor(ky), jnp.floor(kx)
    wy, wx = (ky - y0).astype(img.dtype)[..., None], (kx - x0).astype(img.dtype)[..., None]
    y0, x0 = y0.astype(jnp.int32), x0.astype(jnp.int32)

    def tap(yi, xi):
        ok = (yi >= 0) & (yi < hh) & (xi >= 0) & (xi < ww)
        idx = jnp.clip(yi, 0, hh - 1) * ww + jnp.clip(xi, 0, ww - 1)
        return jnp.take_along_axis(flat, idx[..., None], axis=1) * ok[..., None].astype(img.dtype)

    return (tap(y0, x0) * (1 - wy) * (1 - wx) + tap(y0, x0 + 1) * (1 - wy) * wx
            + tap(y0 + 1, x0) * wy * (1 - wx) + tap(y0 + 1, x0 + 1) * wy * wx)


def _filters():
    f = np.asarray(SYM6, np.float64)
    f = f / f.sum()
    return np.outer(f, f).astype(np.float32), len(f)


def warp(x, g_inv, impl: str = "slices"):
    """The images ``x`` [n, h, w, c] resampled by the inverse transforms ``g_inv`` [n, 3, 3]
    (centred pixel coordinates, output -> input): reflect padding, 2x ``sym6`` upsampling,
    bilinear resampling at twice the output size, the matching 2x downsampling. The filter is
    not symmetric: its delay (the centroid of its taps, 5.10 of 11) places the samples, so a
    transform moves the picture where it says to (NVIDIA's code assumes the delay of a symmetric
    filter, which moves a rotated picture by a fraction of a pixel). The identity comes back
    unchanged up to float rounding. ``impl``: the form of the two filters (``pegan.ops.upfirdn``;
    the training step passes the discriminator's, ``compute.upfirdn_impl``)."""
    n, h, w, ch = x.shape
    f2, taps = _filters()
    delay = float(np.dot(np.arange(taps), SYM6) / np.sum(SYM6))
    hz = taps // 4                                   # the filter's reach, in pixels of the input
    my, mx = h - 1, w - 1                            # static padding: NVIDIA's largest margin
    xp = jnp.pad(x, ((0, 0), (my, my), (mx, mx), (0, 0)), mode="reflect")
    up_pad, down_pad = (taps + 1) // 2, -2 * hz + (taps - 1) // 2
    up = upfirdn2d(xp, f2 * 4.0, up=2, pad=((up_pad, (taps - 2) // 2),) * 2, impl=impl)
    ho, wo = 2 * (h + 2 * hz), 2 * (w + 2 * hz)      # the output, at twice its size, with a margin
    # the fine sample k of the output becomes output pixel (k + down_pad - delay) / 2 ...
    uy = (jnp.arange(ho, dtype=jnp.float32) + down_pad - delay) / 2 - (h - 1) / 2
    ux = (jnp.arange(wo, dtype=jnp.float32) + down_pad - delay) / 2 - (w - 1) / 2
    gy, gx = jnp.meshgrid(uy, ux, indexing="ij")
    pts = jnp.stack([gx.reshape(-1), gy.reshape(-1), jnp.ones(ho * wo)], 0)          # [3, P]
    src = jax.lax.stop_gradient(g_inv.astype(jnp.float32)) @ pts                      # [n, 3, P]
    # ... and the fine sample m of the upsampled input shows padded pixel (m + lag - delay) / 2
    lag = taps - 1 - up_pad
    kx = 2 * (src[:, 0] + (w - 1) / 2 + mx) - lag + delay
    ky = 2 * (src[:, 1] + (h - 1) / 2 + my) - lag + delay
    out = _bilinear(up, ky, kx).reshape(n, ho, wo, ch)
    return upfirdn2d(out, f2[::-1, ::-1], down=2, pad=((down_pad, -2 * hz + (taps - 2) // 2),) * 2, impl=impl)


def _select(cases, index):
    """Per image, ``cases[index]`` (index: [n] floats holding integers)."""
    out = cases[0]
    for k in range(1, len(cases)):
        out = jnp.where((index == k)[:, None, None, None], cases[k], out)
    return out


def blit(x, params: Dict[str, jnp.ndarray], xint_max: float = RANGES["xint_max"]):
    """The x-flip, 90-degree rotations (square images) and integer translations (reflected at
    the border; at most ``xint_max`` of the side, the range they were drawn from) of ``params``
    as exact pixel moves."""
    n, h, w, _ = x.shape
    x = jnp.where((params["xflip"] > 0)[:, None, None, None], x[:, :, ::-1], x)
    if h == w:
        x = _select([jnp.rot90(x, k, axes=(1, 2)) for k in range(4)], params["rotate90"])
    my, mx = int(math.ceil(xint_max * h)) + 1, int(math.ceil(xint_max * w)) + 1
    ty = jnp.clip(params["ty_int"], -my, my).astype(jnp.int32)
    tx = jnp.clip(params["tx_int"], -mx, mx).astype(jnp.int32)
    xp = jnp.pad(x, ((0, 0), (my, my), (mx, mx), (0, 0)), mode="reflect")
    c = x.shape[3]
    return jax.vmap(lambda im, a, b: jax.lax.dynamic_slice(im, (my - a, mx - b, 0), (h, w, c)))(xp, ty, tx)


def recolour(x, c):
    """The images ``x`` [n, h, w, 3] transformed by the colour matrices ``c`` [n, 4, 4]."""
    c = jax.lax.stop_gradient(c).astype(x.dtype)
    return jnp.einsum("nij,nhwj->nhwi", c[:, :3, :3], x) + c[:, None, None, :3, 3]


def augment(x, key, p, probs: Optional[Dict[str, float]] = None, ranges: Optional[Dict[str, float]] = None,
            params: Optional[Dict[str, jnp.ndarray]] = None, impl: str = "slices"):
    """The ``bgc`` augmentation of ``x`` [n, h, w, 3] (floats in [-1, 1]) with probability ``p``
    and randomness ``key`` (or the given per-image ``params``, see ``draw``). Differentiable in
    ``x``; an image whose draws are all the identity is returned unchanged, bit for bit.
    ``impl``: the resampler's filter form (``warp``)."""
    n, h, w, _ = x.shape
    if params is None:
        params = draw(key, n, (h, w), p, probs, ranges)
    xint_max = {**RANGES, **(ranges or {})}["xint_max"]
    if h == w:          # the pixel moves exactly, then the general part resampled
        x, g = blit(x, params, xint_max), _general(params)
    else:               # 90-degree turns of a non-square image: with the general part
        x = blit(x, {**params, "rotate90": jnp.zeros_like(params["rotate90"]),
                     "tx_int": jnp.zeros_like(params["tx_int"]), "ty_int": jnp.zeros_like(params["ty_int"])})
        flipless = {**params, "xflip": jnp.zeros_like(params["xflip"])}
        g = geometry(flipless)
    moved = ~jnp.all(g == jnp.eye(3), axis=(1, 2))
    x = jnp.where(moved[:, None, None, None], warp(x, g, impl), x)
    c = colour(params)
    tinted = ~jnp.all(c == jnp.eye(4), axis=(1, 2))
    return jnp.where(tinted[:, None, None, None], recolour(x, c), x)


# -- the adjustment of p ---------------------------------------------------------------------
def init_ada(p0: float = 0.0) -> Dict[str, jnp.ndarray]:
    """The ADA state of the train state: p, the sum of sign(D(real)) and the count of reals since
    the last adjustment, and the r_t of the last adjustment."""
    z = jnp.zeros((), jnp.float32)
    return {"p": jnp.asarray(p0, jnp.float32), "signs": z, "count": z, "rt": z}


def adjust(ada, sign_sum, count, due, *, target: float, kimg: float, adaptive: bool = True):
    """``ada`` after a step whose reals gave ``sign_sum`` = sum of sign(D(real)) over ``count``
    images (every device's); at a step where ``due`` (every ``train.ada_interval`` steps), r_t
    of the interval is recorded and, when ``adaptive``, p moves by sign(r_t - target) x images /
    (kimg x 1000), floored at 0; the sums restart."""
    signs = ada["signs"] + sign_sum
    cnt = ada["count"] + count
    rt = signs / jnp.maximum(cnt, 1.0)
    p = ada["p"]
    if adaptive:
        p = jnp.where(due, jnp.maximum(p + jnp.sign(rt - target) * cnt / (kimg * 1000.0), 0.0), p)
    z = jnp.zeros((), jnp.float32)
    return {"p": p, "signs": jnp.where(due, z, signs), "count": jnp.where(due, z, cnt),
            "rt": jnp.where(due, rt, ada["rt"])}
