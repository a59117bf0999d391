"""MS-PIE and baseline StyleGAN2 against the reference fixtures, through the public loader.

Every output of ``mspie_stylegan2_config-*_tiny``, ``mspie_disc_tiny`` and
``stylegan2_config-ab_tiny`` (images at every chosen scale, intermediate features, truncation,
mixing, the raw generator, both file layouts) at the fixtures' README tolerance. The fixtures
are BGR, so most checks load with ``keep_bgr=True``; the RGB default is checked separately.
"""

import numpy as np
import pytest

import pegan.api as pg
from pegan.models.stylegan2 import Generator

TOL = dict(rtol=1e-4, atol=1e-4)   # fixtures README, "MS-PIE and baseline generators, all discriminators"
CONFIGS = "cdefhijk"


def ms_name(c):
    return f"mspie-stylegan2-config-{c}_c2_8xb3-1100kiters_ffhq-256-512"


BASELINE = "stylegan2_c2_8xb3-1100kiters_ffhq-256x256"


def nhwc(a):
    return np.asarray(a).transpose(0, 2, 3, 1)


def close(actual, expected_nchw, what):
    np.testing.assert_allclose(np.asarray(actual), nhwc(expected_nchw), err_msg=what, **TOL)


def noises(d, key):
    return [nhwc(d[f"{key}.{i}"]) for i in range(7)]


_cache = {}


def load(fixtures, c, layout="mmgen", which="ema", keep_bgr=True, compute=None):
    key = (c, layout, which, keep_bgr, tuple(sorted((compute or {}).items())))
    if key not in _cache:
        _cache[key] = pg.load(fixtures / f"mspie_stylegan2_config-{c}_tiny.{layout}.pth", which=which,
                              experiment=ms_name(c), variant="tiny", keep_bgr=keep_bgr, compute=compute)
    return _cache[key]


@pytest.mark.parametrize("c", CONFIGS)
def test_mspie_generator_every_output(fixtures, c):
    check_generator(fixtures, c)


def check_generator(fixtures, c, compute=None):
    """Every output of config ``c``'s fixture; ``compute`` overrides the compute section."""
    d = np.load(fixtures / f"mspie_stylegan2_config-{c}_tiny.npz")
    g = load(fixtures, c, compute=compute)
    G, v, z = g.model, g.variables, d["z"]
    np.testing.assert_allclose(G.apply(v, z, method=Generator.mapping), d["out.w"], **TOL)

    (img, lat), state = G.apply(v, z, noise="const", return_latents=True, mutable=["intermediates"])
    close(img, d["out.img_cs0"], "img_cs0")
    np.testing.assert_allclose(lat, d["out.latent_cs0"], **TOL)
    feats = {k[4:]: val[0] for k, val in state["intermediates"].items()}
    names = [k[len("out.feat_cs0."):] for k in d.files if k.startswith("out.feat_cs0.")]
    assert len(names) == 12
    for name in names:
        close(feats[name], d[f"out.feat_cs0.{name}"], f"feat {name}")

    tl = d["truncation_latent"]
    close(G.apply(v, z, noise="const", truncation=0.7, mean_latent=tl), d["out.img_cs0_trunc0.7"], "trunc")
    for cs, key in [(2, "cs2"), (4, "cs4"), ((0, 2), "cs0x2")]:
        (img, state) = G.apply(v, z, cs, noise=noises(d, f"noise_{key}"), mutable=["intermediates"])
        close(img, d[f"out.img_{key}"], f"img_{key}")
        close(state["intermediates"]["out.head_input"][0], d[f"out.head_input_{key}"], f"head_input_{key}")
    close(G.apply(v, z, 2, noise=noises(d, "noise_cs2"), truncation=0.7, mean_latent=tl),
          d["out.img_cs2_trunc0.7"], "img_cs2_trunc0.7")
    close(G.apply(v, z, noise="const", z2=d["z2"], inject_index=3), d["out.img_mix_cs0"], "mix")

    orig = load(fixtures, c, which="orig", compute=compute)
    close(orig.model.apply(orig.variables, z, noise="const"), d["out.img_cs0_generator_orig"], "orig")
    # the EMA weights are a perturbed copy: a loader that mixed them up would fail above
    assert not np.allclose(nhwc(d["out.img_cs0_generator_orig"]), nhwc(d["out.img_cs0"]), atol=1e-3)


