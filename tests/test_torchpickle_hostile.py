"""Hostile .pth / .pkl files, built here: code execution in every pickle slot of both formats,
process-state mutation through BUILD, denial of service (shared references, depth, broadcasts,
zip bombs, huge declared sizes), out-of-range views, unsupported kinds and damaged downloads.

The memory and hang cases run in a subprocess under an address-space limit and a timeout, so
that a regression fails the test instead of the machine."""

import collections
import hashlib
import os
import struct
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

from pegan.convert import torchpickle as tp
from pegan.convert.torchpickle import (CheckpointReadError, DamagedDownloadError, UnsafePickleError,
                                       UnsupportedTensorError, load_pickle, load_pth, loads_pickle)
from torch_writer import raw_legacy, raw_zip, save_pth

# -- pickle opcodes, for files the standard pickler would never write --------------------------
PROTO2 = b"\x80\x02"


def glob(module, name):
    return b"c" + f"{module}\n{name}\n".encode()


def ustr(s):
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def i1(n):
    return b"K" + bytes([n])


def i4(n):
    if -2**31 <= n < 2**31:
        return b"J" + struct.pack("<i", n)
    raw = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw          # LONG1


def tup(*items):
    return b"(" + b"".join(items) + b"t"


STOP = b"."
REDUCE = b"R"
BUILD = b"b"


def tensor_pkl(dtype_storage="FloatStorage", key="0", numel=1, offset=0, size=(), stride=(), metadata=None,
               rebuild="_rebuild_tensor_v2", legacy=False):
    """A pickle of one tensor with any (hostile) geometry; its storage as a persistent id."""
    pid = tup(ustr("storage"), glob("torch", dtype_storage), ustr(key), ustr("cpu"), i4(numel),
              *( [b"N"] if legacy else []))
    md = b"N" if metadata is None else b"}" + b"".join(ustr(k) + (b"\x88" if v else b"\x89") + b"s"
                                                      for k, v in metadata.items())
    args = tup(pid + b"Q", i4(offset), tup(*map(i4, size)), tup(*map(i4, stride)), b"\x89",
               glob("collections", "OrderedDict") + b")R", md)
    return PROTO2 + glob("torch._utils", rebuild) + args + REDUCE + STOP


def marker_payload(marker, how="reduce"):
    cmd = ustr(f"touch {marker}")
    if how == "reduce":
        return PROTO2 + glob("os", "system") + tup(cmd) + REDUCE + STOP
    if how == "eval":
        return PROTO2 + glob("builtins", "eval") + tup(ustr(f"open({str(marker)!r}, 'w')")) + REDUCE + STOP
    if how == "inst":          # protocol 0 INST: find the class and call it
        return b"(" + cmd + b"ios\nsystem\n" + STOP
    if how == "obj":
        return PROTO2 + b"(" + glob("os", "system") + cmd + b"o" + STOP
    if how == "stack_global":  # protocol 4
        return b"\x80\x04" + ustr("subprocess") + ustr("getoutput") + b"\x93" + tup(cmd) + REDUCE + STOP
    if how == "newobj":
        return PROTO2 + glob("subprocess", "Popen") + tup(tup(ustr("touch"), ustr(str(marker)))) + b"\x81" + STOP
    if how == "nested":        # inside an allowed structure
        return PROTO2 + glob("collections", "OrderedDict") + tup(tup(tup(ustr("a"), glob("os", "system")
                                                                           + tup(cmd) + REDUCE))) + REDUCE + STOP
    raise ValueError(how)


PAYLOADS = ["reduce", "eval", "inst", "obj", "stack_global", "newobj", "nested"]


# -- 1. code execution ------------------------------------------------------------------------

@pytest.mark.parametrize("how", PAYLOADS)
def test_code_in_a_zip_checkpoint_or_a_pickle_never_runs(tmp_path, how):
    marker = tmp_path / "pwned"
    path = raw_zip(tmp_path / "evil.pth", marker_payload(marker, how))
    with pytest.raises(UnsafePickleError, match="not on pegan's allowlist|may be malicious"):
        load_pth(path)
    (tmp_path / "evil.pkl").write_bytes(marker_payload(marker, how))
    with pytest.raises(UnsafePickleError):
        load_pickle(tmp_path / "evil.pkl")
    assert not marker.exists()


