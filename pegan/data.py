"""Training data: ``pegan prepare`` (an image folder -> a tfds dataset) and the loaders.

* ``prepare(folder, out_dir, size)`` writes a tensorflow-datasets dataset (``array_record``
  files, which tfds reads without TensorFlow) of every image under ``folder``: center-cropped to a
  square when it is not one, resized to ``size`` x ``size`` with Pillow's Lanczos filter (from
  larger images, and from smaller ones too, counted as ``upscaled``), RGB. Written with tfds's
  ``SequentialWriter`` (streamed: nothing is held in memory, ~1 GiB shards), so record ``i`` is
  the ``i``-th readable file in sorted order.
  Storage: ``raw`` (default) keeps the uint8 pixels as bytes, so reading a record is a copy and
  no decode (about 3x faster to read than PNG here, and ~1.5x the disk: 192 KiB per 256 px image);
  ``png`` stores Pillow-encoded PNG (lossless, smaller on photos, decoded on read).
  ``out_dir/pegan_prepare.json`` records the settings, the number of images and every skipped
  file with its reason.
* One image policy (``load_image``: centre crop to a square, then Lanczos resize) and one batch
  plan (``batch_plan``: the stream positions of a step's images, their records from a permutation
  fixed by (seed, epoch) and their flips from (seed, step), this host's rows only) serve both
  sources, so they give the same batches of the same files.
* ``PreparedImages(path)`` reads a prepared dataset by random access (``tfds.data_source``) and
  ``ImageFolder(folder, size)`` keeps a folder's images in memory; both return ``batch(seed,
  step, batch, offset)`` as **uint8** [rows, size, size, 3] RGB (a quarter of float32's memory
  and of the host-to-device copy; the training step normalises and resizes on the device). The
  batch is a pure function of its arguments, so the data position of a run is its step counter
  and sample offset, and a resumed run reads exactly what a straight run reads. Per-host sharding: ``batch`` is the global batch; host ``h`` of ``P``
  (``jax.process_index()`` / ``jax.process_count()`` by default) reads and returns only rows
  ``h*batch/P .. (h+1)*batch/P`` of it. Prefetch: a background thread assembles the next batches
  (guessed from the last call, or named by ``prefetch()``) with a pool of reader threads; every
  image lands in its own row, so the result never depends on the threads.
* ``open_data(path, size)`` picks the loader for ``pegan train --data PATH``: a prepared dataset,
  or a plain folder of images (read into memory by ``ImageFolder``).
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional

import jax
import numpy as np

from pegan._extras import require
from pegan.checks import MAX_STORED_SIDE, foreign_entries, image_size, replacing_dir, within
from pegan.errors import DataError, InputError, MissingFileError, brief
from pegan.imageio import IMAGE_EXTS, check_image_size, to_rgb

require("tensorflow_datasets", "PIL", extra="train", by=__name__)

__all__ = ["IMAGE_EXTS", "INFO_FILE", "host_rows", "flips", "permutation", "batch_plan", "list_images",
           "load_image", "prepare", "find_prepared", "PreparedImages", "ImageFolder", "SyntheticImages", "open_data"]

INFO_FILE = "pegan_prepare.json"
_BUILDER_NAME = "pegan_image_folder"
_SHARD_BYTES = 2**30      # pixels per array_record file (about)
_CHUNK_BYTES = 2**26      # images handed to the writer at a time
_HINT = "run `pegan prepare FOLDER --out DIR --size N` to (re)create it"


# -- reading source images ---------------------------------------------------------------------
def host_rows(batch: int, process_index: int, process_count: int):
    """The rows [lo, hi) of a global batch of ``batch`` images that host ``process_index`` of
    ``process_count`` reads (every loader splits batches this way)."""
    if batch % process_count:
        raise InputError(f"the global batch {batch} is not divisible by the {process_count} hosts")
    per = batch // process_count
    return process_index * per, (process_index + 1) * per


def flips(seed: int, step: int, batch: int, rows, hflip: bool = True) -> np.ndarray:
    """Which rows ``rows`` = (lo, hi) of step ``step``'s batch are mirrored: a fair coin per image
    from (seed, step), drawn for the whole global batch so every host agrees; none without ``hflip``."""
    lo, hi = rows
    if not hflip:
        return np.zeros(hi - lo, bool)
    return (np.random.default_rng([seed, 2, step]).random(batch) < 0.5)[lo:hi]


@functools.lru_cache(maxsize=8)
def permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order of the ``n`` images in epoch ``epoch`` (read-only; a few epochs are cached)."""
    p = np.random.default_rng([seed, 1, epoch]).permutation(n)
    p.flags.writeable = False
    return p


