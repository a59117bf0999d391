"""Metric writers for the training logs: console lines and TensorBoard event files.

* ``MetricWriter`` is pegan's writer protocol, with clu's method names and arguments
  (``write_scalars(step, scalars)``, ``write_images(step, images)``, ``write_texts(step,
  texts)``, ``write_hparams(hparams)``, ``flush()``, ``close()``): a clu ``MetricWriter`` can be
  handed to the training loop, and these writers used where clu's are; clu is not imported.
* ``TensorBoardWriter`` writes event files with the ``tensorboard`` package's own pieces:
  ``RecordWriter`` (record framing and CRC-32C), the ``Event`` / ``Summary`` protos of
  ``tensorboard.compat.proto`` and the text plugin's metadata. It writes to a plain file, so
  TensorFlow is never imported, installed or not (tensorboard's ``EventFileWriter`` opens its
  file through ``tf.io.gfile``, which is TensorFlow's when TensorFlow is installed).
* ``ConsoleWriter`` prints one compact line per call through a ``log`` callable (the CLI passes
  ``tqdm.write``); ``NullWriter`` drops everything (processes other than 0); ``MultiWriter``
  forwards each call to several writers.
* ``create_writers(workdir)`` puts them together for the training loop.

Importing this module has no side effects (it needs the 'train' extra: tensorboard, Pillow).
"""

from __future__ import annotations

import io
import itertools
import os
import socket
import threading
import time
from typing import Any, Callable, Mapping, Optional, Protocol, Sequence, runtime_checkable

import numpy as np

from pegan._extras import require
from pegan.imageio import to_uint8

require("tensorboard", "PIL", extra="train", by=__name__)
from PIL import Image
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.plugins.text import metadata as text_metadata
from tensorboard.summary.writer.record_writer import RecordWriter
from tensorboard.util import tensor_util

__all__ = ["MetricWriter", "NullWriter", "MultiWriter", "ConsoleWriter", "TensorBoardWriter",
           "create_writers"]

Array = Any  # np.ndarray or jax.Array
Scalar = Any  # int, float, numpy / jax scalar


@runtime_checkable
class MetricWriter(Protocol):
    """What the training loop writes to: clu's ``MetricWriter`` methods that pegan uses."""

    def write_scalars(self, step: int, scalars: Mapping[str, Scalar]) -> None: ...

    def write_images(self, step: int, images: Mapping[str, Array]) -> None: ...

    def write_texts(self, step: int, texts: Mapping[str, str]) -> None: ...

    def write_hparams(self, hparams: Mapping[str, Any]) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class NullWriter(MetricWriter):
    """Drops everything. Also the base of the writers below: what they do not override is a
    no-op."""

    def write_scalars(self, step: int, scalars: Mapping[str, Scalar]) -> None:
        pass

    def write_images(self, step: int, images: Mapping[str, Array]) -> None:
        pass

    def write_texts(self, step: int, texts: Mapping[str, str]) -> None:
        pass

    def write_hparams(self, hparams: Mapping[str, Any]) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class MultiWriter(NullWriter):
    """Forwards every call to each of ``writers`` in turn."""

    def __init__(self, writers: Sequence[MetricWriter]):
        self._writers = tuple(writers)

    def write_scalars(self, step, scalars):
        for w in self._writers:
            w.write_scalars(step, scalars)

    def write_images(self, step, images):
        for w in self._writers:
            w.write_images(step, images)

    def write_texts(self, step, texts):
        for w in self._writers:
            w.write_texts(step, texts)

    def write_hparams(self, hparams):
        for w in self._writers:
            w.write_hparams(hparams)

    def flush(self):
        for w in self._writers:
            w.flush()

    def close(self):
        for w in self._writers:
            w.close()


# ----------------------------------------------------------------------------------------------
# Console


def _format_scalar(value: Scalar) -> str:
    a = np.asarray(value)
    return str(int(a)) if a.dtype.kind in "iub" else f"{float(a):.5g}"


