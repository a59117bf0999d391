"""Read PyTorch ``.pth`` checkpoints and pickled ``.pkl`` files without torch, and safely.

Formats: the zip container ``torch.save`` writes since 1.6 (``<name>/data.pkl`` + one file per
storage under ``<name>/data/``) and the legacy stream (magic number, protocol, sys info, the
pickled object, the storage keys, then the raw storages). Tensors come back as read-only NumPy
arrays (views of their storage, as torch shares it).

What is guaranteed, for any file:

* **No code runs.** Every pickle of every format and slot (the legacy magic number, protocol,
  sys info, object and storage-key list included) goes through one restricted unpickler. It
  resolves globals only from an allowlist (tensor and storage rebuilds, ``OrderedDict`` and
  the builtin containers, NumPy array rebuilds), each handed out as a fresh wrapper object;
  classes of the OpenMMLab stack (``mmengine``, ``mmcv``, ``mmgen`` ...) become inert
  ``Placeholder`` objects that only record their arguments. Anything else (``os.system``,
  ``builtins.eval`` ...) raises ``UnsafePickleError`` naming it. The pickle's BUILD opcode may
  set state only on the fresh objects the load created (never on a class, a function or a
  shared object), so a load leaves the process as it found it.
* **Memory is bounded by what the file declares.** A zip storage member must be exactly as
  large as its storage; only the part its tensors use is read (streamed for compressed
  members, whose total expansion is capped); a legacy storage must fit in the file. Views,
  broadcasts (stride 0) included, stay views. Shared references are resolved once each and
  nesting depth does not matter (no recursion).
* **Values are torch's.** Offsets, sizes and strides are checked against their storage;
  torch's lazy conjugate / negative bits are applied. Tensor kinds pegan cannot represent
  (uint16/32/64, float8, sparse, quantized, other layouts) raise ``UnsupportedTensorError``.
* **Released file names are checked.** A ``.pth`` named ``..._<8 hex digits>.pth`` (OpenMMLab's
  and torchvision's convention: the first 8 hex digits of the file's SHA-256) whose digest
  differs raises ``DamagedDownloadError``.
"""

from __future__ import annotations

import _compat_pickle
import collections
import hashlib
import io
import math
import os
import pickle
import re
import reprlib
import struct
import zipfile
from typing import Any, Dict, List, Optional

import numpy as np

from pegan.errors import PeganError, brief

__all__ = ["CheckpointReadError", "UnsafePickleError", "UnsupportedTensorError", "DamagedDownloadError",
           "Placeholder", "load_pth", "load_pickle", "loads_pickle", "state_dict_of", "flatten_arrays",
           "name_digest", "check_name_digest"]

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
MAX_NDIM = 64                  # torch's own limit on tensor dimensions
EXPANSION_BYTES = 256 * 2**20  # decompressed storage bytes always allowed, beyond 8x the file size
MAX_ENTRIES = 10**6            # containers and values visited by flatten_arrays

_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlong = 3, 60, 60, 40
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = _REPR.maxfrozenset = 8


def _r(obj) -> str:
    """A short repr of a value from the file for an error message: bounded in length and depth
    (a hostile pickle can nest a value 10^5 levels deep or make it a million items long)."""
    try:
        return _REPR.repr(obj)
    except Exception:                 # a value whose repr fails says only its type
        return f"<{type(obj).__name__}>"


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


class UnsupportedTensorError(CheckpointReadError):
    """A well-formed tensor of a kind pegan does not read (not a sign of a malicious file)."""


class DamagedDownloadError(CheckpointReadError):
    """The file's SHA-256 does not start with the digits its released name carries."""


class _Refused(pickle.UnpicklingError):
    """Raised inside the unpickler; turned into the error class it names."""

    def __init__(self, cls, reason: str, fix: str = ""):
        super().__init__(reason)
        self.cls, self.reason, self.fix = cls, reason, fix


def _unsupported(what: str):
    return _Refused(UnsupportedTensorError, f"it holds an unsupported tensor kind ({what}); pegan reads dense "
                    "float16/32/64, bfloat16, int8-64, uint8, bool and complex tensors",
                    "convert it in PyTorch first, e.g. t.to_dense().float()")


# --------------------------------------------------------------------------------------------
# Released file names

_DIGEST_NAME = re.compile(r"-([0-9a-f]{8})\.pth$")


def name_digest(path) -> Optional[str]:
    """The 8 hex digits a released file name ends in (``..._144927-4f4d5391.pth``), or None."""
    m = _DIGEST_NAME.search(os.path.basename(os.fspath(path)))
    return m[1] if m else None


def check_name_digest(path, url: Optional[str] = None) -> None:
    """Raise ``DamagedDownloadError`` when the name carries a digest that the content lacks."""
    want = name_digest(path)
    if want is None:
        return
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(2**22), b""):
            h.update(chunk)
    got = h.hexdigest()
    if not got.startswith(want):
        raise DamagedDownloadError(path, f"a damaged download: its SHA-256 starts with {got[:8]}, "
                                   f"its name says {want}", "download it again" + (f" from {url}" if url else ""))


