"""The benchmark's FLOP counter (scripts/bench/flops.py) against counts made by hand and, for a
transposed convolution's skipped zeros, by a plain Python loop."""

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from bench.flops import flops_of  # noqa: E402

DN = ("NHWC", "HWIO", "NHWC")


def conv(x, w, stride=1, padding="SAME", lhs_dilation=(1, 1)):
    return jax.lax.conv_general_dilated(x, w, (stride, stride), padding, lhs_dilation=lhs_dilation,
                                        dimension_numbers=DN)


def test_dense_and_convolutions():
    a, b = jnp.ones((3, 5)), jnp.ones((5, 7))
    assert flops_of(lambda a, b: a @ b, a, b)[0] == 2 * 3 * 5 * 7
    x, w = jnp.ones((2, 6, 6, 4)), jnp.ones((3, 3, 4, 5))
    # SAME, stride 1: every output pixel takes 9 taps (the padding taps counted)
    assert flops_of(conv, x, w)[0] == 2 * 2 * 6 * 6 * 5 * 4 * 9
    # VALID, stride 2: 2 x 2 outputs
    assert flops_of(lambda x, w: conv(x, w, 2, "VALID"), x, w)[0] == 2 * 2 * 2 * 2 * 5 * 4 * 9
    # a batched einsum is a dot_general with batch dims
    p, q = jnp.ones((4, 3, 5)), jnp.ones((4, 5, 2))
    assert flops_of(lambda p, q: jnp.einsum("bij,bjk->bik", p, q), p, q)[0] == 2 * 4 * 3 * 5 * 2


def _taps_by_loop(n_in, k, stride, pad, dil):
    """(output, tap) pairs of one axis of a conv over an input dilated by ``dil`` (zeros between
    samples) that do not land on an inserted zero."""
    n_dil = (n_in - 1) * dil + 1
    n_out = (n_dil + pad[0] + pad[1] - k) // stride + 1
    count = 0
    for o in range(n_out):
        for t in range(k):
            q = o * stride + t - pad[0]
            if 0 <= q < n_dil and q % dil:
                continue            # an inserted zero: skipped
            count += 1
    return count, n_out


@pytest.mark.parametrize("n_in,k,pad", [(5, 3, (2, 2)), (4, 4, (3, 2)), (6, 3, (1, 1))])
def test_lhs_dilation_skips_the_inserted_zeros(n_in, k, pad):
    taps, n_out = _taps_by_loop(n_in, k, 1, pad, 2)
    x, w = jnp.ones((1, n_in, n_in, 3)), jnp.ones((k, k, 3, 2))
    f = lambda x, w: conv(x, w, 1, [pad, pad], (2, 2))
    assert f(x, w).shape[1] == n_out
    assert flops_of(f, x, w)[0] == 2 * 1 * 2 * 3 * taps * taps


def test_gradients_dead_code_cond_and_scan():
    x, w = jnp.ones((2, 6, 6, 4)), jnp.ones((3, 3, 4, 5))
    fwd = flops_of(conv, x, w)[0]
    loss = lambda x, w: jnp.sum(conv(x, w))
    # the value, the input gradient and the weight gradient: three convolutions of the same size
    assert flops_of(jax.value_and_grad(loss, argnums=(0, 1)), x, w)[0] == 3 * fwd
    # the weight gradient not asked for is dead code; so is the forward of a linear loss's gradient
    assert flops_of(jax.value_and_grad(loss), x, w)[0] == 2 * fwd
    assert flops_of(jax.grad(loss), x, w)[0] == fwd
    a = jnp.ones((8, 8))
    big, small = 2 * 8 * 8 * 8 * 2, 2 * 8 * 8 * 8

    def branchy(i, a):
        return jax.lax.cond(i > 0, lambda a: (a @ a) @ a, lambda a: a @ a, a)

    assert flops_of(lambda a: branchy(1, a), a)[0] == big          # a known index: its branch
    assert flops_of(lambda a: branchy(0, a), a)[0] == small
    assert flops_of(branchy, jnp.int32(1), a)[0] == big             # unknown: the largest ...
    assert flops_of(branchy, jnp.int32(1), a, cond_policy="min")[0] == small   # ... or the smallest
    scanned = lambda a: jax.lax.scan(lambda c, _: (c @ a, None), a, None, length=4)[0]
    assert flops_of(scanned, a)[0] == 4 * small
    loop = lambda a: jax.lax.while_loop(lambda c: c[0] < 3, lambda c: (c[0] + 1, c[1] @ a), (0, a))[1]
    total, notes = flops_of(loop, a)
    assert total == small and "while loop counted once" in notes
    # what no output needs is not counted
    assert flops_of(lambda a: (a @ a, (a @ a) @ a)[0], a)[0] == small


def test_a_jit_with_compiler_options_is_counted_through_its_function():
    """The trainers jit with CPU compiler options, which JAX refuses inside another trace."""
    f = lambda a, b: a @ b
    a, b = jnp.ones((8, 16)), jnp.ones((16, 4))
    opts = jax.jit(f, compiler_options={"xla_cpu_use_fusion_emitters": False})
    assert flops_of(opts, a, b)[0] == flops_of(f, a, b)[0] == 2 * 8 * 16 * 4
