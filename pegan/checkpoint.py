"""The pegan checkpoint directory: written by ``pegan convert`` and by training, read by every
sampler and evaluator.

Layout::

    <dir>/
      config.json            the experiment config (ml_collections ConfigDict as JSON)
      pegan.json             {"format": "pegan-checkpoint", "format_version": 2, "family",
                              "experiment", "variant", "color_order": "RGB" | "BGR", "source", ...}
      checkpoints/<step>/    an orbax CheckpointManager step, one item per model part:
        generator_ema/       {'params', 'buffers'}; buffers hold the fixed noises and the
        generator/           'mean_latent' used for truncation
        discriminator/       {'params'}
        ...                  training adds its optimiser and loop state as further items
        pegan_digests/       (format 2) {"algorithm": "sha256", "items": {item: hex digest}}
      superseded/<step>/     steps set aside by a resume from an earlier step (never deleted)

Orbax writes each step to a temporary directory and renames it when complete, so an
interrupted save never damages an earlier step. The digests are an orbax JSON item of the
same step, so they are written and renamed together with the arrays they describe. Every
restore recomputes the digests of the items it reads and checks that their floating-point
leaves are finite; a step that fails is refused with the latest earlier step that passes.
Format 1 directories (no digests) still load, with a warning; only the finiteness check
applies to them.

interrupted save never damages an earlier step. A write that fails for want of space or
permission is one ``StorageError`` naming the step kept; orbax's own log records of it (a
traceback per array and thread) are dropped.

A run directory (``check_run_dir``) is one pegan may write a run into: missing, empty, a
checkpoint directory, or one holding only the files a run writes before its first checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import jax
import numpy as np

from pegan._extras import require

require("orbax.checkpoint", "absl", "ml_collections", extra="convert", by=__name__)
from absl import logging as absl_logging

from pegan import checks
from pegan.configs import ExperimentError, check_stored
from pegan.errors import ExistingPathError, PeganError, PeganWarning, brief

__all__ = ["CheckpointError", "CheckpointWriter", "save", "restore", "read_config", "read_info", "steps",
           "latest_step", "check_step", "items_at", "digest", "set_aside_later_steps", "is_checkpoint_dir", "check_run_dir",
           "kept_note", "first_non_finite", "RUN_FILES", "CHECKPOINT_FILES", "foreign_steps", "owns_checkpoint_dir", "FORMAT", "FORMAT_VERSION", "DIGESTS"]

FORMAT = "pegan-checkpoint"
FORMAT_VERSION = 2            # 2: each step records the SHA-256 digest of each item
DIGESTS = "pegan_digests"     # the step's JSON item holding them
_warned_no_digests: set = set()


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
# everything pegan writes into a checkpoint / run directory
CHECKPOINT_FILES = ("pegan.json", "config.json", "superseded") + RUN_FILES
_STEP_MARKS = ("_CHECKPOINT_METADATA", "commit_success.txt", DIGESTS)   # what orbax / pegan put in a step


def foreign_steps(path) -> List[str]:
    """The entries of ``path``/checkpoints that are not steps orbax wrote (a step folder holds
    its metadata, commit marker or pegan's digests; an unfinished one has orbax's temporary
    name). orbax's clean-up of old steps deletes any numbered folder there, so a run must never
    write into a checkpoints/ folder that holds the user's own files."""
    ck = Path(path) / "checkpoints"
    if not ck.is_dir():
        return []
    return sorted(f"checkpoints/{p.name}" for p in ck.iterdir()
                  if not (p.is_dir() and (".orbax-checkpoint-tmp" in p.name
                                          or any((p / m).exists() for m in _STEP_MARKS))))


