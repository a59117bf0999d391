"""FLOPs of a JAX function from its jaxpr, counted as the reference figures are counted:
2 per multiply-add of ``conv_general_dilated`` and ``dot_general`` (nothing else), gradients
included when the function takes them, the taps that land on the inserted zeros of an lhs
dilation (a transposed convolution's input) not counted, padding taps counted (as PyTorch
counters count them), what no output needs dropped first (XLA drops it too), a ``cond`` with a
known index counting its branch (else the largest, or the smallest), a ``scan`` its length
times its body, a ``while`` loop one trip (noted). Tested in ``tests/test_bench_flops.py``
against counts made by hand and by NumPy loops.
"""

from __future__ import annotations

import numpy as np

__all__ = ["axis_taps", "conv_macs", "dot_macs", "count_flops", "flops_of"]


def axis_taps(n_in, n_out, k, stride, lo, lhs_d, rhs_d):
    """Number of (output, tap) pairs along one axis that do not land on an inserted zero of
    the lhs dilation (padding taps count, as PyTorch counters count them)."""
    if lhs_d == 1:
        return n_out * k
    o = np.arange(n_out)[:, None]
    t = np.arange(k)[None, :]
    q = o * stride + t * rhs_d - lo               # position in the dilated (unpadded) input
    inside = (q >= 0) & (q <= (n_in - 1) * lhs_d)
    hole = inside & (q % lhs_d != 0)
    return int((~hole).sum())


def conv_macs(eqn):
    """Multiply-adds of one ``conv_general_dilated`` equation."""
    p = eqn.params
    lhs, rhs = eqn.invars[0].aval, eqn.invars[1].aval
    out = eqn.outvars[0].aval
    dn = p["dimension_numbers"]
    lhs_spec, rhs_spec, out_spec = dn.lhs_spec, dn.rhs_spec, dn.out_spec
    nsp = len(lhs_spec) - 2
    rhs_in = rhs.shape[rhs_spec[1]]
    out_batch, out_feat = out.shape[out_spec[0]], out.shape[out_spec[1]]
    taps = 1
    for i in range(nsp):
        taps *= axis_taps(lhs.shape[lhs_spec[2 + i]], out.shape[out_spec[2 + i]], rhs.shape[rhs_spec[2 + i]],
                           p["window_strides"][i], p["padding"][i][0], p["lhs_dilation"][i], p["rhs_dilation"][i])
    return int(out_batch) * int(out_feat) * int(rhs_in) * int(taps)


def dot_macs(eqn):
    """Multiply-adds of one ``dot_general`` equation."""

    (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
    lhs, rhs = eqn.invars[0].aval.shape, eqn.invars[1].aval.shape
    free_r = [d for i, d in enumerate(rhs) if i not in rc and i not in rb]
    return int(np.prod(lhs, dtype=np.int64)) * int(np.prod(free_r, dtype=np.int64))


def count_flops(closed, cond_policy="max"):
    """2 x multiply-adds of conv_general_dilated and dot_general in a (closed) jaxpr, sub-jaxprs
    included. A cond whose index is a known constant counts that branch; otherwise the branch
    ``cond_policy`` picks ('max' or 'min'). A while loop counts one trip (and says so)."""
    from jax.extend import core as jcore

    notes = set()

    def walk(jaxpr, known, mult=1):
        total = 0
        for eqn in jaxpr.eqns:
            name = eqn.primitive.name
            if name == "conv_general_dilated":
                total += 2 * conv_macs(eqn) * mult
                continue
            if name == "dot_general":
                total += 2 * dot_macs(eqn) * mult
                continue
            if name == "cond":
                branches = eqn.params["branches"]
                idx = eqn.invars[0]
                val = None
                if isinstance(idx, jcore.Literal):
                    val = int(np.asarray(idx.val))
                elif idx in known:
                    val = int(np.asarray(known[idx]))
                if val is not None:
                    b = branches[min(max(val, 0), len(branches) - 1)]
                    total += walk(b.jaxpr, _consts(b), mult)
                else:
                    counts = [walk(b.jaxpr, _consts(b), mult) for b in branches]
                    total += max(counts) if cond_policy == "max" else min(counts)
                continue
            if name == "while":
                notes.add("while loop counted once")
            length = eqn.params.get("length", 1) if name == "scan" else 1
            for v in eqn.params.values():
                for sub in (v if isinstance(v, (list, tuple)) else (v,)):
                    if isinstance(sub, jcore.ClosedJaxpr):
                        total += walk(sub.jaxpr, _consts(sub), mult * length)
                    elif isinstance(sub, jcore.Jaxpr):
                        total += walk(sub, {}, mult * length)
        return total

    def _consts(cj):
        out = {}
        for var, c in zip(cj.jaxpr.constvars, cj.consts):
            try:
                if np.size(c) == 1:
                    out[var] = np.asarray(c)
            except Exception:
                pass
        return out

    jaxpr = closed.jaxpr
    try:  # count what runs: XLA drops what no output needs (e.g. custom_vjp weight grads of D in a G step)
        from jax._src.interpreters import partial_eval as pe

        jaxpr, _ = pe.dce_jaxpr(jaxpr, [True] * len(jaxpr.outvars))
    except Exception:  # pragma: no cover - private API moved
        notes.add("no dead-code elimination before counting")
    return walk(jaxpr, _consts(closed)), sorted(notes)


def flops_of(fn, *args, cond_policy="max"):
    import jax

    # a jitted function is traced through its Python function: a jit with compiler_options (the
    # trainers' CPU compile options) may not be nested in make_jaxpr's trace
    jitted = hasattr(fn, "lower") and hasattr(fn, "__wrapped__")     # (grad's wrapper has __wrapped__ too)
    return count_flops(jax.make_jaxpr(fn.__wrapped__ if jitted else fn)(*args), cond_policy)
