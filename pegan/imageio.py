"""Image helpers: [-1, 1] float images <-> uint8, grids and labelled PNG sheets (Pillow), and
the one conversion of every image pegan reads into 8-bit RGB (``to_rgb``)."""

from __future__ import annotations

import os
import re
from typing import Optional, Sequence

import numpy as np

from pegan.checks import PEGAN_MARK, writing_file, written_by_pegan
from pegan.errors import DataError, MissingFileError, brief

__all__ = ["IMAGE_EXTS", "to_uint8", "image_grid", "save_png", "labelled_row", "stack_rows", "to_rgb",
           "read_image", "decode_image", "png_bytes", "written_by_pegan", "check_image_size", "ImageTooLarge", "MAX_READ_PIXELS"]

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")   # what the folder readers list and sample writes


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


def png_bytes(image: np.ndarray) -> bytes:
    """An [H, W, 3] (or [H, W, 1]) uint8 image as the PNG bytes pegan writes (with its mark)."""
    import io

    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text(*PEGAN_MARK)
    buf = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def save_png(path, image: np.ndarray) -> str:
    """Write an [H, W, 3] (or [H, W, 1]) uint8 image; parent folders are created. A ``.png``
    carries pegan's mark (a text chunk), so that a later command may replace it."""
    from PIL import Image

    path = os.fspath(path)
    with writing_file(path) as tmp:          # a failed write keeps an earlier file whole
        if path.lower().endswith(".png"):
            tmp.write_bytes(png_bytes(image))
        else:
            Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(tmp)
    return path


def _source_bits(im) -> Optional[int]:
    """Bits per sample of a single-channel integer image (modes I;16* and I) as its mode or its
    decoder's raw mode tells (a 16-bit PNG opens as mode I in older Pillow, a 32-bit TIFF as I
    from I;32S); ask before the pixels load (loading drops the decoder's tiles). None: unknown."""
    if im.mode.startswith("I;16"):
        return 16
    for tile in getattr(im, "tile", None) or []:
        args = tile[3] if len(tile) > 3 else None
        raw = args if isinstance(args, str) else (args[0] if isinstance(args, tuple) and args else None)
        m = re.match(r"I(?:;(\d+))?", raw) if isinstance(raw, str) else None
        if m:
            return int(m.group(1) or 32)
    return None


def to_rgb(im):
    """An opened Pillow image as an 8-bit RGB Pillow image; every image pegan reads goes
    through here. 8-bit modes (L, P, RGB, RGBA, CMYK, ...) are Pillow's ``convert('RGB')``.
    Single-channel images of more bits, which ``convert`` would clip to near-white, are scaled
    from their full range to 0..255 and rounded, then repeated on the three channels:

    * 16-bit (modes I;16, I;16B, I;16L): 0..65535 -> 0..255, i.e. round(v / 257);
    * mode I (32-bit signed): full range 2**bits - 1 by the source's bits per sample (a
      16-bit PNG opened by an older Pillow: 65535; a 32-bit file: 2**31 - 1, negatives black),
      or, for an image not read from a file, by its values: 255 if they fit in 8 bits, 65535
      in 16, else 2**31 - 1;
    * mode F (32-bit float): 0..1 is black..white when every value lies in [0, 1], else the
      values are 8-bit levels (Pillow's own convention for F); clipped, NaN black.
    """
    from PIL import Image

    if im.mode != "F" and im.mode != "I" and not im.mode.startswith("I;"):
        return im.convert("RGB")
    bits = None if im.mode == "F" else _source_bits(im)
    v = np.asarray(im).astype(np.float64)
    if im.mode == "F":
        finite = v[np.isfinite(v)]
        full = 1.0 if finite.size == 0 or (finite.min() >= 0 and finite.max() <= 1) else 255.0
    else:
        if bits is None:
            top = float(v.max()) if v.size else 0.0
            bits = 8 if top <= 255 else 16 if top <= 65535 else 32
        full = 2.0 ** min(bits, 31) - 1          # mode I is signed: 32 bits hold 0..2**31 - 1
    v = np.nan_to_num(v, nan=0.0, posinf=full, neginf=0.0)
    u8 = np.clip(np.rint(v / full * 255.0), 0, 255).astype(np.uint8)
    return Image.fromarray(u8).convert("RGB")


# The most pixels an image pegan reads may declare: Pillow's own bomb threshold (it only warns
# between this and twice this), about 89.5 million (e.g. 9459 x 9459; 268 MB as 8-bit RGB).
MAX_READ_PIXELS = 89_478_485


class ImageTooLarge(ValueError):
    """An image that declares more than ``MAX_READ_PIXELS`` (its message names the fix)."""


def check_image_size(im) -> None:
    """``ImageTooLarge`` for an opened (not yet decoded) Pillow image past ``MAX_READ_PIXELS``."""
    w, h = im.size
    if w * h > MAX_READ_PIXELS:
        raise ImageTooLarge(f"it declares {w}x{h} pixels, more than the {MAX_READ_PIXELS:,} pegan reads "
                            "(resize it first)")


def decode_image(path) -> np.ndarray:
    """The file's pixels as [H, W, 3] uint8 RGB (``to_rgb``), or ``ValueError`` with the reason
    it cannot be read: not an image, damaged or truncated, or declaring more than
    ``MAX_READ_PIXELS`` (checked from its header, before anything is decoded)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            check_image_size(im)
            return np.asarray(to_rgb(im))
    except ImageTooLarge:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, EOFError,
            ValueError) as e:                     # Pillow's kinds of 'cannot decode'; ValueError: oversized chunks
        raise ValueError(brief(e, 200)) from None


def read_image(path) -> np.ndarray:
    """Read an image file as [H, W, 3] uint8 RGB; a clear error names an unreadable file."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise MissingFileError(f"image {path} does not exist")
    try:
        return decode_image(path)
    except ImageTooLarge as e:
        raise DataError(f"cannot read image {path}: {e}") from None
    except ValueError as e:
        raise DataError(f"cannot read image {path}: {e} (is it a complete PNG/JPEG file?)") from None
