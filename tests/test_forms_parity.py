"""Every non-default form of the compute section against the reference fixtures, at the fixtures'
tolerances, through the public loader (``compute=`` is what ``--config.compute.*`` sets): the
generators (MS-PIE with and without padding, the baseline's transposed conv + blur), the
discriminators, one whole training iteration (forward and backward, Adam, EMA) and the
PE-SinGAN generator. The default forms run the same checks in their own test files, and
``lazy_branches`` has both forms there: the iteration fixture test runs the lazy terms behind
``lax.cond`` ('cond') and test_stylegan2_train's lazy test compares 'static' with it.

bfloat16 (``compute.dtype``, mixed precision) is not the reference's arithmetic: its distance
from float32 is measured and bounded instead (README, *Compute forms*)."""

import jax
import numpy as np
import pytest

import test_singan_parity as sp
import test_stylegan2_parity as p2
import test_stylegan2_train as st2
from pegan import compute
from pegan.configs import stylegan2_config
from pegan.models.stylegan2 import build_discriminator, build_generator

OP_FORMS = ("conv_impl", "upfirdn_impl", "modconv_impl", "resize_impl")


def non_default_forms():
    """Every op form other than the one 'auto' picks on this backend, in as few compute sections
    as cover them all: section i takes the i-th other form of each field (on CPU: conv xla +
    upfirdn conv + modconv grouped + resize gather, then upfirdn ref + modconv vmap). Each check below runs
    once per section, so the fixture tests' cost grows by two runs, not five."""
    auto = compute.resolve({})
    others = {f: [v for v in compute.CHOICES[f] if v != auto[f]] for f in OP_FORMS}
    return [{f: vs[i] for f, vs in others.items() if i < len(vs)} for i in range(max(map(len, others.values())))]


FORMS = non_default_forms()
IDS = [",".join(f"{k}={v}" for k, v in f.items()) for f in FORMS]


def test_every_non_default_form_is_covered():
    covered = {(k, v) for f in FORMS for k, v in f.items()}
    auto = compute.resolve({})
    assert covered == {(f, v) for f in OP_FORMS for v in compute.CHOICES[f] if v != auto[f]}
    assert len(covered) == 6 and len(FORMS) == 2


@pytest.mark.parametrize("form", FORMS, ids=IDS)
def test_mspie_generators_in_each_form(fixtures, form):
    for c in "fh":                 # zero padding + SPE; no padding + interp_pad + constant head
        p2.check_generator(fixtures, c, form)
    g = p2.load(fixtures, "f", compute=form)
    assert g.model.forms == compute.forms_of(compute.resolve({**compute.DEFAULTS, **form}))


@pytest.mark.parametrize("form", FORMS, ids=IDS)
def test_baseline_and_discriminators_in_each_form(fixtures, form):
    b = p2.build_baseline(fixtures, form)
    p2.test_baseline_generator_every_output(b)
    p2.test_baseline_discriminator(b)
    p2.check_discriminator(fixtures, form)


@pytest.mark.parametrize("form", FORMS, ids=IDS)
def test_one_training_iteration_in_each_form(fixtures, form):
    st2.check_iteration(st2.build_setup(fixtures, form), 2)


@pytest.mark.parametrize("form", [{k: f[k] for k in ("conv_impl", "resize_impl") if k in f} for f in FORMS[:1]],
                         ids=IDS[:1])
def test_singan_generator_in_each_conv_form(fixtures, form):
    sp.check_generator(fixtures, "interp-pad", form)   # a SinGAN's op forms: its convolutions and resizes


def test_bfloat16_stays_within_its_stated_distance_of_float32():
    """Mixed precision (bfloat16 activations and convolutions, float32 parameters) on the tiny
    config-f at initialisation: at chosen scales 0 and 2 no pixel is further from float32 than 4%
    of the image's largest magnitude (measured on CPU: 1.9% and 2.3%), and the discriminator's
    logits stay within 4% of their spread (measured: 2.3%)."""
    cfg = stylegan2_config(st2.NAME, "tiny")
    f32 = cfg.copy_and_resolve_references()
    bf = cfg.copy_and_resolve_references()
    bf.compute.dtype = "bfloat16"
    G32, Gbf = build_generator(f32), build_generator(bf)
    D32, Dbf = build_discriminator(f32), build_discriminator(bf)
    z = jax.random.normal(jax.random.PRNGKey(0), (4, 16))
    gv = G32.init(jax.random.PRNGKey(1), z, noise="const")
    x = jax.random.uniform(jax.random.PRNGKey(2), (4, 40, 40, 3), minval=-1, maxval=1)
    dv = D32.init(jax.random.PRNGKey(3), x)
    for s in (0, 2):
        a = np.asarray(jax.jit(lambda v: G32.apply(v, z, s, rng=jax.random.PRNGKey(4)))(gv), np.float32)
        b = np.asarray(jax.jit(lambda v: Gbf.apply(v, z, s, rng=jax.random.PRNGKey(4)))(gv))
        assert b.dtype == np.float32 and np.isfinite(b).all()
        rel = np.max(np.abs(a - b)) / np.max(np.abs(a))
        assert 0 < rel < 0.04, (s, rel)          # > 0: it does compute in another precision
    la, lb = np.asarray(jax.jit(D32.apply)(dv, x)), np.asarray(jax.jit(Dbf.apply)(dv, x), np.float32)
    assert np.max(np.abs(la - lb)) < 0.04 * np.ptp(la), (la, lb)
