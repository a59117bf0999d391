"""Data-parallel MS-PIE steps over a device mesh (axis ``data``), on one or many hosts.

``statistics='per_device'`` (default, the reference): each device runs the iteration on its
own shard with ``shard_map``: minibatch-stddev groups and the path-length running mean are per
device (``pl_mean`` is stored per device, sharded along ``data``), and the gradients are averaged
across devices before Adam, as DDP does. Parameters and optimiser states stay replicated.
``statistics='global'``: the same iteration as one program over the global batch sharded along
``data`` (XLA inserts the collectives), i.e. the 1-device step of the whole batch.

The state is created on the mesh (``init_state``: one jitted program with the output shardings,
no host copy), moved to the host for checkpoints and samples with ``to_host`` (a collective for
leaves that are sharded across hosts) and put back with ``put_state``. The mesh spans every
device of every process (``jax.devices()``), so the same code runs on one CPU, a GPU node and a
TPU pod after ``jax.distributed.initialize()``.
"""

from __future__ import annotations

import numpy as np

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from pegan.errors import InputError
from pegan.models.stylegan2 import image_size
from pegan.train import stylegan2 as tr

__all__ = ["make_mesh", "make_sharded_step", "init_state", "put_state", "replicate_state", "to_host",
           "state_shardings", "pl_shape", "STATISTICS"]

STATISTICS = ("per_device", "global")


