import numpy as np
import pytest
import torch

from colorcube.color import gray_to_lightness, lab_to_rgb
from colorcube.network.guided import Coefficients
from colorcube.render import fullres
from colorcube.render.bands import EPS, nested_interval, round_outward
from colorcube.render.codes import decode
from colorcube.render.fullres import _tile_axes


def _coefficients(seed=0, h=9, w=13, shape=(40, 57)):
    rng = np.random.default_rng(seed)
    coef = np.zeros((h, w, 10), np.float32)
    coef[..., 0:2] = rng.normal(0, 40, (h, w, 2))  # A of a*, b*
    coef[..., 5:7] = rng.normal(0, 30, (h, w, 2))  # B of a*, b*
    coef[..., 7:10] = rng.uniform(-0.02, 0.2, (h, w, 3))  # B of the band scales, some negative (clamped)
    return Coefficients(coef, shape, (h, w)), rng.random(shape).astype(np.float32)


def _reference(gray, coeffs):
    """The same computation in torch, written independently of the kernel."""
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
    rgb, scale = fullres.bands(gray, coeffs.coef, *_tile_axes(coeffs, 0, 40, 0, 57))
    ref_rgb, ref_scale = _reference(gray, coeffs)
    # gamma by table interpolation (2e-5) and lightness on the 16-bit grid: far below one 8-bit step
    np.testing.assert_allclose(rgb, ref_rgb, atol=2e-4)
    np.testing.assert_allclose(scale, ref_scale, atol=1e-5)


@pytest.mark.parametrize("lam", [[0.0, 1.0, 3.0], [np.inf, 0.5, 1.2]])
def test_codes_contain_the_computed_band(lam):
    coeffs, gray = _coefficients(1)
    axes = _tile_axes(coeffs, 0, 40, 0, 57)
    rgb, scale = fullres.bands(gray, coeffs.coef, *axes)
    rgb_c, iv_c = fullres.codes(gray, coeffs.coef, *axes, np.array(lam), EPS, threads=2)
    lo, hi = nested_interval(rgb, rgb - scale, rgb + scale, np.array(lam))
    lo_d, hi_d = decode(iv_c[..., 0]), decode(iv_c[..., 1])
    assert (lo_d <= lo + 1e-6).all() and (hi_d >= hi - 1e-6).all()  # outward
    assert (lo - lo_d).max() < 1 / 255 + 1e-6 and (hi_d - hi).max() < 1 / 255 + 1e-6  # by less than one step
    assert np.abs(decode(rgb_c) - rgb).max() <= 0.5 / 255 + 1e-6
    if np.isinf(lam[0]):
        assert (iv_c[..., 0, 0] == 0).all() and (iv_c[..., 0, 1] == 255).all()
    # the kernel's rounding is codes.round_outward's: equal but where the kernel's own (fused) arithmetic
    # put a bound within float32 rounding of a grid point
    r_lo, r_hi = round_outward(lo, hi)
    near = (np.abs(lo * 255 - np.round(lo * 255)) < 1e-3) | (np.abs(hi * 255 - np.round(hi * 255)) < 1e-3)
    assert ((r_lo == lo_d) & (r_hi == hi_d) | near).all()


def test_threads_and_tiles_give_identical_codes():
    coeffs, gray = _coefficients(2)
    whole = fullres.codes(gray, coeffs.coef, *_tile_axes(coeffs, 0, 40, 0, 57), np.ones(3), EPS)
    tile = fullres.codes(gray[5:33, 7:50], coeffs.coef, *_tile_axes(coeffs, 5, 28, 7, 43), np.ones(3), EPS,
                         threads=3)
    for a, b in zip(whole, tile):
        np.testing.assert_array_equal(a[5:33, 7:50], b)