def batch_plan(seed: int, step: int, batch: int, offset: int, n: int, rows, hflip: bool = True):
    """(records, flips) of rows ``rows`` = (lo, hi) of step ``step``'s global batch of ``batch``
    images from a dataset of ``n``: stream positions ``offset + lo .. offset + hi``, each the
    record ``permutation(seed, epoch)[i]`` for ``epoch, i = divmod(position, n)``, and the flips
    of ``flips``. A pure function: both sources, every host and a resumed run agree."""
    lo, hi = rows
    pos = np.arange(offset + lo, offset + hi)
    epochs, i = np.divmod(pos, n)
    idx = np.empty(len(pos), np.int64)
    for e in np.unique(epochs):
        sel = epochs == e
        idx[sel] = permutation(int(seed), int(e), int(n))[i[sel]]
    return idx, flips(seed, step, batch, rows, hflip)


def list_images(folder) -> List[Path]:
    """Image files under ``folder`` (recursively), sorted, as ``ImageFolder`` lists them."""
    folder = Path(folder)
    if not folder.is_dir():
        what = "is a file, not a folder of images" if folder.exists() else "does not exist"
        raise MissingFileError(f"image folder {folder} {what}; name the folder that holds the images")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file())
    if not files:
        raise MissingFileError(f"no images ({', '.join(IMAGE_EXTS)}) under {folder}")
    return files


def load_image(path, size: int):
    """One image as [size, size, 3] uint8 RGB (``pegan.imageio.to_rgb``: 16-bit grey scaled from
    its full range): center crop to a square, then Lanczos resize.

    Returns (pixels, upscaled). Raises whatever Pillow raises on an unreadable file, and
    ``ImageTooLarge`` (a ValueError) for one declaring more than ``MAX_READ_PIXELS``, before
    decoding it."""
    from PIL import Image

    with Image.open(path) as im:
        check_image_size(im)
        im = to_rgb(im)
        w, h = im.size
        if w != h:
            s = min(w, h)
            left, top = (w - s) // 2, (h - s) // 2
            im = im.crop((left, top, left + s, top + s))
        upscaled = im.size[0] < size
        if im.size != (size, size):
            im = im.resize((size, size), Image.LANCZOS)
        return np.asarray(im), upscaled


# -- writing the tfds dataset ---------------------------------------------------------------------
def _features(size: int, encoding: str):
    import tensorflow_datasets as tfds

    if encoding == "raw":
        image = tfds.features.Tensor(shape=(size, size, 3), dtype=np.uint8, encoding=tfds.features.Encoding.BYTES)
    else:
        image = tfds.features.Image(shape=(size, size, 3), encoding_format="png")
    return tfds.features.FeaturesDict({"image": image, "file": tfds.features.Text()})


def _pil(pixels):
    from PIL import Image

    return Image.fromarray(pixels)


def _read_ordered(files, size, workers, on_error, skipped, counts, progress):
    """Yield (relative name, pixels) in file order, reading ``workers`` files at a time."""
    root = counts["root"]

    def read(p):
        try:
            return load_image(p, size), None
        except KeyboardInterrupt:
            raise
        except Exception as e:  # Pillow raises many kinds (OSError, SyntaxError, DecompressionBombError, ...)
            return None, f"{type(e).__name__}: {e}"

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(files), unit="img", desc=f"prepare {size}px", dynamic_ncols=True,
                   disable=not sys.stderr.isatty())      # a log file gets the summary line, not the bar
    window = max(1, workers) * 4
    try:
        yield from _read_window(files, root, read, window, workers, on_error, skipped, counts, bar)
    finally:
        if bar is not None:
            bar.close()          # before an error line, so that the error is the last line


