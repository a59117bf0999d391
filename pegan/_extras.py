"""What each optional part of pegan needs beyond the core (jax, jaxlib, flax, numpy).

``pip install pegan`` is enough for the layers (``pegan.encodings``, ``pegan.ops``, ``pegan.nn``,
``pegan.models``). Checkpoints, conversion, data, evaluation, training and the demo come with
extras (setup.cfg ``[options.extras_require]``); a module that needs one calls ``require`` before
its imports, so that a missing extra is one line naming it::

    pegan.data needs the 'train' extra: pip install 'pegan[train]' (missing: tensorflow_datasets)

``require`` only looks the modules up (``importlib.util.find_spec``): it imports nothing of
theirs. Nothing here imports anything but the standard library and ``pegan.errors``.
"""

from __future__ import annotations

import importlib.util
from typing import Dict, Optional, Tuple

from pegan.errors import PeganError

__all__ = ["EXTRAS", "COMMAND_EXTRAS", "MissingExtraError", "missing", "require", "require_for_command"]

_CONVERT = ("orbax.checkpoint", "absl", "ml_collections", "PIL")
_EVAL = _CONVERT + ("tensorflow_datasets", "scipy")

EXTRAS: Dict[str, Tuple[str, ...]] = {
    "convert": _CONVERT,
    "eval": _EVAL,
    "train": _EVAL + ("optax", "tqdm", "tensorboard"),
    "demo": _CONVERT + ("optax", "tqdm", "skimage"),
    "video": ("imageio", "imageio_ffmpeg"),
}
"""extra -> the modules (import names) it provides; mirrors setup.cfg (tests/test_extras.py)."""

COMMAND_EXTRAS: Dict[str, str] = {
    "experiments": "convert", "convert": "convert", "sample": "convert", "mix": "convert", "project": "train",
    "evaluate": "eval", "prepare": "train", "train": "train", "demo": "demo", "video": "convert",
    "explore": "convert",
}
"""``pegan <command>`` -> the extra it needs (``pegan --help`` needs none). ``pegan video`` writes
MP4 with the 'video' extra too; without it, it writes a GIF and says how to get MP4."""


class MissingExtraError(PeganError, ModuleNotFoundError):
    """A module of an extra that is not installed. A ``PeganError`` (the command line prints it
    as one line, exit status 2) and a ``ModuleNotFoundError`` (``except ImportError`` and
    ``pytest.importorskip`` see what they expect)."""


def _found(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:       # a parent package is missing ('orbax' of 'orbax.checkpoint')
        return False
    except ValueError:        # in sys.modules without a __spec__ (set up by hand): it is there
        return True


def missing(*modules: str, extra: Optional[str] = None) -> Tuple[str, ...]:
    """The ones of ``modules`` (default: all of ``extra``'s) that cannot be imported."""
    return tuple(m for m in (modules or EXTRAS[extra]) if not _found(m))


def require(*modules: str, extra: str, by: str) -> None:
    """Raise ``MissingExtraError`` if any of ``modules`` (default: every module of ``extra``)
    is missing; ``by`` names who needs them (a module's ``__name__``, a command)."""
    if extra not in EXTRAS:
        raise KeyError(f"unknown extra {extra!r}; known: {', '.join(EXTRAS)}")
    gone = missing(*modules, extra=extra)
    if gone:
        raise MissingExtraError(f"{by} needs the {extra!r} extra: pip install 'pegan[{extra}]' "
                                f"(missing: {', '.join(gone)})", name=gone[0])


def require_for_command(command: str) -> None:
    """``require`` the extra of ``pegan <command>`` (nothing for a command not listed)."""
    extra = COMMAND_EXTRAS.get(command)
    if extra is not None:
        require(extra=extra, by="this command")
