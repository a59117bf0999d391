"""The release table: what OpenMMLab published for each experiment (the seed table).

File names, download URLs, the mmgeneration config names and the reported FID50k / P&R10k.
Read by conversion (which experiment a downloaded file holds, and whether it arrived whole) and
by ``pegan experiments``; training, sampling and evaluation never read it, so an experiment of
your own needs no entry here.
"""

from __future__ import annotations

import os
import re
from typing import Dict, List, Optional

__all__ = ["URL", "STYLEGAN2", "SINGAN", "names", "entry", "recognise_filename", "release_url",
           "file_stem"]

URL = "https://download.openmmlab.com/mmediting/pe_in_gans/"
IMAGES = "https://download.openmmlab.com/mmediting/dataset/singan/"


def _s(paper, fid, prec, rec, file, mmgen=None, note=""):
    return dict(paper=paper, fid50k=fid, precision10k=prec, recall10k=rec, file=file, mmgen_config=mmgen,
                note=note)


# StyleGAN2 / MS-PIE on FFHQ (REFERENCE §1.1); metrics at the largest scale.
STYLEGAN2: Dict[str, dict] = {
    "stylegan2_c2_8xb3-1100kiters_ffhq-256x256": _s(
        "Tab.5 config-a", 5.56, 75.92, 51.24,
        "stylegan2_c2_config-a_ffhq_256x256_b3x8_1100k_20210406_145127-71d9634b.pth",
        "stylegan2_c2_ffhq_256_b3x8_1100k"),
    "stylegan2_c2_8xb3-1100kiters_ffhq-512x512": _s(
        "Tab.5 config-b", 4.91, 75.65, 54.58,
        "stylegan2_c2_config-b_ffhq_512x512_b3x8_1100k_20210406_145142-e85e5cf4.pth",
        "stylegan2_c2_ffhq_512_b3x8_1100k"),
    "mspie-stylegan2-config-c_c2_8xb3-1100kiters_ffhq-256-512": _s(
        "Tab.5 config-c", 3.35, 73.84, 55.77,
        "mspie-stylegan2_c2_config-c_ffhq_256-512_b3x8_1100k_20210406_144824-9f43b07d.pth"),
    "mspie-stylegan2-config-d_c2_8xb3-1100kiters_ffhq-256-512": _s(
        "Tab.5 config-d", 3.50, 73.28, 56.16,
        "mspie-stylegan2_c2_config-d_ffhq_256-512_b3x8_1100k_20210406_144840-dbefacf6.pth"),
    "mspie-stylegan2-config-e_c2_8xb3-1100kiters_ffhq-256-512": _s(
        "Tab.5 config-e", 3.15, 74.13, 56.88,
        "mspie-stylegan2_c2_config-e_ffhq_256-512_b3x8_1100k_20210406_144906-98d5a42a.pth"),
    "mspie-stylegan2-config-f_c2_8xb3-1100kiters_ffhq-256-512": _s(
        "Tab.5 config-f", 2.93, 73.51, 57.32,
        "mspie-stylegan2_c2_config-f_ffhq_256-512_b3x8_1100k_20210406_144927-4f4d5391.pth"),
    "mspie-stylegan2-config-g_c1_8xb3-1100kiters_ffhq-256-512": _s(
        "Tab.5 config-g", 3.40, 73.05, 56.45,
        "mspie-stylegan2_c1_config-g_ffhq_256-512_b3x8_1100k_20210406_144758-2df61752.pth"),
    "mspie-stylegan2-config-h_c2_8xb3-1100kiters_ffhq-256-512": _s(
        "Tab.5 config-h", 4.01, 72.81, 54.35,
        "mspie-stylegan2_c2_config-h_ffhq_256-512_b3x8_1100k_20210406_145006-84cf3f48.pth"),
    "mspie-stylegan2-config-i_c2_8xb3-1100kiters_ffhq-256-512": _s(
        "Tab.5 config-i", 3.76, 73.26, 54.71,
        "mspie-stylegan2_c2_config-i_ffhq_256-512_b3x8_1100k_20210406_145023-c2b0accf.pth"),
    "mspie-stylegan2-config-j_c2_8xb3-1100kiters_ffhq-256-512": _s(
        "Tab.5 config-j", 4.23, 73.11, 54.63,
        "mspie-stylegan2_c2_config-j_ffhq_256-512_b3x8_1100k_20210406_145044-c407481b.pth"),
    "mspie-stylegan2-config-k_c2_8xb3-1100kiters_ffhq-256-512": _s(
        "Tab.5 config-k", 4.17, 73.05, 51.07,
        "mspie-stylegan2_c2_config-k_ffhq_256-512_b3x8_1100k_20210406_145105-6d8cc39f.pth"),
    "mspie-stylegan2-config-f_c2_8xb3-1100kiters_ffhq-256-896": _s(
        "higher-res f", 4.10, 72.21, 50.29,
        "mspie-stylegan2_c2_config-f_ffhq_256-896_b3x8_1100k_20210406_144943-6c18ad5d.pth"),
    "mspie-stylegan2-config-f_c1_8xb2-1600kiters_ffhq-256-1024": _s(
        "higher-res f", 6.24, 71.79, 49.92,
        "mspie-stylegan2_c1_config-f_ffhq_256-1024_b2x8_1600k_20210406_144716-81cbdc96.pth",
        note="the name says 1600k but the config trains 1,500,002 iterations (REFERENCE pitfall 30)"),
}


