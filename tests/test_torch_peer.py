"""Files written by real PyTorch (torch 2.13, zip and legacy formats, pickle protocols 2 and 4)
read bit-identically to what ``torch.load`` returns (fixtures/torch_peer, its README)."""

import collections
import json
import math

import numpy as np
import pytest

from pegan.convert.torchpickle import UnsafePickleError, UnsupportedTensorError, load_pth


@pytest.fixture(scope="module")
def peer(fixtures):
    d = fixtures / "torch_peer"
    return d, json.loads((d / "expected.json").read_text()), np.load(d / "expected.npz")


def _walk(obj, path="", out=None):
    """{path: leaf} and {path: container} with the fixture's path rule (dict keys joined by '.',
    list and tuple items as [i])."""
    if out is None:
        out = ({}, {})
    leaves, containers = out
    if isinstance(obj, dict):
        containers[path] = obj
        for k, v in obj.items():
            _walk(v, f"{path}.{k}" if path else str(k), out)
    elif isinstance(obj, (list, tuple)):
        containers[path] = obj
        for i, v in enumerate(obj):
            _walk(v, f"{path}[{i}]", out)
    else:
        leaves[path] = obj
    return out


def _plain(value):
    """A non-tensor value in expected.json's spelling."""
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return {"float": str(value)}
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**53:
        return {"int": str(value)}
    if isinstance(value, (bytes, bytearray)):
        return {type(value).__name__: value.hex()}
    if isinstance(value, (set, frozenset)):
        return {type(value).__name__: sorted(value)}
    if isinstance(value, complex):
        return {"complex": [value.real, value.imag]}
    if isinstance(value, slice):
        return {"slice": [value.start, value.stop, value.step]}
    if isinstance(value, range):
        return {"range": [value.start, value.stop, value.step]}
    return value


def _torch_dtype(arr):
    return "bfloat16" if arr.dtype.name == "bfloat16" else arr.dtype.name


def _readable(expected):
    return sorted(f for f, e in expected.items() if e["group"] != "unsupported")


def test_the_fixture_covers_both_formats_and_protocols(peer):
    _, expected, _ = peer
    cases = {(e["group"], e["format"], e["protocol"]) for e in expected.values()}
    groups = {g for g, _, _ in cases}
    assert {"dtypes", "views", "shared", "nested", "signbits", "unsupported"} <= groups
    assert len(cases) == 4 * len(groups)


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_torch_files_read_bit_identically(peer, fmt):
    d, expected, npz = peer
    files = [f for f in _readable(expected) if expected[f]["format"] == fmt]
    assert len(files) >= 10
    for name in files:
        e = expected[name]
        leaves, containers = _walk(load_pth(d / name))
        tensors = {p: v for p, v in leaves.items() if isinstance(v, np.ndarray)}
        assert set(tensors) == set(e["tensors"]), name
        for path, spec in e["tensors"].items():
            got, want = tensors[path], npz[f"{name}::{path}"]
            assert list(got.shape) == spec["shape"], (name, path)
            assert _torch_dtype(got) == spec["dtype"].replace("numpy.", ""), (name, path)
            if got.dtype.name == "bfloat16":      # stored as its uint16 bit pattern
                got = np.array(got).view(np.uint16)
            assert got.dtype == want.dtype and got.shape == want.shape, (name, path)
            assert np.ascontiguousarray(got).tobytes() == np.ascontiguousarray(want).tobytes(), (name, path)
        for path, spec in e["containers"].items():
            c = containers[path]
            kind = {"dict": dict, "OrderedDict": collections.OrderedDict, "list": list, "tuple": tuple}[spec["type"]]
            assert type(c) is kind, (name, path, type(c))
            if "keys" in spec:
                assert [str(k) for k in c] == spec["keys"], (name, path)
            else:
                assert len(c) == spec["len"], (name, path)
        for path, spec in e["values"].items():
            got = leaves[path]
            assert type(got).__name__ == spec["type"], (name, path, type(got))
            assert _plain(got) == spec["value"], (name, path, got)


def test_state_dict_metadata_and_parameters(peer):
    d, expected, _ = peer
    for name in _readable(expected):
        if expected[name]["group"] != "nested":
            continue
        obj = load_pth(d / name)
        md = getattr(obj["module_state_dict"], "_metadata", None)
        assert isinstance(md, collections.OrderedDict) and "" in md, name   # module.state_dict()'s attribute
        assert isinstance(obj["param"], np.ndarray) and not obj["param"].flags.writeable


def test_lazy_sign_bits_are_applied(peer):
    """The stored bytes are the conjugate / negation; the values are torch's."""
    d, expected, npz = peer
    names = [f for f in _readable(expected) if expected[f]["group"] == "signbits"]
    assert len(names) == 4
    for name in names:
        obj = load_pth(d / name)
        conj, neg = npz[f"{name}::conj_view"], npz[f"{name}::neg_view"]
        assert np.iscomplexobj(conj) and np.any(conj.imag != 0)
        np.testing.assert_array_equal(obj["conj_view"], conj)
        np.testing.assert_array_equal(obj["neg_view"], neg)


def test_unsupported_kinds_are_named_not_called_malicious(peer):
    d, expected, _ = peer
    names = [f for f, e in expected.items() if e["group"] == "unsupported"]
    assert len(names) == 4
    for name in names:
        with pytest.raises(UnsupportedTensorError, match="unsupported tensor kind") as info:
            load_pth(d / name)
        assert not isinstance(info.value, UnsafePickleError)
        assert "malicious" not in str(info.value)
