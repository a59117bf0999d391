"""Metric writers for training logs without TensorFlow: clu's interface, console and TensorBoard.

* ``MetricWriter`` is clu's abstract interface (``clu/metric_writers/interface.py``), and
  ``MultiWriter`` / ``LoggingWriter`` / ``AsyncWriter`` / ``AsyncMultiWriter`` are clu's, loaded
  without running ``clu/metric_writers/__init__.py`` (which imports TensorFlow through
  ``summary_writer``) when TensorFlow is not installed; see ``_load_clu_writers``.
* ``TensorBoardWriter`` writes TensorBoard event files itself (TFRecord framing, hand-encoded
  ``Event`` protos, pure-Python CRC-32C): no TensorFlow, no tensorboard package at runtime.
* ``ConsoleWriter`` prints one compact line per call through a ``log`` callable (the CLI passes
  ``tqdm.write``); ``NullWriter`` drops everything (processes other than 0).
* ``create_writers(workdir)`` puts them together for the training loop.
"""

from __future__ import annotations

import abc
import importlib
import importlib.util
import io
import itertools
import os
import socket
import struct
import sys
import threading
import time
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from pegan.imageio import to_uint8

__all__ = ["MetricWriter", "MultiWriter", "LoggingWriter", "AsyncWriter", "AsyncMultiWriter",
           "CLU_WRITERS", "NullWriter", "ConsoleWriter", "TensorBoardWriter", "create_writers",
           "crc32c"]

Array = Any  # np.ndarray or jax.Array
Scalar = Any  # int, float, numpy / jax scalar


# ----------------------------------------------------------------------------------------------
# clu's writers without clu/metric_writers/__init__.py


def _load_clu_writers() -> Optional[dict]:
    """clu's TF-free writer classes, or None when clu is missing or its layout changed.

    With TensorFlow installed, clu is imported normally. Without it, a package module for
    ``clu.metric_writers`` is built from its import spec (so it has the real ``__path__``) but
    never executed, and is registered in ``sys.modules`` before the submodules are imported:
    ``interface`` (abc, numpy, jax), ``multi_writer``, ``logging_writer`` (absl) and
    ``async_writer`` (clu.asynclib, wrapt) import nothing from TensorFlow. The stub keeps those
    names as attributes; ``SummaryWriter`` and ``create_default_writer`` (TF) are absent.
    """
    pkg_name = "clu.metric_writers"
    stub = None
    try:
        if pkg_name not in sys.modules and importlib.util.find_spec("tensorflow") is None:
            spec = importlib.util.find_spec(pkg_name)  # imports `clu` (empty), not the subpackage
            if spec is None or not spec.submodule_search_locations:
                return None
            stub = importlib.util.module_from_spec(spec)
            stub.__doc__ = "TF-free stand-in registered by pegan.train.writers (__init__ not run)."
            sys.modules[pkg_name] = stub
            sys.modules["clu"].metric_writers = stub
        interface = importlib.import_module(f"{pkg_name}.interface")
        multi = importlib.import_module(f"{pkg_name}.multi_writer")
        found = dict(MetricWriter=interface.MetricWriter, MultiWriter=multi.MultiWriter,
                     LoggingWriter=None, AsyncWriter=None, AsyncMultiWriter=None)
    except Exception:  # clu missing or reorganised: undo the stub, use the local fallback
        if stub is not None:
            for name in [m for m in sys.modules if m == pkg_name or m.startswith(pkg_name + ".")]:
                del sys.modules[name]
            if getattr(sys.modules.get("clu"), "metric_writers", None) is stub:
                delattr(sys.modules["clu"], "metric_writers")
        return None
    for module, names in (("logging_writer", ("LoggingWriter",)),
                          ("async_writer", ("AsyncWriter", "AsyncMultiWriter"))):
        try:  # optional extras: absent if their imports fail
            mod = importlib.import_module(f"{pkg_name}.{module}")
            found.update({n: getattr(mod, n) for n in names})
        except Exception:
            pass
    if stub is not None:
        for name, value in found.items():
            if value is not None:
                setattr(stub, name, value)
    return found


