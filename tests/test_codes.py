import numpy as np
import pytest

from colorcube.codes import COMPRESSIONS, check_compression, decode, encode_gray, round_outward
from colorcube.errors import OptionError


def test_gray_code_is_exact_for_8_and_16_bit():
    k8 = np.arange(256, dtype=np.uint8)
    assert encode_gray(k8 / np.float32(255)).dtype == np.uint8  # 8-bit sources keep one byte a pixel
    np.testing.assert_array_equal(decode(encode_gray(k8 / np.float32(255))), k8 / np.float32(255))
    k16 = np.arange(0, 65536, 7, dtype=np.uint16)
    g16 = k16.astype(np.float32) / np.float32(65535)
    assert encode_gray(g16).dtype == np.uint16
    np.testing.assert_array_equal(decode(encode_gray(g16)), g16)


def test_outward_rounding_contains_the_band_and_keeps_grid_values():
    rng = np.random.default_rng(0)
    lo = rng.random(10_000).astype(np.float32) * 0.5
    hi = lo + rng.random(10_000).astype(np.float32) * 0.5
    r_lo, r_hi = round_outward(lo, hi)
    assert r_lo.dtype == np.float32 and (r_lo <= lo).all() and (r_hi >= hi).all()
    assert (lo - r_lo).max() < 1 / 255 and (r_hi - hi).max() < 1 / 255
    grid = np.arange(256, dtype=np.float32) / np.float32(255)  # already stored values do not move
    np.testing.assert_array_equal(round_outward(grid, grid)[0], grid)
    np.testing.assert_array_equal(round_outward(grid, grid)[1], grid)
    assert round_outward(np.float32(-0.3), np.float32(1.7)) == (0.0, 1.0)  # clipped to the image's range


def test_compression_names_are_checked_as_options():
    assert [check_compression(c) for c in COMPRESSIONS] == list(COMPRESSIONS)
    with pytest.raises(OptionError, match="use one of none, lz4, zstd") as info:
        check_compression("gzip")
    assert isinstance(info.value, ValueError)
