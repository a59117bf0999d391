"""Small helpers shared by the tests."""

import numpy as np


def nhwc(a):
    """Fixture tensors are NCHW; pegan is NHWC."""
    return np.asarray(a).transpose(0, 2, 3, 1)


def close_scaled(x, ref, what, rtol=1e-4, atol_rel=1e-5):
    """README_train's rule: |x - r| <= atol_rel * max|r| + rtol * |r|."""
    x, ref = np.asarray(x, np.float64), np.asarray(ref, np.float64)
    bound = atol_rel * np.abs(ref).max() + rtol * np.abs(ref)
    assert np.all(np.abs(x - ref) <= bound + 1e-12), f"{what}: max |d| {np.abs(x - ref).max()}"


def noise_images(folder, n: int, shape=(40, 40), seed: int = 0):
    """``n`` PNGs of uniform noise, ``shape`` (h, w), in ``folder``: a training folder for tests
    that need some images and not their content. Returns the folder."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, tuple(shape) + (3,), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


CFG_F = "mspie-stylegan2-config-f_c2_8xb3-1100kiters_ffhq-256-512"


def tiny_checkpoints(fixtures, root):
    """[config-f tiny, PE-SinGAN CSG tiny] converted from the fixtures into pegan checkpoint
    directories under ``root`` (paths as str)."""
    from pegan.cli import main

    sg, sn = root / "cfgf", root / "singan"
    assert main(["convert", str(fixtures / "mspie_stylegan2_config-f_tiny.mmgen.pth"), str(sg),
                 "--experiment", CFG_F, "--variant", "tiny"]) == 0
    assert main(["convert", str(fixtures / "pe_singan_csg_tiny.mmgen.pth"), str(sn),
                 "--experiment", "singan-csg_fish", "--variant", "tiny"]) == 0
    return [str(sg), str(sn)]


def header_bomb_npz(path, name: str = "w", shape=(10**6, 10**6), dtype="<f8"):
    """An .npz of one tiny member whose .npy header declares ``shape`` (8 TB by default):
    NumPy's reader allocates what a header declares before it reads the data."""
    import io
    import zipfile

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": tuple(shape)})
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{name}.npy", buf.getvalue() + b"\0" * 64)
    return path
