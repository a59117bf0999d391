"""The pegan checkpoint directory: written by ``pegan convert`` and by training, read by every
sampler and evaluator.

Layout::

    <dir>/
      config.json            the experiment config (ml_collections ConfigDict as JSON)
      pegan.json             {"format": "pegan-checkpoint", "format_version": 1, "family",
                              "experiment", "variant", "color_order": "RGB" | "BGR", "source", ...}
      checkpoints/<step>/    an orbax CheckpointManager step, one item per model part:
        generator_ema/       {'params', 'buffers'}; buffers hold the fixed noises and the
        generator/           'mean_latent' used for truncation
        discriminator/       {'params'}
        ...                  training adds its optimiser and loop state as further items

Orbax writes each step to a temporary directory and renames it when complete, so an
interrupted save never damages an earlier step. A write that fails for want of space or
permission is one ``StorageError`` naming the step kept; orbax's own log records of it (a
traceback per array and thread) are dropped.

A run directory (``check_run_dir``) is one pegan may write a run into: missing, empty, a
checkpoint directory, or one holding only the files a run writes before its first checkpoint.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
from pathlib import Path
from typing import Any, Dict, Iterable, Optional

import jax
import numpy as np
from absl import logging as absl_logging

from pegan import checks
from pegan.errors import ExistingPathError, PeganError

__all__ = ["CheckpointError", "CheckpointWriter", "save", "restore", "read_config", "read_info", "steps",
           "latest_step", "is_checkpoint_dir", "check_run_dir", "kept_note", "RUN_FILES", "FORMAT", "FORMAT_VERSION"]

FORMAT = "pegan-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(PeganError, ValueError):
    """A missing, corrupt or mismatching pegan checkpoint directory."""


def _manager(directory: Path, read_only: bool = False, max_to_keep: Optional[int] = None,
             asynchronous: bool = False):
    import orbax.checkpoint as ocp

    opts = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=not read_only,
                                        enable_async_checkpointing=asynchronous)
    return ocp.CheckpointManager(str((directory / "checkpoints").resolve()), options=opts)


def is_checkpoint_dir(path) -> bool:
    p = Path(path)
    return (p / "pegan.json").is_file() and (p / "config.json").is_file()


# what a training run writes into its directory before config.json / pegan.json (its first checkpoint)
RUN_FILES = ("checkpoints", "tensorboard", "metrics.jsonl", "samples_*.png")


def check_run_dir(path, what: str = "--workdir") -> Path:
    """``path`` as a directory a run may write into (and resume from): missing, empty, a pegan
    checkpoint directory, or holding only ``RUN_FILES`` (a run stopped before its first
    checkpoint). Anything else is the user's, and is refused (``ExistingPathError``)."""
    d = checks.output_dir(path, what)
    if not d.exists() or is_checkpoint_dir(d):
        return d
    foreign = sorted(p.name for p in d.iterdir() if not any(fnmatch.fnmatch(p.name, f) for f in RUN_FILES))
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise ExistingPathError(f"{what} {d} is not empty and not a pegan run directory (it holds {shown}); "
                                "choose a new or empty folder")
    return d