@pytest.mark.parametrize("slot", ["magic", "protocol", "sys_info", "object", "keys"])
@pytest.mark.parametrize("how", ["reduce", "stack_global", "inst"])
def test_code_in_any_slot_of_a_legacy_checkpoint_never_runs(tmp_path, slot, how):
    """The legacy stream is five pickles: the magic number, the protocol, the system info, the
    object and the storage keys. A payload in any of them is refused before it runs."""
    marker = tmp_path / "pwned"
    evil = marker_payload(marker, how)
    obj = PROTO2 + b"}" + STOP
    kw = {"magic": dict(magic_pkl=evil), "protocol": dict(protocol_pkl=evil), "sys_info": dict(sys_info_pkl=evil),
          "object": {}, "keys": dict(keys_pkl=evil)}[slot]
    path = raw_legacy(tmp_path / "evil.pth", evil if slot == "object" else obj, **kw)
    with pytest.raises(UnsafePickleError):
        load_pth(path)
    assert not marker.exists()


def _process_state():
    fns = {n: (getattr(f, "__defaults__", None), dict(getattr(f, "__dict__", {})))
           for n, f in vars(tp).items() if callable(f)}
    return (dict(vars(collections.Counter)), dict(vars(collections.OrderedDict)), fns,
            {k: id(v) for k, v in tp._CALLABLES.items()})


@pytest.mark.parametrize("target", [("collections", "Counter"), ("collections", "OrderedDict"),
                                    ("torch._utils", "_rebuild_tensor_v2"), ("numpy", "dtype"),
                                    ("torch", "FloatStorage"), ("builtins", "set")])
@pytest.mark.parametrize("state", ["dict", "slots"])
def test_build_cannot_change_what_the_allowlist_hands_out(tmp_path, target, state):
    """BUILD with (dict) or (None, slots) state on an allowlisted global: refused, and the
    process is as before (classes, pegan's rebuild functions, the allowlist)."""
    before = _process_state()
    attrs = b"}" + ustr("most_common") + i1(1) + b"s" + ustr("__defaults__") + b"N" + b"s"
    st = attrs if state == "dict" else b"N" + attrs + b"\x86"
    data = PROTO2 + glob(*target) + st + BUILD + STOP
    with pytest.raises(UnsafePickleError, match="set attributes"):
        loads_pickle(data)
    with pytest.raises(UnsafePickleError):
        load_pth(raw_zip(tmp_path / "b.pth", data))
    # and on an instance built from it (only a fresh dict's own attributes may be set)
    inst = PROTO2 + glob("collections", "Counter") + b")R" + b"N" + attrs + b"\x86" + BUILD + STOP
    with pytest.raises(UnsafePickleError):
        loads_pickle(inst)
    assert _process_state() == before
    assert collections.Counter("aab").most_common(1) == [("a", 2)]


def test_placeholders_are_fresh_per_load():
    data = PROTO2 + glob("mmengine.logging", "HistoryBuffer") + b")R" + b"}" + ustr("x") + i1(1) + b"s" + BUILD + STOP
    a, b = loads_pickle(data), loads_pickle(data)
    assert isinstance(a, tp.Placeholder) and a.state == {"x": 1}
    assert type(a) is not type(b)


# -- 2. denial of service (subprocess, address-space limit, timeout) --------------------------

def run_limited(code: str, mem_gb: float = 1.0, timeout: float = 60):
    """Run ``code`` in a fresh interpreter under RLIMIT_AS and a timeout; (rc, stdout, stderr)."""
    prelude = (f"import resource; resource.setrlimit(resource.RLIMIT_AS, ({int(mem_gb * 2**30)}, "
               f"{int(mem_gb * 2**30)}))\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(__file__)] + sys.path))
    r = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True,
                       text=True, timeout=timeout, env=env)
    return r.returncode, r.stdout, r.stderr


