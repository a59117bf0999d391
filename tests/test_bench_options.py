"""The benchmark's model options (scripts/bench/core.py): the compute forms and ``--set`` reach the
experiment's config the cases build their models from; a bad ``--set`` is refused by name."""

import argparse
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from bench import core  # noqa: E402

from pegan.configs import load_experiment  # noqa: E402
from pegan.errors import InputError  # noqa: E402


def _opts(**kw):
    base = dict(impl=None, conv=None, upfirdn=None, resize=None, dtype=None, set=None, variant="tiny")
    return argparse.Namespace(**{**base, **kw})


def test_set_and_forms_reach_the_config():
    plain = load_experiment(core.MODELS["f"], "tiny")
    cfg = core._set_compute(load_experiment(core.MODELS["f"], "tiny"),
                            _opts(conv="xla", set=["train.batch_gpu=1", "train.r1_interval=8"]))
    assert cfg.compute.conv_impl == "xla" and cfg.train.batch_gpu == 1 and cfg.train.r1_interval == 8
    assert (plain.train.batch_gpu, plain.train.r1_interval) != (1, 8)          # the overrides changed them
    cfg, G, D = core.stylegan_models("f", _opts(set=["train.batch_gpu=1"]))
    assert cfg.train.batch_gpu == 1


@pytest.mark.parametrize("kv, words", [("train.no_such=1", "has no 'train.no_such'"),
                                       ("train.r1_interval=x", "train.r1_interval")])
def test_a_bad_set_names_the_field(kv, words):
    with pytest.raises(InputError) as e:
        core._set_compute(load_experiment(core.MODELS["f"], "tiny"), _opts(set=[kv]))
    assert words in str(e.value) and "--set " in str(e.value)