def _read_window(files, root, read, window, workers, on_error, skipped, counts, bar):
    with ThreadPoolExecutor(max(1, workers)) as pool:
        futs = OrderedDict()
        it = iter(files)
        for p in it:
            futs[p] = pool.submit(read, p)
            if len(futs) >= window:
                break
        while futs:
            p, fut = futs.popitem(last=False)
            nxt = next(it, None)
            if nxt is not None:
                futs[nxt] = pool.submit(read, nxt)
            got, reason = fut.result()
            if bar is not None:
                bar.update(1)
            if got is None:
                if on_error != "skip":
                    for f in futs.values():
                        f.cancel()
                    raise DataError(f"cannot read image {p}: {reason}; remove it, or pass --skip-bad "
                                     f"(on_error='skip') to skip and count unreadable images")
                skipped.append({"file": str(p.relative_to(root)), "reason": reason})
                continue
            pixels, up = got
            counts["upscaled"] += int(up)
            yield str(p.relative_to(root)), pixels


class ImageFolder:
    """All images of a folder in memory as uint8 at ``size`` x ``size`` (``load_image``: centre
    crop, then Lanczos resize, as ``pegan prepare`` stores them), read in sorted order; batches
    by ``batch_plan``. Unreadable files raise a DataError naming the file, or with
    ``on_error='skip'`` are left out and listed in ``skipped``."""

    def __init__(self, folder, size: int, on_error: str = "raise", process_index: Optional[int] = None,
                 process_count: Optional[int] = None, hflip: bool = True):
        from PIL import UnidentifiedImageError

        self.hflip = bool(hflip)        # mirror half the images (``flips``); the config's data.hflip
        self.process_index = jax.process_index() if process_index is None else int(process_index)
        self.process_count = jax.process_count() if process_count is None else int(process_count)
        files = list_images(folder)
        imgs, self.skipped = [], []
        for p in files:
            try:
                imgs.append(load_image(p, size)[0])
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
                if on_error != "skip":
                    raise DataError(f"cannot read image {p}: {brief(e)}; remove it, or pass --skip-bad-images "
                                    "(data.on_error='skip') to skip and count unreadable images") from None
                self.skipped.append(str(p))
        if not imgs:
            raise DataError(f"no readable image under {folder}")
        self.images = np.stack(imgs)            # uint8 [N, size, size, 3]
        self.size = size

    def __len__(self):
        return len(self.images)

    def rows(self, batch: int):
        """This host's rows [lo, hi) of a global batch of ``batch`` images."""
        return host_rows(batch, self.process_index, self.process_count)

    def batch(self, seed: int, step: int, batch: int, offset: int) -> np.ndarray:
        """This host's rows of the images of a step (``batch_plan``), uint8 [rows, size, size, 3]."""
        idx, flip = batch_plan(seed, step, batch, offset, len(self.images), self.rows(batch), self.hflip)
        x = self.images[idx]
        x[flip] = x[flip, :, ::-1]
        return x


class SyntheticImages(ImageFolder):
    """``n`` random uint8 images of ``size`` px made in memory (benchmarks and checks without a
    dataset), with ``ImageFolder``'s batches."""

    def __init__(self, n: int, size: int, seed: int = 0, process_index: Optional[int] = None,
                 process_count: Optional[int] = None, hflip: bool = True):
        self.hflip = bool(hflip)
        self.process_index = jax.process_index() if process_index is None else int(process_index)
        self.process_count = jax.process_count() if process_count is None else int(process_count)
        self.images = np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)
        self.size, self.skipped = size, []


# what tfds's writer puts in a dataset's version folder
_PREPARED_FILES = ("dataset_info.json", "features.json", f"{_BUILDER_NAME}-*.array_record-*", "*.tfrecord-*")


def _earlier_prepare(d: Path) -> bool:
    """An earlier ``pegan prepare`` output that --overwrite may replace: its info file names the
    format, and the folder holds nothing else but the dataset pegan wrote."""
    try:
        info = json.loads((d / INFO_FILE).read_text())
    except (OSError, ValueError, RecursionError):
        return False
    if not (isinstance(info, dict) and info.get("format") == "pegan-prepared-images"
            and not foreign_entries(d, (INFO_FILE, _BUILDER_NAME))):
        return False
    # the whole tree, not its top level only: <builder>/<version>/ holding tfds's files, no folder
    builder = d / _BUILDER_NAME
    if not builder.is_dir() or builder.is_symlink():
        return not builder.exists()
    for version in builder.iterdir():
        if not version.is_dir() or version.is_symlink() or not re.fullmatch(r"\d+\.\d+\.\d+", version.name):
            return False
        if any(f.is_dir() or f.is_symlink() or foreign_entries(version, _PREPARED_FILES) for f in version.iterdir()):
            return False
    return True