def _fuzz_kernels(seed: int, cases: int) -> None:
    """Every kernel entry point over random image and tile shapes, coefficient grids and
    non-finite inputs; :func:`test_kernels_under_bounds_checking` runs it with
    ``NUMBA_BOUNDSCHECK=1`` in a fresh process, where an index out of range raises."""
    from colorcube.errors import ColorcubeError
    from colorcube.render.fullres import _bands_rows, _codes_rows, gamma_table, lightness_table

    luts = (lightness_table(), gamma_table())
    # Control: with bounds checking off this reads past the grid silently, and the test would prove nothing.
    one = (np.zeros(1, np.int64), np.zeros(1, np.int64), np.zeros(1, np.float32))
    past = (np.ones(1, np.int64), np.ones(1, np.int64), np.zeros(1, np.float32))
    try:
        _bands_rows(np.zeros((1, 1), np.float32), np.zeros((1, 1, 10), np.float32), *past, *one, *luts,
                    np.empty((1, 1, 3), np.float32), np.empty((1, 1, 3), np.float32), 0, 1)
    except IndexError:
        pass
    else:
        raise AssertionError("bounds checking is off: run with NUMBA_BOUNDSCHECK=1 and a fresh NUMBA_CACHE_DIR")

    rng = np.random.default_rng(seed)
    shapes = [(1, 1), (1, 2), (2, 1), (1, 97), (97, 1), (3, 2000), (2000, 5), (2, 3)]
    shapes += [tuple(int(v) for v in rng.integers(1, 300, 2)) for _ in range(cases - len(shapes))]
    for n, (h, w) in enumerate(shapes):
        gy, gx = (int(v) for v in rng.integers(1, 13, 2))
        # extents as the pipeline makes them (<= the grid), at the grid's size, and tiny
        extent = tuple(float(rng.choice([g * rng.uniform(0.5, 1.0), g, rng.uniform(1e-3, 1.0)])) for g in (gy, gx))
        coef = rng.normal(0, 30, (gy, gx, 10)).astype(np.float32)
        if n % 5 == 4:  # absurd but finite: Lab -> RGB overflows to inf - inf = NaN inside the kernel
            coef *= np.float32(1e36)
        coeffs = Coefficients(coef, (h, w), extent)
        gray = rng.random((h, w), dtype=np.float32)
        gray.flat[rng.integers(0, gray.size, 3)] = [0.0, 1.0, 0.5]
        lam = rng.choice([0.0, 0.7, 3.0, np.inf], 3)
        threads = int(rng.integers(1, 5))
        whole = fullres.stage_codes(gray, coeffs, lam, threads=threads)
        rgb, scale = fullres.full_stage(gray, coeffs, threads=threads)
        assert rgb.min() >= 0 and rgb.max() <= 1 and not np.isnan(scale).any() and scale.min() >= 0
        for _ in range(3):  # tiles anywhere, ending at the image's last row / column half the time
            ty, tx = int(rng.integers(1, h + 1)), int(rng.integers(1, w + 1))
            y0 = h - ty if rng.random() < 0.5 else int(rng.integers(0, h - ty + 1))
            x0 = w - tx if rng.random() < 0.5 else int(rng.integers(0, w - tx + 1))
            tile = fullres.stage_codes(gray[y0:y0 + ty, x0:x0 + tx], coeffs, lam, y0=y0, x0=x0,
                                       threads=int(rng.integers(1, 5)))
            for k in whole:
                np.testing.assert_array_equal(tile[k], whole[k][y0:y0 + ty, x0:x0 + tx])
        step = int(rng.integers(1, 5))
        sub = fullres.bands_at(gray[::step, ::step], coef, extent, shape=(h, w), step=step, threads=threads)
        np.testing.assert_array_equal(sub[0], rgb[::step, ::step])

        # NaN / inf straight into the kernels, past the Python-side checks: never an index
        bad_gray = gray.copy()
        bad_gray.flat[rng.integers(0, gray.size)] = rng.choice([np.inf, -np.inf])
        bad_gray.flat[rng.integers(0, gray.size)] = np.nan
        rows, cols = fullres._tile_axes(coeffs, 0, h, 0, w)
        for value in (np.nan, np.inf, -np.inf):
            bad_coef = coef.copy()
            # all ten maps of a grid cell that some pixel interpolates from
            bad_coef[rows[0][rng.integers(0, h)], cols[1][rng.integers(0, w)]] = value
            for g, c in ((bad_gray, coef), (gray, bad_coef)):
                out = np.empty((h, w, 3), np.float32), np.empty((h, w, 3), np.float32)
                _bands_rows(g, c, *rows, *cols, *luts, *out, 0, h)
                assert out[0].min() >= 0 and out[0].max() <= 1 and not np.isnan(out[1]).any()
                codes = np.empty((h, w, 3), np.uint8), np.empty((h, w, 3, 2), np.uint8)
                _codes_rows(g, c, *rows, *cols, *luts, np.array([0, np.nan, np.inf], np.float32),
                            np.float32(EPS), *codes, 0, h)
        # ... and the public functions refuse them with a reason
        for g, c, e, lm in [(bad_gray, coef, extent, lam), (gray, bad_coef, extent, lam),
                            (gray, coef, (np.nan, extent[1]), lam), (gray, coef, extent, [1.0, np.nan, 1.0])]:
            try:
                fullres.stage_codes(g, Coefficients(c, (h, w), e), lm)
            except ColorcubeError:
                pass
            else:
                raise AssertionError("non-finite input accepted")


@pytest.mark.slow
def test_kernels_under_bounds_checking(run_bounds_checked):
    run_bounds_checked("tests.test_fullres", "_fuzz_kernels")


@pytest.mark.parametrize("damage", ["nan_coef", "inf_gray", "nan_extent", "zero_extent", "negative_lambda",
                                    "rows_past_grid", "short_cols", "tile_past_image", "empty_grid"])
def test_inputs_are_checked_before_the_kernels_run(damage):
    from colorcube.errors import ColorcubeError

    coeffs, gray = _coefficients(3)
    coef, extent, lam, y0 = coeffs.coef.copy(), coeffs.extent, np.ones(3), 0
    if damage == "nan_coef":
        coef[4, 5, 2] = np.nan
    elif damage == "inf_gray":
        gray = gray.copy()
        gray[7, 8] = np.inf
    elif damage == "nan_extent":
        extent = (np.nan, extent[1])
    elif damage == "zero_extent":
        extent = (extent[0], 0.0)
    elif damage == "negative_lambda":
        lam = np.array([1.0, -0.5, 1.0])
    elif damage == "tile_past_image":
        y0 = 5  # 40 rows from row 5 of a 40-row image
    elif damage == "empty_grid":
        coef = coef[:0]
    with pytest.raises(ColorcubeError):
        if damage in ("rows_past_grid", "short_cols"):
            (i0, i1, wy), (j0, j1, wx) = _tile_axes(coeffs, 0, 40, 0, 57)
            rows = (i0, i1 + 1, wy) if damage == "rows_past_grid" else (i0, i1, wy)
            cols = (j0[:-1], j1[:-1], wx[:-1]) if damage == "short_cols" else (j0, j1, wx)
            fullres.codes(gray, coef, rows, cols, lam, EPS)
        else:
            fullres.stage_codes(gray, Coefficients(coef, coeffs.shape, extent), lam, y0=y0)


def test_empty_tiles_give_empty_outputs():
    coeffs, gray = _coefficients(4)
    rgb, scale = fullres.full_stage(gray[:, :0], coeffs)
    assert rgb.shape == scale.shape == (40, 0, 3)
    assert fullres.stage_codes(gray[:0], coeffs, np.ones(3))["interval"].shape == (0, 57, 3, 2)
