"""pegan.train.writers: event files checked with tensorboard's own reader (which verifies the
record CRCs), console / null / multi writers, the writer protocol, and no TensorFlow import."""

import glob
import io
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from pegan.train import writers as W

event_file_loader = pytest.importorskip("tensorboard.backend.event_processing.event_file_loader")
from tensorboard.backend.event_processing import event_accumulator  # noqa: E402
from tensorboard.compat.proto import types_pb2  # noqa: E402
from tensorboard.util import tensor_util  # noqa: E402


def _events(path):
    """The raw Event protos of one file, as tensorboard reads them (no data_compat migration)."""
    return list(event_file_loader.LegacyEventFileLoader(path).Load())


def _values(events):
    """[(step, Summary.Value)] of the summary events."""
    return [(e.step, v) for e in events if e.HasField("summary") for v in e.summary.value]


def _png(value):
    return np.asarray(Image.open(io.BytesIO(value.image.encoded_image_string)))


def test_scalars_round_trip(tmp_path):
    w = W.TensorBoardWriter(tmp_path)
    w.write_scalars(0, {"loss/G": 1.5, "loss/D": np.float32(0.3)})
    w.write_scalars(120, {"loss/G": np.array(0.1), "kimg": 7, "sec_per_kimg": 12.345678})
    w.write_scalars(2**40, {"loss/G": -2.0})  # int64 step
    w.close()
    assert os.path.basename(w.path).startswith("events.out.tfevents.") and w.path.endswith(".pegan")
    events = _events(w.path)
    assert events[0].file_version == "brain.Event:2" and not events[0].HasField("summary")
    assert len(events) == 4 and all(e.wall_time > 1e9 for e in events)
    got = [(s, v.tag, v.simple_value) for s, v in _values(events)]
    want = [(0, "loss/G", 1.5), (0, "loss/D", 0.3), (120, "loss/G", 0.1), (120, "kimg", 7.0),
            (120, "sec_per_kimg", 12.345678), (2**40, "loss/G", -2.0)]
    assert got == [(s, t, float(np.float32(x))) for s, t, x in want]

    acc = event_accumulator.EventAccumulator(str(tmp_path)).Reload()
    assert sorted(acc.Tags()["scalars"]) == ["kimg", "loss/D", "loss/G", "sec_per_kimg"]
    assert [(e.step, e.value) for e in acc.Scalars("loss/G")] == [
        (0, 1.5), (120, float(np.float32(0.1))), (2**40, -2.0)]


def test_images_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    grid = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    # Float convention: [-1, 1] -> uint8 by rint((x + 1) * 127.5), clipped.
    target = rng.integers(0, 256, (2, 4, 6, 1), dtype=np.uint8)
    floats = (target / 127.5 - 1.0).astype(np.float32)
    floats[0, 0, 0, 0], floats[1, 0, 0, 0] = 1.7, -3.0  # clipped to 255 and 0
    target[0, 0, 0, 0], target[1, 0, 0, 0] = 255, 0
    w = W.TensorBoardWriter(tmp_path)
    w.write_images(3, {"grid": grid, "batch": floats})
    w.close()
    (s0, g), (s1, b0), (s2, b1) = _values(_events(w.path))
    assert (s0, s1, s2) == (3, 3, 3) and (g.tag, b0.tag, b1.tag) == ("grid", "batch/0", "batch/1")
    assert (g.image.height, g.image.width, g.image.colorspace) == (5, 7, 3)
    assert (b0.image.height, b0.image.width, b0.image.colorspace) == (4, 6, 1)
    np.testing.assert_array_equal(_png(g), grid)
    np.testing.assert_array_equal(_png(b0), target[0, ..., 0])
    np.testing.assert_array_equal(_png(b1), target[1, ..., 0])

    acc = event_accumulator.EventAccumulator(str(tmp_path)).Reload()
    assert sorted(acc.Tags()["images"]) == ["batch/0", "batch/1", "grid"]
    (ev,) = acc.Images("grid")
    assert ev.step == 3 and (ev.height, ev.width) == (5, 7)


def test_texts_and_hparams(tmp_path):
    w = W.TensorBoardWriter(tmp_path)
    w.write_texts(5, {"note": "hello **world** é"})
    w.write_hparams({"lr": 0.002, "batch": 32})
    w.close()
    (s0, note), (s1, hp) = _values(_events(w.path))
    assert (s0, note.tag, s1, hp.tag) == (5, "note", 0, "hparams")
    for v in (note, hp):
        assert v.metadata.plugin_data.plugin_name == "text"
        assert v.tensor.dtype == types_pb2.DT_STRING and len(v.tensor.tensor_shape.dim) == 0
    assert tensor_util.make_ndarray(note.tensor).item().decode() == "hello **world** é"
    table = tensor_util.make_ndarray(hp.tensor).item().decode()
    assert "| lr | 0.002 |" in table and "| batch | 32 |" in table

    acc = event_accumulator.EventAccumulator(str(tmp_path)).Reload()
    assert sorted(acc.Tags()["tensors"]) == ["hparams", "note"]


