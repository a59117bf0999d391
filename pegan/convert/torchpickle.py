"""Read PyTorch ``.pth`` checkpoints and pickled ``.pkl`` files without torch, and safely.

Formats: the zip container ``torch.save`` writes since 1.6 (``<name>/data.pkl`` + one file per
storage under ``<name>/data/``) and the legacy stream (magic number, protocol, sys info, the
pickled object, the storage keys, then the raw storages). Tensors come back as NumPy arrays.

Safety: unpickling never imports or calls anything outside an allowlist. The allowlist holds
the tensor rebuild functions, the storage types, ``OrderedDict`` and friends, and NumPy's
array reconstruction; all are implemented or resolved here, nothing from torch is imported.
Classes of the OpenMMLab stack (``mmengine``, ``mmcv``, ``mmgen``, ``mmagic``, ...) met
outside the weights, e.g. in mmagic's ``message_hub``, become inert ``Placeholder`` objects
that only record their arguments and state. Any other global -- ``os.system``,
``builtins.eval``, ``subprocess.Popen`` ... -- raises ``UnsafePickleError`` naming it.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

from pegan.errors import PeganError

__all__ = ["CheckpointReadError", "UnsafePickleError", "Placeholder", "load_pth", "load_pickle",
           "loads_pickle", "state_dict_of", "flatten_arrays", "save_pth"]

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001


class CheckpointReadError(PeganError, ValueError):
    """A file that is not a readable checkpoint (missing, truncated, corrupt or foreign)."""

    def __init__(self, path, reason: str, fix: str = ""):
        self.path = str(path)
        msg = f"cannot read {self.path}: {reason}"
        if fix:
            msg += f" ({fix})"
        super().__init__(msg)


class UnsafePickleError(CheckpointReadError):
    """The pickle reaches for something outside the allowlist; nothing was called."""


# --------------------------------------------------------------------------------------------
# Storages and tensors

_STORAGE_DTYPES = {
    "DoubleStorage": np.float64, "FloatStorage": np.float32, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
    "ComplexFloatStorage": np.complex64, "ComplexDoubleStorage": np.complex128,
}

_TORCH_DTYPES = {
    "float64": np.float64, "double": np.float64, "float32": np.float32, "float": np.float32,
    "float16": np.float16, "half": np.float16, "int64": np.int64, "long": np.int64,
    "int32": np.int32, "int": np.int32, "int16": np.int16, "short": np.int16, "int8": np.int8,
    "uint8": np.uint8, "bool": np.bool_, "complex64": np.complex64, "complex128": np.complex128,
}


def _bfloat16():
    import ml_dtypes  # shipped with jax

    return ml_dtypes.bfloat16


class _StorageType:
    """Stand-in for ``torch.FloatStorage`` & co.: carries only the element dtype."""

    def __init__(self, name: str, dtype):
        self.name, self.dtype = name, np.dtype(dtype)

    def __repr__(self):
        return f"torch.{self.name}"


class _TorchDtype:
    """Stand-in for a pickled ``torch.float32``-style dtype object."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self):
        return f"torch.{self.name}"


class _Storage:
    """A loaded storage: a flat NumPy array of its element type."""

    def __init__(self, array: np.ndarray):
        self.array = array


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError("tensor rebuild without a storage")
    flat = storage.array
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    if not size:
        return flat[storage_offset:storage_offset + 1].reshape(()).copy()
    extent = storage_offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1
    if any(n == 0 for n in size):
        return np.zeros(size, flat.dtype)
    if extent > flat.size or storage_offset < 0 or min(stride) < 0:
        raise pickle.UnpicklingError(
            f"tensor of size {size} stride {stride} offset {storage_offset} exceeds its storage "
            f"of {flat.size} elements (truncated or corrupt file)")
    item = flat.itemsize
    view = np.lib.stride_tricks.as_strided(flat[storage_offset:], shape=size,
                                           strides=tuple(s * item for s in stride), writeable=False)
    return np.ascontiguousarray(view)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    return data


def _rebuild_from_type_v2(func, new_type, args, state):
    return func(*args)


def _rebuild_device_tensor_from_numpy(data, dtype, device, requires_grad):
    return np.asarray(data)


def _codecs_encode(obj, encoding="latin1"):
    import codecs

    return codecs.encode(obj, encoding)