def prepare(folder, out_dir, size: int, on_error: str = "raise", encoding: str = "raw",
            workers: Optional[int] = None, overwrite: bool = False, progress: bool = False) -> Dict:
    """Write the images under ``folder`` as a tfds dataset in ``out_dir``; returns its info dict.

    ``on_error``: 'raise' (an unreadable image stops it with an error naming the file) or 'skip'
    (it is left out, counted and listed in ``out_dir/pegan_prepare.json``). ``encoding``: 'raw'
    (uint8 bytes, fastest to read) or 'png'. ``size``: 1 .. ``MAX_STORED_SIDE`` px. ``out_dir`` must not
    exist or be empty, unless ``overwrite`` and it holds an earlier ``pegan prepare`` output
    (nothing else is replaced). The dataset is written in a temporary folder beside ``out_dir``
    and moved in place only when complete (``pegan.checks.replacing_dir``)."""
    if on_error not in ("raise", "skip"):
        raise InputError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if encoding not in ("raw", "png"):
        raise InputError(f"encoding must be 'raw' or 'png', got {encoding!r}")
    size = image_size((size, size), f"--size {size}", MAX_STORED_SIDE, raise_with=None)[0]
    folder, out_dir = Path(folder).resolve(), Path(out_dir).resolve()
    if within(folder, out_dir):
        raise InputError(f"the image folder {folder} is inside --out {out_dir}: writing there would replace "
                         "the images being read; choose an --out outside it")
    files = list_images(folder)
    workers = workers or min(8, os.cpu_count() or 1)
    t0 = time.time()
    skipped: List[dict] = []
    counts = {"upscaled": 0, "root": folder}
    with replacing_dir(out_dir, "--out", "`pegan prepare` output", _earlier_prepare, overwrite) as tmp:
        import tensorflow_datasets as tfds
        from tensorflow_datasets.core import dataset_info as dsi
        from tensorflow_datasets.core.sequential_writer import SequentialWriter

        vdir = Path(_BUILDER_NAME) / "1.0.0"
        (tmp / vdir).mkdir(parents=True)
        info_obj = tfds.core.DatasetInfo(
            builder=dsi.DatasetIdentity(name=_BUILDER_NAME, version="1.0.0", data_dir=str(tmp / vdir),
                                        module_name="pegan.data"),
            description=f"Images of {folder} center-cropped and resized to {size}x{size} (Lanczos), RGB; "
                        f"written by pegan prepare.",
            features=_features(size, encoding), disable_shuffling=True)
        # streamed in file order (no writer shuffle, nothing held in memory), ~1 GiB shards
        per_shard = max(1, _SHARD_BYTES // (size * size * 3))
        writer = SequentialWriter(info_obj, max_examples_per_shard=per_shard, file_format="array_record")
        writer.initialize_splits(["train"])
        n, chunk, per_chunk = 0, [], max(1, min(256, _CHUNK_BYTES // (size * size * 3)))
        for name, pixels in _read_ordered(files, size, workers, on_error, skipped, counts, progress):
            chunk.append({"image": pixels if encoding == "raw" else _pil(pixels), "file": name})
            if len(chunk) == per_chunk:
                writer.add_examples({"train": chunk})
                n, chunk = n + len(chunk), []
        if chunk:
            writer.add_examples({"train": chunk})
            n += len(chunk)
        writer.close_all()
        if n == 0:
            raise DataError(f"no readable image under {folder} ({len(skipped)} skipped)")
        info = {"format": "pegan-prepared-images", "format_version": 1, "source": str(folder),
                "size": size, "encoding": encoding,
                "resize": "center crop to a square, then Pillow Image.LANCZOS to size x size, RGB",
                "num_files": len(files), "num_images": int(n), "num_skipped": len(skipped),
                "num_upscaled": counts["upscaled"], "skipped": skipped, "tfds_dir": str(vdir),
                "tfds_name": _BUILDER_NAME, "file_format": "array_record",
                "seconds": round(time.time() - t0, 2)}
        (tmp / INFO_FILE).write_text(json.dumps(info, indent=1) + "\n")
    return info


# -- finding and reading a prepared dataset --------------------------------------------------------
def find_prepared(path) -> Optional[Path]:
    """The tfds dataset folder (the one holding dataset_info.json) of a prepared dataset at
    ``path`` (the ``--out`` of ``pegan prepare``, or the tfds folder itself); None when ``path``
    is not a prepared dataset. A damaged one raises an error naming ``pegan prepare``."""
    path = Path(path)
    if not path.is_dir():
        return None
    if (path / "dataset_info.json").exists():
        return path
    if (path / INFO_FILE).exists():
        try:
            info = json.loads((path / INFO_FILE).read_text())
            vdir = path / info["tfds_dir"]
        except (ValueError, KeyError, TypeError) as e:
            raise DataError(f"prepared dataset {path} is damaged ({INFO_FILE}: {e}); {_HINT}") from None
        if not (vdir / "dataset_info.json").exists():
            raise MissingFileError(f"prepared dataset {path} is incomplete: {vdir}/dataset_info.json is "
                                    f"missing; {_HINT}")
        return vdir
    found = sorted(path.glob("*/*/dataset_info.json"))
    if len(found) == 1:
        return found[0].parent
    if len(found) > 1:
        raise DataError(f"{path} holds {len(found)} tfds datasets ({', '.join(str(f.parent) for f in found)}): "
                         f"pass one of them")
    return None


class PreparedImages:
    """A prepared dataset (``pegan prepare``), read by random access: ``batch(seed, step, batch,
    offset)`` -> uint8 [batch / process_count, size, size, 3] RGB (this host's rows, ``batch_plan``).

    ``prefetch``: batches assembled ahead in a background thread (0: none); ``workers``: reader
    threads per batch (0: read in the calling thread)."""

    def __init__(self, path, *, process_index: Optional[int] = None, process_count: Optional[int] = None,
                 prefetch: int = 2, workers: Optional[int] = None, hflip: bool = True):
        import tensorflow_datasets as tfds

        self.hflip = bool(hflip)        # mirror half the images (``flips``); the config's data.hflip
        vdir = find_prepared(path)
        if vdir is None:
            raise MissingFileError(f"{path} is not a prepared dataset (no dataset_info.json); {_HINT}")
        self.path = vdir
        top = vdir.parent.parent
        self.prepare_info = json.loads((top / INFO_FILE).read_text()) if (top / INFO_FILE).exists() else {}
        try:
            builder = tfds.builder_from_directory(str(vdir))
            feat = builder.info.features["image"]
            shape, dtype = tuple(feat.shape), np.dtype(feat.np_dtype)
            self._source = builder.as_data_source(split="train")
            self._n = len(self._source)
        except Exception as e:
            raise DataError(f"cannot open prepared dataset {vdir}: {type(e).__name__}: {e}; {_HINT}") from None
        if len(shape) != 3 or shape[2] != 3 or shape[0] != shape[1] or dtype != np.uint8:
            raise DataError(f"prepared dataset {vdir}: 'image' is {dtype} {shape}, not uint8 [N, N, 3]; {_HINT}")
        if self._n == 0:
            raise DataError(f"prepared dataset {vdir} holds no images; {_HINT}")
        self.size = shape[0]
        self.skipped: List[str] = []       # files skipped by ``pegan prepare`` are in prepare_info
        if process_index is None or process_count is None:

            process_index = jax.process_index() if process_index is None else process_index
            process_count = jax.process_count() if process_count is None else process_count
        if not 0 <= process_index < process_count:
            raise InputError(f"process_index {process_index} is not in [0, {process_count})")
        self.process_index, self.process_count = int(process_index), int(process_count)
        self._depth = max(0, int(prefetch))
        workers = min(8, os.cpu_count() or 1) if workers is None else int(workers)
        self._readers = ThreadPoolExecutor(workers, thread_name_prefix="pegan-read") if workers > 0 else None
        self._assembler = (ThreadPoolExecutor(1, thread_name_prefix="pegan-prefetch") if self._depth else None)
        self._pending: "OrderedDict[tuple, object]" = OrderedDict()
        self._hinted = False
        self.stats = {"prefetched": 0, "on_demand": 0}   # batches served from prefetch / read on the call
        for i in sorted({0, self._n - 1}):       # a truncated or damaged file fails here, not mid-run
            self._read(i)

    def __len__(self):
        return self._n

    def __repr__(self):
        return (f"PreparedImages({str(self.path)!r}, {self._n} images of {self.size}px, host "
                f"{self.process_index}/{self.process_count})")

    def rows(self, batch: int):
        """This host's rows [lo, hi) of a global batch of ``batch`` images."""
        return host_rows(batch, self.process_index, self.process_count)

    def indices(self, seed: int, batch: int, offset: int) -> List[int]:
        """The record numbers of this host's rows of the batch at stream positions offset.."""
        return [int(i) for i in batch_plan(seed, 0, batch, offset, self._n, self.rows(batch), False)[0]]

    def read(self, i: int) -> np.ndarray:
        """Record ``i`` (the ``i``-th readable file, sorted) as stored: uint8 [size, size, 3] RGB."""
        return self._read(int(i))

    def _read(self, i: int) -> np.ndarray:
        try:
            x = self._source[i]["image"]
        except Exception as e:
            raise DataError(f"prepared dataset {self.path}: cannot read record {i}: {type(e).__name__}: {e}; "
                             f"{_HINT}") from None
        if x.shape != (self.size, self.size, 3):
            raise DataError(f"prepared dataset {self.path}: record {i} has shape {x.shape}; {_HINT}")
        return x

    def _assemble(self, seed: int, step: int, batch: int, offset: int) -> np.ndarray:
        lo, hi = self.rows(batch)
        idx, flip = batch_plan(seed, step, batch, offset, self._n, (lo, hi), self.hflip)
        u8 = np.empty((hi - lo, self.size, self.size, 3), np.uint8)

        def fill(j):             # row j only: the result does not depend on the threads
            img = self._read(idx[j])
            u8[j] = img[:, ::-1] if flip[j] else img

        if self._readers is not None and len(idx) > 1:
            list(self._readers.map(fill, range(len(idx))))
        else:
            for j in range(len(idx)):
                fill(j)
        return u8

    # -- the calls -----------------------------------------------------------------------------
    def batch(self, seed: int, step: int, batch: int, offset: int) -> np.ndarray:
        """This host's rows of the global batch of step ``step``: stream positions
        ``offset .. offset + batch`` (epoch permutation by (seed, epoch)), flips by (seed, step)."""
        key = (int(seed), int(step), int(batch), int(offset))
        fut = self._pending.pop(key, None)
        self.stats["prefetched" if fut is not None else "on_demand"] += 1
        x = fut.result() if fut is not None else self._assemble(*key)
        for k in [k for k in self._pending if k[1] <= key[1] or k[0] != key[0]]:
            self._pending.pop(k).cancel()
        if not self._hinted:      # guess: the next steps take batches of the same size
            for j in range(1, self._depth + 1):
                self._submit((key[0], key[1] + j, key[2], key[3] + j * key[2]))
        return x

    def prefetch(self, seed: int, step: int, batch: int, offset: int) -> None:
        """Start assembling the batch a later ``batch(seed, step, batch, offset)`` will ask for
        (the trainer knows its schedule; without these hints the loader guesses)."""
        self._hinted = True
        key = (int(seed), int(step), int(batch), int(offset))
        for k in [k for k in self._pending if k[1] == key[1] and k != key]:
            self._pending.pop(k).cancel()
        self._submit(key)

    def _submit(self, key):
        if self._assembler is None or key in self._pending:
            return
        while len(self._pending) >= self._depth:
            self._pending.popitem(last=False)[1].cancel()
        self._pending[key] = self._assembler.submit(self._assemble, *key)

    def close(self):
        for f in self._pending.values():
            f.cancel()
        self._pending.clear()
        for pool in (self._assembler, self._readers):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        self._assembler = self._readers = None
        self._depth = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def open_data(path, size: int, on_error: str = "raise", hflip: bool = True, **loader_kw):
    """The loader for ``data.path``: ``PreparedImages`` for a prepared dataset (whose images must
    be at least ``size`` px: the training step only resizes down), else ``ImageFolder`` reading
    the folder's images into memory at ``size`` px. ``hflip``: random mirroring (data.hflip)."""
    p = Path(path)
    if not p.exists():
        raise MissingFileError(f"data.path {path} does not exist (--config.data.path=DIR)")
    vdir = find_prepared(p) if p.is_dir() else None
    if vdir is not None:
        data = PreparedImages(vdir, hflip=hflip, **loader_kw)
        if data.size < size:
            data.close()
            raise DataError(f"prepared dataset {path} is {data.size} px but the largest trained scale is {size} px; "
                             f"prepare it again with `pegan prepare FOLDER --out DIR --size {size}`")
        return data
    if p.is_dir() and (p / INFO_FILE).exists():
        raise MissingFileError(f"{path} is a damaged prepared dataset; {_HINT}")
    return ImageFolder(p, size, on_error=on_error, hflip=hflip)
