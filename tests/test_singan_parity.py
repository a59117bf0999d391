"""PE-SinGAN against the reference fixtures through the public loader (.pth + .pkl), and the
conversion of every real SinGAN config's shapes."""

import json

import numpy as np
import pytest

import pegan.api as pg
from pegan.configs import recognise_filename
from pegan.configs.release import SINGAN as SINGAN_RELEASED
from pegan.convert import singan as sconv
from pegan.models import singan as sm

TOL = dict(rtol=1e-4, atol=1e-4)   # fixtures README: PE-SinGAN generators, eval and train-mode BN
VARIANTS = {"interp-pad": "singan_interp-pad_balloons", "csg": "singan-csg_fish",
            "spe-dim4": "singan_spe-dim4_bohemian", "spe-dim4-fish": "singan_spe-dim4_fish"}


def nhwc(a):
    return np.asarray(a).transpose(0, 2, 3, 1)


def close(actual, expected_nchw, what):
    np.testing.assert_allclose(np.asarray(actual), nhwc(expected_nchw), err_msg=what, **TOL)


@pytest.mark.parametrize("variant", VARIANTS)
def test_generator_every_output(fixtures, variant):
    check_generator(fixtures, variant)


def check_generator(fixtures, variant, compute=None):
    """Every output of the ``variant`` fixture; ``compute`` overrides the compute section."""
    g = pg.load(fixtures / f"pe_singan_{variant}_tiny.mmgen.pth", experiment=VARIANTS[variant],
                variant="tiny", keep_bgr=True, compute=compute)
    d = np.load(fixtures / f"pe_singan_{variant}_tiny.npz")
    G, v = g.model, g.variables
    fixed = [nhwc(d[f"fixed_noises.{i}"]) for i in range(5)]
    # the .pkl's noises and weights are the npz inputs
    for a, b in zip(g.state["fixed_noises"], fixed):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(g.state["noise_weights"], d["noise_weights"], rtol=1e-7)
    assert g.state["curr_stage"] == 4
    nw = list(g.state["noise_weights"])
    x1 = nhwc(d["input_sample_b1"])
    img, stages = G.apply(v, fixed, nw, 4, input_sample=x1, return_stages=True)
    close(img, d["out.recon.fake_img"], "recon")
    for i in range(4):
        close(stages[i], d[f"out.recon.prev_res.{i}"], f"prev_res {i}")
    close(G.apply(v, fixed, nw, 2, input_sample=x1), d["out.recon_curr_scale2.fake_img"], "stage 2")
    rand = [nhwc(d[f"rand_noise.{i}"]) for i in range(5)]
    img, stages = G.apply(v, rand, nw, 4, input_sample=nhwc(d["input_sample_b2"]), return_stages=True)
    close(img, d["out.rand.fake_img"], "rand")
    for i in range(4):
        close(stages[i], d[f"out.rand.prev_res.{i}"], f"rand prev_res {i}")
    other = [nhwc(d[f"nonnative_fixed_noises.{i}"]) for i in range(5)]
    img, stages = G.apply(v, other, nw, 4, input_sample=nhwc(d["nonnative_input_sample_b1"]), return_stages=True)
    close(img, d["out.nonnative_recon.fake_img"], "non-native size")
    for i in range(4):
        close(stages[i], d[f"out.nonnative_recon.prev_res.{i}"], f"non-native prev_res {i}")
    (img, new), = [G.apply(v, fixed, nw, 4, input_sample=x1, train=True, mutable=["batch_stats"])]
    close(img, d["out.recon_trainmode_bn.fake_img"], "train-mode BN")
    assert not np.allclose(new["batch_stats"]["blocks_0"]["head"]["bn"]["mean"],
                           v["batch_stats"]["blocks_0"]["head"]["bn"]["mean"])
    # no input sample: zeros of the (unpadded) stage-0 size, as mmagic (REFERENCE pitfall 22)
    close(G.apply(v, fixed, nw, 4), d["out.recon.fake_img"], "input None")


def test_rgb_default(fixtures):
    d = np.load(fixtures / "pe_singan_interp-pad_tiny.npz")
    g = pg.load(fixtures / "pe_singan_interp-pad_tiny.mmgen.pth", experiment=VARIANTS["interp-pad"], variant="tiny")
    assert g.info["color_order"] == "RGB"
    rand = [nhwc(d[f"rand_noise.{i}"]) for i in range(5)]
    img = np.asarray(g.model.apply(g.variables, rand, list(g.state["noise_weights"]), 4))
    np.testing.assert_allclose(img[..., ::-1], nhwc(d["out.rand.fake_img"]), **TOL)