@pytest.mark.parametrize("c", "cik")
def test_mmagic_layout_equals_mmgen(fixtures, c):
    d = np.load(fixtures / f"mspie_stylegan2_config-{c}_tiny.npz")
    for which, out in (("ema", "img_cs0"), ("orig", "img_cs0_generator_orig")):
        g = load(fixtures, c, layout="mmagic", which=which)
        close(g.model.apply(g.variables, d["z"], noise="const"), d[f"out.{out}"], f"mmagic {which}")
        assert g.info["source"]["layout"] == "mmagic"
    g = load(fixtures, c, layout="mmagic")
    close(g.model.apply(g.variables, d["z"], 4, noise=noises(d, "noise_cs4")), d["out.img_cs4"], "cs4")


def test_rgb_default_reverses_channels(fixtures):
    d = np.load(fixtures / "mspie_stylegan2_config-f_tiny.npz")
    g = load(fixtures, "f", keep_bgr=False)
    assert g.info["color_order"] == "RGB"
    img = np.asarray(g.model.apply(g.variables, d["z"], 2, noise=noises(d, "noise_cs2")))
    np.testing.assert_allclose(img[..., ::-1], nhwc(d["out.img_cs2"]), **TOL)


def test_mean_latent_is_computed_at_conversion(fixtures):
    """The reference never stores it; ours is the mean of 4096 mapped z from seed 0 and lies
    close to the reference's own 4096-sample estimate."""
    d = np.load(fixtures / "mspie_stylegan2_config-f_tiny.npz")
    g = load(fixtures, "f")
    mine = np.asarray(g.variables["buffers"]["mean_latent"])
    w = np.asarray(g.model.apply(g.variables, np.random.default_rng(1).standard_normal((4096, 16), np.float32),
                                 method=Generator.mapping))
    spread = w.std(0) / np.sqrt(4096)
    assert np.all(np.abs(mine - d["truncation_latent"]) < 6 * spread + 1e-6)
    assert np.all(np.abs(mine - w.mean(0)) < 6 * spread + 1e-6)


# -- discriminators -------------------------------------------------------------------------

def test_mspie_discriminator(fixtures):
    check_discriminator(fixtures)


def check_discriminator(fixtures, compute=None):
    d = np.load(fixtures / "mspie_disc_tiny.npz")
    name = ms_name("f")
    for path in (fixtures / "mspie_disc_tiny.pth", fixtures / "mspie_disc_tiny.legacy.pth",
                 fixtures / "mspie_stylegan2_config-f_tiny.mmgen.pth")[: 1 if compute else 3]:
        D = pg.load(path, which="discriminator", experiment=name, variant="tiny", keep_bgr=True, compute=compute)
        for x in ("x32", "x48", "x40", "x32_b8", "x64_b2"):
            np.testing.assert_allclose(D.model.apply(D.variables, nhwc(d[x])), d[f"out.logits_{x}"],
                                       err_msg=f"{path.name} {x}", **TOL)
    logits, state = D.model.apply(D.variables, nhwc(d["x48"]), mutable=["intermediates"])
    for k in ("convs.0", "convs.1", "convs.2", "convs.3", "mbstd_layer", "final_conv"):
        close(state["intermediates"]["out." + k][0], d[f"out.feat_x48.{k}"], k)
    rgb = pg.load(fixtures / "mspie_disc_tiny.pth", which="discriminator", experiment=name, variant="tiny",
                  compute=compute)
    np.testing.assert_allclose(rgb.model.apply(rgb.variables, nhwc(d["x48"])[..., ::-1]),
                               d["out.logits_x48"], **TOL)


