"""Checks of what a user hands pegan (counts, batch sizes, image sizes, paths to write), shared
by the command line and the library.

One function per kind of check; each raises a ``pegan.errors.PeganError`` subclass whose message
names the argument and the fix, so the command line prints it as one line (exit status 2).
Callers run them before anything slow (reading data, compiling). Standard library only.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import json
import math
import operator
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence, Tuple, Union

from pegan.errors import ExistingPathError, InputError, PeganError, StorageError, brief

__all__ = ["MAX_SIDE", "MAX_STORED_SIDE", "at_least", "batch_size", "image_size", "output_file", "output_dir",
           "replacing_dir", "within", "foreign_entries", "read_npz", "writing_file", "number_in", "seed", "MAX_SEED", "storage_errno", "storage_errors"]

MAX_SIDE = 4096           # px: the largest image side `sample` / `evaluate` make unless raised (--max-side)
MAX_STORED_SIDE = 16384   # px: the largest side `pegan prepare` stores


# -- numbers ---------------------------------------------------------------------------------

def at_least(value, minimum: int, what: str) -> int:
    """``value`` as an int, when it is a whole number (not a bool) of at least ``minimum``."""
    if isinstance(value, bool):
        raise InputError(f"{what} must be a whole number, got {value!r}")
    try:
        v = operator.index(value)
    except TypeError:
        raise InputError(f"{what} must be a whole number, got {value!r}") from None
    if v < minimum:
        raise InputError(f"{what} must be at least {minimum}, got {v}")
    return v


def number_in(value, what: str, lo: Optional[float] = None, hi: Optional[float] = None,
              lo_open: bool = False, hi_open: bool = False) -> float:
    """``value`` as a float, when it is a finite number (not a bool) within [lo, hi] (an end
    left open with ``lo_open`` / ``hi_open``; None: unbounded), else an InputError."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))
    v = float(value) if ok else None
    if ok and lo is not None:
        ok = v > lo if lo_open else v >= lo
    if ok and hi is not None:
        ok = v < hi if hi_open else v <= hi
    if not ok:
        rng = ("" if lo is None else f"{'>' if lo_open else '>='} {lo:g}") + \
              (" and " if lo is not None and hi is not None else "") + \
              ("" if hi is None else f"{'<' if hi_open else '<='} {hi:g}")
        raise InputError(f"{what} must be a finite number{' ' + rng if rng else ''}, got {value!r}")
    return v


MAX_HELD_BYTES = 8 << 30   # float32 pixels one command holds at once (its images, and their noise)


