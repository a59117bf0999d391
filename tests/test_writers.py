"""pegan.train.writers: event files checked with the real tensorboard reader (which verifies the
TFRecord CRCs), CRC-32C vectors, console / null writers, and no TensorFlow import."""

import glob
import importlib.util
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


def test_crc32c_rfc3720_vectors():
    assert W.crc32c(b"123456789") == 0xE3069283
    assert W.crc32c(bytes(32)) == 0x8A9136AA
    assert W.crc32c(b"\xff" * 32) == 0x62A8AB43
    assert W.crc32c(bytes(range(32))) == 0x46DD794E
    assert W.crc32c(bytes(range(31, -1, -1))) == 0x113FDB5C
    assert W.crc32c(b"") == 0


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


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is not None,
                    reason="with TensorFlow installed, clu is imported normally (and imports it)")
def test_import_pulls_in_no_tensorflow_and_fallback_without_clu():
    code = ("import sys; import pegan.train.writers as W; "
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'; "
            "assert 'clu.metric_writers.summary_writer' not in sys.modules; "
            "assert W.CLU_WRITERS and W.AsyncWriter is not None")
    subprocess.run([sys.executable, "-c", code], check=True)
    fallback = ("import sys; sys.modules['clu'] = None; import pegan.train.writers as W; "
                "assert not W.CLU_WRITERS and W.MetricWriter is W._LocalMetricWriter; "
                "out = []; w = W.create_writers('unused', tensorboard=False, process_index=0, "
                "log=out.append); w.write_scalars(1, {'x': 2}); w.close(); assert out == ['[1] x=2']")
    subprocess.run([sys.executable, "-c", fallback], check=True)
