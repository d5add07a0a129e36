"""The band rule: one compiled definition of the stored band, shared by the kernel, the accessor,
the explorer and the store."""

import numpy as np
import pytest

from colorcube.cube.schema import encode_cube
from colorcube.network.guided import Coefficients
from colorcube.render import fullres
from colorcube.render.bands import EPS, band, outward_codes, round_outward
from colorcube.render.codes import decode
from colorcube.testing import random_cube


def _tile(seed=0, h=9, w=13, shape=(40, 57)):
    rng = np.random.default_rng(seed)
    coef = np.zeros((h, w, 10), np.float32)
    coef[..., 0:2] = rng.normal(0, 40, (h, w, 2))
    coef[..., 5:7] = rng.normal(0, 30, (h, w, 2))
    coef[..., 7:10] = rng.uniform(-0.02, 0.2, (h, w, 3))
    coeffs = Coefficients(coef, shape, (h, w))
    gray = rng.random(shape).astype(np.float32)
    return coeffs, gray, fullres._tile_axes(coeffs, 0, shape[0], 0, shape[1])


@pytest.mark.parametrize("lam", [[0.0, 1.0, 3.0], [np.inf, 0.5, 1.2], [0.37, 2.9, 11.0]])
def test_band_is_the_stored_band_exactly(lam):
    """The accessor's and the explorer's band (:func:`band` on the unrounded colour and scale) is the
    kernel's stored band code for code: the rule is compiled once and called by both."""
    coeffs, gray, axes = _tile()
    rgb, scale = fullres.bands(gray, coeffs.coef, *axes)
    _, stored = fullres.codes(gray, coeffs.coef, *axes, np.array(lam), EPS)
    lo, hi = band(rgb, scale, np.array(lam))
    np.testing.assert_array_equal(lo, decode(stored[..., 0]))
    np.testing.assert_array_equal(hi, decode(stored[..., 1]))


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


def test_a_float_cube_is_stored_with_the_renderers_outward_rule():
    """The store codes a float cube's band by the kernel's rule: a cube read back as float64 (xarray's
    CF decoding) keeps its codes, and an off-grid band is stored containing itself."""
    ds = random_cube(12, 17)
    codes = encode_cube(ds)["interval"].values
    np.testing.assert_array_equal(codes, outward_codes(ds["interval"].values))
    on_grid = ds.copy()
    on_grid["interval"] = on_grid["interval"].copy(data=codes * (1 / 255.0))  # float64, as open_zarr decodes
    np.testing.assert_array_equal(encode_cube(on_grid)["interval"].values, codes)
    iv = ds["interval"].values
    stored = decode(codes)
    assert (stored[..., 0] <= iv[..., 0]).all() and (stored[..., 1] >= iv[..., 1]).all()
    lazy = encode_cube(ds.chunk({"y": 5, "x": 7}))["interval"]
    np.testing.assert_array_equal(lazy.values, codes)