@pytest.mark.parametrize("kind", ["bn", "nobn"])
def test_discriminator(fixtures, kind):
    from pegan.convert.torchpickle import load_pth, state_dict_of

    obj = load_pth(fixtures / f"singan_disc_{kind}_tiny.pth")
    from pegan.configs import singan_config
    c = singan_config("singan_interp-pad_balloons" if kind == "bn" else "singan_interp-pad_disc-nobn_balloons", "tiny")
    D = sm.build_discriminator(c)
    v = sconv.convert_singan_discriminator(state_dict_of(obj), False, sm.abstract_variables(D, c))
    d = np.load(fixtures / "singan_disc_tiny.npz")
    for s in range(5):
        x = nhwc(d[f"x_stage{s}"])
        close(D.apply(v, x, s), d[f"out.{kind}.eval.stage{s}"], f"eval {s}")
        out, _ = D.apply(v, x, s, train=True, mutable=["batch_stats"])
        close(out, d[f"out.{kind}.trainmode_bn.stage{s}"], f"train {s}")
    # the discriminator inside the generator checkpoints is the BN one
    if kind == "bn":
        Dl = pg.load(fixtures / "pe_singan_csg_tiny.mmgen.pth", which="discriminator",
                     experiment="singan-csg_fish", variant="tiny", keep_bgr=True)
        close(Dl.model.apply(Dl.variables, nhwc(d["x_stage3"]), 3), d["out.bn.eval.stage3"], "in checkpoint")


def zero_pkl(cfg, sizes):
    shapes = sm.noise_shapes(cfg, sizes)
    return {"fixed_noises": [np.zeros((1, c, h, w), np.float32) for h, w, c in shapes],
            "noise_weights": [1] + [0.1] * (len(sizes) - 1), "curr_stage": len(sizes) - 1}


def test_every_real_singan_config_converts(fixtures):
    data = json.loads((fixtures / "real_config_state_dict_shapes.json").read_text())
    seen = set()
    for cfg_file, c in data["configs"].items():
        if "singan" not in cfg_file:
            continue
        name = recognise_filename(cfg_file)
        assert name in SINGAN_RELEASED, cfg_file
        seen.add(name)
        shapes = data["structures"][c["structure"]]
        sd = {k: np.zeros(s, np.float32) for k, s in shapes.items()}
        from pegan.configs import singan_config
        full = singan_config(name)
        n = full.generator.num_scales
        # any consistent pyramid; the stage-0 noise channels follow the config file
        in0 = shapes["generator.blocks.0.head.conv.weight"][1]
        sizes = [(25 + 3 * t, 30 + 4 * t) for t in range(n + 1)]
        pkl = zero_pkl(full, sizes)
        if full.noise.first_fixed_noises_ch != 1:
            pkl["fixed_noises"][0] = np.zeros((1, in0) + pkl["fixed_noises"][0].shape[2:], np.float32)
        cfg, items, info = pg.convert_singan_reference(cfg_file, state_dict=sd, pkl_data=pkl)
        assert cfg.name == name and info["source"]["experiment_chosen_by"] == "file name"
        assert set(items) == {"generator", "discriminator", "singan"}
        if name == "singan_spe-dim8_bohemian":   # mmgeneration's config built it with dim 4
            assert cfg.generator.positional_encoding.embedding_dim == in0 // 2 == 4
            assert "pitfall 23" in info["source"]["notes"][0]
    assert seen == set(SINGAN_RELEASED)


def test_spe_dim8_file_with_dim8_shapes(fixtures):
    """A dim-8 generator (mmagic's config) converts as dim 8; its shapes are read, not assumed."""
    from pegan.configs import singan_config
    cfg = singan_config("singan_spe-dim8_bohemian")
    G = sm.build_generator(cfg)
    sizes = [(25 + 3 * t, 30 + 4 * t) for t in range(11)]
    abstract = sm.abstract_variables(G, cfg, sizes)
    assert abstract["params"]["blocks_0"]["head"]["kernel"].shape == (3, 3, 16, 32)
    facts = {"num_scales": 10, "stage0_in_channels": 16, "base_channels": 32, "min_feat_channels": 32,
             "spe_placeholder": True, "discriminator_bn": True, "stage0_noise_channels": 16}
    got, how, notes = sconv.identify_singan(facts, "singan_spe-dim8_bohemian_20210406_175858-7faa50f3.pth")
    assert got.generator.positional_encoding.embedding_dim == 8 and notes == [] and how == "file name"
    with pytest.raises(sconv.ConversionError, match="several SinGAN experiments"):
        sconv.identify_singan(dict(facts, stage0_in_channels=2, spe_placeholder=False, stage0_noise_channels=2))


def test_cli_convert_and_reconstruct(fixtures, tmp_path):
    import subprocess
    import sys
    run = [sys.executable, "-m", "pegan.cli"]
    out = tmp_path / "ck"
    r = subprocess.run(run + ["convert", str(fixtures / "pe_singan_spe-dim4-fish_tiny.mmgen.pth"), str(out),
                              "--experiment", "singan_spe-dim4_fish", "--variant", "tiny"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(run + ["sample", str(out), "--recon", "--out", str(tmp_path / "r.png"), "--npy",
                              str(tmp_path / "r.npy")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    d = np.load(fixtures / "pe_singan_spe-dim4-fish_tiny.npz")
    np.testing.assert_allclose(np.load(tmp_path / "r.npy")[..., ::-1], nhwc(d["out.recon.fake_img"]), **TOL)
    # without the .pkl: a clear error
    lone = tmp_path / "lone.pth"
    lone.write_bytes((fixtures / "pe_singan_csg_tiny.mmgen.pth").read_bytes())
    r = subprocess.run(run + ["convert", str(lone), str(tmp_path / "o2")], capture_output=True, text=True)
    assert r.returncode == 2 and ".pkl" in r.stderr and "Traceback" not in r.stderr