def test_reader_checks_our_crcs(tmp_path):
    w = W.TensorBoardWriter(tmp_path)
    w.write_scalars(1, {"a": 1.0})
    w.write_scalars(2, {"a": 2.0})
    w.close()
    assert len(_events(w.path)) == 3
    path = tmp_path / os.path.basename(w.path)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # the last record's data CRC
    path.write_bytes(bytes(data))
    assert len(_events(w.path)) == 2  # the reader stops at the bad record


def test_create_writers(tmp_path):
    lines = []
    w = W.create_writers(tmp_path / "run", process_index=0, log=lines.append)
    assert isinstance(w, W.MetricWriter)
    w.write_scalars(7, {"loss/G": 0.123456789, "kimg": np.int32(12), "r1": np.float32(2.5)})
    w.write_images(7, {"samples": np.zeros((8, 8, 3), np.uint8)})
    w.close()
    assert lines == ["[7] loss/G=0.12346  kimg=12  r1=2.5", "[7] images: samples[8, 8, 3]"]
    (path,) = glob.glob(str(tmp_path / "run" / "tensorboard" / "events.out.tfevents.*.pegan"))
    assert len(_values(_events(path))) == 4

    other = W.create_writers(tmp_path / "other", process_index=1, log=lines.append)
    assert isinstance(other, W.NullWriter)
    other.write_scalars(7, {"loss/G": 1.0})
    other.write_images(7, {"samples": np.zeros((8, 8, 3), np.uint8)})
    other.close()
    assert not (tmp_path / "other").exists() and len(lines) == 2


def test_protocol_is_clus_method_names():
    """Structural: any object with clu's six methods is a MetricWriter (clu's own writers too),
    and pegan's writers are."""

    class Lines:
        def __init__(self):
            self.calls = []

        def __getattr__(self, name):
            return lambda *a, **k: self.calls.append((name, a))

    class Duck:
        def write_scalars(self, step, scalars): ...
        def write_images(self, step, images): ...
        def write_texts(self, step, texts): ...
        def write_hparams(self, hparams): ...
        def flush(self): ...
        def close(self): ...

    assert isinstance(Duck(), W.MetricWriter) and not isinstance(object(), W.MetricWriter)
    for cls in (W.NullWriter, W.ConsoleWriter):
        assert isinstance(cls(), W.MetricWriter)
    a, b = Lines(), Lines()
    m = W.MultiWriter([a, b])
    m.write_scalars(1, {"x": 1.0})
    m.write_images(2, {"i": np.zeros((2, 2, 3), np.uint8)})
    m.write_texts(3, {"t": "s"})
    m.write_hparams({"lr": 1})
    m.flush()
    m.close()
    assert [c[0] for c in a.calls] == [c[0] for c in b.calls] == [
        "write_scalars", "write_images", "write_texts", "write_hparams", "flush", "close"]
    assert a.calls[0] == ("write_scalars", (1, {"x": 1.0}))


_NO_TF = """
import sys
class NoTensorFlow:  # any attempt to import tensorflow fails the run, installed or not
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise AssertionError("pegan.train.writers tried to import " + name)
sys.meta_path.insert(0, NoTensorFlow())
before = set(sys.modules)
import numpy as np
import pegan.train.writers as W
assert not any(m == "clu" or m.startswith("clu.") for m in sys.modules), "clu imported"
w = W.create_writers(sys.argv[1], process_index=0, log=lambda line: None)
w.write_scalars(1, {"a": 1.0})
w.write_images(1, {"i": np.zeros((4, 4, 3), np.float32)})
w.write_texts(1, {"t": "x"})
w.write_hparams({"lr": 0.1})
w.close()
"""


def test_no_tensorflow_and_no_clu(tmp_path):
    """Importing the writers and writing every kind never even tries to import TensorFlow (a
    finder that refuses it is first on sys.meta_path), and clu is not imported."""
    subprocess.run([sys.executable, "-c", _NO_TF, str(tmp_path)], check=True)
    (path,) = glob.glob(str(tmp_path / "tensorboard" / "events.out.tfevents.*.pegan"))
    assert len(_values(_events(path))) == 4


def test_import_has_no_side_effects():
    """Importing the module only adds modules, each imported normally: none that was there is
    replaced or removed, no stand-in is registered, sys.path and sys.meta_path stay as they were.
    (absl.flags, which tensorboard imports, adds a finder of its own: imported first, as training
    does through pegan.checkpoint.)"""
    code = ("import sys, numpy, jax, absl.flags\n"
            "before, path, meta = dict(sys.modules), list(sys.path), list(sys.meta_path)\n"
            "import pegan.train.writers\n"
            "assert all(sys.modules.get(n) is m for n, m in before.items()), 'a module was replaced'\n"
            "assert sys.path == path and sys.meta_path == meta\n"
            "made = [n for n, m in sys.modules.items() if n not in before and getattr(m, '__spec__', None) is None]\n"
            "assert not made, made\n")
    subprocess.run([sys.executable, "-c", code], check=True)
