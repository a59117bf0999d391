"""The benchmark's parts: ``core`` (the cases, measurement helpers and report, run by
``scripts/bench.py``), ``flops`` (the FLOP counter) and ``reference`` (the reference figures).
The helpers the prepared GPU check reuses are importable from here."""

from bench.core import (CompileLog, case_dstep, device_peak_bytes, hlo_dumps, init_d, init_g,  # noqa: F401
                        program_gb)

__all__ = ["CompileLog", "case_dstep", "device_peak_bytes", "hlo_dumps", "init_d", "init_g", "program_gb"]