def _shown(names: List[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def owns_checkpoint_dir(path) -> bool:
    """Whether ``path`` is a folder pegan wrote and may replace (``pegan convert --overwrite``):
    its pegan.json names pegan's format, and it holds nothing but what pegan writes there."""
    p = Path(path)
    if not is_checkpoint_dir(p):
        return False
    try:
        info = json.loads((p / "pegan.json").read_text())
    except (OSError, ValueError, RecursionError):
        return False
    return (isinstance(info, dict) and info.get("format") == FORMAT
            and not checks.foreign_entries(p, CHECKPOINT_FILES) and not foreign_steps(p))


def check_run_dir(path, what: str = "--workdir") -> Path:
    """``path`` as a directory a run may write into (and resume from): missing, empty, a pegan
    checkpoint directory, or holding only ``RUN_FILES`` (a run stopped before its first
    checkpoint); and in every case, its checkpoints/ holding only orbax's steps (``foreign_steps``).
    Anything else is the user's, and is refused (``ExistingPathError``)."""
    d = checks.output_dir(path, what)
    if not d.exists():
        return d
    foreign = [] if is_checkpoint_dir(d) else checks.foreign_entries(d, RUN_FILES)
    foreign += foreign_steps(d)
    if foreign:
        raise ExistingPathError(f"{what} {d} is not empty and not a pegan run directory (it holds "
                                f"{_shown(foreign)}); choose a new or empty folder")
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
    except (OSError, ValueError, RecursionError) as e:
        raise CheckpointError(f"{d / 'pegan.json'} is unreadable ({str(e)[:200]}); the directory is damaged") from None
    if not isinstance(info, dict):
        raise CheckpointError(f"{d / 'pegan.json'} holds a JSON {type(info).__name__}, not pegan's record; "
                              "the directory is damaged")
    version = info.get("format_version", 0)
    if info.get("format") != FORMAT or type(version) is not int or version > FORMAT_VERSION:
        shown = version if type(version) is int else repr(str(version)[:20])
        raise CheckpointError(f"{d} has format {str(info.get('format'))[:40]!r} version {shown}; "
                              f"this pegan reads {FORMAT} <= {FORMAT_VERSION}")
    return info


def read_config(directory):
    """The experiment config stored with a checkpoint, as a ConfigDict (``configs.check_stored``)."""
    read_info(directory)
    where = f"{directory}/config.json"
    try:
        raw = json.loads((Path(directory) / "config.json").read_text())
    except (OSError, ValueError, RecursionError) as e:
        raise CheckpointError(f"{where} is unreadable ({str(e)[:200]}); the directory is damaged") from None
    try:
        return check_stored(raw, where)
    except ExperimentError as e:
        raise CheckpointError(f"{e}; the directory is damaged") from None


def steps(directory) -> list:
    d = Path(directory) / "checkpoints"
    if not d.is_dir():
        return []
    return sorted(int(p.name) for p in d.iterdir() if p.is_dir() and p.name.isdigit())


def latest_step(directory) -> Optional[int]:
    s = steps(directory)
    return s[-1] if s else None


def check_step(directory, step: Optional[int] = None) -> int:
    """``step`` (default: the latest) if the directory holds it, else a CheckpointError that
    lists the steps it holds."""
    d = Path(directory)
    available = steps(d)
    if not available:
        raise CheckpointError(f"{d} has no saved step under checkpoints/")
    if step is None:
        return available[-1]
    if int(step) not in available:
        raise CheckpointError(f"{d} has no step {step}; its steps are {', '.join(map(str, available))}: "
                              "pass --step with one of them")
    return int(step)


def items_at(directory, step: Optional[int] = None) -> List[str]:
    """The items saved at ``step`` (default: the latest), e.g. ['discriminator', 'generator', ...]."""
    d = Path(directory)
    return sorted(_items_in(d, check_step(d, step)))


def _items_in(d: Path, step: int) -> set:
    """The items of a step (without the digest record)."""
    return {p.name for p in (d / "checkpoints" / str(step)).iterdir() if p.is_dir()} - {DIGESTS}


def _to_numpy(tree):
    return jax.tree.map(lambda x: np.asarray(x), tree)


# -- digests and finiteness -------------------------------------------------------------------

def _key_name(k) -> str:
    for attr in ("key", "idx", "name"):      # DictKey / FlattenedIndexKey, SequenceKey, GetAttrKey
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def _leaves(tree) -> List[Tuple[Tuple[str, ...], np.ndarray]]:
    """(path, array) of every leaf in the canonical order: sorted by path, where a path is the
    names of its keys, so a dict, a list, a tuple or a dataclass of the same names agree (orbax
    restores tuples and dataclasses as lists and dicts)."""
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return sorted(((tuple(_key_name(k) for k in path), np.asarray(x)) for path, x in flat), key=lambda t: t[0])


def digest(tree) -> str:
    """SHA-256 (hex) over each leaf's path, dtype, shape and bytes, in the canonical order."""
    h = hashlib.sha256()
    for path, x in _leaves(tree):
        head = json.dumps([list(path), x.dtype.name, list(x.shape)]).encode()
        h.update(len(head).to_bytes(8, "little") + head)
        h.update(np.ascontiguousarray(x).reshape(-1).view(np.uint8))
    return h.hexdigest()


def first_non_finite(tree) -> Optional[str]:
    """'path (value)' of the first floating leaf (canonical order) holding a NaN or inf."""
    for path, x in _leaves(tree):
        if jax.dtypes.issubdtype(x.dtype, np.inexact):
            bad = ~np.isfinite(x)
            if bad.any():
                return f"{'/'.join(path)} ({x[bad].flat[0]})"
    return None


def _warn_no_digests(d: Path) -> None:
    key = str(d.resolve())
    if key not in _warned_no_digests:
        _warned_no_digests.add(key)
        warnings.warn(f"{d} was written by checkpoint format version 1: its steps carry no digests, so only "
                      "non-finite parameters are caught on restore", PeganWarning, stacklevel=3)


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
    """The orbax Composite of a step: each item as NumPy host copies, and the digest record of
    those same copies as one more (JSON) item, so that orbax writes and finalises it with them."""
    import orbax.checkpoint as ocp

    if DIGESTS in items:
        raise CheckpointError(f"{DIGESTS!r} is the name of the digest record; name the item otherwise")
    host = {k: _to_numpy(v) for k, v in items.items()}
    record = {"algorithm": "sha256", "items": {k: digest(v) for k, v in host.items()}}
    return ocp.args.Composite(**{k: ocp.args.StandardSave(v) for k, v in host.items()},
                              **{DIGESTS: ocp.args.JsonSave(record)})


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
    and their digests are computed (so the caller may go on and donate its device buffers);
    orbax writes them and the digest record in the background into a temporary directory that
    it renames when complete, so a crash during a save leaves the earlier steps usable. The next ``save``, ``wait`` and ``close`` wait for the
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
    """Restore the named items of ``step`` (default: the latest) as NumPy pytrees, verified:
    their digests must match the ones saved with them (format 2) and their floating-point
    leaves must be finite; otherwise a CheckpointError names the step, what is wrong and the
    latest earlier step that passes. Nothing falls back to another step.

    ``abstract`` (name -> pytree of ShapeDtypeStruct) checks shapes and fixes the structure.
    """
    d = Path(directory)
    info = read_info(d)
    step = check_step(d, step)
    items = list(items)
    present = _items_in(d, step)
    missing = [i for i in items if i not in present]
    if missing:
        raise CheckpointError(f"step {step} of {d} has no {', '.join(missing)} (it has {sorted(present)})")
    try:
        trees, record = _read(d, step, items, abstract)
    except Exception as e:  # orbax raises many types for damaged or mismatching files
        _refuse_misfit(d, step, items, abstract)      # the tree the config builds may be what differs
        good = _latest_intact(d, step, items)
        hint = (f"; the latest intact step is {good}: pass --step {good} to use it" if good is not None else "")
        raise CheckpointError(f"cannot restore {', '.join(items)} from step {step} of {d}: "
                              f"{type(e).__name__}: {brief(e)}{hint}") from e
    _refuse_misfit(d, step, items, abstract, trees)
    problem = _problem(d, step, trees, record, info.get("format_version", 1), abstract is not None)
    if problem:
        raise _damaged(d, step, items, problem)
    return trees


def _refuse_misfit(d: Path, step: int, items: List[str], abstract: Optional[Dict[str, Any]],
                   trees: Optional[Dict[str, Any]] = None) -> None:
    """A CheckpointError naming the first leaf where the stored ``items`` (read as stored when
    ``trees`` is None) and the ``abstract`` tree the config builds differ; nothing when they fit
    or when the items cannot be read as stored either (then the step is what is damaged)."""
    if abstract is None:
        return
    if trees is None:
        try:
            trees = _read(d, step, items)[0]
        except Exception:  # not readable as stored either: the caller reports the damage
            return
    misfit = _misfit(trees, abstract)
    if misfit:
        raise CheckpointError(f"the config of {d} does not fit the weights of step {step}: {misfit}; "
                              "put back the config.json the run wrote (or convert the .pth again)")


def _misfit(trees: Dict[str, Any], abstract: Dict[str, Any]) -> Optional[str]:
    """The first leaf whose restored shape differs from the one the config builds, or a leaf
    one side lacks, as one phrase (None: they fit). Orbax checks the tree's structure but
    restores an array of another shape into a NumPy target as stored."""
    for name, want_tree in abstract.items():
        if want_tree is None or name not in trees:
            continue
        got = {path: x.shape for path, x in _leaves(trees[name])}
        flat = jax.tree_util.tree_flatten_with_path(want_tree)[0]
        want = {tuple(_key_name(k) for k in path): tuple(s.shape) for path, s in flat}
        for path in sorted(set(got) | set(want)):
            where = f"{name} {'/'.join(path)}"
            if path not in got:
                return f"{where} is built by the config but not stored"
            if path not in want:
                return f"{where} is stored but not built by the config"
            if tuple(got[path]) != want[path]:
                return f"{where} is stored as {tuple(got[path])}, the config builds {want[path]}"
    return None


def _read(d: Path, step: int, items: List[str], abstract: Optional[Dict[str, Any]] = None):
    """One orbax restore of ``items`` and the step's digest record (None when it has none)."""
    import orbax.checkpoint as ocp

    args = {}
    for name in items:
        tgt = None if abstract is None else abstract.get(name)
        if tgt is not None:
            tgt = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), tgt)
        args[name] = ocp.args.StandardRestore(tgt)
    has_record = (d / "checkpoints" / str(step) / DIGESTS).is_dir()
    if has_record:
        args[DIGESTS] = ocp.args.JsonRestore()
    mngr = _manager(d, read_only=True)
    try:
        out = mngr.restore(step, args=ocp.args.Composite(**args))
    finally:
        mngr.close()
    return {name: _to_numpy(out[name]) for name in items}, (out[DIGESTS] if has_record else None)