class _LocalMetricWriter(abc.ABC):
    """Fallback for ``clu.metric_writers.interface.MetricWriter`` when clu cannot be loaded:
    the same abstract methods, so writers here work with or without clu."""

    @abc.abstractmethod
    def write_summaries(self, step: int, values: Mapping[str, Array],
                        metadata: Optional[Mapping[str, Any]] = None): ...

    @abc.abstractmethod
    def write_scalars(self, step: int, scalars: Mapping[str, Scalar]): ...

    @abc.abstractmethod
    def write_images(self, step: int, images: Mapping[str, Array]): ...

    @abc.abstractmethod
    def write_videos(self, step: int, videos: Mapping[str, Array]): ...

    @abc.abstractmethod
    def write_audios(self, step: int, audios: Mapping[str, Array], *, sample_rate: int): ...

    @abc.abstractmethod
    def write_texts(self, step: int, texts: Mapping[str, str]): ...

    @abc.abstractmethod
    def write_histograms(self, step: int, arrays: Mapping[str, Array],
                         num_buckets: Optional[Mapping[str, int]] = None): ...

    @abc.abstractmethod
    def write_hparams(self, hparams: Mapping[str, Any]): ...

    @abc.abstractmethod
    def flush(self): ...

    @abc.abstractmethod
    def close(self): ...


_CLU = _load_clu_writers()
CLU_WRITERS: bool = _CLU is not None
"""True when the classes below are clu's; False when the local fallback is in use."""
MetricWriter = _CLU["MetricWriter"] if _CLU else _LocalMetricWriter
LoggingWriter = _CLU["LoggingWriter"] if _CLU else None  # absl logging; None without clu
AsyncWriter = _CLU["AsyncWriter"] if _CLU else None
AsyncMultiWriter = _CLU["AsyncMultiWriter"] if _CLU else None


class NullWriter(MetricWriter):
    """Drops everything. Also the base of the writers below: what they do not override is a
    no-op."""

    def write_summaries(self, step: int, values: Mapping[str, Array],
                        metadata: Optional[Mapping[str, Any]] = None):
        pass

    def write_scalars(self, step: int, scalars: Mapping[str, Scalar]):
        pass

    def write_images(self, step: int, images: Mapping[str, Array]):
        pass

    def write_videos(self, step: int, videos: Mapping[str, Array]):
        pass

    def write_audios(self, step: int, audios: Mapping[str, Array], *, sample_rate: int):
        pass

    def write_texts(self, step: int, texts: Mapping[str, str]):
        pass

    def write_histograms(self, step: int, arrays: Mapping[str, Array],
                         num_buckets: Optional[Mapping[str, int]] = None):
        pass

    def write_hparams(self, hparams: Mapping[str, Any]):
        pass

    def flush(self):
        pass

    def close(self):
        pass


class _LocalMultiWriter(NullWriter):
    """Fallback for clu's ``MultiWriter``: forwards every call to each writer in turn."""

    def __init__(self, writers: Sequence[MetricWriter]):
        self._writers = tuple(writers)


def _forward(name: str) -> Callable:
    def method(self, *args, **kwargs):
        for writer in self._writers:
            getattr(writer, name)(*args, **kwargs)
    method.__name__ = name
    return method


for _name in ("write_summaries", "write_scalars", "write_images", "write_videos", "write_audios",
              "write_texts", "write_histograms", "write_hparams", "flush", "close"):
    setattr(_LocalMultiWriter, _name, _forward(_name))

MultiWriter = _CLU["MultiWriter"] if _CLU else _LocalMultiWriter


# ----------------------------------------------------------------------------------------------
# Console


def _format_scalar(value: Scalar) -> str:
    a = np.asarray(value)
    return str(int(a)) if a.dtype.kind in "iub" else f"{float(a):.5g}"


class ConsoleWriter(NullWriter):
    """One compact line per ``write_scalars`` call (``[step] name=value  name=value``), and one
    line for images (shapes), texts and hparams, through ``log`` (``print``, ``tqdm.write``...).
    Histograms, audio, videos and raw summaries are dropped."""

    def __init__(self, log: Callable[[str], Any] = print):
        self._log = log

    def write_scalars(self, step: int, scalars: Mapping[str, Scalar]):
        self._log(f"[{int(step)}] " + "  ".join(f"{k}={_format_scalar(v)}" for k, v in scalars.items()))

    def write_images(self, step: int, images: Mapping[str, Array]):
        shapes = ", ".join(f"{k}{list(np.shape(v))}" for k, v in images.items())
        self._log(f"[{int(step)}] images: {shapes}")

    def write_texts(self, step: int, texts: Mapping[str, str]):
        self._log(f"[{int(step)}] " + "  ".join(f"{k}: {v}" for k, v in texts.items()))

    def write_hparams(self, hparams: Mapping[str, Any]):
        self._log("hparams: " + ", ".join(f"{k}={v}" for k, v in hparams.items()))


