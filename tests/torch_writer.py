"""Writers of ``torch.save``-format files without torch, for the tests: ``save_pth`` (the zip
format) from NumPy arrays, and ``raw_zip`` / ``raw_legacy`` that wrap hand-made pickles (the
hostile files of test_torchpickle_hostile.py)."""

import collections
import io
import os
import pickle
import struct
import zipfile

import numpy as np


_STORAGE_NAMES = {np.dtype(np.float32): "FloatStorage", np.dtype(np.float64): "DoubleStorage",
                  np.dtype(np.float16): "HalfStorage", np.dtype(np.int64): "LongStorage",
                  np.dtype(np.int32): "IntStorage", np.dtype(np.int16): "ShortStorage",
                  np.dtype(np.int8): "CharStorage", np.dtype(np.uint8): "ByteStorage",
                  np.dtype(np.bool_): "BoolStorage"}


class _Global:
    """A reference to ``module.name`` written as a pickle GLOBAL without importing it."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __call__(self, *a):  # pickle's save_reduce wants a callable
        raise TypeError("a pickled reference, not a function")


class _TensorPickler(pickle._Pickler):  # the Python pickler: its dispatch table is extensible
    dispatch = dict(pickle._Pickler.dispatch)

    def __init__(self, f, storages):
        super().__init__(f, protocol=2)
        self.storages = storages

    def _save_global_ref(self, obj):
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode("ascii"))
        self.memoize(obj)

    dispatch[_Global] = _save_global_ref

    def persistent_id(self, obj):
        if isinstance(obj, tuple) and len(obj) == 2 and obj[0] == "__pegan_storage__":
            arr = self.storages[obj[1]]
            return ("storage", _Global("torch", _STORAGE_NAMES[arr.dtype]), str(obj[1]), "cpu", arr.size)
        return None

    def reducer_override(self, obj):
        if isinstance(obj, (np.ndarray, np.generic)):
            arr = np.array(obj, order="C")   # keeps 0-d arrays 0-d
            if arr.dtype not in _STORAGE_NAMES:
                raise TypeError(f"cannot write dtype {arr.dtype} into a .pth")
            key = len(self.storages)
            self.storages.append(arr)
            stride, s = [], 1
            for d in reversed(arr.shape):
                stride.insert(0, s)
                s *= d
            args = (("__pegan_storage__", key), 0, tuple(arr.shape), tuple(stride), False,
                    collections.OrderedDict())
            return _Global("torch._utils", "_rebuild_tensor_v2"), args
        return NotImplemented


def save_pth(path, obj) -> str:
    """Write ``obj`` (dicts, lists, builtins and NumPy arrays as tensors) in the zip format of
    ``torch.save`` without torch. For tests and for handing weights back to PyTorch users."""
    buf = io.BytesIO()
    storages: list = []
    _TensorPickler(buf, storages).dump(obj)
    path = os.fspath(path)
    tmp = path + ".tmp"
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data.pkl", buf.getvalue())
        zf.writestr("archive/byteorder", "little")
        for i, arr in enumerate(storages):
            zf.writestr(f"archive/data/{i}", arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes())
        zf.writestr("archive/version", "3\n")
    os.replace(tmp, path)
    return path


def raw_zip(path, data_pkl: bytes, storages=None, compress=zipfile.ZIP_STORED, name="archive"):
    """A zip-format .pth holding ``data_pkl`` and ``{key: bytes}`` storages as they are."""
    with zipfile.ZipFile(path, "w", compress) as zf:
        zf.writestr(f"{name}/data.pkl", data_pkl)
        zf.writestr(f"{name}/byteorder", "little")
        for key, raw in (storages or {}).items():
            zf.writestr(f"{name}/data/{key}", raw)
        zf.writestr(f"{name}/version", "3\n")
    return path


LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def raw_legacy(path, obj_pkl: bytes, keys_pkl=None, storages=(), magic_pkl=None, protocol_pkl=None,
               sys_info_pkl=None):
    """A legacy-format .pth: five pickles (magic, protocol, sys info, the object, the storage
    keys) and the raw storages (``(count, bytes)`` each); any slot may be replaced."""
    parts = [magic_pkl or pickle.dumps(LEGACY_MAGIC, protocol=2),
             protocol_pkl or pickle.dumps(1001, protocol=2),
             sys_info_pkl or pickle.dumps({"protocol_version": 1001, "little_endian": True,
                                           "type_sizes": {"short": 2, "int": 4, "long": 4}}, protocol=2),
             obj_pkl,
             keys_pkl or pickle.dumps([str(i) for i in range(len(storages))], protocol=2)]
    for count, raw in storages:
        parts.append(struct.pack("<q", count) + raw)
    with open(path, "wb") as f:
        f.write(b"".join(parts))
    return path