def held_images(num: int, h: int, w: int, what: str = "the number of images") -> None:
    """Refuse ``num`` [h, w, 3] float32 images that would need over ``MAX_HELD_BYTES`` at once."""
    need = int(num) * int(h) * int(w) * 3 * 4
    if need > MAX_HELD_BYTES:
        fit = max(1, MAX_HELD_BYTES // (int(h) * int(w) * 12))
        raise InputError(f"{what} {num} of {h}x{w} px would hold {need / 2**30:.1f} GiB at once, over the "
                         f"{MAX_HELD_BYTES >> 30} GiB pegan allows; make at most {fit} per command")


MAX_SEED = 2**63 - 1       # seeds are int64 (jax.random.PRNGKey)
FPS_RANGE = (0.01, 1000.0)   # frames per second of a video pegan writes (a GIF frame lasts at most 655 s)


def seed(value, what: str = "the seed") -> int:
    v = at_least(value, 0, what)
    if v > MAX_SEED:
        raise InputError(f"{what} must be at most 2**63 - 1, got {v}")
    return v


def batch_size(value, what: str, devices: int) -> int:
    """A global batch: a positive whole number that splits evenly over ``devices``."""
    b = at_least(value, 1, what)
    if b % devices:
        up = -(-b // devices) * devices
        raise InputError(f"{what} is {b} images, not a multiple of the {devices} devices: set it to a "
                         f"multiple of {devices} (e.g. {up})")
    return b


def image_size(size: Sequence[int], what: str, max_side: Optional[int] = MAX_SIDE,
               raise_with: Optional[str] = "--max-side (max_side= in Python)") -> Tuple[int, ...]:
    """An image size (H, W): every side at least 1 px and at most ``max_side`` (None: no bound);
    ``raise_with`` names the option that raises the bound, if there is one."""
    sides = tuple(int(v) for v in size)
    shown = "x".join(str(v) for v in sides)
    if min(sides) < 1:
        raise InputError(f"{what} gives a {shown} px image: every side must be at least 1 px")
    if max_side is not None and max(sides) > max_side:
        more = f"; raise the bound with {raise_with}" if raise_with else ""
        raise InputError(f"{what} gives a {shown} px image, over the largest side of {max_side} px{more}")
    return sides


# -- paths to write --------------------------------------------------------------------------

def _file_above(path: Path) -> Optional[Path]:
    """The nearest existing ancestor of ``path`` when it is not a folder (then nothing can be
    created under it), else None."""
    for p in path.absolute().parents:
        if p.exists():
            return None if p.is_dir() else p
    return None


PEGAN_MARK = ("Software", "pegan")     # the text chunk of every PNG pegan writes (``written_by_pegan``)
GIF_MARK = b"Software: pegan"           # the comment of every GIF pegan writes


def written_by_pegan(path) -> bool:
    """Whether the file at ``path`` is one pegan wrote and a command may replace without
    --overwrite: a PNG or a GIF with pegan's mark, or a JSON report of ``pegan evaluate``."""
    path = os.fspath(path)
    try:
        if path.lower().endswith((".png", ".gif")):
            from PIL import Image

            with Image.open(path) as im:
                if im.format == "GIF":
                    return im.info.get("comment") == GIF_MARK
                return im.format == "PNG" and im.info.get(PEGAN_MARK[0]) == PEGAN_MARK[1]
        if path.lower().endswith(".json") and os.path.getsize(path) < 2**24:
            with open(path) as f:
                d = json.load(f)
            return isinstance(d, dict) and d.get("written_by") == "pegan evaluate"
    except Exception:  # unreadable, damaged, another kind: not pegan's
        return False
    return False


def read_npz(path, what: str, limit: int, hint: str = "") -> dict:
    """The arrays of the ``.npz`` at ``path`` (name -> ndarray), read without pickles and with
    memory bounded by ``limit`` bytes: the members' declared sizes must fit it, and each
    array's header may declare no more bytes than its member holds (NumPy allocates what the
    header says before it reads). ``InputError`` naming ``what`` (and ending in ``hint`` when
    the file is no readable .npz) for anything else."""
    import zipfile

    import numpy as np

    path = os.fspath(path)
    try:
        with zipfile.ZipFile(path) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir()]
            total = sum(i.file_size for i in infos)
            if total > limit:
                raise InputError(f"{what} {path} unpacks to {total} bytes, over the {limit} this reader allows")
            out = {}
            for info in infos:
                if not info.filename.endswith(".npy") or len(infos) > 4096:
                    raise InputError(f"{what} {path} holds {info.filename[:60]!r}: not an .npz of arrays")
                with zf.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                              else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = header(f)
                    if dtype.hasobject:
                        raise InputError(f"{what} {path}: {info.filename[:60]} holds Python objects; "
                                         "arrays of numbers or text are read")
                    if int(np.prod(shape, dtype=object)) * dtype.itemsize > info.file_size:
                        raise InputError(f"{what} {path}: the header of {info.filename[:60]} declares "
                                         f"{shape} {dtype}, more than the member holds")
                with zf.open(info) as f:
                    out[info.filename[:-4]] = np.lib.format.read_array(f, allow_pickle=False)
            return out
    except InputError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, KeyError, EOFError, RecursionError, NotImplementedError) as e:
        raise InputError(f"{what} {path} is not a readable .npz ({type(e).__name__}: {brief(e, 200)})"
                         + (f"; {hint}" if hint else "")) from None