# ----------------------------------------------------------------------------------------------
# TensorBoard event files: CRC-32C, TFRecord framing, protobuf encoding


def _crc32c_table() -> tuple:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1  # reflected Castagnoli
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of ``data``, table-driven pure Python (~ a few MB/s: event records
    are small; a sample-grid PNG of a few MB takes well under a second)."""
    table, crc = _CRC_TABLE, 0xFFFFFFFF
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _masked_crc(data: bytes) -> int:
    """The TFRecord checksum: CRC-32C rotated right by 15 bits plus a constant."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _tfrecord(data: bytes) -> bytes:
    """uint64 length, masked CRC of the length bytes, data, masked CRC of the data."""
    header = struct.pack("<Q", len(data))
    return (header + struct.pack("<I", _masked_crc(header)) + data
            + struct.pack("<I", _masked_crc(data)))


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative int64 -> two's complement, 10 bytes
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _pb_int(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value)  # wire type 0


def _pb_double(field: int, value: float) -> bytes:
    return _varint(field << 3 | 1) + struct.pack("<d", value)


def _pb_float(field: int, value: float) -> bytes:
    return _varint(field << 3 | 5) + struct.pack("<f", value)


def _pb_bytes(field: int, value: bytes | str) -> bytes:
    """Length-delimited field (wire type 2): strings, bytes, sub-messages."""
    if isinstance(value, str):
        value = value.encode("utf-8")
    return _varint(field << 3 | 2) + _varint(len(value)) + value


# Field numbers (tensorflow/core/framework/summary.proto, tensor.proto, util/event.proto).
_DT_STRING = 7
_TEXT_METADATA = _pb_bytes(1, _pb_bytes(1, "text"))  # SummaryMetadata.plugin_data.plugin_name


def _scalar_value(tag: str, value: Scalar) -> bytes:
    """Summary.Value{tag=1, simple_value=2 (float32)}."""
    return _pb_bytes(1, tag) + _pb_float(2, float(np.asarray(value)))


def _image_value(tag: str, image: np.ndarray) -> bytes:
    """Summary.Value{tag=1, image=4 Image{height=1, width=2, colorspace=3, encoded=4 (PNG)}}."""
    from PIL import Image

    h, w, c = image.shape
    if c not in (1, 2, 3, 4):
        raise ValueError(f"image {tag!r} has {c} channels; expected 1 (L), 2 (LA), 3 (RGB), 4 (RGBA)")
    buf = io.BytesIO()
    Image.fromarray(image[..., 0] if c == 1 else image).save(buf, format="PNG")
    proto = _pb_int(1, h) + _pb_int(2, w) + _pb_int(3, c) + _pb_bytes(4, buf.getvalue())
    return _pb_bytes(1, tag) + _pb_bytes(4, proto)


def _text_value(tag: str, text: str) -> bytes:
    """Text-plugin form: Summary.Value{tag=1, metadata=9 (plugin "text"), tensor=8
    TensorProto{dtype=1 DT_STRING, tensor_shape=2 [] (a scalar), string_val=8}}."""
    tensor = _pb_int(1, _DT_STRING) + _pb_bytes(2, b"") + _pb_bytes(8, text)
    return _pb_bytes(1, tag) + _pb_bytes(9, _TEXT_METADATA) + _pb_bytes(8, tensor)


def _as_uint8_images(value: Array) -> np.ndarray:
    """[H, W, C] or [N, H, W, C] -> [N, H, W, C] uint8. uint8 is kept; floats are taken to be in
    [-1, 1] (generator outputs) and mapped by ``pegan.imageio.to_uint8``: rint((x + 1) * 127.5),
    clipped (clu's TF SummaryWriter assumes [0, 1] floats instead); other integers are clipped to
    [0, 255]."""
    a = np.asarray(value)
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4:
        raise ValueError(f"images must be [H, W, C] or [N, H, W, C], got shape {a.shape}")
    if a.dtype == np.uint8:
        return a
    if np.issubdtype(a.dtype, np.floating):
        return to_uint8(a, (-1.0, 1.0))
    return np.clip(a, 0, 255).astype(np.uint8)