def _g(image, file, mmgen=None, note=""):
    return dict(image=image, image_url=IMAGES + image, file=file + ".pth", pkl=file + ".pkl",
                mmgen_config=mmgen, note=note)


# PE-SinGAN (REFERENCE §1.4): no metrics were reported (qualitative results).
SINGAN: Dict[str, dict] = {
    "singan_interp-pad_balloons": _g("balloons.png", "singan_interp-pad_balloons_20210406_180014-96f51555"),
    "singan_interp-pad_disc-nobn_balloons": _g(
        "balloons.png", "singan_interp-pad_disc-nobn_balloons_20210406_180059-7d63e65d"),
    "singan_interp-pad_disc-nobn_fish": _g("fish-crop.jpg", "singan_interp-pad_disc-nobn_fis_20210406_175720-9428517a"),
    "singan-csg_fish": _g("fish-crop.jpg", "singan_csg_fis_20210406_175532-f0ec7b61", "singan_csg_fish"),
    "singan-csg_bohemian": _g("bohemian.png", "singan_csg_bohemian_20210407_195455-5ed56db2", "singan_csg_bohemian"),
    "singan_spe-dim4_fish": _g("fish-crop.jpg", "singan_spe-dim4_fish_20210406_175933-f483a7e3"),
    "singan_spe-dim4_bohemian": _g("bohemian.png", "singan_spe-dim4_bohemian_20210406_175820-6e484a35"),
    "singan_spe-dim8_bohemian": _g(
        "bohemian.png", "singan_spe-dim8_bohemian_20210406_175858-7faa50f3",
        note="mmgeneration's config file sets embedding_dim 4 (a copy of dim4), mmagic's 8: the converter "
             "reads the size from the checkpoint's shapes (REFERENCE pitfall 23)"),
}

_FILE_STAMP = re.compile(r"_\d{8}_\d{6}(-[0-9a-f]{8})?$")   # date stamp, then the SHA-256 digits


def file_stem(filename: str) -> str:
    """A file name without folder, extension, date stamp and digest."""
    base = os.path.basename(str(filename))
    for ext in (".pth", ".pkl", ".pt", ".ckpt", ".py"):
        if base.endswith(ext):
            base = base[: -len(ext)]
    return _FILE_STAMP.sub("", base)


def names(family: Optional[str] = None) -> List[str]:
    """The released experiments, all or of one family ('stylegan2' or 'singan')."""
    by = {"stylegan2": list(STYLEGAN2), "singan": list(SINGAN)}
    return by[family] if family else by["stylegan2"] + by["singan"]


def entry(name: str) -> Optional[dict]:
    """The release facts of experiment ``name`` (with ``family`` and ``url``), or None."""
    if name in STYLEGAN2:
        e = STYLEGAN2[name]
        return dict(e, family="stylegan2", url=URL + e["file"], mmgen_config=e["mmgen_config"] or file_stem(e["file"]))
    if name in SINGAN:
        e = SINGAN[name]
        return dict(e, family="singan", url=URL + e["file"], pkl_url=URL + e["pkl"],
                    mmgen_config=e["mmgen_config"] or name)
    return None


def recognise_filename(filename: str) -> Optional[str]:
    """The experiment of a released checkpoint file name (with or without its date stamp and
    digest), an mmgeneration config name or an experiment name; None if it is none of them."""
    stem = file_stem(filename)
    for name in names():
        e = entry(name)
        if stem in (name, file_stem(e["file"]), e["mmgen_config"]):
            return name
    return None


def release_url(filename: str) -> Optional[str]:
    """The download URL of a released checkpoint recognised by its file name, else None."""
    name = recognise_filename(filename)
    return None if name is None else entry(name)["url"]