def output_file(path, what: str, exts: Sequence[str] = (), overwrite: Optional[bool] = None) -> Path:
    """A file pegan is about to write: not a folder, no part of its folder a file (the folder
    may be missing: it is created), and ending in one of ``exts`` (lower case, with the dot)
    when given. ``overwrite`` False: an existing file is refused unless pegan wrote it
    (``written_by_pegan``: a PNG with pegan's mark, an evaluate report); the command
    line's --overwrite replaces any; None: not asked (files pegan names itself)."""
    p = Path(path)
    _check_name(p, what)
    if overwrite is False and p.is_file():
        if not written_by_pegan(p):
            raise ExistingPathError(f"{what} {p} exists and is not a file pegan wrote; pass --overwrite to "
                                    "replace it, or name a new file")
    if p.is_dir():
        example = f", e.g. {p / ('samples' + exts[0])}" if exts else ""
        raise ExistingPathError(f"{what} {p} is a folder; name the file to write{example}")
    if exts and p.suffix.lower() not in exts:
        got = f"{p.suffix!r}" if p.suffix else "no extension"
        raise InputError(f"{what} {p} has {got}; name a {' / '.join(exts)} file")
    bad = _file_above(p)
    if bad is not None:
        raise ExistingPathError(f"{what} {p}: {bad} is a file, not a folder")
    _check_writable(p, what)
    return p


def output_dir(path, what: str) -> Path:
    """A folder pegan is about to write into: a folder or missing, with no file above it, in a
    place the system lets pegan write (``_check_writable``)."""
    p = Path(path)
    _check_name(p, what)
    if p.exists() and not p.is_dir():
        raise ExistingPathError(f"{what} {p} is a file, not a folder")
    bad = _file_above(p)
    if bad is not None:
        raise ExistingPathError(f"{what} {p}: {bad} is a file, not a folder")
    _check_writable(p, what)
    return p


def _check_name(p: Path, what: str) -> None:
    """Refuse a path with a name longer than file systems take (255 bytes), before it is used."""
    for part in p.parts:
        if len(os.fsencode(part)) > 255:
            raise StorageError(f"cannot write {what} {str(p)[:80]}...: a name of {len(os.fsencode(part))} bytes, "
                               "over the 255 a file system takes; choose a shorter name")


def _check_writable(p: Path, what: str) -> None:
    """Refuse, before any work, an output the system will not let pegan write: a folder (the
    path's nearest existing one: missing folders are made there) where no file can be created:
    read-only, not permitted, a pseudo file system such as /proc. Probed by creating and
    removing an empty file; nothing is left."""
    folder = p.parent if not p.is_dir() else p
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    probe = folder / f".pegan-probe-{secrets.token_hex(4)}"
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except OSError as e:
        raise StorageError(f"cannot write {what} {p}: {folder} does not let pegan create files there "
                           f"({os.strerror(e.errno) if e.errno else e}); choose another place") from None
    with contextlib.suppress(OSError):
        os.unlink(probe)


def within(path, folder) -> bool:
    """Whether ``path`` is ``folder`` or lies inside it (both resolved): an output there would
    replace or join what is read from ``folder``."""
    p, f = Path(path).resolve(), Path(folder).resolve()
    return p == f or f in p.parents


def foreign_entries(path, patterns: Sequence[str]) -> list:
    """The names in folder ``path`` that match none of ``patterns`` (``fnmatch`` patterns of
    what a writer of that folder makes): what a user put there, and no overwrite may delete."""
    return sorted(p.name for p in Path(path).iterdir() if not any(fnmatch.fnmatch(p.name, f) for f in patterns))


