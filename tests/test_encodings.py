import json
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pegan import encodings as E

ATOL = 1e-5  # fixtures README: pe_modules.npz


@pytest.fixture(scope="module")
def pe(fixtures):
    cases = json.loads((fixtures / "manifest.json").read_text())["pe_cases"]
    return cases, np.load(fixtures / "pe_modules.npz")


def nchw_to_nhwc(a):
    return np.transpose(a, (0, 2, 3, 1))


def test_spe_fixture_cases_stateful(pe):
    """Every SPE case, calls in order on one instance, as the fixture was made."""
    cases, data = pe
    for name, spec in cases["spe"].items():
        ref = E.ReferenceSPE(**spec["ctor"])
        for j, call in enumerate(spec["calls"]):
            expected = data[f"spe.{name}.call{j}.output"]
            if call["kind"] == "grid":
                n, _, h, w = call["shape"]
                got = ref.make_grid2d(h, w, n, call.get("center_shift"))
                np.testing.assert_allclose(got, nchw_to_nhwc(expected), atol=ATOL, rtol=0,
                                           err_msg=f"{name} call{j}")
            else:
                got = ref.lookup(np.asarray(call["value"]))
                np.testing.assert_allclose(got, expected, atol=ATOL, rtol=0, err_msg=name)


def test_spe_fixture_first_calls_through_pure_function_and_module(pe):
    """A fresh module's first call = the pure function = the Flax module."""
    cases, data = pe
    for name, spec in cases["spe"].items():
        call = spec["calls"][0]
        expected = data[f"spe.{name}.call0.output"]
        ctor = dict(spec["ctor"])
        if call["kind"] == "seq":
            seq = np.asarray(call["value"])
            np.testing.assert_allclose(E.spe_lookup(seq, **ctor), expected, atol=ATOL, rtol=0)
            jitted = jax.jit(lambda s: E.spe_lookup(s, **ctor))(jnp.asarray(seq))
            np.testing.assert_allclose(np.asarray(jitted), expected, atol=ATOL, rtol=0)
            continue
        n, c, h, w = call["shape"]
        if call.get("center_shift") is not None:
            ctor["center_shift"] = call["center_shift"]
        dim = ctor.pop("embedding_dim")
        got = E.spe_grid(h, w, dim, batch=n, **ctor)
        np.testing.assert_allclose(got, nchw_to_nhwc(expected), atol=ATOL, rtol=0, err_msg=name)
        module = E.SPE2d(embedding_dim=dim, **ctor)
        x = jnp.zeros((n, h, w, c))
        out = jax.jit(lambda v: module.apply({}, v))(x)
        assert out.shape == (n, h, w, 2 * dim)
        np.testing.assert_allclose(np.asarray(out), nchw_to_nhwc(expected), atol=ATOL, rtol=0)


def test_csg_fixture_cases(pe):
    cases, data = pe
    for name, shape in cases["csg"].items():
        n, c, h, w = shape
        expected = nchw_to_nhwc(data[f"csg.{name}.output"])
        np.testing.assert_allclose(E.csg_grid(h, w, batch=n), expected, atol=ATOL, rtol=0)
        out = E.CSG2d().apply({}, jnp.zeros((n, h, w, c)))
        np.testing.assert_allclose(np.asarray(out), expected, atol=ATOL, rtol=0)


def test_spe_sanity_values_float64():
    """REFERENCE §4.8, computed independently in float64."""
    g = E.spe_grid(6, 10, 256, center_shift=100)[0]
    j = np.arange(10) + 1.0
    i = np.arange(6) + 1.0
    np.testing.assert_allclose(g[0, :, 0], np.sin(j), atol=1e-5)
    np.testing.assert_allclose(g[0, :, 127], np.sin(j * 1e-4), atol=1e-6)
    np.testing.assert_allclose(g[0, :, 128], np.cos(j), atol=1e-5)
    np.testing.assert_allclose(g[0, :, 255], np.cos(j * 1e-4), atol=1e-6)
    np.testing.assert_allclose(g[:, 0, 256], np.sin(i), atol=1e-5)
    np.testing.assert_allclose(g[:, 0, 384], np.cos(i), atol=1e-5)
    kappa = np.log(10000) / 127
    np.testing.assert_allclose(g[0, :, 5], np.sin(j * np.exp(-5 * kappa)), atol=1e-5)
    # top-left anchoring: the 4x4 grid is the top-left crop of the 8x8 grid
    np.testing.assert_array_equal(E.spe_grid(4, 4, 8, center_shift=100),
                                  E.spe_grid(8, 8, 8, center_shift=100)[:, :4, :4])
    np.testing.assert_allclose(E.csg_grid(4, 4)[0, 0, :, 0], [-1, -1 / 3, 1 / 3, 1], atol=1e-7)