def _problem(d: Path, step: int, trees: Dict[str, Any], record: Optional[dict], format_version: int,
             cast: bool = False) -> Optional[str]:
    """What is wrong with the restored items of ``step`` (None if nothing): a digest that does
    not match the record, a missing record in a format-2 directory, or a non-finite float.
    ``cast``: the trees were restored into abstract targets, whose dtypes orbax casts to; an
    item whose digest differs is then read again as stored before it is called damaged."""
    if record is None and format_version >= 2:
        return f"it has no digest record ({DIGESTS})"
    if record is not None and not (isinstance(record, dict) and isinstance(record.get("items", {}), dict)):
        return f"its digest record ({DIGESTS}) is damaged"
    if record is None:
        _warn_no_digests(d)
    for name, tree in trees.items():
        if record is None:
            break
        want = record.get("items", {}).get(name)
        if want is None:
            return f"no digest was recorded for {name}"
        if digest(tree) != want and not (cast and digest(_read(d, step, [name])[0][name]) == want):
            return f"{name} does not match the digest saved with it"
    for name, tree in trees.items():
        bad = first_non_finite(tree)
        if bad:
            return f"{name} holds a non-finite value at {bad}"
    return None


def _latest_intact(d: Path, step: int, items: List[str]) -> Optional[int]:
    """The latest step before ``step`` whose ``items`` restore and pass ``_problem``."""
    version = read_info(d).get("format_version", 1)
    for s in reversed([s for s in steps(d) if s < step]):
        if not set(items) <= _items_in(d, s):
            continue
        try:
            trees, record = _read(d, s, items)
        except Exception:  # unreadable: not intact
            continue
        if _problem(d, s, trees, record, version) is None:
            return s
    return None