# --------------------------------------------------------------------------------------------
# Inert objects handed out to the pickle

class _Inert:
    """Base of every object the unpickler hands out: the BUILD opcode cannot change it."""

    __slots__ = ()

    def __setstate__(self, state):
        raise _Refused(UnsafePickleError, f"it tries to set attributes of {_r(self)}",
                       "only load checkpoints from sources you trust; this one may be malicious")


class _Fn(_Inert):
    """A fresh wrapper of one allowlisted callable (never the callable itself)."""

    __slots__ = ("name", "fn")

    def __init__(self, name: str, fn):
        self.name, self.fn = name, fn

    def __call__(self, *args, **kwargs):
        return self.fn(*args, **kwargs)

    def __repr__(self):
        return self.name


class _Token(_Inert):
    """A named value that is only passed around (``numpy.ndarray``, ``torch.Tensor``, ``builtins.object``)."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __repr__(self):
        return self.name


_ELEMENT_DTYPES = {   # storage class / torch dtype name -> NumPy dtype
    "DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16",
    "LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16", "CharStorage": "int8",
    "ByteStorage": "uint8", "BoolStorage": "bool", "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128", "BFloat16Storage": "bfloat16",
    "float64": "float64", "double": "float64", "float32": "float32", "float": "float32",
    "float16": "float16", "half": "float16", "int64": "int64", "long": "int64", "int32": "int32",
    "int": "int32", "int16": "int16", "short": "int16", "int8": "int8", "uint8": "uint8",
    "bool": "bool", "complex64": "complex64", "cfloat": "complex64", "complex128": "complex128",
    "cdouble": "complex128", "bfloat16": "bfloat16",
}
_UNSUPPORTED_TORCH = re.compile(r"(u?int(1|2|4|8|16|32|64)?|float8_\w+|bits\w*|qu?int\w+|quint\w+|"
                                r"complex32|chalf|\w+Q\w*Storage|Q\w+Storage|sparse_\w+|_mkldnn|strided|"
                                r"per_\w+|float4\w*)$")


def _np_dtype(name: str) -> np.dtype:
    if name == "bfloat16":
        import ml_dtypes  # shipped with jax

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


class _Element(_Inert):
    """A storage class (``torch.FloatStorage``) or dtype (``torch.float32``): its element type."""

    __slots__ = ("name", "dtype")

    def __init__(self, name: str, dtype: Optional[np.dtype]):
        self.name, self.dtype = name, dtype

    def __repr__(self):
        return f"torch.{self.name}"


class Placeholder:
    """An object of a class we do not import: records what the pickle gave it, does nothing."""

    __slots__ = ("args", "state", "items", "kwargs")
    _qualname = "?"

    def __new__(cls, *args, **kwargs):
        obj = super().__new__(cls)
        obj.args, obj.kwargs, obj.state, obj.items = args, kwargs, None, []
        return obj

    def __init__(self, *args, **kwargs):
        pass

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


_INERT_MODULE_PREFIXES = ("mmengine", "mmcv", "mmgen", "mmagic", "mmedit", "mmdet", "mmcls",
                          "mmpretrain")


# --------------------------------------------------------------------------------------------
# Values that are completed after the pickle is read (tensors of the legacy format, NumPy arrays)

class _Pending(_Inert):
    """Replaced by ``value()`` once the whole file is read."""

    __slots__ = ()


class _TensorRef(_Pending):
    __slots__ = ("storage", "offset", "size", "stride", "dtype", "flags", "result")

    def __init__(self, storage, offset, size, stride, dtype, flags):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride
        self.dtype, self.flags, self.result = dtype, flags, None

    def value(self):
        if self.result is None:
            self.result = _make_tensor(self.storage, self.offset, self.size, self.stride, self.dtype, self.flags)
        return self.result

    def __repr__(self):
        return f"<tensor {self.size}>"


class _DtypeRef(_Pending):
    """``numpy.dtype(code, align, copy)`` followed by its BUILD state (the byte order)."""

    __slots__ = ("dtype",)

    def __init__(self, code, align=False, copy=True):
        if not isinstance(code, str) or not re.fullmatch(r"[<>|=]?[biufc]\d{1,2}", code):
            raise _unsupported(f"NumPy dtype {_r(code)}")
        self.dtype = np.dtype(code)

    def __setstate__(self, state):
        if not (isinstance(state, tuple) and len(state) >= 2 and state[1] in ("<", ">", "|", "=")):
            raise pickle.UnpicklingError(f"bad NumPy dtype state {_r(state)}")
        if state[1] in "<>":
            self.dtype = self.dtype.newbyteorder(state[1])

    def value(self):
        return self.dtype

    def __repr__(self):
        return f"<dtype {self.dtype}>"


def _as_dtype(obj) -> np.dtype:
    if isinstance(obj, _DtypeRef):
        return obj.dtype
    raise pickle.UnpicklingError(f"expected a NumPy dtype, got {type(obj).__name__}")


def _as_bytes(data) -> bytes:
    if isinstance(data, str):     # NumPy arrays pickled by Python 2
        return data.encode("latin1")
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)
    raise pickle.UnpicklingError(f"array data of type {type(data).__name__} (object arrays are not read)")


def _shape(obj, what: str) -> tuple:
    if not isinstance(obj, (tuple, list)) or len(obj) > MAX_NDIM:
        raise pickle.UnpicklingError(f"{what} must be a tuple of at most {MAX_NDIM} ints, got {_r(obj)}")
    out = tuple(obj)
    if not all(type(v) is int and v >= 0 for v in out):
        raise pickle.UnpicklingError(f"{what} must hold non-negative ints, got {_r(obj)}")
    return out


class _ArrayRef(_Pending):
    """``numpy.core.multiarray._reconstruct(ndarray, (0,), b'b')`` followed by its BUILD state."""

    __slots__ = ("array",)

    def __init__(self, *args):
        self.array = None

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise pickle.UnpicklingError("bad NumPy array state")
        shape, dtype, fortran, data = state[-4:]
        shape, dtype, raw = _shape(shape, "array shape"), _as_dtype(dtype), _as_bytes(data)
        if len(raw) != math.prod(shape) * dtype.itemsize:
            raise pickle.UnpicklingError(f"array data of {len(raw)} bytes for shape {shape} of {dtype}")
        arr = np.frombuffer(raw, dtype=dtype).reshape(shape, order="F" if fortran else "C")
        self.array = arr.astype(dtype.newbyteorder("="), copy=False) if dtype.byteorder == ">" else arr

    def value(self):
        if self.array is None:
            raise pickle.UnpicklingError("a NumPy array without its data")
        return self.array

    def __repr__(self):
        return "<ndarray>"


def _np_scalar(dtype, data=None):
    dtype = _as_dtype(dtype)
    raw = _as_bytes(data)
    if len(raw) != dtype.itemsize:
        raise pickle.UnpicklingError(f"NumPy scalar of {len(raw)} bytes for {dtype}")
    return np.frombuffer(raw, dtype=dtype)[0]


# --------------------------------------------------------------------------------------------
# Storages and tensors

class _Budget:
    """Bytes of decompressed storage a file may expand to: 8x its size + EXPANSION_BYTES."""

    def __init__(self, path: str, file_size: int):
        self.path, self.left = path, 8 * file_size + EXPANSION_BYTES

    def take(self, n: int) -> None:
        self.left -= n
        if self.left < 0:
            raise _Refused(CheckpointReadError, "its compressed storages expand far beyond the file's size "
                           "(a zip bomb?)", "torch.save stores storages uncompressed; re-save the file with it")


class _Storage(_Inert):
    """One storage: its element type (native order), element count and a reader of its first
    bytes in the file's byte order."""

    __slots__ = ("key", "dtype", "numel", "_order", "_read", "_data")

    def __init__(self, key: str, dtype: np.dtype, numel: int, read, order: str = "<"):
        self.key, self.dtype, self.numel, self._read, self._data = key, dtype, numel, read, None
        self._order = dtype.newbyteorder(order) if dtype.itemsize > 1 else dtype

    def elements(self, n: int) -> np.ndarray:
        """The first ``n`` elements, read-only (reading more of the file only when needed)."""
        if self._data is None or self._data.size < n:
            # first use: what this tensor needs; any later growth: the whole storage (at most 2 reads)
            want = n if self._data is None else self.numel
            data = np.frombuffer(self._read(want * self.dtype.itemsize), dtype=self._order)
            if data.dtype != self.dtype:           # a big-endian file
                data = data.astype(self.dtype)
                data.flags.writeable = False
            self._data = data
        return self._data[:n]

    def __repr__(self):
        return f"<storage {self.key}>"