_FILE_COUNTER = itertools.count()


class TensorBoardWriter(NullWriter):
    """Writes ``<logdir>/events.out.tfevents.<time>.<host>.<pid>.<n>.pegan``, readable by
    TensorBoard, without TensorFlow.

    * ``write_scalars``: one Event per call, a ``simple_value`` (float32) per name.
    * ``write_images``: PNG ``Summary.Image`` values; see ``_as_uint8_images`` for dtypes (floats
      are [-1, 1]). An [N, H, W, C] batch with N > 1 is written as tags ``name/0`` ...
      ``name/N-1``, ``[H, W, C]`` or N == 1 as ``name``.
    * ``write_texts``: text-plugin string tensors (markdown is rendered by TensorBoard).
    * ``write_hparams``: a markdown table, as the text ``hparams`` at step 0 (not the HParams
      plugin).
    * Histograms, audio, videos and raw tensor summaries are not written (inherited no-ops):
      the training loop logs none.

    Each call is flushed to disk at once, so a crashed run keeps its logs. Thread-safe (one lock
    around the file), so it can sit behind clu's ``AsyncWriter``.
    """

    def __init__(self, logdir: str | os.PathLike):
        self.logdir = os.fspath(logdir)
        os.makedirs(self.logdir, exist_ok=True)
        name = (f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}"
                f".{os.getpid()}.{next(_FILE_COUNTER)}.pegan")
        self.path = os.path.join(self.logdir, name)
        self._lock = threading.Lock()
        self._file = open(self.path, "wb")
        self._write(_pb_double(1, time.time()) + _pb_int(2, 0) + _pb_bytes(3, "brain.Event:2"))

    def _write(self, event: bytes) -> None:
        with self._lock:
            if self._file is None:
                raise ValueError(f"TensorBoardWriter for {self.path} is closed")
            self._file.write(_tfrecord(event))
            self._file.flush()

    def _write_summary(self, step: int, values: Sequence[bytes]) -> None:
        """Event{wall_time=1, step=2, summary=5 Summary{value=1 (repeated)}}."""
        if values:
            summary = b"".join(_pb_bytes(1, v) for v in values)
            self._write(_pb_double(1, time.time()) + _pb_int(2, int(step)) + _pb_bytes(5, summary))

    def write_scalars(self, step: int, scalars: Mapping[str, Scalar]):
        self._write_summary(step, [_scalar_value(k, v) for k, v in scalars.items()])

    def write_images(self, step: int, images: Mapping[str, Array]):
        values = []
        for key, value in images.items():
            batch = _as_uint8_images(value)
            tags = [key] if len(batch) == 1 else [f"{key}/{i}" for i in range(len(batch))]
            values += [_image_value(t, im) for t, im in zip(tags, batch)]
        self._write_summary(step, values)

    def write_texts(self, step: int, texts: Mapping[str, str]):
        self._write_summary(step, [_text_value(k, str(v)) for k, v in texts.items()])

    def write_hparams(self, hparams: Mapping[str, Any]):
        rows = "".join(f"| {k} | {v} |\n" for k, v in hparams.items())
        self.write_texts(0, {"hparams": "| name | value |\n|---|---|\n" + rows})

    def flush(self):
        with self._lock:
            if self._file is not None:
                self._file.flush()

    def close(self):
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


# ----------------------------------------------------------------------------------------------


def create_writers(workdir: str | os.PathLike, *, console: bool = True, tensorboard: bool = True,
                   process_index: Optional[int] = None,
                   log: Callable[[str], Any] = print) -> MetricWriter:
    """The training loop's writer: a ``MultiWriter`` of a ``ConsoleWriter`` (through ``log``) and
    a ``TensorBoardWriter`` under ``<workdir>/tensorboard``. On processes other than 0
    (``process_index``, default ``jax.process_index()``) a ``NullWriter``: only process 0 logs."""
    if process_index is None:
        import jax

        process_index = jax.process_index()
    if process_index != 0:
        return NullWriter()
    writers: list = []
    if console:
        writers.append(ConsoleWriter(log))
    if tensorboard:
        writers.append(TensorBoardWriter(os.path.join(os.fspath(workdir), "tensorboard")))
    return MultiWriter(writers)