def _damaged(d: Path, step: int, items: List[str], problem: str) -> CheckpointError:
    good = _latest_intact(d, step, items)
    hint = (f"the latest intact step is {good}: pass --step {good} to use it" if good is not None else
            f"no earlier step with {', '.join(items)} is intact")
    return CheckpointError(f"step {step} of {d} is damaged: {problem}; {hint}")


def set_aside_later_steps(directory, step: int, log: Callable[[str], None] = print) -> List[Path]:
    """Move the steps after ``step`` out of checkpoints/ into superseded/<s> (superseded/<s>.<k>
    if that is taken) so that a run resumed from ``step`` may write those step numbers again;
    nothing is deleted. Process 0 moves them; every process waits for it."""
    d = Path(directory)
    later = [s for s in steps(d) if s > step]
    moved = []
    if later and jax.process_index() == 0:
        (d / "superseded").mkdir(exist_ok=True)
        for s in later:
            dest, k = d / "superseded" / str(s), 0
            while dest.exists():
                k += 1
                dest = d / "superseded" / f"{s}.{k}"
            (d / "checkpoints" / str(s)).rename(dest)
            moved.append(dest)
        log(f"resuming from step {step}: moved the later steps {', '.join(map(str, later))} aside into "
            f"{d / 'superseded'} (kept, not deleted)")
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("pegan-checkpoint-set-aside")
    return moved