class ConsoleWriter(NullWriter):
    """One compact line per ``write_scalars`` call (``[step] name=value  name=value``), and one
    line for images (shapes), texts and hparams, through ``log`` (``print``, ``tqdm.write``...)."""

    def __init__(self, log: Callable[[str], Any] = print):
        self._log = log

    def write_scalars(self, step, scalars):
        self._log(f"[{int(step)}] " + "  ".join(f"{k}={_format_scalar(v)}" for k, v in scalars.items()))

    def write_images(self, step, images):
        shapes = ", ".join(f"{k}{list(np.shape(v))}" for k, v in images.items())
        self._log(f"[{int(step)}] images: {shapes}")

    def write_texts(self, step, texts):
        self._log(f"[{int(step)}] " + "  ".join(f"{k}: {v}" for k, v in texts.items()))

    def write_hparams(self, hparams):
        self._log("hparams: " + ", ".join(f"{k}={v}" for k, v in hparams.items()))


# ----------------------------------------------------------------------------------------------
# TensorBoard event files


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


def _image_value(tag: str, image: np.ndarray) -> summary_pb2.Summary.Value:
    """A PNG ``Summary.Image`` of one uint8 [H, W, C] image."""
    h, w, c = image.shape
    if c not in (1, 2, 3, 4):
        raise ValueError(f"image {tag!r} has {c} channels; expected 1 (L), 2 (LA), 3 (RGB), 4 (RGBA)")
    buf = io.BytesIO()
    Image.fromarray(image[..., 0] if c == 1 else image).save(buf, format="PNG")
    return summary_pb2.Summary.Value(tag=tag, image=summary_pb2.Summary.Image(
        height=h, width=w, colorspace=c, encoded_image_string=buf.getvalue()))


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

    Each call is flushed to disk at once, so a crashed run keeps its logs. Thread-safe (one lock
    around the file).
    """

    def __init__(self, logdir: str | os.PathLike):
        self.logdir = os.fspath(logdir)
        os.makedirs(self.logdir, exist_ok=True)
        name = (f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}"
                f".{os.getpid()}.{next(_FILE_COUNTER)}.pegan")
        self.path = os.path.join(self.logdir, name)
        self._lock = threading.Lock()
        self._records: Optional[RecordWriter] = RecordWriter(open(self.path, "wb"))
        self._write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

    def _write(self, event: event_pb2.Event) -> None:
        with self._lock:
            if self._records is None:
                raise ValueError(f"TensorBoardWriter for {self.path} is closed")
            self._records.write(event.SerializeToString())
            self._records.flush()

    def _write_summary(self, step: int, values: Sequence[summary_pb2.Summary.Value]) -> None:
        if values:
            self._write(event_pb2.Event(wall_time=time.time(), step=int(step),
                                        summary=summary_pb2.Summary(value=values)))

    def write_scalars(self, step, scalars):
        self._write_summary(step, [summary_pb2.Summary.Value(tag=k, simple_value=float(np.asarray(v)))
                                   for k, v in scalars.items()])

    def write_images(self, step, images):
        values = []
        for key, value in images.items():
            batch = _as_uint8_images(value)
            tags = [key] if len(batch) == 1 else [f"{key}/{i}" for i in range(len(batch))]
            values += [_image_value(t, im) for t, im in zip(tags, batch)]
        self._write_summary(step, values)

    def write_texts(self, step, texts):
        meta = text_metadata.create_summary_metadata(display_name=None, description=None)
        self._write_summary(step, [summary_pb2.Summary.Value(
            tag=k, metadata=meta, tensor=tensor_util.make_tensor_proto(str(v))) for k, v in texts.items()])

    def write_hparams(self, hparams):
        rows = "".join(f"| {k} | {v} |\n" for k, v in hparams.items())
        self.write_texts(0, {"hparams": "| name | value |\n|---|---|\n" + rows})

    def flush(self):
        with self._lock:
            if self._records is not None:
                self._records.flush()

    def close(self):
        with self._lock:
            if self._records is not None:
                self._records.close()
                self._records = None


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