def laughs(depth: int, leaf: bytes) -> bytes:
    """[x, x] nested ``depth`` times with shared references: 2**depth leaves in a few bytes."""
    assert depth < 255
    out = PROTO2 + leaf + b"q\x00" + b"0"                 # BINPUT 0, POP
    for i in range(depth):                                 # [memo[i], memo[i]] -> memo[i + 1]
        out += b"](" + b"h" + bytes([i]) + b"h" + bytes([i]) + b"e" + b"q" + bytes([i + 1]) + b"0"
    return out + b"h" + bytes([depth]) + STOP


def test_shared_references_and_depth_are_linear(tmp_path):
    """A billion-laughs structure in the legacy object slot (with a tensor at the bottom) and
    in a plain pickle, and 200,000 levels of nesting: read in well under the limits."""
    leaf = tensor_pkl(numel=1, legacy=True)[2:-1]
    raw_legacy(tmp_path / "laughs.pth", laughs(60, leaf), storages=[(1, np.float32(3).tobytes())])
    (tmp_path / "laughs.pkl").write_bytes(laughs(60, ustr("x")))
    (tmp_path / "deep.pkl").write_bytes(PROTO2 + b"]" * 200_000 + b"a" * 199_999 + STOP)
    rc, out, err = run_limited(f"""
        from pegan.convert.torchpickle import load_pth, load_pickle, flatten_arrays, CheckpointReadError
        obj = load_pth({str(tmp_path / 'laughs.pth')!r})
        node = obj
        for _ in range(60):
            assert node[0] is node[1]
            node = node[0]
        assert float(node) == 3.0
        try:
            flatten_arrays(obj)
            raise SystemExit("flatten_arrays expanded 2**60 paths")
        except CheckpointReadError as e:
            assert "shared references" in str(e)
        assert load_pickle({str(tmp_path / 'laughs.pkl')!r})[0][1][0] is not None
        deep = load_pickle({str(tmp_path / 'deep.pkl')!r})
        n = 0
        while deep:
            deep, n = deep[0], n + 1
        print("ok", n)
        """, mem_gb=1.0, timeout=60)
    assert rc == 0, err
    assert out.split() == ["ok", "199999"]


def test_singan_pkl_with_shared_noises_is_refused_before_converting(tmp_path, fixtures):
    """The 1.8 KB .pkl whose fixed_noises is a shared-reference structure: one clear line from
    `pegan convert`, bounded memory (it drove the old converter to 17.8 GB)."""
    import shutil

    shutil.copy(fixtures / "pe_singan_csg_tiny.mmgen.pth", tmp_path / "g.pth")
    noises = laughs(40, ustr("x"))[2:-1]
    pkl = (PROTO2 + b"}" + ustr("fixed_noises") + noises + b"s" + ustr("noise_weights") + b"]" + i1(1) + b"a"
           + b"s" + ustr("curr_stage") + i1(0) + b"s" + STOP)
    (tmp_path / "g.pkl").write_bytes(pkl)
    assert len(pkl) < 2000
    rc, out, err = run_limited(f"""
        import sys
        from pegan.cli import main
        sys.exit(main(["convert", {str(tmp_path / 'g.pth')!r}, {str(tmp_path / 'out')!r}]))
        """, mem_gb=6.0, timeout=120)
    assert rc == 2, err
    lines = [l for l in err.splitlines() if l.strip()]
    assert "Traceback" not in err and len(lines) == 1 and "fixed_noises" in lines[0], err
    assert not (tmp_path / "out").exists()