def test_discriminator_only_file_needs_a_name(fixtures):
    with pytest.raises(pg.ConversionError, match="several experiments"):
        pg.load(fixtures / "mspie_disc_tiny.pth", which="discriminator", variant="tiny")


# -- baseline (configs a/b) -----------------------------------------------------------------

@pytest.fixture(scope="module")
def baseline(fixtures):
    return build_baseline(fixtures)


def build_baseline(fixtures, compute=None):
    path = fixtures / "stylegan2_config-ab_tiny.mmgen.pth"
    kw = dict(experiment=BASELINE, variant="tiny", keep_bgr=True, compute=compute)
    return (pg.load(path, **kw), pg.load(path, which="orig", **kw),
            pg.load(path, which="discriminator", **kw), np.load(fixtures / "stylegan2_config-ab_tiny.npz"))


def test_baseline_generator_every_output(baseline):
    g, orig, _, d = baseline
    G, v, z, tl = g.model, g.variables, d["z"], d["truncation_latent"]
    inj = noises(d, "noise_inj")
    np.testing.assert_allclose(G.apply(v, z, method=Generator.mapping), d["out.w"], **TOL)
    for i, n in enumerate(noises(d, "noise_buf")):   # the stored noise buffers are the reference's
        np.testing.assert_array_equal(v["buffers"][f"injected_noise_{i}"], n)
    (img, lat), state = G.apply(v, z, noise="const", return_latents=True, mutable=["intermediates"])
    close(img, d["out.img_bufnoise"], "bufnoise")
    np.testing.assert_allclose(lat, d["out.latent_bufnoise"], **TOL)
    feats = {k[4:]: val[0] for k, val in state["intermediates"].items()}
    feats["constant_input"] = feats.pop("head_input")
    names = [k[len("out.feat_bufnoise."):] for k in d.files if k.startswith("out.feat_bufnoise.")]
    assert len(names) == 12
    for name in names:
        close(feats[name], d[f"out.feat_bufnoise.{name}"], name)
    calls = {
        "img_bufnoise_trunc0.7": G.apply(v, z, noise="const", truncation=0.7, mean_latent=tl),
        "img_injnoise": G.apply(v, z, noise=inj),
        "img_injnoise_trunc0.7": G.apply(v, z, noise=inj, truncation=0.7, mean_latent=tl),
        "img_mix_injnoise": G.apply(v, z, noise=inj, z2=d["z2"], inject_index=3),
        "img_w_input": G.apply(v, d["w_input"], noise="const", input_is_latent=True),
        "img_latent_per_layer": G.apply(v, d["latent_per_layer"], noise="const", input_is_latent=True),
        "img_bufnoise_generator_orig": orig.model.apply(orig.variables, z, noise="const"),
    }
    for k, val in calls.items():
        close(val, d[f"out.{k}"], k)
    img, lat = G.apply(v, z, noise="const", z2=d["z2"], inject_index=3, return_latents=True)
    close(img, d["out.img_mix"], "mix")
    np.testing.assert_allclose(lat, d["out.latent_mix"], **TOL)


def test_baseline_discriminator(baseline):
    _, _, D, d = baseline
    for x in ("x_b4", "x_b8", "x_b2"):
        np.testing.assert_allclose(D.model.apply(D.variables, nhwc(d[x])), d[f"out.logits_{x}"], **TOL)
    np.testing.assert_allclose(D.model.apply(D.variables, nhwc(d["out.img_bufnoise"])),
                               d["out.logits_fake_img"], **TOL)
    _, state = D.model.apply(D.variables, nhwc(d["x_b4"]), mutable=["intermediates"])
    for k in ("convs.0", "convs.1", "convs.2", "convs.3", "mbstd_layer", "final_conv"):
        close(state["intermediates"]["out." + k][0], d[f"out.feat_x_b4.{k}"], k)
    with pytest.raises(ValueError, match="32px input"):
        D.model.apply(D.variables, np.zeros((2, 48, 48, 3), np.float32))
