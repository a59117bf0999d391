"""Metric feature extractors and metric arithmetic against the reference fixtures (README_extra §3-5)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import nhwc
from pegan.eval import metrics
from pegan.eval.inception import load_inception
from pegan.eval.vgg import load_vgg16
from pegan.eval.weights import INCEPTION, WeightFileError, weight_path


@pytest.fixture(scope="module")
def inception(fixtures):
    return load_inception(str(fixtures / "fid_inception_random_compact.pth"))


@pytest.fixture(scope="module")
def vgg(fixtures):
    return load_vgg16(str(fixtures / "vgg16_random_compact.pth"))


def _run(net, v, x):
    return jax.jit(lambda v, x: net.apply(v, x, return_blocks=True))(v, jnp.asarray(x))


@pytest.mark.parametrize("x", ["x64_b3", "x256_b2", "x299_b2"])
def test_inception_pool3(inception, fixtures, x):
    d = np.load(fixtures / "fid_inception_features.npz")
    net, v = inception
    feats, blocks = _run(net, v, nhwc(d[x]))
    np.testing.assert_allclose(feats, d[f"out.compact.pool3.{x}"], rtol=1e-3, atol=2e-3)
    # what mmgen's FID.feed stores: the same network on the BGR->RGB flipped input
    flipped, _ = _run(net, v, nhwc(d[x])[..., ::-1])
    np.testing.assert_allclose(flipped, d[f"out.compact.fid_feed.{x}"], rtol=1e-3, atol=2e-3)
    if x == "x64_b3":
        early = True
        for name in ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1",
                     "Conv2d_4a_3x3", "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a",
                     "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"]:
            got = np.asarray(blocks[name]).mean(axis=(1, 2))
            tol = (1e-4, 1e-4) if early else (1e-3, 2e-3)
            np.testing.assert_allclose(got, d[f"out.compact.spatial_mean.x64_b3.{name}"],
                                       rtol=tol[0], atol=tol[1], err_msg=name)
            early = early and name != "Mixed_5d"


def test_inception_resize(fixtures):
    from pegan.ops.resize import resize_bilinear

    d = np.load(fixtures / "fid_inception_features.npz")
    r = np.asarray(resize_bilinear(jnp.asarray(nhwc(d["x64_b3"])), (299, 299), align_corners=False))
    np.testing.assert_allclose(r[:, :16, :16], nhwc(d["out.compact.resized.x64_b3.corner16"]), atol=1e-6)
    np.testing.assert_allclose(r[:, 140:156, 140:156], nhwc(d["out.compact.resized.x64_b3.center16"]), atol=1e-6)


@pytest.mark.parametrize("x", ["x64_b3", "x256_b2", "x100x150_b2"])
def test_vgg16_features(vgg, fixtures, x):
    d = np.load(fixtures / "vgg16_features.npz")
    net, v = vgg
    feats, blocks = _run(net, v, nhwc(d[x]))
    np.testing.assert_allclose(feats, d[f"out.compact.feat4096.{x}"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(blocks["fc6_prerelu"], d[f"out.compact.fc6_prerelu.{x}"], rtol=1e-4, atol=1e-4)
    flipped, _ = _run(net, v, nhwc(d[x])[..., ::-1])
    np.testing.assert_allclose(flipped, d[f"out.compact.pr_feed.{x}"], rtol=1e-4, atol=1e-4)
    if x == "x64_b3":
        np.testing.assert_allclose(blocks["pool5"], nhwc(d["out.compact.pool5.x64_b3"]), rtol=1e-4, atol=1e-4)


def test_nearest_index_matches_reference(fixtures):
    from pegan.ops.resize import nearest_index

    d = np.load(fixtures / "vgg16_features.npz")
    for n in (64, 256, 100, 150):
        np.testing.assert_array_equal(nearest_index(n, 224), d[f"out.nearest_src_index.{n}_to_224"])


def test_weight_errors(tmp_path, fixtures, monkeypatch):
    monkeypatch.delenv(INCEPTION["env"], raising=False)
    with pytest.raises(WeightFileError, match="pt_inception-2015-12-05-6726825d.pth"):
        weight_path(INCEPTION, None)
    with pytest.raises(WeightFileError, match="does not exist"):
        load_inception(str(tmp_path / "nope.pth"))
    # the VGG file is a readable state dict, but not an Inception one
    with pytest.raises(WeightFileError, match="not an Inception"):
        load_inception(str(fixtures / "vgg16_random_compact.pth"))
    # a state dict with a layer missing and one mis-shaped
    from pegan.convert.torchpickle import load_pth, state_dict_of
    from torch_writer import save_pth
    sd = state_dict_of(load_pth(fixtures / "vgg16_random_compact.pth"))
    del sd["features.0.bias"]
    sd["classifier.3.weight"] = np.zeros((10, 4096), np.float32)
    save_pth(tmp_path / "bad.pth", sd)
    with pytest.raises(WeightFileError, match=r"missing \(1\)[\s\S]*fc7"):
        load_vgg16(str(tmp_path / "bad.pth"))


# -- metric arithmetic (metric_values.npz) -----------------------------------------------------

@pytest.fixture(scope="module")
def mv(fixtures):
    return np.load(fixtures / "metric_values.npz")


FID_CASES = {"gauss_shift": ("gauss.real", "gauss.fake"),
             "gauss_same_dist": ("gauss.real", "gauss.real2"),
             "identical": ("gauss.fake", "gauss.fake"),
             "rank_deficient_40_50x64": ("rankdef.real", "rankdef.fake")}


@pytest.mark.parametrize("method", ["sqrtm", "eigh"])
@pytest.mark.parametrize("case", sorted(FID_CASES))
def test_fid_values(mv, case, method):
    real, fake = (mv[k] for k in FID_CASES[case])
    got = metrics.fid_from_features(fake, real, method=method)
    for term in ("fid", "fid_mean", "fid_cov"):
        ref = float(mv[f"out.fid.{case}.{term}"])
        if case == "identical":  # about -1e-13: must not fail, and must be ~0
            assert abs(got[term]) < 1e-9, (term, got[term])
        else:
            np.testing.assert_allclose(got[term], ref, rtol=1e-6, err_msg=term)


def test_fid_statistics_and_summary(mv):
    mu, cov = metrics.feature_stats(mv["gauss.real"])
    assert mu.dtype == np.float32
    np.testing.assert_array_equal(mu, mv["out.fid.gauss_shift.real_mean"])
    np.testing.assert_allclose(cov, mv["out.fid.gauss_shift.real_cov"], rtol=1e-12, atol=1e-12)
    got = metrics.fid_from_features(mv["gauss.fake"], mv["gauss.real"][:500])
    np.testing.assert_allclose(got["fid"], float(mv["out.fid.summary_num_images500.fid"]), rtol=1e-6)


@pytest.mark.parametrize("case,real,fake,batches", [
    ("gauss_shift", "gauss.real", "gauss.fake", (10000, 10000)),
    ("gauss_shift_batched", "gauss.real", "gauss.fake", (256, 600)),
    ("gauss_same_dist", "gauss.real", "gauss.real2", (10000, 10000)),
    ("lattice_ties", "lattice.real", "lattice.fake", (10000, 10000)),
    ("lattice_ties", "lattice.real", "lattice.fake", (7, 50)),
])
def test_precision_recall_values(mv, case, real, fake, batches):
    got, det = metrics.precision_recall(mv[real], mv[fake], k=3, row_batch=batches[0], col_batch=batches[1],
                                        return_details=True)
    for name in ("precision", "recall"):
        assert got[name] == pytest.approx(float(mv[f"out.pr.{case}.{name}"]), abs=1e-6), name
        if f"out.pr.{case}.{name}_pred" in mv.files:
            np.testing.assert_array_equal(det[name]["radii"], mv[f"out.pr.{case}.{name}_kth_radius_fp16"])
            np.testing.assert_array_equal(det[name]["pred"], mv[f"out.pr.{case}.{name}_pred"])


def test_precision_recall_radius_rounding_matters(mv):
    """Without the float16 radii the lattice case changes 4 precision decisions (README_extra §5.4),
    so the test above can tell the two apart."""
    real, fake = mv["lattice.real"], mv["lattice.fake"]
    d = np.sqrt(((real[:, None, :].astype(np.float64) - real[None]) ** 2).sum(-1))
    kth32 = np.sort(d, axis=1)[:, 3].astype(np.float32)
    dpf = np.sqrt(((fake[:, None, :].astype(np.float64) - real[None]) ** 2).sum(-1)).astype(np.float32)
    unrounded = (dpf <= kth32[None]).any(1)
    assert np.count_nonzero(unrounded != mv["out.pr.lattice_ties.precision_pred"]) == 4


def test_the_metric_networks_trace_at_highest_precision_whatever_the_default():
    """Inside the evaluator, Inception and VGG16 run with float32 convolutions and matmuls at
    HIGHEST precision even when a run's matmul precision is lower (TF32 / bf16 passes)."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    from pegan.eval.evaluate import _at_highest

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(3)(nn.Conv(4, (3, 3))(x).mean((1, 2)))

    net, x = Net(), jnp.ones((1, 8, 8, 3))
    v = net.init(jax.random.PRNGKey(0), x)

    def precisions(fn):
        eqns = jax.make_jaxpr(fn)(v, x).jaxpr.eqns
        return {str(e.params.get("precision")) for e in eqns if e.primitive.name in ("conv_general_dilated", "dot_general")}

    with jax.default_matmul_precision("bfloat16"):
        low = precisions(lambda v, x: net.apply(v, x))
        high = precisions(lambda v, x: _at_highest(net.apply, v, x))
    assert not any("HIGHEST" in p for p in low)
    assert high and all("HIGHEST" in p for p in high), high