# --------------------------------------------------------------------------------------------
# Inert placeholders for foreign classes that are allowed to appear (never executed)

_INERT_MODULE_PREFIXES = ("mmengine", "mmcv", "mmgen", "mmagic", "mmedit", "mmdet", "mmcls",
                          "mmpretrain")


class Placeholder:
    """An object of a class we do not import: records what the pickle gave it, does nothing."""

    __slots__ = ("args", "state", "items", "kwargs")
    _qualname = "?"

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs, self.state, self.items = args, kwargs, None, []

    def __setstate__(self, state):
        self.state = state

    def append(self, item):
        self.items.append(item)

    def extend(self, items):
        self.items.extend(items)

    def __setitem__(self, key, value):
        self.items.append((key, value))

    def __repr__(self):
        return f"<placeholder {type(self)._qualname}>"


def _placeholder_class(module: str, name: str):
    return type(name, (Placeholder,), {"__slots__": (), "_qualname": f"{module}.{name}",
                                       "__module__": "pegan.convert.torchpickle.placeholders"})


def _np_reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


def _np_scalar():
    try:
        from numpy._core.multiarray import scalar
    except ImportError:
        from numpy.core.multiarray import scalar
    return scalar


def _copyreg_reconstructor(cls, base, state):
    if isinstance(cls, type) and issubclass(cls, Placeholder) and base is object:
        obj = cls()
        obj.state = state
        return obj
    if cls is collections.OrderedDict and base is dict:
        return collections.OrderedDict()
    raise pickle.UnpicklingError(f"copyreg._reconstructor for {cls!r} is not allowed")


def _allowed_global(module: str, name: str) -> Optional[Any]:
    full = f"{module}.{name}"
    table: Dict[str, Any] = {
        "collections.OrderedDict": collections.OrderedDict,
        "collections.defaultdict": collections.defaultdict,
        "collections.Counter": collections.Counter,
        "builtins.set": set, "builtins.frozenset": frozenset, "builtins.slice": slice,
        "builtins.complex": complex, "builtins.bytearray": bytearray, "builtins.object": object,
        "builtins.dict": dict, "builtins.list": list, "builtins.tuple": tuple,
        "_codecs.encode": _codecs_encode,
        "copyreg._reconstructor": _copyreg_reconstructor,
        "torch._utils._rebuild_tensor": _rebuild_tensor,
        "torch._utils._rebuild_tensor_v2": _rebuild_tensor,
        "torch._utils._rebuild_parameter": _rebuild_parameter,
        "torch._utils._rebuild_parameter_with_state": _rebuild_parameter,
        "torch._utils._rebuild_device_tensor_from_numpy": _rebuild_device_tensor_from_numpy,
        "torch._tensor._rebuild_from_type_v2": _rebuild_from_type_v2,
        "torch.nn.parameter.Parameter": _rebuild_parameter,
        "numpy.ndarray": np.ndarray, "numpy.dtype": np.dtype,
    }
    if full in table:
        return table[full]
    if module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        if name == "_reconstruct":
            return _np_reconstruct()
        if name == "scalar":
            return _np_scalar()
    if module == "torch":
        if name in _STORAGE_DTYPES:
            return _StorageType(name, _STORAGE_DTYPES[name])
        if name == "BFloat16Storage":
            return _StorageType(name, _bfloat16())
        if name in _TORCH_DTYPES or name == "bfloat16":
            return _TorchDtype(name)
        if name in ("Size", "device"):
            return _placeholder_class(module, name)
    if module == "torch.storage" and name == "UntypedStorage":
        return _StorageType(name, np.uint8)
    if module.split(".")[0] in _INERT_MODULE_PREFIXES:
        return _placeholder_class(module, name)
    return None


class _SafeUnpickler(pickle.Unpickler):
    def __init__(self, file, path, storage_loader: Optional[Callable] = None):
        super().__init__(file, encoding="latin1")
        self._path = path
        self._storage_loader = storage_loader

    def find_class(self, module, name):
        obj = _allowed_global(module, name)
        if obj is None:
            raise UnsafePickleError(
                self._path, f"it asks to load '{module}.{name}', which is not on pegan's allowlist "
                "of tensor/array rebuild functions; nothing was executed",
                "only load checkpoints from sources you trust; this one may be malicious")
        return obj

    def persistent_load(self, pid):
        if self._storage_loader is None:
            raise pickle.UnpicklingError(f"persistent id {pid!r} in a plain pickle")
        return self._storage_loader(pid)


