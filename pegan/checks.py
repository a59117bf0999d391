"""Checks of what a user hands pegan (paths to write), shared by the command line and the
library.

One function per kind of check; each raises a ``pegan.errors.PeganError`` subclass whose message
names the argument and the fix, so the command line prints it as one line (exit status 2).
Callers run them before anything slow (reading data, compiling). Standard library only.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from pathlib import Path
from typing import Callable, Iterator, Optional

from pegan.errors import ExistingPathError

__all__ = ["output_dir", "replacing_dir"]


# -- paths to write --------------------------------------------------------------------------

def _file_above(path: Path) -> Optional[Path]:
    """The nearest existing ancestor of ``path`` when it is not a folder (then nothing can be
    created under it), else None."""
    for p in path.absolute().parents:
        if p.exists():
            return None if p.is_dir() else p
    return None


def output_dir(path, what: str) -> Path:
    """A folder pegan is about to write into: a folder or missing, with no file above it."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ExistingPathError(f"{what} {p} is a file, not a folder")
    bad = _file_above(p)
    if bad is not None:
        raise ExistingPathError(f"{what} {p}: {bad} is a file, not a folder")
    return p


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
    tmp = out.with_name(f".{out.name}.incomplete-{secrets.token_hex(4)}")
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
