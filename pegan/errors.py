"""pegan's own errors: one base class for every mistake a user can fix.

The command line prints a ``PeganError`` as one line and exits with status 2; every other
exception is a bug and keeps its traceback. The subclasses also derive from the built-in
type that describes them (``ValueError``, ``FileNotFoundError`` ...), so library callers who
catch those keep working. Nothing else is imported here: any floor may use it.
"""

from __future__ import annotations

__all__ = ["PeganError", "InputError", "DataError", "MissingFileError", "ExistingPathError",
           "NonFiniteError", "PeganWarning", "StorageError"]


class PeganError(Exception):
    """An error caused by the user's input or files, with a message that names the fix."""


class InputError(PeganError, ValueError):
    """An argument or config value out of range or of the wrong type."""


class DataError(PeganError, ValueError):
    """An unreadable or unsuitable file (image, dataset, statistics)."""


class MissingFileError(PeganError, FileNotFoundError):
    """A path the user named does not exist."""


class ExistingPathError(PeganError, FileExistsError):
    """A path that pegan would have to overwrite, or that is a file where a folder is needed."""


class NonFiniteError(PeganError, FloatingPointError):
    """A loss or parameter became NaN / inf; the last checkpoint is kept."""


class PeganWarning(UserWarning):
    """Something the user should know that does not stop the command (the CLI prints one line)."""


class StorageError(PeganError, OSError):
    """A write failed for want of space, quota or permission; what was saved before is kept."""


def brief(e: BaseException, limit: int = 300) -> str:
    """``str(e)`` on one line (runs of white space, line breaks included, made one space) cut to
    ``limit`` characters (' ...' marks the cut): a library's message can hold a whole storage
    spec, a tree diff or a hostile file's value, and an error line stays one short line."""
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[:limit] + " ..."