# --------------------------------------------------------------------------------------------
# Containers

def _dtype_of(storage_type) -> np.dtype:
    if isinstance(storage_type, _StorageType):
        return storage_type.dtype
    if isinstance(storage_type, _TorchDtype):
        return np.dtype(_bfloat16() if storage_type.name == "bfloat16" else _TORCH_DTYPES[storage_type.name])
    raise pickle.UnpicklingError(f"unknown storage type {storage_type!r}")


def _load_zip(path: str):
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pkls = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
        if not pkls:
            raise CheckpointReadError(path, "zip archive without '<name>/data.pkl': not a torch checkpoint")
        prefix = pkls[0][: -len("data.pkl")]
        byteorder = "little"
        if prefix + "byteorder" in names:
            byteorder = zf.read(prefix + "byteorder").decode("ascii").strip()
        cache: Dict[str, _Storage] = {}

        def load_storage(pid):
            if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
                raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
            _, storage_type, key, _location, numel = pid[:5]
            key = str(key)
            if key not in cache:
                dtype = _dtype_of(storage_type)
                entry = f"{prefix}data/{key}"
                if entry not in names:
                    raise pickle.UnpicklingError(f"storage '{entry}' missing from the archive")
                raw = zf.read(entry)
                if isinstance(storage_type, _StorageType) and storage_type.name == "UntypedStorage":
                    dtype = np.dtype(np.uint8)
                if len(raw) < int(numel) * dtype.itemsize:
                    raise pickle.UnpicklingError(f"storage '{entry}' is shorter than its {numel} elements")
                arr = np.frombuffer(raw, dtype=dtype.newbyteorder("<" if byteorder == "little" else ">"),
                                    count=int(numel))
                cache[key] = _Storage(arr.astype(dtype, copy=False))
            return cache[key]

        with zf.open(pkls[0]) as f:
            return _SafeUnpickler(io.BytesIO(f.read()), path, load_storage).load()


