"""Image helpers: [-1, 1] float images <-> uint8, grids and labelled PNG sheets (Pillow)."""

from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np

from pegan.errors import DataError, MissingFileError

__all__ = ["to_uint8", "image_grid", "save_png", "labelled_row", "stack_rows", "read_image"]


def to_uint8(x, value_range=(-1.0, 1.0)) -> np.ndarray:
    """[..., H, W, C] floats in ``value_range`` -> uint8, rounded and clipped."""
    lo, hi = value_range
    x = (np.asarray(x, np.float32) - lo) / (hi - lo)
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def image_grid(images: np.ndarray, ncol: Optional[int] = None, pad: int = 2, fill: int = 255) -> np.ndarray:
    """[N, H, W, C] uint8 -> one [rows*H, cols*W, C] image with ``pad`` pixels between tiles."""
    n, h, w, c = images.shape
    ncol = ncol or int(np.ceil(np.sqrt(n)))
    nrow = int(np.ceil(n / ncol))
    out = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, c), fill, np.uint8)
    for i in range(n):
        r, q = divmod(i, ncol)
        out[pad + r * (h + pad):pad + r * (h + pad) + h, pad + q * (w + pad):pad + q * (w + pad) + w] = images[i]
    return out


def labelled_row(tiles: Sequence[np.ndarray], labels: Sequence[str], pad: int = 4, label_h: int = 14,
                 fill: int = 255) -> np.ndarray:
    """Tiles of different sizes side by side (top-aligned) with a text label above each."""
    from PIL import Image, ImageDraw

    h = max(t.shape[0] for t in tiles)
    w = sum(t.shape[1] for t in tiles) + pad * (len(tiles) + 1)
    canvas = Image.new("RGB", (w, h + label_h + 2 * pad), (fill,) * 3)
    draw = ImageDraw.Draw(canvas)
    x = pad
    for tile, label in zip(tiles, labels):
        arr = tile if tile.shape[-1] == 3 else np.repeat(tile[..., :1], 3, axis=-1)
        canvas.paste(Image.fromarray(arr), (x, label_h + pad))
        draw.text((x, 1), label, fill=(0, 0, 0))
        x += tile.shape[1] + pad
    return np.asarray(canvas)


def stack_rows(rows: Sequence[np.ndarray], fill: int = 255) -> np.ndarray:
    """Rows of different widths stacked vertically (left-aligned)."""
    w = max(r.shape[1] for r in rows)
    out = [np.pad(r, ((0, 0), (0, w - r.shape[1]), (0, 0)), constant_values=fill) for r in rows]
    return np.concatenate(out, axis=0)


def save_png(path, image: np.ndarray) -> str:
    """Write an [H, W, 3] (or [H, W, 1]) uint8 image; parent folders are created."""
    from PIL import Image

    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    arr = image[..., 0] if image.shape[-1] == 1 else image
    Image.fromarray(arr).save(path)
    return path


def read_image(path) -> np.ndarray:
    """Read an image file as [H, W, 3] uint8 RGB; a clear error names an unreadable file."""
    from PIL import Image, UnidentifiedImageError

    path = os.fspath(path)
    if not os.path.exists(path):
        raise MissingFileError(f"image {path} does not exist")
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise DataError(f"cannot read image {path}: {e} (is it a complete PNG/JPEG file?)") from None