class _DropOrbaxWriteErrors(logging.Filter):
    """Drops orbax's log records of a failed write (each array and thread logs its traceback):
    the save or wait that meets the failure raises it once, as a ``StorageError``."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        from_orbax = f"{os.sep}orbax{os.sep}" in record.pathname
        return not (from_orbax and exc is not None and checks.storage_errno(exc) is not None)


absl_logging.get_absl_logger().addFilter(_DropOrbaxWriteErrors())   # orbax logs through absl


def kept_note(directory) -> str:
    """What of ``directory`` survives a failed write, for the error message."""
    last = latest_step(directory)
    if last is None:
        return "no step of it was saved yet"
    return f"its last complete step, {last}, is kept (a run resumes from it)"


def read_info(directory) -> Dict[str, Any]:
    d = Path(directory)
    if not d.exists():
        raise CheckpointError(f"{d} does not exist; make a checkpoint with `pegan convert` or train one")
    if not is_checkpoint_dir(d):
        raise CheckpointError(f"{d} is not a pegan checkpoint directory (no pegan.json / config.json); "
                              "convert a reference .pth with `pegan convert FILE.pth OUT_DIR`")
    try:
        info = json.loads((d / "pegan.json").read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{d / 'pegan.json'} is unreadable ({e}); the directory is damaged") from e
    if info.get("format") != FORMAT or info.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{d} has format {info.get('format')!r} version "
                              f"{info.get('format_version')!r}; this pegan reads {FORMAT} <= {FORMAT_VERSION}")
    return info


def read_config(directory):
    """The experiment config stored with a checkpoint, as a ConfigDict."""
    import ml_collections

    read_info(directory)
    try:
        return ml_collections.ConfigDict(json.loads((Path(directory) / "config.json").read_text()))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{directory}/config.json is unreadable ({e})") from e


def steps(directory) -> list:
    d = Path(directory) / "checkpoints"
    if not d.is_dir():
        return []
    return sorted(int(p.name) for p in d.iterdir() if p.is_dir() and p.name.isdigit())


def latest_step(directory) -> Optional[int]:
    s = steps(directory)
    return s[-1] if s else None


def _to_numpy(tree):
    return jax.tree.map(lambda x: np.asarray(x), tree)


def _prepare_dir(d: Path, config, info: Optional[dict]) -> None:
    """Write config.json / pegan.json into a new directory (process 0, then every process waits
    for it), and check that an existing one holds the same experiment (every process)."""
    if not is_checkpoint_dir(d) and (config is None or info is None):
        raise CheckpointError("the first save into a directory needs the config and info")
    if jax.process_index() == 0 and not is_checkpoint_dir(d):
        check_run_dir(d, "the checkpoint directory")    # process 0 alone: the others may see its writes
        d.mkdir(parents=True, exist_ok=True)
        cfg = config.to_dict() if hasattr(config, "to_dict") else dict(config)
        (d / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
        meta = {"format": FORMAT, "format_version": FORMAT_VERSION, **info}
        (d / "pegan.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("pegan-checkpoint-meta")
    old = read_info(d)
    if info and old.get("experiment") != info.get("experiment"):
        raise CheckpointError(f"{d} holds a checkpoint of experiment {old.get('experiment')!r}, "
                              f"not {info.get('experiment')!r}; use another directory")


def _save_args(items: Dict[str, Any]):
    import orbax.checkpoint as ocp

    return ocp.args.Composite(**{k: ocp.args.StandardSave(_to_numpy(v)) for k, v in items.items()})


def save(directory, step: int, items: Dict[str, Any], config=None, info: Optional[dict] = None,
         max_to_keep: Optional[int] = None) -> Path:
    """Save ``items`` (name -> pytree of arrays) as step ``step`` and wait until it is written.

    The first save writes config.json and pegan.json; later saves check that the config is the
    same experiment and never overwrite an existing step.
    """
    d = Path(directory)
    _prepare_dir(d, config, info)
    if step in steps(d):
        raise CheckpointError(f"{d} already has step {step}; refusing to overwrite it")
    mngr = _manager(d, max_to_keep=max_to_keep)
    mngr.save(int(step), args=_save_args(items), force=True)
    mngr.wait_until_finished()
    mngr.close()
    return d


class CheckpointWriter:
    """Asynchronous saves of a training run: one orbax CheckpointManager kept open, keeping the
    last ``max_to_keep`` steps. ``save`` returns once the items are NumPy copies on the host
    (so the caller may go on and donate its device buffers); orbax writes them in the
    background into a temporary directory that it renames when complete, so a crash during a
    save leaves the earlier steps usable. The next ``save``, ``wait`` and ``close`` wait for the
    write in flight. Every process of a multi-host run must make the same calls. A write that
    fails for want of space or permission raises a ``StorageError`` from the call that meets it,
    naming the step that failed and the last complete one (kept)."""

    def __init__(self, directory, config, info: dict, max_to_keep: Optional[int] = None):
        self.directory = Path(directory)
        self._pending: Optional[int] = None       # the step orbax is writing in the background
        with self._writing(None):
            _prepare_dir(self.directory, config, info)
            self._mngr = _manager(self.directory, max_to_keep=max_to_keep, asynchronous=True)

    def _writing(self, step: Optional[int]):
        what = f"{'the' if step is None else f'step {step} of the'} checkpoint in {self.directory}"
        return checks.storage_errors(what, lambda: kept_note(self.directory))

    def save(self, step: int, items: Dict[str, Any]) -> bool:
        """Start saving ``step`` (False if that step is already there)."""
        self.wait()
        if int(step) in steps(self.directory):
            return False
        with self._writing(step):
            self._mngr.save(int(step), args=_save_args(items), force=True)
        self._pending = int(step)
        return True

    def wait(self) -> None:
        step, self._pending = self._pending, None
        with self._writing(step):
            self._mngr.wait_until_finished()

    def close(self) -> None:
        if self._mngr is not None:
            try:
                self.wait()
            finally:
                self._mngr.close()
                self._mngr = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def restore(directory, items: Iterable[str] = ("generator_ema",), step: Optional[int] = None,
            abstract: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Restore the named items of ``step`` (default: the latest) as NumPy pytrees.

    ``abstract`` (name -> pytree of ShapeDtypeStruct) checks shapes and fixes the structure.
    """
    import orbax.checkpoint as ocp

    d = Path(directory)
    read_info(d)
    available = steps(d)
    if not available:
        raise CheckpointError(f"{d} has no saved step under checkpoints/")
    if step is None:
        step = available[-1]
    if step not in available:
        raise CheckpointError(f"{d} has no step {step}; it has {available}")
    items = list(items)
    present = {p.name for p in (d / "checkpoints" / str(step)).iterdir() if p.is_dir()}
    missing = [i for i in items if i not in present]
    if missing:
        raise CheckpointError(f"step {step} of {d} has no {', '.join(missing)} (it has {sorted(present)})")
    mngr = _manager(d, read_only=True)
    try:
        args = {}
        for name in items:
            tgt = None if abstract is None else abstract.get(name)
            if tgt is not None:
                tgt = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), tgt)
            args[name] = ocp.args.StandardRestore(tgt)
        out = mngr.restore(step, args=ocp.args.Composite(**args))
    except Exception as e:  # orbax raises many types for damaged or mismatching files
        raise CheckpointError(f"cannot restore {', '.join(items)} from step {step} of {d}: "
                              f"{type(e).__name__}: {e}") from e
    finally:
        mngr.close()
    return {name: _to_numpy(out[name]) for name in items}
