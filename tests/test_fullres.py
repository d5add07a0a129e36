import numpy as np
import pytest
import torch

from colorcube import fullres
from colorcube.color import gray_to_lightness, lab_to_rgb
from colorcube.conformal import EPS, nested_interval
from colorcube.fullres import _tile_axes
from colorcube.pipeline import Coefficients


def _coefficients(seed=0, h=9, w=13, shape=(40, 57)):
    rng = np.random.default_rng(seed)
    coef = np.zeros((h, w, 10), np.float32)
    coef[..., 0:2] = rng.normal(0, 40, (h, w, 2))  # A of a*, b*
    coef[..., 5:7] = rng.normal(0, 30, (h, w, 2))  # B of a*, b*
    coef[..., 7:10] = rng.uniform(-0.02, 0.2, (h, w, 3))  # B of the spreads, some negative (clamped)
    return Coefficients(coef, shape, (h, w)), rng.random(shape).astype(np.float32)


def _reference(gray, coeffs):
    """The same computation in torch/kornia, written independently of the kernel."""
    (i0, i1, wy), (j0, j1, wx) = _tile_axes(coeffs, 0, gray.shape[0], 0, gray.shape[1])
    c = torch.from_numpy(coeffs.coef).double()
    wy, wx = torch.from_numpy(wy).double()[:, None, None], torch.from_numpy(wx).double()[None, :, None]
    rows0, rows1 = c[torch.from_numpy(i0)], c[torch.from_numpy(i1)]
    j0, j1 = torch.from_numpy(j0), torch.from_numpy(j1)
    s = ((rows0[:, j0] * (1 - wx) + rows0[:, j1] * wx) * (1 - wy) + (rows1[:, j0] * (1 - wx) + rows1[:, j1] * wx) * wy)
    light = gray_to_lightness(torch.from_numpy(gray).double())
    q = s[..., :5] * (light / 100)[..., None] + s[..., 5:]
    rgb = lab_to_rgb(torch.cat([light[None], q[..., 0][None], q[..., 1][None]]).float())
    return rgb.permute(1, 2, 0).numpy(), q[..., 2:].clamp_min(0).float().numpy()


def test_bands_match_an_independent_torch_reference():
    coeffs, gray = _coefficients()
    rgb, spread = fullres.bands(gray, coeffs.coef, *_tile_axes(coeffs, 0, 40, 0, 57))
    ref_rgb, ref_spread = _reference(gray, coeffs)
    # gamma by table interpolation (2e-5) and lightness on the 16-bit grid: far below one 8-bit step
    np.testing.assert_allclose(rgb, ref_rgb, atol=2e-4)
    np.testing.assert_allclose(spread, ref_spread, atol=1e-5)


@pytest.mark.parametrize("lam", [[0.0, 1.0, 3.0], [np.inf, 0.5, 1.2]])
def test_codes_contain_the_computed_band(lam):
    coeffs, gray = _coefficients(1)
    axes = _tile_axes(coeffs, 0, 40, 0, 57)
    rgb, spread = fullres.bands(gray, coeffs.coef, *axes)
    rgb_c, iv_c = fullres.codes(gray, coeffs.coef, *axes, np.array(lam), EPS, threads=2)
    lo, hi = nested_interval(rgb, rgb - spread, rgb + spread, np.array(lam))
    lo_d, hi_d = fullres.decode(iv_c[..., 0]), fullres.decode(iv_c[..., 1])
    assert (lo_d <= lo + 1e-6).all() and (hi_d >= hi - 1e-6).all()  # outward
    assert (lo - lo_d).max() < 1 / 255 + 1e-6 and (hi_d - hi).max() < 1 / 255 + 1e-6  # by less than one step
    assert np.abs(fullres.decode(rgb_c) - rgb).max() <= 0.5 / 255 + 1e-6
    if np.isinf(lam[0]):
        assert (iv_c[..., 0, 0] == 0).all() and (iv_c[..., 0, 1] == 255).all()


def test_threads_and_tiles_give_identical_codes():
    coeffs, gray = _coefficients(2)
    whole = fullres.codes(gray, coeffs.coef, *_tile_axes(coeffs, 0, 40, 0, 57), np.ones(3), EPS)
    tile = fullres.codes(gray[5:33, 7:50], coeffs.coef, *_tile_axes(coeffs, 5, 28, 7, 43), np.ones(3), EPS,
                         threads=3)
    for a, b in zip(whole, tile):
        np.testing.assert_array_equal(a[5:33, 7:50], b)


def test_gray_code_is_exact_for_8_and_16_bit():
    k8 = np.arange(256, dtype=np.uint8)
    np.testing.assert_array_equal(fullres.decode(fullres.encode_gray(k8 / np.float32(255))), k8 / np.float32(255))
    k16 = np.arange(0, 65536, 7, dtype=np.uint16)
    g16 = k16.astype(np.float32) / np.float32(65535)
    np.testing.assert_array_equal(fullres.decode(fullres.encode_gray(g16)), g16)
