"""The ``compute`` section of a config: how the numbers are computed, resolved per backend.

Every field may be ``'auto'``; ``resolve`` turns the section into concrete values for a backend
once, at start-up, and the code that uses a value receives it explicitly (the models get a
``pegan.ops.forms.Forms``, the train step its lazy-branch mode). Nothing here reads an
environment variable or keeps a module global.

| field | values | auto on CPU | auto on GPU / TPU | why |
|---|---|---|---|---|
| conv_impl | xla, taps | taps | xla | XLA's CPU convolution gradients are slow (docs/PERF_NOTES.md); accelerators run their own well |
| upfirdn_impl | slices, conv, ref | slices | slices | depthwise convs are 30x slower on CPU; slices fuse everywhere |
| modconv_impl | scale, grouped, vmap | scale | scale | one batched conv; measured fastest on CPU (PERF_NOTES) |
| resize_impl | dense, gather | dense | dense | bilinear / bicubic / nearest resizing and interp padding as banded matmuls: dense, deterministic gradients (gather's are scatter-adds: float atomics on GPU, serialised on TPU); on CPU gather is 0-8% faster in the MS-PIE generators, dense kept so the CPU fixture tests check the accelerators' form |
| lazy_branches | cond, static | static | cond | XLA's CPU backend runs lax.cond branches 6-9x slower |
| dtype | float32, bfloat16 | float32 | float32 | bfloat16: mixed precision (float32 parameters), StyleGAN2 only |
| matmul_precision | default, high, highest | default | highest (GPU), high (TPU) | float32 convolutions silently become TF32 on Ampere/Hopper and bfloat16 passes on TPU; NVIDIA turns TF32 off for StyleGAN2 training, for accuracy |
| cpu_compile | default, lean, quick | lean (tiny variants: quick) | default | how XLA's CPU back end compiles the train steps: lean turns off its MLIR fusion emitters (15-30% less compile time, the same program speed, measured); quick adds LLVM -O0 (about 5x less compile time, slower programs: for tiny models, whose steps take milliseconds); ignored on other backends |
| compile_cache | auto, a directory, or '' (off) | $JAX_COMPILATION_CACHE_DIR, else $PEGAN_CACHE_DIR/jax, else ~/.cache/pegan/jax | the same | JAX's persistent compilation cache: a restarted or preempted run (and every sample / evaluate) loads its programs instead of compiling them again |
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Optional

import jax

from pegan.errors import InputError
from pegan.ops.forms import CONV_IMPLS, MODCONV_IMPLS, RESIZE_IMPLS, UPFIRDN_IMPLS, Forms

__all__ = ["DEFAULTS", "CHOICES", "default_cache_dir", "resolve", "compiler_options", "forms_for", "forms_of", "module_dtype", "compute_section", "apply_process_settings",
           "describe", "differences", "changes_since", "change_note"]

DEFAULTS: Dict[str, Any] = dict(conv_impl="auto", upfirdn_impl="auto", modconv_impl="auto", resize_impl="auto",
                                lazy_branches="auto", dtype="float32", matmul_precision="auto", cpu_compile="auto",
                                compile_cache="auto")
CHOICES = {"conv_impl": CONV_IMPLS, "upfirdn_impl": UPFIRDN_IMPLS, "modconv_impl": MODCONV_IMPLS,
           "resize_impl": RESIZE_IMPLS,
           "lazy_branches": ("cond", "static"), "dtype": ("float32", "bfloat16"),
           "matmul_precision": ("default", "high", "highest"), "cpu_compile": ("default", "lean", "quick")}

# cpu_compile -> the XLA options of the compiles it names (XLA's CPU back end only)
_CPU_COMPILE = {"default": {}, "lean": {"xla_cpu_use_fusion_emitters": False},
                "quick": {"xla_cpu_use_fusion_emitters": False, "xla_backend_optimization_level": 0}}


def _auto(field: str, backend: str, variant: Optional[str] = None) -> str:
    accel = backend != "cpu"
    if field == "cpu_compile":
        return "default" if accel else ("quick" if variant == "tiny" else "lean")
    return {"conv_impl": "xla" if accel else "taps", "upfirdn_impl": "slices", "modconv_impl": "scale",
            "resize_impl": "dense",
            "lazy_branches": "cond" if accel else "static", "dtype": "float32",
            "matmul_precision": {"cpu": "default", "tpu": "high"}.get(backend, "highest")}[field]


def default_cache_dir() -> str:
    """Where compile_cache='auto' puts JAX's compilation cache (see the table above)."""
    env = os.environ.get("JAX_COMPILATION_CACHE_DIR")
    if env:
        return env
    base = os.environ.get("PEGAN_CACHE_DIR") or str(Path.home() / ".cache" / "pegan")
    return str(Path(base) / "jax")


