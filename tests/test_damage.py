"""Damage a file shows before it is decoded."""

import warnings

import numpy as np
import pytest
from PIL import Image

from colorcube.errors import ImageReadError
from colorcube.inputs.damage import find_damage
from colorcube.inputs.images import read_gray
from colorcube.testing import damage_png


@pytest.fixture()
def rgb8(photos):
    return np.ascontiguousarray(photos["chelsea"][::4, ::4])


@pytest.mark.parametrize("kind,reason", [("idat_crc", "CRC"), ("ihdr_crc", "CRC"), ("no_iend", "IEND"),
                                         ("chunk_past_end", "past the end"), ("bad_chunk_type", "invalid type")])
def test_damaged_png_refused_in_one_line(tmp_path, rgb8, kind, reason):
    g8 = np.asarray(Image.fromarray(rgb8).convert("L"))
    Image.fromarray(g8).save(tmp_path / "ok.png")
    p = tmp_path / "damaged scan.jpg"  # a PNG under another suffix is still a PNG
    p.write_bytes(damage_png((tmp_path / "ok.png").read_bytes(), kind))
    assert find_damage(tmp_path / "ok.png") == ""
    with pytest.raises(ImageReadError) as exc:
        read_gray(p)
    msg = str(exc.value)
    assert str(p) in msg and reason in msg and "--allow-damaged" in msg and "\n" not in msg


@pytest.mark.parametrize("kind", ["idat_crc", "no_iend"])
def test_allow_damaged_reads_with_a_warning(tmp_path, rgb8, kind):
    g8 = np.asarray(Image.fromarray(rgb8).convert("L"))
    Image.fromarray(g8).save(tmp_path / "ok.png")
    p = tmp_path / "d.png"
    p.write_bytes(damage_png((tmp_path / "ok.png").read_bytes(), kind))
    with pytest.warns(UserWarning, match="d.png: damaged file"):
        out = read_gray(p, allow_damaged=True)
    np.testing.assert_array_equal(out, g8.astype(np.float32) / np.float32(255))


def test_bytes_after_iend_are_not_damage(tmp_path):
    Image.new("L", (4, 3), 9).save(tmp_path / "t.png")
    p = tmp_path / "t.png"
    p.write_bytes(p.read_bytes() + b"trailing bytes some tools append")
    assert find_damage(p) == ""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_gray(p).shape == (3, 4)