def test_spe_zero_column_and_table_rebuild():
    # SinGAN dim 4, centre 200, width 500: shift = 200 - 250, coordinate 0 at column 49
    g = E.spe_grid(4, 500, 4, init_size=512, center_shift=200)[0]
    assert np.all(g[:, 49, :4] == 0) and np.all(g[:, 50, :4] != 0)
    np.testing.assert_allclose(g[0, 50, 0], np.sin(50.0), atol=1e-5)  # counting resumes at 50
    # growing the table drops div_half_dim (reference quirk)
    small = E.spe_grid(2, 6, 8, init_size=8, div_half_dim=True)
    grown = E.spe_grid(2, 20, 8, init_size=8, div_half_dim=True)
    plain = E.spe_grid(2, 20, 8, init_size=8, div_half_dim=False)
    np.testing.assert_array_equal(grown, plain)
    assert not np.allclose(small, grown[:, :, :6])


def test_centered_spe():
    """Centre-anchored option: centre at center_shift, smaller grid = centred crop."""
    f = E.spe_frequencies(8)
    g7 = E.spe_grid(5, 7, 8, center_shift=0, centered=True)[0]
    g11 = E.spe_grid(9, 11, 8, center_shift=0, centered=True)[0]
    np.testing.assert_allclose(g7, g11[2:7, 2:9], atol=1e-6)
    np.testing.assert_allclose(g7[2, 3, :4], np.sin(0.0 * f), atol=1e-7)
    np.testing.assert_allclose(g7[2, 3, 4:8], np.cos(0.0 * f), atol=1e-7)
    g6 = E.spe_grid(6, 6, 8, center_shift=10, centered=True)[0]
    np.testing.assert_allclose(g6[0, :, 0], np.sin(10 + np.arange(6) - 2.5), atol=1e-5)
    assert not np.allclose(E.spe_grid(6, 6, 8, center_shift=10), g6[None])


def test_encodings_drop_into_a_flax_model():
    """The README example: concatenate an encoding to features inside another Flax model."""

    class Tiny(nn.Module):
        @nn.compact
        def __call__(self, x):
            pe = E.SPE2d(embedding_dim=4, center_shift=100)(x)
            csg = E.CSG2d()(x)
            return nn.Conv(3, (3, 3))(jnp.concatenate([x, pe, csg], axis=-1))

    x = jnp.ones((2, 5, 7, 3))
    params = Tiny().init(jax.random.PRNGKey(0), x)
    assert params["params"]["Conv_0"]["kernel"].shape == (3, 3, 3 + 8 + 2, 3)
    y = jax.jit(Tiny().apply)(params, jnp.ones((2, 9, 4, 3)))  # any size, no parameters to resize
    assert y.shape == (2, 9, 4, 3)


def test_encoding_from_config():
    enc = E.encoding_from_config(dict(type="SPE", embedding_dim=256, padding_idx=0, init_size=256,
                                      center_shift=100))
    assert isinstance(enc, E.SPE2d) and enc.channels == 512
    assert E.encoding_channels(dict(type="CSG")) == 2 and E.encoding_from_config(None) is None
    with pytest.raises(ValueError, match="unknown positional encoding"):
        E.encoding_from_config(dict(type="Fourier"))
    with pytest.raises(ValueError, match="even"):
        E.spe_grid(4, 4, 7)


def test_import_encodings_pulls_in_no_training_data_or_checkpoint_code():
    code = ("import sys; from pegan import encodings; "
            "bad = [m for m in sys.modules if m.startswith(('pegan.train', 'pegan.data', "
            "'pegan.convert', 'pegan.checkpoint', 'pegan.metrics', 'pegan.models', 'orbax', "
            "'tensorflow', 'tensorflow_datasets', 'clu', 'optax'))]; print(bad); assert not bad")
    subprocess.run([sys.executable, "-c", code], check=True)
