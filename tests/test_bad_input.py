"""Nothing the user owns is damaged: grey 16-bit images are scaled rather than clipped."""

import numpy as np
from PIL import Image


def grey16(tmp_path):
    """A 16-bit grey PNG over the whole range, and what 8 bits it must give: round(v / 257)."""
    v = np.concatenate([np.array([0, 128, 129, 385, 386, 32767, 32896, 65406, 65407, 65535]),
                        np.random.default_rng(0).integers(0, 65536, 54)]).reshape(8, 8).astype(np.uint16)
    path = tmp_path / "grey16" / "g.png"
    path.parent.mkdir()
    Image.fromarray(v).save(path)
    assert Image.open(path).mode == "I;16"
    want = ((v.astype(np.int64) + 128) // 257).astype(np.uint8)       # integer rounding, no floats
    return path, v, np.repeat(want[..., None], 3, axis=-1)


def test_sixteen_bit_grey_is_scaled_from_its_full_range_wherever_images_are_read(tmp_path):
    from pegan import data as D
    from pegan.eval.evaluate import RealImages
    from pegan.imageio import read_image, to_rgb
    from pegan.train.stylegan2_loop import ImageFolder

    path, v, want = grey16(tmp_path)
    np.testing.assert_array_equal(read_image(path), want)
    np.testing.assert_array_equal(D.load_image(path, 8)[0], want)
    np.testing.assert_array_equal(RealImages(path.parent).read(0), want)
    np.testing.assert_array_equal(ImageFolder(path.parent, 8).images[0], want.astype(np.float32) / 127.5 - 1.0)
    # big-endian 16-bit, and a 16-bit PGM (Pillow opens it as 32-bit mode I from I;16B samples)
    np.testing.assert_array_equal(np.asarray(to_rgb(Image.fromarray(v.astype(">u2")))), want)
    Image.fromarray(v).save(tmp_path / "g.pgm")
    assert Image.open(tmp_path / "g.pgm").mode == "I"
    np.testing.assert_array_equal(read_image(tmp_path / "g.pgm"), want)
    # mode I made in memory: by its values (8-bit values stay, 32-bit ones scale from 2**31 - 1)
    small = np.arange(64, dtype=np.int32).reshape(8, 8) * 4
    np.testing.assert_array_equal(np.asarray(to_rgb(Image.fromarray(small)))[..., 0], small)
    big = np.arange(64, dtype=np.int64).reshape(8, 8) * 33_000_000
    np.testing.assert_array_equal(np.asarray(to_rgb(Image.fromarray(big.astype(np.int32))))[..., 0],
                                  (big * 255 * 2 + (2**31 - 1)) // (2 * (2**31 - 1)))
    # mode F: 0..1 when every value lies in it, else 8-bit levels; clipped
    f = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    np.testing.assert_array_equal(np.asarray(to_rgb(Image.fromarray(f)))[..., 0],
                                  np.floor(f.astype(np.float64) * 255 + 0.5).astype(np.uint8))
    levels = np.array([[-3.0, 0.4, 254.6, 300.0]], np.float32)
    np.testing.assert_array_equal(np.asarray(to_rgb(Image.fromarray(levels)))[..., 0], [[0, 0, 255, 255]])
    # `pegan prepare` stores the same pixels
    info = D.prepare(path.parent, tmp_path / "ds", 8)
    with D.PreparedImages(tmp_path / "ds", process_index=0, process_count=1, prefetch=0, workers=0) as ds:
        np.testing.assert_array_equal(ds.read(0), want)
    assert info["num_images"] == 1
