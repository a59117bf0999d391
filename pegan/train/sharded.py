"""Data-parallel MS-PIE steps over a device mesh (axis ``data``).

``statistics='per_device'`` (default, the reference): each device runs the iteration on its
own shard with ``shard_map``: minibatch-stddev groups and the path-length running mean are per
device (``pl_mean`` is stored per device, sharded along ``data``), and the gradients are averaged
across devices before Adam, as DDP does. Parameters and optimiser states stay replicated.
``statistics='global'``: the same iteration as one program over the global batch sharded along
``data`` (XLA inserts the collectives), i.e. the 1-device step of the whole batch.
"""

from __future__ import annotations

import numpy as np

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from pegan.models.stylegan2 import image_size
from pegan.train import stylegan2 as tr

__all__ = ["make_mesh", "make_sharded_step", "replicate_state"]


def make_mesh(devices=None) -> Mesh:
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), ("data",))


def _state_specs(state, per_device_pl: bool):
    specs = jax.tree.map(lambda _: P(), state)
    return specs.replace(pl_mean=P("data")) if per_device_pl else specs


def replicate_state(state, mesh: Mesh, statistics: str = "per_device"):
    """Place a 1-device state on the mesh (per-device path-length means start equal)."""
    n = mesh.devices.size
    if statistics == "per_device":
        state = state.replace(pl_mean=jax.numpy.broadcast_to(state.pl_mean.reshape(-1)[:1], (n,)))
    specs = _state_specs(state, statistics == "per_device")
    # through host memory: the sharded copy never aliases the input's buffers, which the
    # (donating) step would otherwise delete
    return jax.tree.map(lambda x, s: jax.device_put(np.asarray(x), NamedSharding(mesh, s)), state, specs)


def make_sharded_step(mesh: Mesh, G, D, tcfg, scale, per_device_batch: int, statistics: str = "per_device"):
    """jit(step)(state, real_global) -> (state, metrics); ``real_global`` [n * b, H, W, 3] at the
    stored size, sharded along ``data``; the state is donated."""
    size = image_size(G.out_size, scale)
    b = per_device_batch
    pl_b = max(1, b // tcfg.pl_batch_shrink)
    n = mesh.devices.size
    if statistics == "per_device":
        def local(state, real):
            i = jax.lax.axis_index("data")
            key = jax.random.fold_in(jax.random.fold_in(state.key, state.step), i)
            rnd = tr.draw_randomness(key, G, scale, b, pl_b, tcfg.mix_prob)
            st = state.replace(pl_mean=state.pl_mean[0])
            new, metrics, _ = tr.train_step(st, tr.resize_reals(real, size), rnd, G=G, D=D, tcfg=tcfg,
                                            scale=scale, grad_reduce=lambda g: jax.lax.pmean(g, "data"))
            new = new.replace(pl_mean=new.pl_mean.reshape(1))
            scalars = {k: jax.lax.pmean(v, "data") for k, v in metrics.items() if k != "path_lengths"}
            return new, scalars

        def step(state, real):
            specs = _state_specs(state, True)
            fn = jax.shard_map(local, mesh=mesh, in_specs=(specs, P("data")), out_specs=(specs, P()),
                               check_vma=False)
            return fn(state, real)
    elif statistics == "global":
        def step(state, real):
            key = jax.random.fold_in(state.key, state.step)
            rnd = tr.draw_randomness(key, G, scale, n * b, max(1, n * b // tcfg.pl_batch_shrink), tcfg.mix_prob)
            real = jax.lax.with_sharding_constraint(real, NamedSharding(mesh, P("data")))
            new, metrics, _ = tr.train_step(state, tr.resize_reals(real, size), rnd, G=G, D=D, tcfg=tcfg,
                                            scale=scale)
            return new, {k: v for k, v in metrics.items() if k != "path_lengths"}
    else:
        raise ValueError(f"statistics must be 'per_device' or 'global', got {statistics!r}")
    return jax.jit(step, donate_argnums=(0,))
