"""Explicit spatial positional encodings: SPE (sinusoidal) and CSG (Cartesian grid).

Everything here is NHWC. A grid depends only on static sizes, so the pure functions return
NumPy float32 arrays, computed once at trace time; under ``jax.jit`` they become constants.
The Flax modules wrap them so they drop into any Flax model (they have no parameters).

Faithful to the OpenMMLab reference by default (REFERENCE §2.1-2.2, pitfalls 1-3):

* SPE positions are anchored at the top-left: column j gets position j+1 and row i gets i+1,
  whatever ``center_shift`` says, because the reference's fairseq-style lookup uses its input
  values only to find the padding index. If a shifted coordinate is exactly ``padding_idx``
  that column/row is the zero vector and later positions continue counting after it.
* SPE channels are ``[x_sin(d/2), x_cos(d/2), y_sin(d/2), y_cos(d/2)]`` for ``embedding_dim=d``;
  CSG channels are ``[x, y]`` in [-1, 1] with (-1, -1) at the top-left.
* Frequencies are ``exp(-k * ln(1e4) / (d/2 - 1))`` (``div_half_dim=False``) or
  ``/ (d/2)`` (``div_half_dim=True``); when a lookup needs more positions than the table holds
  the reference rebuilds the table *without* ``div_half_dim``: reproduced here.

``centered=True`` gives what the reference meant (not checkpoint-compatible): pixel j of n gets
position ``center_shift + j - (n - 1) / 2``, so the image centre always sits at ``center_shift``
and a grid is the centred crop of any larger grid of the same parity.

This module imports nothing from training, data or checkpoint code.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from pegan.errors import InputError, brief

__all__ = [
    "spe_frequencies",
    "spe_embed",
    "spe_lookup",
    "spe_grid",
    "csg_grid",
    "SPE2d",
    "CSG2d",
    "ReferenceSPE",
    "encoding_from_config",
    "checked_encoding",
    "encoding_channels",
]


def spe_frequencies(embedding_dim: int, div_half_dim: bool = False) -> np.ndarray:
    """The d/2 float32 frequencies of an SPE, computed in float32 as the reference does."""
    if embedding_dim % 2 or embedding_dim < 2:
        raise ValueError(f"SPE embedding_dim must be a positive even number, got {embedding_dim}")
    half = embedding_dim // 2
    denom = half if div_half_dim else half - 1
    if denom == 0:
        raise ValueError("SPE with embedding_dim=2 needs div_half_dim=True (ln(1e4)/0 otherwise)")
    kappa = math.log(10000) / denom
    return np.exp(np.arange(half, dtype=np.float32) * np.float32(-kappa))


def spe_embed(positions, freqs, padding_idx: Optional[int] = 0, xp=np):
    """Sinusoidal embedding of integer (or float) positions: [..., L] -> [..., L, 2 * len(freqs)].

    Entries equal to ``padding_idx`` give the zero vector (the reference's padding row);
    pass ``padding_idx=None`` to embed every position. Products are float32 as in the reference.
    """
    pos = xp.asarray(positions)
    args = pos.astype(xp.float32)[..., None] * xp.asarray(freqs, dtype=xp.float32)
    emb = xp.concatenate([xp.sin(args), xp.cos(args)], axis=-1)
    if padding_idx is not None:
        emb = xp.where((pos == padding_idx)[..., None], xp.zeros((), xp.float32), emb)
    return emb.astype(xp.float32)


def _fairseq_positions(seq, padding_idx: int, xp=np):
    """Positions as fairseq's make_positions: only ``seq != padding_idx`` matters."""
    mask = (xp.asarray(seq) != padding_idx).astype(xp.int32)
    return xp.cumsum(mask, axis=-1) * mask + padding_idx


def _table_after_lookup(seq_len: int, padding_idx: int, table_size: int, div_half_dim: bool):
    """(table_size, div_half_dim) the reference uses for a lookup of length ``seq_len``."""
    needed = padding_idx + 1 + seq_len
    if needed > table_size:
        return needed, False  # rebuilt without div_half_dim (reference quirk)
    return table_size, div_half_dim


def spe_lookup(seq, embedding_dim: int, padding_idx: int = 0, init_size: int = 1024,
               div_half_dim: bool = False):
    """The reference's 1-D forward: int [B, L] -> float32 [B, L, d] (a fresh module's first call).

    Works on NumPy input (NumPy output) and on JAX arrays, traced or not (JAX output).
    """
    xp = np if isinstance(seq, (np.ndarray, list, tuple)) else jnp
    seq = xp.asarray(seq)
    _, div = _table_after_lookup(seq.shape[-1], padding_idx, init_size, div_half_dim)
    pos = _fairseq_positions(seq, padding_idx, xp)
    return spe_embed(pos, spe_frequencies(embedding_dim, div), padding_idx, xp)


def _axis_shift(n: int, center_shift: Optional[int]) -> int:
    if center_shift is None:
        return 0
    return center_shift - (n // 2 if n % 2 == 0 else n // 2 + 1)


def _spe_axes(height: int, width: int, embedding_dim: int, padding_idx: int, table_size: int,
              div_half_dim: bool, center_shift: Optional[int], centered: bool):
    """x embeddings [W, d], y embeddings [H, d] and the table state after the two lookups."""
    if centered:
        centre = 0.0 if center_shift is None else float(center_shift)
        freqs = spe_frequencies(embedding_dim, div_half_dim)
        xs = np.float32(centre) + (np.arange(width, dtype=np.float32) - np.float32((width - 1) / 2))
        ys = np.float32(centre) + (np.arange(height, dtype=np.float32) - np.float32((height - 1) / 2))
        return (spe_embed(xs, freqs, None), spe_embed(ys, freqs, None), table_size, div_half_dim)
    embs = []
    for n in (width, height):  # the reference looks up x first, then y
        coords = np.arange(1, n + 1, dtype=np.int64) + _axis_shift(n, center_shift)
        table_size, div_half_dim = _table_after_lookup(n, padding_idx, table_size, div_half_dim)
        pos = _fairseq_positions(coords, padding_idx)
        embs.append(spe_embed(pos, spe_frequencies(embedding_dim, div_half_dim), padding_idx))
    return embs[0], embs[1], table_size, div_half_dim


def _assemble(x_emb: np.ndarray, y_emb: np.ndarray, batch: int) -> np.ndarray:
    h, w, d = y_emb.shape[0], x_emb.shape[0], x_emb.shape[1]
    grid = np.concatenate([np.broadcast_to(x_emb[None, :, :], (h, w, d)),
                           np.broadcast_to(y_emb[:, None, :], (h, w, d))], axis=-1)
    return np.ascontiguousarray(np.broadcast_to(grid[None], (batch, h, w, 2 * d)))


def spe_grid(height: int, width: int, embedding_dim: int, *, padding_idx: int = 0,
             init_size: int = 1024, div_half_dim: bool = False,
             center_shift: Optional[int] = None, centered: bool = False,
             batch: int = 1) -> np.ndarray:
    """SPE grid [batch, height, width, 2 * embedding_dim], float32.

    Equals the reference's ``SinusoidalPositionalEmbedding(...).make_grid2d(height, width,
    batch, center_shift)`` on a freshly built module (channels moved last). With
    ``centered=True``: the centre-anchored encoding described in the module docstring.
    """
    x_emb, y_emb, _, _ = _spe_axes(height, width, embedding_dim, padding_idx, init_size,
                                   div_half_dim, center_shift, centered)
    return _assemble(x_emb, y_emb, batch)


def csg_grid(height: int, width: int, *, batch: int = 1) -> np.ndarray:
    """Cartesian grid [batch, height, width, 2], channel 0 = x, 1 = y, corners exactly +-1.

    Computed as ``(2 * idx) / max(n - 1, 1) - 1`` in float32, as the reference's ``CatersianGrid``.
    """
    def axis(n):
        return (np.float32(2) * np.arange(n, dtype=np.float32)) / np.float32(max(n - 1, 1)) - np.float32(1)

    gx = np.broadcast_to(axis(width)[None, :], (height, width))
    gy = np.broadcast_to(axis(height)[:, None], (height, width))
    grid = np.stack([gx, gy], axis=-1).astype(np.float32)
    return np.ascontiguousarray(np.broadcast_to(grid[None], (batch, height, width, 2)))


class ReferenceSPE:
    """A stateful replica of the reference module, for parity work.

    The reference keeps a rebuilt (larger, ``div_half_dim``-less) table for all later calls;
    this class tracks that state. Models use the stateless functions / ``SPE2d`` instead: every
    size the released models use fits the initial table, where the two agree.
    """

    def __init__(self, embedding_dim: int, padding_idx: int = 0, init_size: int = 1024,
                 div_half_dim: bool = False, center_shift: Optional[int] = None):
        spe_frequencies(embedding_dim, div_half_dim)  # validates
        self.embedding_dim, self.padding_idx = embedding_dim, padding_idx
        self.center_shift = center_shift
        self.table_size, self.div_half_dim = init_size, div_half_dim

    def make_grid2d(self, height: int, width: int, batch: int = 1,
                    center_shift: Optional[int] = None) -> np.ndarray:
        cs = self.center_shift if center_shift is None else center_shift
        x_emb, y_emb, self.table_size, self.div_half_dim = _spe_axes(
            height, width, self.embedding_dim, self.padding_idx, self.table_size,
            self.div_half_dim, cs, False)
        return _assemble(x_emb, y_emb, batch)

    def lookup(self, seq) -> np.ndarray:
        seq = np.asarray(seq)
        self.table_size, self.div_half_dim = _table_after_lookup(
            seq.shape[-1], self.padding_idx, self.table_size, self.div_half_dim)
        pos = _fairseq_positions(seq, self.padding_idx)
        freqs = spe_frequencies(self.embedding_dim, self.div_half_dim)
        return spe_embed(pos, freqs, self.padding_idx)


class SPE2d(nn.Module):
    """Sinusoidal positional encoding as a parameter-free Flax module.

    ``__call__(x)`` reads only the static shape of ``x`` [N, H, W, C] and returns the grid
    [N, H, W, 2 * embedding_dim] in ``x.dtype``; ``grid(h, w, batch)`` builds one by size.
    """

    embedding_dim: int                  # d: channels per axis (output has 2d)
    padding_idx: int = 0                # position that maps to the zero vector
    init_size: int = 1024               # initial table size (only matters for >init_size lookups)
    div_half_dim: bool = False          # frequency denominator d/2 instead of d/2 - 1
    center_shift: Optional[int] = None  # reference: no effect on positions (top-left anchored)
    centered: bool = False              # True: centre-anchored positions (not checkpoint-compatible)

    def grid(self, height: int, width: int, batch: int = 1, dtype: Any = jnp.float32):
        g = spe_grid(height, width, self.embedding_dim, padding_idx=self.padding_idx,
                     init_size=self.init_size, div_half_dim=self.div_half_dim,
                     center_shift=self.center_shift, centered=self.centered, batch=1)
        return jnp.broadcast_to(jnp.asarray(g, dtype), (batch,) + g.shape[1:])

    @property
    def channels(self) -> int:
        return 2 * self.embedding_dim

    def __call__(self, x):
        n, h, w = x.shape[0], x.shape[1], x.shape[2]
        return self.grid(h, w, n, x.dtype)


class CSG2d(nn.Module):
    """Cartesian-grid encoding (channels [x, y] in [-1, 1]) as a parameter-free Flax module."""

    def grid(self, height: int, width: int, batch: int = 1, dtype: Any = jnp.float32):
        g = csg_grid(height, width, batch=1)
        return jnp.broadcast_to(jnp.asarray(g, dtype), (batch,) + g.shape[1:])

    @property
    def channels(self) -> int:
        return 2

    def __call__(self, x):
        n, h, w = x.shape[0], x.shape[1], x.shape[2]
        return self.grid(h, w, n, x.dtype)


_SPE_KEYS = ("embedding_dim", "padding_idx", "init_size", "div_half_dim", "center_shift", "centered")


def encoding_from_config(cfg) -> Optional[nn.Module]:
    """Build an encoding from a reference-style dict: ``{'type': 'SPE'|'SPE2d'|'CSG'|'CSG2d', ...}``.

    ``None`` gives ``None`` (no encoding). Unknown types or keys raise ``ValueError``.
    """
    if cfg is None:
        return None
    cfg = dict(cfg)
    kind = cfg.pop("type", None)
    if kind in ("SPE", "SPE2d"):
        unknown = set(cfg) - set(_SPE_KEYS)
        if unknown:
            raise ValueError(f"unknown SPE option(s) {sorted(unknown)}; known: {list(_SPE_KEYS)}")
        return SPE2d(**cfg)
    if kind in ("CSG", "CSG2d", "CatersianGrid"):
        if cfg:
            raise ValueError(f"CSG takes no options, got {sorted(cfg)}")
        return CSG2d()
    raise ValueError(f"unknown positional encoding type {kind!r}; use 'SPE' or 'CSG'")


def checked_encoding(cfg, what: str) -> Optional[nn.Module]:
    """``encoding_from_config(cfg)``, a config it refuses being an ``InputError`` naming the
    config field ``what`` (for model builders: a ValueError from inside a module's set-up before)."""
    try:
        return encoding_from_config(dict(cfg) if cfg is not None else None)
    except (ValueError, TypeError, KeyError) as e:
        raise InputError(f"{what} {dict(cfg or {})!r:.120}: {brief(e, 150)}") from None


def encoding_channels(cfg) -> int:
    """Number of channels an encoding config produces (0 for None)."""
    enc = encoding_from_config(cfg)
    return 0 if enc is None else enc.channels