def _load_legacy(path: str, f):
    if pickle.load(f) != LEGACY_MAGIC:  # plain ints: no globals involved
        raise CheckpointReadError(path, "not a torch checkpoint (no zip container, no legacy magic number)")
    if pickle.load(f) != LEGACY_PROTOCOL:
        raise CheckpointReadError(path, "unsupported legacy torch serialization protocol")
    _SafeUnpickler(f, path).load()  # sys_info: plain dict
    storages: Dict[str, Tuple[np.dtype, int]] = {}
    views = []

    class _Pending(_Storage):
        def __init__(self, key):
            self.key, self.view = key, None

    pending: Dict[str, _Pending] = {}

    def load_storage(pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        _, storage_type, root_key, _location, numel = pid[:5]
        view_metadata = pid[5] if len(pid) > 5 else None
        root_key = str(root_key)
        storages.setdefault(root_key, (_dtype_of(storage_type), int(numel)))
        if view_metadata is not None:
            view_key, offset, view_size = view_metadata
            view = _Pending(root_key)
            view.view = (int(offset), int(view_size))
            views.append(view)
            return view
        return pending.setdefault(root_key, _Pending(root_key))

    # tensors are rebuilt before their storages are read: collect, then fill
    rebuilds = []

    def deferred_rebuild(storage, storage_offset, size, stride, *rest):
        holder = [None]
        rebuilds.append((holder, storage, storage_offset, size, stride))
        return _Deferred(holder)

    unpickler = _SafeUnpickler(f, path, load_storage)

    def find_class(module, name):
        if module == "torch._utils" and name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
            return deferred_rebuild
        return _SafeUnpickler.find_class(unpickler, module, name)

    unpickler.find_class = find_class  # type: ignore[assignment]
    result = unpickler.load()
    keys = pickle.load(f)  # list of str
    data: Dict[str, np.ndarray] = {}
    for key in keys:
        key = str(key)
        if key not in storages:
            raise CheckpointReadError(path, f"storage key {key} listed but never referenced (corrupt file)")
        dtype, numel = storages[key]
        header = f.read(8)
        if len(header) < 8:
            raise CheckpointReadError(path, "file ends inside the storage section (truncated download?)")
        (count,) = struct.unpack("<q", header)
        raw = f.read(count * dtype.itemsize)
        if count < numel or len(raw) < count * dtype.itemsize:
            raise CheckpointReadError(path, "file ends inside the storage section (truncated download?)")
        data[key] = np.frombuffer(raw, dtype=dtype.newbyteorder("<"), count=count).astype(dtype, copy=False)
    for holder, storage, offset, size, stride in rebuilds:
        flat = data[storage.key]
        if storage.view is not None:
            flat = flat[storage.view[0]:storage.view[0] + storage.view[1]]
        holder[0] = _rebuild_tensor(_Storage(flat), offset, size, stride)
    return _resolve(result)


class _Deferred:
    __slots__ = ("holder",)

    def __init__(self, holder):
        self.holder = holder


def _resolve(obj):
    """Replace deferred tensors (legacy format) by their arrays, recursively."""
    if isinstance(obj, _Deferred):
        return obj.holder[0]
    if isinstance(obj, collections.OrderedDict):
        return collections.OrderedDict((k, _resolve(v)) for k, v in obj.items())
    if isinstance(obj, dict):
        return {k: _resolve(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_resolve(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_resolve(v) for v in obj)
    return obj


def _check_file(path) -> str:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointReadError(path, "no such file", "check the path")
    if os.path.isdir(path):
        raise CheckpointReadError(path, "it is a directory, not a checkpoint file")
    if os.path.getsize(path) == 0:
        raise CheckpointReadError(path, "the file is empty", "download it again")
    return path


def load_pth(path) -> Any:
    """Load a ``torch.save`` file (zip or legacy) into Python containers of NumPy arrays."""
    path = _check_file(path)
    try:
        if zipfile.is_zipfile(path):
            return _load_zip(path)
        with open(path, "rb") as f:
            head = f.read(4)
            if head.startswith(b"PK"):
                raise CheckpointReadError(path, "a damaged zip archive (truncated download?)",
                                          "download the file again")
            f.seek(0)
            return _load_legacy(path, f)
    except CheckpointReadError:
        raise
    except zipfile.BadZipFile as e:
        raise CheckpointReadError(path, f"a damaged zip archive ({e})", "download the file again") from None
    except (pickle.UnpicklingError, EOFError, struct.error, ValueError, KeyError, TypeError,
            IndexError, AttributeError, UnicodeDecodeError, OverflowError, MemoryError) as e:
        raise CheckpointReadError(
            path, f"not a readable torch checkpoint ({type(e).__name__}: {e})",
            "is it a truncated download or another kind of file?") from None


def loads_pickle(data: bytes, name: str = "<bytes>") -> Any:
    """Safely unpickle bytes (NumPy arrays, builtins, OrderedDicts)."""
    try:
        return _SafeUnpickler(io.BytesIO(data), name).load()
    except CheckpointReadError:
        raise
    except (pickle.UnpicklingError, EOFError, struct.error, ValueError, KeyError, TypeError,
            IndexError, AttributeError, UnicodeDecodeError, OverflowError, MemoryError) as e:
        raise CheckpointReadError(name, f"not a readable pickle ({type(e).__name__}: {e})",
                                  "is it truncated or another kind of file?") from None


def load_pickle(path) -> Any:
    """Safely load a plain pickle file such as the SinGAN ``.pkl`` companions."""
    path = _check_file(path)
    with open(path, "rb") as f:
        return loads_pickle(f.read(), path)


def state_dict_of(obj) -> Dict[str, np.ndarray]:
    """The flat ``{key: array}`` state dict of a loaded checkpoint object."""
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ValueError(f"expected a state dict, got {type(obj).__name__}")
    out = {}
    for k, v in obj.items():
        if isinstance(v, (np.ndarray, np.generic)):
            out[str(k)] = np.asarray(v)
    return out


def flatten_arrays(obj, prefix: str = "") -> Dict[str, np.ndarray]:
    """Every array in nested dicts/lists/tuples, keyed by dotted path."""
    out: Dict[str, np.ndarray] = {}
    if isinstance(obj, np.ndarray):
        out[prefix] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            out.update(flatten_arrays(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out.update(flatten_arrays(v, f"{prefix}.{i}" if prefix else str(i)))
    return out


# -- writing (tests, interchange) -----------------------------------------------------------

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