def _rebuild_args(storage, offset, size, stride):
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError("tensor rebuild without a storage")
    if type(offset) is not int or offset < 0:
        raise pickle.UnpicklingError(f"storage offset {_r(offset)} is negative or not an int")
    size, stride = _shape(size, "tensor size"), _shape(stride, "tensor stride")
    if len(size) != len(stride):
        raise pickle.UnpicklingError(f"tensor size {size} and stride {stride} differ in length")
    return storage, offset, size, stride


def _metadata_flags(metadata) -> tuple:
    """torch's lazy bits from ``get_tensor_metadata``: which of conj / neg are set."""
    if metadata is None:
        return ()
    if not isinstance(metadata, dict):
        raise pickle.UnpicklingError(f"tensor metadata of type {type(metadata).__name__}")
    unknown = [k for k, v in metadata.items() if v and k not in ("conj", "neg")]
    if unknown:
        raise _unsupported(f"tensor metadata {unknown}")
    return tuple(k for k in ("conj", "neg") if metadata.get(k))


def _make_tensor(storage: _Storage, offset: int, size: tuple, stride: tuple, dtype: np.dtype,
                 flags: tuple) -> np.ndarray:
    numel = math.prod(size)
    if numel == 0:
        if offset > storage.numel:
            raise pickle.UnpicklingError(f"storage offset {offset} beyond a storage of {storage.numel}")
        return np.zeros(size, dtype)
    extent = offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1
    if storage.dtype == dtype:
        limit = storage.numel
    elif storage.dtype == np.uint8:      # an untyped (byte) storage read as ``dtype``
        if storage.numel % dtype.itemsize:
            raise pickle.UnpicklingError("untyped storage size is not a multiple of the element size")
        limit = storage.numel // dtype.itemsize
    else:
        raise pickle.UnpicklingError(f"a {dtype} tensor on a {storage.dtype} storage")
    if extent > limit:
        raise pickle.UnpicklingError(
            f"tensor of size {size} stride {stride} offset {offset} exceeds its storage of {limit} elements "
            "(truncated or corrupt file)")
    flat = storage.elements(extent * dtype.itemsize // storage.dtype.itemsize)
    if flat.dtype != dtype:
        flat = flat.view(dtype)
    span = flat[offset:extent]
    if flags:     # torch's lazy bits: the stored values are the conjugate / negation of the tensor's
        span = span.copy()
        if "conj" in flags:
            span = np.conj(span)
        if "neg" in flags:
            span = np.negative(span)
        span.flags.writeable = False
    item = dtype.itemsize
    return np.lib.stride_tricks.as_strided(span, shape=size, strides=tuple(s * item for s in stride),
                                           writeable=False)


def _element(obj) -> np.dtype:
    if not isinstance(obj, _Element):
        raise pickle.UnpicklingError(f"expected a torch dtype or storage type, got {_r(obj)}")
    if obj.dtype is None:
        raise _unsupported(f"torch.{obj.name}")
    return obj.dtype


class _Rebuilds:
    """The tensor rebuild functions of one load: tensors of the zip format are made at once,
    those of the legacy format (whose storages follow the pickle) when the file is read."""

    def __init__(self, deferred: bool):
        self.deferred = deferred

    def _tensor(self, storage, offset, size, stride, dtype, flags):
        storage, offset, size, stride = _rebuild_args(storage, offset, size, stride)
        ref = _TensorRef(storage, offset, size, stride, dtype, flags)
        return ref if self.deferred else ref.value()

    def v1(self, storage, offset, size, stride, *rest):
        return self._tensor(storage, offset, size, stride, getattr(storage, "dtype", None), ())

    def v2(self, storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None, *rest):
        return self._tensor(storage, offset, size, stride, getattr(storage, "dtype", None),
                            _metadata_flags(metadata))

    def v3(self, storage, offset, size, stride, requires_grad, hooks, dtype, metadata=None, *rest):
        return self._tensor(storage, offset, size, stride, _element(dtype), _metadata_flags(metadata))


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    if not isinstance(data, (np.ndarray, _TensorRef)):
        raise pickle.UnpicklingError(f"a parameter of {type(data).__name__}")
    return data


def _rebuild_from_type_v2(func, new_type, args, state):
    if not (isinstance(func, _Fn) and func.name.startswith("torch._utils._rebuild_tensor")):
        raise pickle.UnpicklingError(f"_rebuild_from_type_v2 of {_r(func)}")
    if not isinstance(args, tuple):
        raise pickle.UnpicklingError("_rebuild_from_type_v2 without an argument tuple")
    return func(*args)


def _rebuild_device_tensor_from_numpy(data, dtype, device, requires_grad):
    if not isinstance(data, (np.ndarray, _ArrayRef)):
        raise pickle.UnpicklingError("device tensor without a NumPy array")
    return data


# --------------------------------------------------------------------------------------------
# Builtins, restricted to what the standard pickler emits (no size arguments, no iterators)

def _finite(obj):
    if not isinstance(obj, (list, tuple, dict, set, frozenset, str, bytes, bytearray)):
        raise pickle.UnpicklingError(f"a container argument of type {type(obj).__name__}")
    return obj


def _codecs_encode(obj, encoding="latin1"):
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("_codecs.encode only for latin1 strings")
    return obj.encode("latin1")


def _bytes(obj=b"", *rest):
    if rest or isinstance(obj, int):
        raise pickle.UnpicklingError("bytes() with a size")
    return bytes(_finite(obj)) if not isinstance(obj, str) else obj.encode("latin1")


def _bytearray(obj=b"", encoding=None):
    if isinstance(obj, str):
        if encoding not in ("latin1", "latin-1"):
            raise pickle.UnpicklingError("bytearray of a string needs latin1")
        return bytearray(obj.encode("latin1"))
    if isinstance(obj, int):
        raise pickle.UnpicklingError("bytearray() with a size")
    return bytearray(_finite(obj))


def _number(x):
    if type(x) not in (int, float):
        raise pickle.UnpicklingError(f"a number was expected, got {type(x).__name__}")
    return x


def _complex(re_=0.0, im=0.0):
    return complex(_number(re_), _number(im))


def _slice(*args):
    if not 1 <= len(args) <= 3 or not all(a is None or type(a) is int for a in args):
        raise pickle.UnpicklingError("slice of non-integers")
    return slice(*args)


def _range(*args):
    if not 1 <= len(args) <= 3 or not all(type(a) is int for a in args):
        raise pickle.UnpicklingError("range of non-integers")
    return range(*args)


def _container(kind):
    def make(obj=(), *rest):
        if rest:
            raise pickle.UnpicklingError(f"{kind.__name__}() with extra arguments")
        return kind(_finite(obj))
    return make


def _defaultdict(factory=None, *rest):
    if factory is not None and not (isinstance(factory, _Fn) and factory.name in _FACTORY_NAMES):
        raise pickle.UnpicklingError(f"defaultdict with factory {_r(factory)}")
    return collections.defaultdict(factory, *(_finite(r) for r in rest))


_FACTORY_NAMES = {"builtins.list", "builtins.dict", "builtins.set", "collections.OrderedDict"}


def _copyreg_reconstructor(cls, base, state):
    if isinstance(cls, type) and issubclass(cls, Placeholder) and isinstance(base, _Token):
        obj = cls()
        obj.state = state
        return obj
    if isinstance(cls, _Fn) and cls.name == "collections.OrderedDict" and isinstance(base, _Fn) \
            and base.name == "builtins.dict":
        return collections.OrderedDict()
    raise pickle.UnpicklingError(f"copyreg._reconstructor for {_r(cls)} is not allowed")


_CALLABLES = {
    "collections.OrderedDict": _container(collections.OrderedDict),
    "collections.Counter": _container(collections.Counter),
    "collections.defaultdict": _defaultdict,
    "builtins.set": _container(set), "builtins.frozenset": _container(frozenset),
    "builtins.list": _container(list), "builtins.tuple": _container(tuple), "builtins.dict": _container(dict),
    "builtins.slice": _slice, "builtins.range": _range, "builtins.complex": _complex,
    "builtins.bytearray": _bytearray, "builtins.bytes": _bytes,
    "_codecs.encode": _codecs_encode,
    "copyreg._reconstructor": _copyreg_reconstructor,
    "torch._utils._rebuild_parameter": _rebuild_parameter,
    "torch._utils._rebuild_parameter_with_state": _rebuild_parameter,
    "torch.nn.parameter.Parameter": _rebuild_parameter,
    "torch._utils._rebuild_device_tensor_from_numpy": _rebuild_device_tensor_from_numpy,
    "torch._tensor._rebuild_from_type_v2": _rebuild_from_type_v2,
    "numpy.core.multiarray._reconstruct": _ArrayRef, "numpy._core.multiarray._reconstruct": _ArrayRef,
    "numpy.core.multiarray.scalar": _np_scalar, "numpy._core.multiarray.scalar": _np_scalar,
    "numpy.dtype": _DtypeRef,
}
_TOKENS = {"builtins.object", "numpy.ndarray", "torch.Tensor", "torch._tensor.Tensor"}
_UNSUPPORTED_REBUILDS = {
    "torch._utils._rebuild_sparse_tensor": "sparse tensor", "torch._utils._rebuild_sparse_csr_tensor":
    "sparse CSR tensor", "torch._utils._rebuild_qtensor": "quantized tensor",
    "torch._utils._rebuild_mkldnn_tensor": "MKL-DNN tensor", "torch._utils._rebuild_nested_tensor":
    "nested tensor", "torch._utils._rebuild_wrapper_subclass": "tensor subclass",
    "torch._utils._rebuild_meta_tensor_no_storage": "meta tensor", "torch._utils._rebuild_xla_tensor":
    "XLA tensor", "torch._utils._rebuild_device_tensor_from_cpu_tensor": "device tensor",
    "torch.serialization._get_layout": "tensor layout", "torch._utils._rebuild_typed_storage": "typed storage",
}


def _map_python2(module: str, name: str):
    """Python 2 module and class names as the standard unpickler maps them (``__builtin__.set``)."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


class _SafeUnpickler(pickle._Unpickler):
    """The restricted unpickler (the Python implementation, so that BUILD can be restricted)."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file, rebuilds: _Rebuilds, storage_loader=None):
        super().__init__(file, encoding="latin1")
        self._rebuilds = rebuilds
        self._storage_loader = storage_loader

    def find_class(self, module, name):
        module, name = _map_python2(str(module), str(name))
        full = f"{module}.{name}"
        if full in _CALLABLES:
            return _Fn(full, _CALLABLES[full])
        if full in ("torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v2",
                    "torch._utils._rebuild_tensor_v3"):
            fn = {"_rebuild_tensor": self._rebuilds.v1, "_rebuild_tensor_v2": self._rebuilds.v2,
                  "_rebuild_tensor_v3": self._rebuilds.v3}[name]
            return _Fn(full, fn)
        if full in _TOKENS:
            return _Token(full)
        if full in _UNSUPPORTED_REBUILDS:
            raise _unsupported(f"{_UNSUPPORTED_REBUILDS[full]}, {full}")
        if module == "torch":
            if name in _ELEMENT_DTYPES:
                return _Element(name, _np_dtype(_ELEMENT_DTYPES[name]))
            if _UNSUPPORTED_TORCH.match(name):
                raise _unsupported(f"torch.{name}")
            if name in ("Size", "device"):
                return _placeholder_class(module, name)
        if module == "torch.storage" and name in ("UntypedStorage", "_UntypedStorage"):
            return _Element(name, np.dtype(np.uint8))
        if module.split(".")[0] in _INERT_MODULE_PREFIXES:
            return _placeholder_class(module, name)
        raise _Refused(UnsafePickleError, f"it asks to load '{full}', which is not on pegan's allowlist "
                       "of tensor/array rebuild functions; nothing was executed",
                       "only load checkpoints from sources you trust; this one may be malicious")

    def persistent_load(self, pid):
        if self._storage_loader is None:
            raise pickle.UnpicklingError(f"persistent id {_r(pid)} in a plain pickle")
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {_r(pid)}")
        _, storage_type, key, _location, numel = pid[:5]
        if not isinstance(key, (str, int)) or type(numel) is not int or numel < 0:
            raise pickle.UnpicklingError(f"bad storage record {_r(pid[:5])}")
        return self._storage_loader(str(key), _element(storage_type), numel, pid[5] if len(pid) > 5 else None)

    def load_build(self):
        """BUILD: state may only go to the fresh objects of this load."""
        stack = self.stack
        state = stack.pop()
        inst = stack[-1]
        if isinstance(inst, (Placeholder, _Pending)):
            inst.__setstate__(state)
        elif type(inst) in (collections.OrderedDict, collections.defaultdict, collections.Counter) \
                and isinstance(state, dict) and all(type(k) is str for k in state):
            inst.__dict__.update(state)     # e.g. a module state dict's _metadata
        else:
            raise _Refused(UnsafePickleError, f"it tries to set attributes of {type(inst).__name__} "
                           f"{_r(inst)}; nothing was changed",
                           "only load checkpoints from sources you trust; this one may be malicious")

    dispatch[pickle.BUILD[0]] = load_build


# --------------------------------------------------------------------------------------------
# Completing pending values: every object once, without recursion

_CONTAINERS = (list, dict, tuple, set, frozenset, Placeholder)


def _children(obj):
    if isinstance(obj, dict):
        return list(obj.keys()) + list(obj.values())
    if isinstance(obj, Placeholder):
        return [obj.args, obj.kwargs, obj.state, obj.items]
    return list(obj)


def _complete(root):
    """Replace pending values (``_Pending``) by their values everywhere in the object graph.

    Each object is visited once (shared references cost nothing) with an explicit stack (depth
    does not matter). Mutable containers are updated in place, so sharing and cycles are kept;
    tuples and frozensets holding pending values are rebuilt."""
    done: Dict[int, Any] = {}
    keep = []                      # holds the visited objects so that their ids stay unique
    stack: List[tuple] = [(root, False)]
    while stack:
        obj, expanded = stack.pop()
        oid = id(obj)
        if isinstance(obj, _Pending):
            if oid not in done:
                done[oid] = obj.value()
                keep.append(obj)
            continue
        if not isinstance(obj, _CONTAINERS) or (oid in done and not expanded):
            continue
        if not expanded:
            done[oid] = obj       # in progress: a cycle back to it sees the object itself
            keep.append(obj)
            stack.append((obj, True))
            stack.extend((c, False) for c in _children(obj) if isinstance(c, (_Pending,) + _CONTAINERS))
            continue

        def r(c):
            return done.get(id(c), c) if isinstance(c, (_Pending,) + _CONTAINERS) else c

        if isinstance(obj, dict):
            items = [(r(k), r(v)) for k, v in obj.items()]
            if any(isinstance(k, np.ndarray) for k, _ in items):
                raise pickle.UnpicklingError("a tensor used as a dict key")
            if any(a is not k or b is not v for (a, b), (k, v) in zip(items, obj.items())):
                obj.clear()
                obj.update(items)
        elif isinstance(obj, list):
            obj[:] = [r(c) for c in obj]
        elif isinstance(obj, Placeholder):
            obj.args, obj.kwargs, obj.state, obj.items = r(obj.args), r(obj.kwargs), r(obj.state), r(obj.items)
        elif isinstance(obj, tuple):
            new = tuple(r(c) for c in obj)
            if any(a is not b for a, b in zip(new, obj)):
                done[oid] = new
        else:  # set, frozenset
            new = [r(c) for c in obj]
            if any(a is not b for a, b in zip(new, obj)):
                if any(isinstance(c, np.ndarray) for c in new):
                    raise pickle.UnpicklingError("a tensor inside a set")
                done[oid] = type(obj)(new)
    return done.get(id(root), root) if isinstance(root, (_Pending,) + _CONTAINERS) else root


# --------------------------------------------------------------------------------------------
# The two containers

def _load_zip(path: str, budget: _Budget):
    with zipfile.ZipFile(path) as zf:
        infos = {i.filename: i for i in zf.infolist()}
        pkls = [n for n in infos if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pkls) != 1:
            raise CheckpointReadError(path, "zip archive without one '<name>/data.pkl': not a torch checkpoint")
        if any(i.flag_bits & 0x1 for i in infos.values()):
            raise CheckpointReadError(path, "an encrypted zip archive: not a torch checkpoint")
        prefix = pkls[0][: -len("data.pkl")]
        byteorder = "little"
        if prefix + "byteorder" in infos:
            with zf.open(infos[prefix + "byteorder"]) as f:      # 16 bytes, never the whole member
                byteorder = f.read(16).decode("ascii", "replace").strip()
            if byteorder not in ("little", "big"):
                raise CheckpointReadError(path, f"unknown byte order {_r(byteorder)}")
        storages: Dict[str, _Storage] = {}
        # Stored members are read as they are, but members may overlap (one member's bytes lying
        # inside another's), which older zipfile versions do not detect: the bytes read from
        # stored members, each counted once at its largest read, may not exceed the file.
        stored = {"left": os.path.getsize(path)}
        charged: Dict[str, int] = {}

        def take_stored(info, nbytes):
            extra = nbytes - charged.get(info.filename, 0)
            if extra > 0:
                charged[info.filename] = nbytes
                stored["left"] -= extra
                if stored["left"] < 0:
                    raise _Refused(CheckpointReadError, "its storage members overlap (together they declare "
                                   "more bytes than the file holds)", "re-save the file with torch.save")

        def read_member(info):
            def read(nbytes):
                if info.compress_type != zipfile.ZIP_STORED:
                    budget.take(nbytes)
                else:
                    take_stored(info, nbytes)
                with zf.open(info) as f:
                    raw = f.read(nbytes)
                if len(raw) != nbytes:
                    raise pickle.UnpicklingError(f"storage '{info.filename}' is truncated")
                return raw
            return read

        def load_storage(key, dtype, numel, view):
            if view is not None:
                raise pickle.UnpicklingError("storage views are not part of the zip format")
            if key in storages:
                old = storages[key]
                if old.dtype != dtype or old.numel != numel:
                    raise pickle.UnpicklingError(f"storage {key} declared twice with different types or sizes")
                return old
            info = infos.get(f"{prefix}data/{key}")
            if info is None:
                raise pickle.UnpicklingError(f"storage '{prefix}data/{key}' missing from the archive")
            if info.file_size != numel * dtype.itemsize:
                raise pickle.UnpicklingError(
                    f"storage '{info.filename}' holds {info.file_size} bytes, its {numel} elements of {dtype} "
                    f"need {numel * dtype.itemsize}")
            st = _Storage(key, dtype, numel, read_member(info), "<" if byteorder == "little" else ">")
            storages[key] = st
            return st

        info = infos[pkls[0]]
        if info.compress_type != zipfile.ZIP_STORED:
            budget.take(info.file_size)
        else:
            take_stored(info, info.file_size)
        data = zf.read(info)
        rebuilds = _Rebuilds(deferred=False)
        obj = _SafeUnpickler(io.BytesIO(data), rebuilds, load_storage).load()
    return _complete(obj)


def _load_legacy(path: str, data: memoryview):
    f = io.BytesIO(data)
    plain = _Rebuilds(deferred=True)

    def plain_pickle():
        return _SafeUnpickler(f, plain).load()

    if plain_pickle() != LEGACY_MAGIC:
        raise CheckpointReadError(path, "not a torch checkpoint (no zip container, no legacy magic number)")
    if plain_pickle() != LEGACY_PROTOCOL:
        raise CheckpointReadError(path, "unsupported legacy torch serialization protocol")
    if not isinstance(plain_pickle(), dict):       # sys_info
        raise CheckpointReadError(path, "not a torch checkpoint (no system info record)")
    roots: Dict[str, tuple] = {}          # key -> (dtype, numel)
    filled: Dict[str, np.ndarray] = {}

    def reader(key, start):
        def read(nbytes):
            return filled[key][start:start + nbytes] if key in filled else b""
        return read

    storages: Dict[tuple, _Storage] = {}    # one object per (key, view): memory is the file's

    def load_storage(key, dtype, numel, view):
        if key in roots and roots[key] != (dtype, numel):
            raise pickle.UnpicklingError(f"storage {key} declared twice with different types or sizes")
        roots[key] = (dtype, numel)
        start, count = 0, numel
        if view is not None:
            if not (isinstance(view, tuple) and len(view) == 3 and type(view[1]) is int and type(view[2]) is int
                    and view[1] >= 0 and view[2] >= 0 and view[1] + view[2] <= numel):
                raise pickle.UnpicklingError(f"bad storage view {_r(view)} of a storage of {numel}")
            start, count = view[1], view[2]
        if (key, start, count) not in storages:
            storages[key, start, count] = _Storage(key, dtype, count, reader(key, start * dtype.itemsize))
        return storages[key, start, count]

    rebuilds = _Rebuilds(deferred=True)
    result = _SafeUnpickler(f, rebuilds, load_storage).load()
    keys = _SafeUnpickler(f, plain).load()
    if not isinstance(keys, list) or not all(isinstance(k, (str, int)) for k in keys):
        raise CheckpointReadError(path, "the storage key list is damaged")
    for key in map(str, keys):
        if key not in roots:
            raise CheckpointReadError(path, f"storage key {key} listed but never referenced (corrupt file)")
        if key in filled:
            raise CheckpointReadError(path, f"storage key {key} listed twice (corrupt file)")
        dtype, numel = roots[key]
        header = f.read(8)
        if len(header) < 8:
            raise CheckpointReadError(path, "file ends inside the storage section (truncated download?)")
        (count,) = struct.unpack("<q", header)
        if count != numel:
            raise CheckpointReadError(path, f"storage {key} holds {count} elements, the pickle declares {numel}")
        pos, nbytes = f.tell(), count * dtype.itemsize
        if pos + nbytes > len(data):
            raise CheckpointReadError(path, "file ends inside the storage section (truncated download?)")
        filled[key] = data[pos:pos + nbytes]
        f.seek(pos + nbytes)
    missing = sorted({k for k in roots if k not in filled})
    if missing:
        raise CheckpointReadError(path, f"storages {missing[:5]} are referenced but not in the file (truncated?)")
    return _complete(result)


def _check_file(path) -> str:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointReadError(path, "no such file", "check the path")
    if os.path.isdir(path):
        raise CheckpointReadError(path, "it is a directory, not a checkpoint file")
    if os.path.getsize(path) == 0:
        raise CheckpointReadError(path, "the file is empty", "download it again")
    return path


_PARSE_ERRORS = (pickle.UnpicklingError, EOFError, struct.error, ValueError, KeyError, TypeError,
                 IndexError, AttributeError, UnicodeDecodeError, OverflowError, MemoryError,
                 zipfile.LargeZipFile, NotImplementedError, RecursionError)


def _translate(path, e: Exception, what: str):
    if isinstance(e, _Refused):
        return e.cls(path, e.reason, e.fix)
    if isinstance(e, zipfile.BadZipFile):
        return CheckpointReadError(path, f"a damaged zip archive ({e})", "download the file again")
    return CheckpointReadError(path, f"not a readable {what} ({type(e).__name__}: {brief(e)})",
                               "is it a truncated download or another kind of file?")


def load_pth(path, url: Optional[str] = None) -> Any:
    """Load a ``torch.save`` file (zip or legacy) into Python containers of NumPy arrays.

    ``url`` (where the file came from) is named when its digest-carrying name does not match."""
    path = _check_file(path)
    check_name_digest(path, url)
    try:
        if zipfile.is_zipfile(path):
            return _load_zip(path, _Budget(path, os.path.getsize(path)))
        with open(path, "rb") as f:
            data = f.read()
        if data.startswith(b"PK"):
            raise CheckpointReadError(path, "a damaged zip archive (truncated download?)", "download the file again")
        return _load_legacy(path, memoryview(data))
    except CheckpointReadError:
        raise
    except (zipfile.BadZipFile,) + _PARSE_ERRORS as e:
        raise _translate(path, e, "torch checkpoint") from None


def loads_pickle(data: bytes, name: str = "<bytes>") -> Any:
    """Safely unpickle bytes (NumPy arrays, builtins, OrderedDicts)."""
    try:
        return _complete(_SafeUnpickler(io.BytesIO(data), _Rebuilds(deferred=True)).load())
    except CheckpointReadError:
        raise
    except _PARSE_ERRORS as e:
        raise _translate(name, e, "pickle") from None


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
        raise CheckpointReadError("<checkpoint>", f"expected a state dict, got {type(obj).__name__}")
    out = {}
    for k, v in obj.items():
        if isinstance(v, (np.ndarray, np.generic)):
            out[str(k)] = np.asarray(v)
    return out


def flatten_arrays(obj, prefix: str = "", max_entries: int = MAX_ENTRIES) -> Dict[str, np.ndarray]:
    """Every array in nested dicts/lists/tuples, keyed by dotted path (each path once; at most
    ``max_entries`` entries visited, so shared references cannot make it explode)."""
    out: Dict[str, np.ndarray] = {}
    stack = [(prefix, obj)]
    seen = 0
    while stack:
        key, node = stack.pop()
        seen += 1
        if seen > max_entries:
            raise CheckpointReadError("<checkpoint>", f"more than {max_entries} nested entries "
                                      "(shared references?)")
        if isinstance(node, np.ndarray):
            out[key] = node
        elif isinstance(node, dict):
            stack.extend((f"{key}.{k}" if key else str(k), v) for k, v in reversed(list(node.items())))
        elif isinstance(node, (list, tuple)):
            stack.extend((f"{key}.{i}" if key else str(i), v) for i, v in reversed(list(enumerate(node))))
    return out