def _bomb(path, data_pkl: bytes, nbytes: int):
    """A zip .pth whose storage 0 is ``nbytes`` zeros, deflated (about 1 MB per GiB)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("archive/data.pkl", data_pkl)
        with zf.open("archive/data/0", "w", force_zip64=True) as f:
            chunk = bytes(2**24)
            for _ in range(nbytes // len(chunk)):
                f.write(chunk)
    return path


def test_tiny_files_cannot_allocate_gigabytes(tmp_path):
    """A stride-0 view of one element declaring 40000 x 10000 elements stays a view; a deflated
    1 GiB storage member used for one element is read for that element only; a tensor that
    needs all of it is refused (decompressed bytes are bounded by the file's size)."""
    raw_zip(tmp_path / "broadcast.pth", tensor_pkl(numel=1, size=(40000, 10000), stride=(0, 0)),
            {"0": np.float32(7).tobytes()})
    big = 2**30
    one = _bomb(tmp_path / "bomb.pth", tensor_pkl(numel=big // 4, size=(1,), stride=(1,)), big)
    whole = _bomb(tmp_path / "bomb_whole.pth", tensor_pkl(numel=big // 4, size=(big // 4,), stride=(1,)), big)
    assert os.path.getsize(one) < 8 * 2**20
    rc, out, err = run_limited(f"""
        from pegan.convert.torchpickle import load_pth, CheckpointReadError
        a = load_pth({str(tmp_path / 'broadcast.pth')!r})
        assert a.shape == (40000, 10000) and a.strides == (0, 0) and float(a[39999, 9999]) == 7.0
        assert not a.flags.writeable
        b = load_pth({str(one)!r})
        assert b.shape == (1,) and float(b[0]) == 0.0
        try:
            load_pth({str(whole)!r})
            raise SystemExit("a 1 GiB expansion of a small file was read")
        except CheckpointReadError as e:
            assert "zip bomb" in str(e), e
        print("ok")
        """, mem_gb=1.0, timeout=60)
    assert rc == 0, err
    assert out.strip() == "ok"


def test_declared_sizes_must_match_the_file(tmp_path):
    """A storage member larger or smaller than its declared storage is refused; a legacy
    storage that declares more elements than the file holds is refused without allocating."""
    raw_zip(tmp_path / "short.pth", tensor_pkl(numel=4, size=(4,), stride=(1,)), {"0": bytes(8)})
    raw_zip(tmp_path / "long.pth", tensor_pkl(numel=1, size=(1,), stride=(1,)), {"0": bytes(4000)})
    for name in ("short.pth", "long.pth"):
        with pytest.raises(CheckpointReadError, match="bytes, its .* elements"):
            load_pth(tmp_path / name)
    huge = 2**40
    raw_legacy(tmp_path / "legacy_huge.pth", tensor_pkl(numel=huge, size=(1,), stride=(1,), legacy=True),
               storages=[(huge, bytes(16))])
    raw_legacy(tmp_path / "legacy_count.pth", tensor_pkl(numel=4, size=(4,), stride=(1,), legacy=True),
               storages=[(2, bytes(8))])
    rc, out, err = run_limited(f"""
        from pegan.convert.torchpickle import load_pth, CheckpointReadError
        for name, want in (("legacy_huge.pth", "file ends inside"), ("legacy_count.pth", "declares")):
            try:
                load_pth({str(tmp_path)!r} + "/" + name)
                raise SystemExit(name + " was read")
            except CheckpointReadError as e:
                assert want in str(e), e
        print("ok")
        """, mem_gb=1.0, timeout=60)
    assert rc == 0, err


def _overlapping_zip(path, members: int, inner: int):
    """A stored-zip .pth whose storage members nest: member i's bytes are member i+1's local
    header and bytes, so ``members`` storages of about ``inner`` bytes each lie in one file of
    about ``inner`` bytes (each member's CRC is right)."""
    import zlib

    def local(name, data):
        return struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0, zlib.crc32(data), len(data), len(data),
                           len(name), 0) + name

    names = [f"archive/data/{i}".encode() for i in range(members)]
    blobs, body = [], bytes(inner)
    for name in reversed(names):                       # innermost first
        body += bytes(-len(body) % 4)
        blobs.insert(0, body)
        body = local(name, body) + body
    entries = b"".join(ustr(f"t{i}") + tensor_pkl(key=str(i), numel=len(b) // 4, size=(len(b) // 4,),
                                                  stride=(1,))[2:-1] + b"s" for i, b in enumerate(blobs))
    pkl = PROTO2 + b"}" + entries + STOP
    out = local(b"archive/data.pkl", pkl) + pkl
    central, offsets = b"", [0, len(out)]               # data.pkl, then member 0 after it
    for name in names[:-1]:                               # member i+1's header follows member i's
        offsets.append(offsets[-1] + 30 + len(name))
    out += local(names[0], blobs[0]) + blobs[0]
    for name, data, off in zip([b"archive/data.pkl"] + names, [pkl] + blobs, offsets):
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 0, 0, 0, zlib.crc32(data), len(data),
                               len(data), len(name), 0, 0, 0, 0, 0, off) + name
    out += central + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, members + 1, members + 1, len(central),
                                 len(out), 0)
    path.write_bytes(out)
    return path


def test_overlapping_and_odd_zip_members_are_refused_in_bounded_memory(tmp_path):
    """Stored members that nest inside each other (200 storages of ~2 MB in a 2 MB file) are
    refused before they are read 200 times; an encrypted member is refused by name; a
    'byteorder' member deflated from 1 GiB is read for its first bytes only."""
    _overlapping_zip(tmp_path / "overlap.pth", 200, 2 * 2**20)
    assert os.path.getsize(tmp_path / "overlap.pth") < 3 * 2**20
    raw_zip(tmp_path / "plain.pth", tensor_pkl(numel=4, size=(4,), stride=(1,)), {"0": np.arange(4, dtype="f4").tobytes()})
    raw = bytearray((tmp_path / "plain.pth").read_bytes())
    for sig, at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):       # set bit 0 (encrypted) of every entry
        i = raw.find(sig)
        while i >= 0:
            raw[i + at] |= 1
            i = raw.find(sig, i + 4)
    (tmp_path / "encrypted.pth").write_bytes(bytes(raw))
    with pytest.raises(CheckpointReadError, match="encrypted"):
        load_pth(tmp_path / "encrypted.pth")
    with zipfile.ZipFile(tmp_path / "byteorder.pth", "w") as zf:
        zf.writestr("archive/data.pkl", tensor_pkl(numel=4, size=(4,), stride=(1,)))
        info = zipfile.ZipInfo("archive/byteorder")
        info.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(info, "w", force_zip64=True) as f:
            f.write(b"little")
            for _ in range(64):
                f.write(b" " * 2**24)
        zf.writestr("archive/data/0", np.arange(4, dtype="f4").tobytes())
    assert os.path.getsize(tmp_path / "byteorder.pth") < 8 * 2**20
    rc, out, err = run_limited(f"""
        from pegan.convert.torchpickle import load_pth, CheckpointReadError
        try:
            load_pth({str(tmp_path / 'overlap.pth')!r})
            raise SystemExit("200 overlapping members were read")
        except CheckpointReadError as e:
            assert "overlap" in str(e) or "Overlapped" in str(e), e
        print(load_pth({str(tmp_path / 'byteorder.pth')!r}).tolist())
        """, mem_gb=1.0, timeout=120)
    assert rc == 0, err
    assert out.strip() == "[0.0, 1.0, 2.0, 3.0]"


_DEEP = b"]" * 100_000 + b"a" * 99_999          # a list nested 100,000 deep


@pytest.mark.parametrize("where", ["persistent id", "build", "tensor size", "dtype", "defaultdict",
                                   "reconstructor", "long size"])
def test_errors_about_hostile_values_stay_short(tmp_path, where):
    """An error that names a value from the file (a persistent id, BUILD state, a tensor size
    ...) names it in a bounded repr: one short line, never a RecursionError or megabytes."""
    storage = tup(ustr("storage"), glob("torch", "FloatStorage"), ustr("0"), ustr("cpu"), i1(4)) + b"Q"
    body = {
        "persistent id": _DEEP + b"Q",
        "build": _DEEP + b"}" + BUILD,
        "tensor size": glob("torch._utils", "_rebuild_tensor_v2") + b"(" + storage + i1(0) + _DEEP
                       + b")\x89}t" + REDUCE,
        "dtype": glob("numpy", "dtype") + b"(" + _DEEP + b"t" + REDUCE,
        "defaultdict": glob("collections", "defaultdict") + b"(" + _DEEP + b"t" + REDUCE,
        "reconstructor": glob("copyreg", "_reconstructor") + b"(" + _DEEP + b"NNt" + REDUCE,
        "long size": glob("torch._utils", "_rebuild_tensor_v2") + b"(" + storage + i1(0) + b"(" + i1(1) * 10**6
                     + b"l)\x89}t" + REDUCE,
    }[where]
    raw_zip(tmp_path / "x.pth", PROTO2 + body + STOP, {"0": bytes(16)})
    with pytest.raises(CheckpointReadError) as e:
        load_pth(tmp_path / "x.pth")
    assert len(str(e.value)) < 400 and "\n" not in str(e.value), str(e.value)[:1000]
    if where != "persistent id":
        (tmp_path / "x.pkl").write_bytes(PROTO2 + body + STOP)
        with pytest.raises(CheckpointReadError) as e:
            load_pickle(tmp_path / "x.pkl")
        assert len(str(e.value)) < 400, str(e.value)[:1000]


@pytest.mark.parametrize("geometry", [
    dict(numel=4, offset=-1, size=(), stride=()),           # 0-d, negative offset
    dict(numel=4, offset=4, size=(), stride=()),            # 0-d, past the end
    dict(numel=4, offset=0, size=(5,), stride=(1,)),        # longer than its storage
    dict(numel=4, offset=2, size=(2, 2), stride=(1, 1)),    # extent past the end
    dict(numel=4, offset=3, size=(2,), stride=(-1,)),       # negative stride
    dict(numel=4, offset=0, size=(-1,), stride=(1,)),       # negative size
    dict(numel=4, offset=0, size=(2,), stride=(1, 1)),      # ranks differ
])
@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_out_of_range_views_are_refused(tmp_path, geometry, fmt):
    if fmt == "zip":
        path = raw_zip(tmp_path / "v.pth", tensor_pkl(**geometry), {"0": bytes(16)})
    else:
        path = raw_legacy(tmp_path / "v.pth", tensor_pkl(legacy=True, **geometry), storages=[(4, bytes(16))])
    with pytest.raises(CheckpointReadError, match="storage|stride|size|offset"):
        load_pth(path)


def test_in_range_views_read_the_right_elements(tmp_path):
    """The same geometry code reads in-range views exactly as NumPy indexes them."""
    base = np.arange(24, dtype=np.float32)
    for offset, size, stride in [(5, (), ()), (3, (2, 3), (6, 1)), (1, (3, 2), (1, 5)), (0, (4, 3), (0, 2))]:
        for fmt in ("zip", "legacy"):
            if fmt == "zip":
                path = raw_zip(tmp_path / "v.pth", tensor_pkl(numel=24, offset=offset, size=size, stride=stride),
                               {"0": base.tobytes()})
            else:
                path = raw_legacy(tmp_path / "v.pth", tensor_pkl(numel=24, offset=offset, size=size, stride=stride,
                                                                 legacy=True), storages=[(24, base.tobytes())])
            want = np.lib.stride_tricks.as_strided(base[offset:], size, tuple(4 * s for s in stride))
            np.testing.assert_array_equal(load_pth(path), want)


# -- 3. unsupported kinds and sign bits -------------------------------------------------------

@pytest.mark.parametrize("what", ["uint16", "float8_e4m3fn", "sparse", "quantized", "metadata"])
def test_unsupported_kinds_say_so(tmp_path, what):
    if what in ("uint16", "float8_e4m3fn"):
        pid = tup(ustr("storage"), glob("torch.storage", "UntypedStorage"), ustr("0"), ustr("cpu"), i1(4))
        data = (PROTO2 + glob("torch._utils", "_rebuild_tensor_v3") + tup(pid + b"Q", i1(0), tup(i1(2)), tup(i1(1)),
                b"\x89", glob("collections", "OrderedDict") + b")R", glob("torch", what)) + REDUCE + STOP)
    elif what == "sparse":
        data = PROTO2 + glob("torch._utils", "_rebuild_sparse_tensor") + tup(i1(0)) + REDUCE + STOP
    elif what == "quantized":
        data = tensor_pkl(dtype_storage="QInt8Storage", numel=4, size=(4,), stride=(1,))
    else:
        data = tensor_pkl(numel=4, size=(4,), stride=(1,), metadata={"zero_bit": True})
    with pytest.raises(UnsupportedTensorError, match="unsupported tensor kind") as info:
        load_pth(raw_zip(tmp_path / "u.pth", data, {"0": bytes(4 if what in ("uint16", "float8_e4m3fn") else 16)}))
    assert "malicious" not in str(info.value)


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_sign_bits_on_hand_made_views(tmp_path, fmt):
    stored = np.array([1 + 2j, -3 + 0.5j, 0 - 1j], np.complex64)
    for bits, want in [({"conj": True}, np.conj(stored)), ({"neg": True}, -stored),
                       ({"conj": True, "neg": True}, -np.conj(stored)), ({"conj": False}, stored)]:
        kw = dict(dtype_storage="ComplexFloatStorage", numel=3, size=(3,), stride=(1,), metadata=bits)
        if fmt == "zip":
            path = raw_zip(tmp_path / "s.pth", tensor_pkl(**kw), {"0": stored.tobytes()})
        else:
            path = raw_legacy(tmp_path / "s.pth", tensor_pkl(legacy=True, **kw), storages=[(3, stored.tobytes())])
        got = load_pth(path)
        assert got.dtype == np.complex64
        np.testing.assert_array_equal(got, want)


def test_python2_names_in_protocol_2_are_mapped():
    data = (PROTO2 + b"]" + b"(" + glob("__builtin__", "set") + tup(b"]" + i1(1) + b"a") + REDUCE
            + glob("__builtin__", "xrange") + tup(i1(0), i1(3)) + REDUCE
            + glob("__builtin__", "bytes") + b")" + REDUCE
            + glob("__builtin__", "complex") + tup(b"G" + struct.pack(">d", 1.0), b"G" + struct.pack(">d", 2.0))
            + REDUCE + b"e" + STOP)
    assert loads_pickle(data) == [{1}, range(0, 3), b"", 1 + 2j]


def test_builtins_refuse_size_arguments():
    """bytes(10**12), bytearray(10**12) and set(range(10**12)) would allocate: refused."""
    for data in (PROTO2 + glob("builtins", "bytes") + tup(b"\x8a\x06" + (10**12).to_bytes(6, "little")) + REDUCE + STOP,
                 PROTO2 + glob("builtins", "bytearray") + tup(b"\x8a\x06" + (10**12).to_bytes(6, "little")) + REDUCE + STOP,
                 PROTO2 + glob("builtins", "set") + tup(glob("builtins", "range") + tup(b"\x8a\x06"
                                                        + (10**12).to_bytes(6, "little")) + REDUCE) + REDUCE + STOP):
        with pytest.raises(CheckpointReadError):
            loads_pickle(data)


# -- released names carry a digest --------------------------------------------------------------

def test_a_name_with_a_digest_is_checked(tmp_path):
    sd = {"w": np.arange(3, dtype=np.float32)}
    good = tmp_path / "tmp.pth"
    save_pth(good, {"state_dict": sd})
    digest = hashlib.sha256(good.read_bytes()).hexdigest()
    ok = tmp_path / f"model_20210406_144927-{digest[:8]}.pth"
    os.replace(good, ok)
    np.testing.assert_array_equal(load_pth(ok)["state_dict"]["w"], sd["w"])
    bad = tmp_path / f"model_20210406_144927-{'0' if digest[0] != '0' else '1'}{digest[1:8]}.pth"
    bad.write_bytes(ok.read_bytes())
    with pytest.raises(DamagedDownloadError, match="damaged download.*download it again from https://x"):
        load_pth(bad, url="https://x")


def test_pegan_convert_names_the_release_url_for_a_damaged_download(tmp_path, capsys):
    from pegan.cli import main

    name = "mspie-stylegan2_c2_config-f_ffhq_256-512_b3x8_1100k_20210406_144927-4f4d5391.pth"
    save_pth(tmp_path / name, {"state_dict": {"w": np.zeros(2, np.float32)}})
    assert main(["convert", str(tmp_path / name), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "damaged download" in err[0]
    assert "https://download.openmmlab.com/mmediting/pe_in_gans/" + name in err[0]
    assert not (tmp_path / "out").exists()
