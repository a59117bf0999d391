import os
import pathlib
import tempfile

# XLA's CPU back end as compute.cpu_compile='quick' compiles (pegan/compute.py), for every test
# program: LLVM at -O0 and the loop fusion emitters instead of the MLIR ones. A tiny R1 + path-length
# training step compiles in 6.7 s instead of 34 s on a 2-core CPU and runs as correctly;
# PEGAN_TEST_FULL_OPT=1 keeps XLA's default. Set before JAX starts, inherited by the test subprocesses.
if not os.environ.get("PEGAN_TEST_FULL_OPT") and "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
                               " --xla_cpu_use_fusion_emitters=false").strip()

import jax  # noqa: E402
import pytest

# Compiled programs are cached on disk across test processes (the xdist workers and the CLI
# subprocesses, which read PEGAN_JAX_CACHE / JAX_COMPILATION_CACHE_DIR): the training tests
# compile the same steps more than once, and XLA compiles slowly on a 2-core CPU.
_CACHE = os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                               os.path.join(tempfile.gettempdir(), "pegan-test-jax-cache"))
jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)

REPO = pathlib.Path(__file__).resolve().parents[1]


def fixtures_dir() -> pathlib.Path:
    """The reference fixtures: $PEGAN_FIXTURES, else ../shared/fixtures beside the repo."""
    env = os.environ.get("PEGAN_FIXTURES")
    path = pathlib.Path(env) if env else REPO.parent / "shared" / "fixtures"
    if not (path / "manifest.json").exists():
        raise RuntimeError(
            f"reference fixtures not found at {path}: set PEGAN_FIXTURES to the folder that "
            "holds manifest.json (CI has it at ../shared/fixtures)")
    return path


@pytest.fixture(scope="session")
def fixtures() -> pathlib.Path:
    return fixtures_dir()
