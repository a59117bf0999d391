"""Where the metric networks' weight files come from, and loading them with pegan's torch-free reader.

Neither file can be downloaded by pegan (and no Python package ships them); the user passes a
path, by argument or environment variable:

========  ======================================  =============================================
network   environment variable                    file (download address)
========  ======================================  =============================================
FID       ``PEGAN_INCEPTION_WEIGHTS``             ``pt_inception-2015-12-05-6726825d.pth``
P&R       ``PEGAN_VGG16_WEIGHTS``                 ``vgg16-397923af.pth`` (torchvision)
========  ======================================  =============================================
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np

from pegan.convert.torchpickle import load_pth, state_dict_of
from pegan.errors import PeganError

__all__ = ["WeightFileError", "INCEPTION", "VGG16", "weight_path", "read_state_dict",
           "check_tree", "check_module"]


class WeightFileError(PeganError, ValueError):
    """A metric network's weight file is missing or does not fit the network."""

    def __init__(self, source, reason: str):
        super().__init__(f"{source}: {reason}")


INCEPTION = dict(
    name="FID Inception (pytorch-fid)", env="PEGAN_INCEPTION_WEIGHTS", flag="--inception",
    file="pt_inception-2015-12-05-6726825d.pth",
    url="https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
        "pt_inception-2015-12-05-6726825d.pth")
VGG16 = dict(
    name="VGG16 (torchvision, ImageNet)", env="PEGAN_VGG16_WEIGHTS", flag="--vgg16",
    file="vgg16-397923af.pth", url="https://download.pytorch.org/models/vgg16-397923af.pth")


def weight_path(spec: dict, path: Optional[str] = None) -> Path:
    """The weight file given by ``path`` or the environment; a clear error if there is none."""
    given = path or os.environ.get(spec["env"])
    how = f"download {spec['url']} and pass it with {spec['flag']} PATH or set {spec['env']}=PATH"
    if not given:
        raise WeightFileError(spec["name"], f"no weight file given; {how}")
    p = Path(given).expanduser()
    if not p.is_file():
        raise WeightFileError(spec["name"], f"weight file {p} does not exist; {how}")
    return p


def read_state_dict(p: Path) -> Dict[str, np.ndarray]:
    return state_dict_of(load_pth(p))


def check_tree(abstract, params, source, what: str):
    """Every leaf of ``abstract`` present in ``params`` with its shape; one error listing all misses."""
    want = {jax.tree_util.keystr(k): v.shape for k, v in jax.tree_util.tree_leaves_with_path(abstract)}
    got = {jax.tree_util.keystr(k): np.shape(v) for k, v in jax.tree_util.tree_leaves_with_path(params)}
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    bad = sorted(k for k in set(want) & set(got) if tuple(want[k]) != tuple(got[k]))
    if missing or extra or bad:
        lines = [f"does not fit {what}:"]
        if missing:
            lines.append(f"  missing ({len(missing)}): {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}")
        if extra:
            lines.append(f"  unexpected ({len(extra)}): {', '.join(extra[:8])}{' ...' if len(extra) > 8 else ''}")
        for k in bad[:8]:
            lines.append(f"  {k}: file {tuple(got[k])}, network {tuple(want[k])}")
        raise WeightFileError(source, "\n".join(lines))


def check_module(module, input_size: int, params, source, what: str):
    """``params`` must fit ``module``'s parameters for an input of ``input_size`` pixels."""
    abstract = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), jnp.zeros((1, input_size, input_size, 3))))
    check_tree(abstract["params"], params, source, what)
