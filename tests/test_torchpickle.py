"""The torch-free checkpoint reader: every fixture file, both formats, and hostile input."""

import io
import json
import os
import pickle
import zipfile

import numpy as np
import pytest

from pegan.convert.torchpickle import (CheckpointReadError, Placeholder, UnsafePickleError,
                                       load_pickle, load_pth, loads_pickle, state_dict_of)


@pytest.fixture(scope="module")
def manifests(fixtures):
    files = json.loads((fixtures / "manifest.json").read_text())["files"]
    files.update(json.loads((fixtures / "manifest_extra.json").read_text())["files"])
    return files


def test_every_pth_matches_its_manifest(fixtures, manifests):
    pths = sorted(p for p in fixtures.glob("*.pth") if p.name in manifests)
    assert len(pths) >= 20
    for path in pths:
        entry = manifests[path.name]
        obj = load_pth(path)
        if entry.get("top_level_keys"):
            assert sorted(obj) == sorted(entry["top_level_keys"]), path.name
        sd = state_dict_of(obj)
        expected = entry["state_dict"]
        assert set(sd) == set(expected), path.name
        for key, spec in expected.items():
            assert list(sd[key].shape) == spec["shape"], (path.name, key)
            assert str(sd[key].dtype) == spec["dtype"], (path.name, key)
        if "meta" in entry:  # builtin-typed meta reads back as written (tuples as lists)
            assert json.loads(json.dumps(obj["meta"])) == entry["meta"], path.name


def test_legacy_format_equals_zip_format(fixtures):
    zipped = load_pth(fixtures / "mspie_disc_tiny.pth")
    legacy = load_pth(fixtures / "mspie_disc_tiny.legacy.pth")
    assert not zipfile.is_zipfile(fixtures / "mspie_disc_tiny.legacy.pth")
    assert zipped["meta"] == legacy["meta"]
    a, b = state_dict_of(zipped), state_dict_of(legacy)
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == b[k].dtype
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_values_agree_with_npz_copies(fixtures):
    """Tensor values (not just shapes): the .pkl noises equal the .npz copies; the mmagic
    layout holds the same EMA weights as the mmgen layout; int64 buffers survive."""
    for variant in ("csg", "interp-pad", "spe-dim4", "spe-dim4-fish"):
        pkl = load_pickle(fixtures / f"pe_singan_{variant}_tiny.pkl")
        npz = np.load(fixtures / f"pe_singan_{variant}_tiny.npz")
        assert pkl["curr_stage"] == 4 and pkl["noise_weights"][0] == 1
        assert isinstance(pkl["noise_weights"][0], int)
        np.testing.assert_allclose(pkl["noise_weights"], npz["noise_weights"])
        for i, arr in enumerate(pkl["fixed_noises"]):
            assert arr.dtype == np.float32
            np.testing.assert_array_equal(arr, npz[f"fixed_noises.{i}"])
    mmgen = state_dict_of(load_pth(fixtures / "mspie_stylegan2_config-k_tiny.mmgen.pth"))
    mmagic = state_dict_of(load_pth(fixtures / "mspie_stylegan2_config-k_tiny.mmagic.pth"))
    for k, v in mmgen.items():
        if k.startswith("generator_ema."):
            np.testing.assert_array_equal(mmagic["generator_ema.module." + k[len("generator_ema."):]], v)
    assert mmagic["generator_ema.steps"].dtype == np.int64 and int(mmagic["generator_ema.steps"]) == 1100000
    bn = state_dict_of(load_pth(fixtures / "singan_disc_bn_tiny.pth"))
    assert bn["blocks.0.head.bn.num_batches_tracked"].dtype == np.int64


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _zip_pth(path, data_pkl: bytes):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", data_pkl)
        zf.writestr("archive/version", "3\n")


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"state_dict": {"w": _Evil(marker)}}, protocol=2)
    evil_pkl = tmp_path / "evil.pkl"
    evil_pkl.write_bytes(payload)
    with pytest.raises(UnsafePickleError, match=r"system") as info:
        load_pickle(evil_pkl)
    assert str(evil_pkl) in str(info.value)
    evil_pth = tmp_path / "evil.pth"
    _zip_pth(evil_pth, payload)
    with pytest.raises(UnsafePickleError, match=r"system"):
        load_pth(evil_pth)
    for target in ("builtins.eval", "builtins.exec", "subprocess.Popen", "builtins.getattr",
                   "importlib.import_module", "torch.load"):
        module, name = target.rsplit(".", 1)
        crafted = b"\x80\x02c" + module.encode() + b"\n" + name.encode() + b"\nX\x01\x00\x00\x001\x85R."
        with pytest.raises(UnsafePickleError, match=name):
            loads_pickle(crafted)
    assert not marker.exists()


def test_foreign_mm_objects_become_inert_placeholders():
    # what mmagic's message_hub looks like: an mmengine object built by NEWOBJ + BUILD
    crafted = (b"\x80\x02}X\x0b\x00\x00\x00message_hubcmmengine.logging.history_buffer\nHistoryBuffer\n"
               b")\x81}X\x04\x00\x00\x00dataK\x07sbs.")
    obj = loads_pickle(crafted)
    hub = obj["message_hub"]
    assert isinstance(hub, Placeholder) and hub.state == {"data": 7}
    assert "HistoryBuffer" in repr(hub)


def test_bad_files_name_the_file(tmp_path, fixtures):
    good = (fixtures / "mspie_disc_tiny.pth").read_bytes()
    cases = {
        "truncated.pth": good[: len(good) // 2],
        "corrupt.pth": bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8)),
        "empty.pth": b"",
        "text.pth": b"<html>404 not found</html>\n",
        "image.pth": b"\x89PNG\r\n\x1a\n" + b"\0" * 64,
    }
    legacy = (fixtures / "mspie_disc_tiny.legacy.pth").read_bytes()
    cases["legacy_truncated.pth"] = legacy[: len(legacy) - 100]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("x/readme.txt", "hello")
    cases["foreign.zip.pth"] = buf.getvalue()
    for name, data in cases.items():
        p = tmp_path / name
        p.write_bytes(data)
        with pytest.raises(CheckpointReadError) as info:
            load_pth(p)
        assert str(p) in str(info.value), name
    with pytest.raises(CheckpointReadError, match="no such file"):
        load_pth(tmp_path / "missing.pth")
    with pytest.raises(CheckpointReadError, match="no such file"):
        load_pickle(tmp_path / "missing.pkl")
    (tmp_path / "bad.pkl").write_bytes(b"\x80\x03]q\x00(K\x01")
    with pytest.raises(CheckpointReadError, match="bad.pkl"):
        load_pickle(tmp_path / "bad.pkl")


def test_reader_does_not_import_torch():
    import subprocess
    import sys

    code = ("import sys, pegan.convert.torchpickle as t; import numpy; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