@contextlib.contextmanager
def replacing_dir(path, what: str, kind: str, owned: Callable[[Path], bool],
                  overwrite: bool = False) -> Iterator[Path]:
    """Write a new output folder: yields an empty temporary folder beside ``path`` that takes
    its place when the block completes, and is removed when the block fails (so a failed write
    never loses what was there). ``path`` must be missing or empty, or, with ``overwrite``, a
    ``kind`` (``owned(path)`` true): nothing else is ever replaced."""
    out = output_dir(path, what).absolute()
    existed = out.exists() and any(out.iterdir())
    if existed and not overwrite:
        raise ExistingPathError(f"{what} {out} is not empty; choose a new folder, or pass --overwrite to "
                                f"replace the {kind} there")
    if existed and not owned(out):
        raise ExistingPathError(f"{what} {out} is not empty and not a {kind}: not replacing it "
                                f"(--overwrite replaces only a {kind}); choose a new folder")
    unchanged = f"{out} is unchanged" if existed else "nothing was left behind"
    tmp = out.with_name(f".{out.name}.incomplete-{secrets.token_hex(4)}")
    with storage_errors(f"{kind} {out}", unchanged, rephrase=True):
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
        try:
            yield tmp
            if out.exists():
                old = out.with_name(f".{out.name}.old-{secrets.token_hex(4)}")
                os.replace(out, old)
                os.replace(tmp, out)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, out)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)


# -- failed writes ---------------------------------------------------------------------------

@contextlib.contextmanager
def writing_file(path, what: Optional[str] = None) -> Iterator[Path]:
    """Write one output file safely: yields a temporary path beside ``path`` (the same suffix,
    so writers that go by it pick the same format) that replaces ``path`` only when the block
    completes; a failed write leaves neither a partial file nor a damaged earlier one.
    Missing parent folders are created; a failed write is one ``StorageError``
    (``storage_errors``) naming ``what`` (default: the path)."""
    p = Path(path)
    tmp = p.with_name(f".pegan-{secrets.token_hex(4)}{p.suffix}")
    with storage_errors(what or str(p), f"{p} is unchanged" if p.exists() else "nothing was written"):
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            yield tmp
            os.replace(tmp, p)
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()


# a write that fails for want of space, quota or permission, or for a path the system will not
# take (a missing or pseudo folder such as /proc, a name too long, a file where a folder is)
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM,
                            errno.ENOENT, errno.ENAMETOOLONG, errno.ENOTDIR, errno.EISDIR, errno.EEXIST})
_OS_ERROR_CODE = re.compile(r"os_error_code='?(\d+)")


def storage_errno(exc: BaseException) -> Optional[int]:
    """The errno of a write that failed for want of space, quota or permission (a full disk, a
    read-only or foreign folder): an ``OSError``'s, or the OS error code that tensorstore (orbax's
    array writer) puts into the message of its ``ValueError``; None for any other exception."""
    if isinstance(exc, OSError):
        code = exc.errno
    elif isinstance(exc, ValueError):
        m = _OS_ERROR_CODE.search(str(exc))
        code = int(m.group(1)) if m else None
    else:
        code = None
    return code if code in STORAGE_ERRNOS else None


@contextlib.contextmanager
def storage_errors(what: str, kept: Union[str, Callable[[], str]] = "", rephrase: bool = False):
    """Turn a failed write inside the block (``storage_errno``) into one ``StorageError``:
    'cannot write {what}: {the OS's reason}; {kept}' (``kept`` says what is intact; a callable
    is asked at the time). A ``PeganError`` passes unchanged, unless ``rephrase`` and it is a
    ``StorageError`` (an outer writer that knows better what is kept)."""
    try:
        yield
    except BaseException as e:
        if isinstance(e, PeganError) and not (rephrase and isinstance(e, StorageError)):
            raise
        code = storage_errno(e)
        if code is None:
            raise
        note = kept() if callable(kept) else kept
        err = StorageError(f"cannot write {what}: {os.strerror(code)}" + (f"; {note}" if note else ""))
        err.errno = code
        raise err from e