def compute_section(cfg) -> Dict[str, Any]:
    """The requested compute section of a config (or of a ``compute`` section itself), with the
    defaults for missing fields (configs written before the section existed)."""
    sec = cfg.get("compute", None) if hasattr(cfg, "get") and "conv_impl" not in cfg else cfg
    return {**DEFAULTS, **{k: v for k, v in (sec or {}).items() if k in DEFAULTS}}


def resolve(cfg=None, backend: Optional[str] = None) -> Dict[str, Any]:
    """Concrete values of a compute section for ``backend`` (default: JAX's default backend)."""
    backend = backend or jax.default_backend()
    req = compute_section(cfg or {})
    variant = cfg.get("variant", None) if hasattr(cfg, "get") and "conv_impl" not in cfg else None
    out = {}
    for field, value in req.items():
        if field == "compile_cache":
            if not isinstance(value, str):
                raise InputError(f"compute.compile_cache must be 'auto', a directory or '' (off), got {value!r}")
            out[field] = default_cache_dir() if value == "auto" else value
            continue
        if value == "auto":
            value = _auto(field, backend, variant)
        if value not in CHOICES[field]:
            raise InputError(f"compute.{field} must be 'auto' or one of {', '.join(CHOICES[field])}, got {value!r}")
        out[field] = value
    return out


def compiler_options(resolved: Dict[str, Any], backend: Optional[str] = None) -> Dict[str, Any]:
    """The ``compiler_options`` of ``jax.jit`` / ``Lowered.compile`` for the resolved section's
    ``cpu_compile`` (empty off the CPU backend; a section without the field: XLA's default)."""
    if (backend or jax.default_backend()) != "cpu":
        return {}
    return dict(_CPU_COMPILE[resolved.get("cpu_compile", "default")])


def forms_of(resolved: Dict[str, Any]) -> Forms:
    return Forms(conv=resolved["conv_impl"], upfirdn=resolved["upfirdn_impl"], modconv=resolved["modconv_impl"],
                 resize=resolved["resize_impl"])


def module_dtype(resolved: Dict[str, Any]):
    """The models' ``dtype`` field: None (compute in float32) or 'bfloat16' (mixed precision)."""
    return None if resolved["dtype"] == "float32" else resolved["dtype"]


def forms_for(cfg, backend: Optional[str] = None) -> Forms:
    """The ops' forms of an experiment config for ``backend``."""
    return forms_of(resolve(cfg, backend))


def apply_process_settings(resolved: Dict[str, Any]) -> None:
    """The two settings JAX keeps per process: matmul precision and the compilation cache.
    Called once at start-up by the command line, before anything is traced."""
    jax.config.update("jax_default_matmul_precision",
                      None if resolved["matmul_precision"] == "default" else resolved["matmul_precision"])
    if resolved["compile_cache"]:
        try:
            Path(resolved["compile_cache"]).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise InputError(f"compute.compile_cache {resolved['compile_cache']} cannot be created ({e}); "
                             "give another directory, or '' to turn the cache off") from None
        jax.config.update("jax_compilation_cache_dir", resolved["compile_cache"])


def describe(requested: Dict[str, Any], resolved: Dict[str, Any]) -> str:
    """One line for a run's header: each field's value, with what 'auto' became."""
    parts = []
    for k, v in resolved.items():
        r = requested.get(k, DEFAULTS[k])
        parts.append(f"{k}={v}" + (" (auto)" if r == "auto" else "") if k != "compile_cache"
                     else f"{k}={v or 'off'}")
    return f"compute on {jax.default_backend()}: " + ", ".join(parts)


def differences(stored: Optional[Dict[str, Any]], now: Dict[str, Any]) -> List[str]:
    """Fields whose resolution differs from the one stored with a run (printed on resume)."""
    if not stored:
        return []
    return [f"{k}: {stored.get(k)} -> {v}" for k, v in now.items() if k in stored and stored.get(k) != v]


def changes_since(stored_cfg, now: Dict[str, Any]) -> List[str]:
    """``differences`` from the ``compute_resolved`` record of a run's stored config (none for a
    config without one: a conversion, or a run from before the record existed)."""
    stored = stored_cfg.get("compute_resolved", None)
    return differences(stored.to_dict() if hasattr(stored, "to_dict") else stored, now)


def change_note(changes: List[str]) -> str:
    """The one line resume, sample and evaluate print for ``changes_since``."""
    return f"note: the compute section resolves differently from the stored run: {'; '.join(changes)}"