def make_mesh(devices=None) -> Mesh:
    """A 1-D ``data`` mesh over ``devices`` (default: all devices of all processes)."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), ("data",))


def _check(statistics: str):
    if statistics not in STATISTICS:
        raise InputError(f"statistics must be 'per_device' or 'global', got {statistics!r}")


def _state_specs(state, per_device_pl: bool):
    specs = jax.tree.map(lambda _: P(), state)
    return specs.replace(pl_mean=P("data")) if per_device_pl else specs


def state_shardings(state, mesh: Mesh, statistics: str = "per_device"):
    """NamedShardings of a train state (``state`` may be abstract): everything replicated but the
    per-device path-length means."""
    _check(statistics)
    return jax.tree.map(lambda s: NamedSharding(mesh, s), _state_specs(state, statistics == "per_device"))


def pl_shape(mesh: Mesh, statistics: str, slots: int = 1):
    """The shape of the state's path-length running means: ``slots`` per device (one per
    accumulation pass, see ``tr.train_step``) along ``data`` with 'per_device' statistics; with
    'global' one mean per pass (a scalar without accumulation)."""
    if statistics == "per_device":
        return (mesh.devices.size * slots,)
    return (slots,) if slots > 1 else ()


def _with_pl_shape(state, mesh: Mesh, statistics: str, slots: int = 1):
    shape = pl_shape(mesh, statistics, slots)
    pl = jnp.reshape(state.pl_mean, (-1,))
    if pl.shape != shape:
        pl = jnp.broadcast_to(jnp.mean(pl), shape)
    return state.replace(pl_mean=pl)


def init_state(G, D, tcfg, seed: int, mesh: Mesh, statistics: str = "per_device", slots: int = 1):
    """The initial train state of ``tr.init_state(G, D, tcfg, PRNGKey(seed))``, created sharded:
    one program whose outputs land on the mesh (every process runs it; nothing is copied).
    ``slots``: path-length running means per device (``pl_shape``)."""
    def init():
        return _with_pl_shape(tr.init_state(G, D, tcfg, jax.random.PRNGKey(seed)), mesh, statistics, slots)

    shardings = state_shardings(jax.eval_shape(init), mesh, statistics)
    return jax.jit(init, out_shardings=shardings)()


def to_host(tree):
    """NumPy copies of a pytree of (possibly multi-host) arrays. Replicated leaves are read from
    a local shard; leaves sharded across processes are all-gathered, a collective that every
    process must reach in the same order."""
    from jax.experimental import multihost_utils

    def one(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            if x.sharding.is_fully_replicated:
                return np.asarray(x.addressable_data(0))
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(x)

    return jax.tree.map(one, tree)


def put_state(host_state, mesh: Mesh, statistics: str = "per_device", slots: int = 1):
    """Place a host (NumPy) train state on the mesh; every process passes the same values.
    Path-length means saved with another device or pass count (``pl_shape``) start from their
    mean."""
    state = jax.tree.map(np.asarray, host_state)
    pl = state.pl_mean.reshape(-1)
    shape = pl_shape(mesh, statistics, slots)
    if pl.shape != shape:
        pl = np.full(shape, pl.mean(), pl.dtype)
    state = state.replace(pl_mean=pl)
    shardings = state_shardings(state, mesh, statistics)
    # from host memory: the result never aliases the input's buffers, which a donating step
    # would otherwise delete
    return jax.tree.map(lambda x, s: jax.make_array_from_callback(x.shape, s, lambda idx: x[idx]),
                        state, shardings)


def replicate_state(state, mesh: Mesh, statistics: str = "per_device", slots: int = 1):
    """Place a 1-device state on the mesh (per-device path-length means start equal)."""
    return put_state(to_host(state), mesh, statistics, slots)


PHASES = ("step", "d", "g")


def make_sharded_step(mesh: Mesh, G, D, tcfg, scale, per_device_batch: int, statistics: str = "per_device",
                      state=None, lazy=None, passes: int = 1, phase: str = "step"):
    """jit(step)(state, real_global) -> (state, metrics); ``real_global`` [n * b, H, W, 3] at the
    stored size, sharded along ``data``; the state is donated and comes back with the shardings
    of ``state_shardings`` (so the next call does not recompile). ``state``: the train state (or
    its abstract form) that fixes those shardings (default: the form ``init_state`` makes, with
    ``passes`` path-length slots). ``lazy``: (R1 due, path length due) fixed in the program
    (``tr.train_step``), or None.

    ``phase``: 'step' (the whole iteration), or one half of it as its own program: 'd'
    (``tr.d_half``: ``(state, real) -> (state, metrics, sign)``) and 'g' (``tr.g_half``:
    ``(state, sign) -> (state, metrics)``, on the state and the replicated ``sign`` the 'd'
    program returned); the two in turn are the 'step' program. Each half is compiled once per
    value of its own lazy term, so the CPU's per-kind programs share them.

    ``passes`` > 1: gradient accumulation; each device runs its b images as ``passes`` passes of
    ``b / passes`` (``tr.train_step``). Pass p of device i draws the randomness of device
    ``i * passes + p`` of a 1-pass step and keeps its own path-length mean, so the step equals
    the 1-pass step on ``passes`` times the devices (per_device statistics); with 'global'
    statistics a pass is ``b / passes`` images of every device."""
    _check(statistics)
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
    k = int(passes)
    if per_device_batch % k:
        raise InputError(f"{per_device_batch} images per device do not split into {k} passes")
    if state is None:
        state = jax.eval_shape(lambda: _with_pl_shape(tr.init_state(G, D, tcfg, jax.random.PRNGKey(0)), mesh,
                                                      statistics, k))
    state_sh = state_shardings(state, mesh, statistics)
    size = image_size(G.out_size, scale)
    b = per_device_batch
    n = mesh.devices.size
    per_device = statistics == "per_device"
    kw = dict(G=G, D=D, tcfg=tcfg, scale=scale, lazy=lazy, passes=k)
    if per_device:
        kw["grad_reduce"] = lambda g: jax.lax.pmean(g, "data")

    def randomness(state):
        key = jax.random.fold_in(state.key, state.step)
        if per_device:
            i = jax.lax.axis_index("data")
            if k == 1:
                return tr.step_randomness(jax.random.fold_in(key, i), G, tcfg, scale, b)
            return tr.pass_randomness(key, G, tcfg, scale, b // k, k, first=i * k)
        if k == 1:
            return tr.step_randomness(key, G, tcfg, scale, n * b)
        return tr.pass_randomness(key, G, tcfg, scale, n * b // k, k)

    def reals(real):
        if per_device:
            return tr.resize_reals(real, size, G.forms.resize)
        real = jax.lax.with_sharding_constraint(real, NamedSharding(mesh, P("data")))
        real = tr.resize_reals(real, size, G.forms.resize)
        if k > 1:           # pass p: images p*b/k .. (p+1)*b/k of every device (no data moves)
            real = real.reshape((n, k, b // k) + real.shape[1:]).swapaxes(0, 1)
            real = real.reshape((k, n * b // k) + real.shape[3:])
            real = jax.lax.with_sharding_constraint(real, NamedSharding(mesh, P(None, "data")))
        return real

    def scalars(metrics):
        out = {name: v for name, v in metrics.items() if name != "path_lengths"}
        return {name: jax.lax.pmean(v, "data") for name, v in out.items()} if per_device else out

    def d_local(state, real):
        mid, d_terms, _, sign = tr.d_half(state, reals(real), randomness(state), **kw)
        return mid, scalars(tr.d_metrics(d_terms)), sign

    def g_local(state, sign):
        new, g_terms, _ = tr.g_half(state, sign, randomness(state), images=n * b, **kw)
        return new, scalars(tr.g_metrics(new, g_terms))

    def step_local(state, real):
        mid, dm, sign = d_local(state, real)
        new, gm = g_local(mid, sign)
        return new, dict(dm, **gm)

    local = {"step": step_local, "d": d_local, "g": g_local}[phase]
    second = P() if phase == "g" else P("data")          # the sign of the 'g' half, else the reals
    outs = (P(), P()) if phase == "d" else (P(),)

    def fn(state, x):
        if not per_device:
            return local(state, x)
        specs = _state_specs(state, True)
        return jax.shard_map(local, mesh=mesh, in_specs=(specs, second), out_specs=(specs,) + outs,
                             check_vma=False)(state, x)

    # the program's name in profiles and HLO dumps: jit_step, jit_d_step, jit_g_step
    fn.__name__ = fn.__qualname__ = "step" if phase == "step" else f"{phase}_step"
    rep = NamedSharding(mesh, P())
    return jax.jit(fn, donate_argnums=(0,), in_shardings=(state_sh, NamedSharding(mesh, second)),
                   out_shardings=(state_sh,) + (rep,) * len(outs))
