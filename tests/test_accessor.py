"""``ds.colorcube``: bands at another alpha, the explorer, PNG export and coverage, on stored cubes."""

import json

import numpy as np
import pytest
import xarray as xr
import zarr
from PIL import Image

import colorcube
from colorcube.apps.explorer import explore
from colorcube.conformal.lookup import default_calibration_path
from colorcube.errors import CalibrationError, ColorcubeError, SchemaError
from colorcube.testing import random_cube, write_gray_png


@pytest.fixture(scope="module")
def stored(tmp_path_factory, photos):
    """A gray scan colorized at alpha 0.1 into a zarr store with the shipped model; (store, truth uint8)."""
    rgb8 = photos["coffee"][::2, ::2]
    d = tmp_path_factory.mktemp("accessor")
    store = d / "coffee.zarr"
    colorcube.colorize(write_gray_png(d / "coffee.png", rgb8), alpha=0.1, out=store)
    return store, rgb8


@pytest.fixture(scope="module")
def plain(stored):
    """The store read with xarray alone (CF scale_factor: float64 values)."""
    return xr.open_zarr(stored[0], consolidated=False, zarr_format=3)


@pytest.fixture(scope="module")
def ours(stored):
    return colorcube.open_cube(stored[0])


@pytest.fixture(scope="module")
def codes(stored):
    """The stored uint8 codes, read with zarr alone."""
    root = zarr.open_group(str(stored[0]), mode="r")
    return {name: np.asarray(root[name][...]) for name in ("rgb", "interval")}


def test_bands_at_another_alpha_are_the_explorers(plain, ours):
    assert plain.rgb.dtype == np.float64 and ours.rgb.dtype == np.float32
    b_plain, b_ours = plain.colorcube.bands(0.2), ours.colorcube.bands(0.2)
    assert b_ours.dims == ("y", "x", "channel", "bound") and b_ours.dtype == np.float32
    assert list(b_ours.channel.values) == ["R", "G", "B"] and list(b_ours.bound.values) == ["lower", "upper"]
    np.testing.assert_array_equal(b_plain.values, b_ours.values)
    slider = explore(ours, max_side=10_000).explorer  # shown at full resolution: its bands are the image's
    assert slider.data["step"] == 1
    np.testing.assert_array_equal(b_ours.values, slider.bands(0.2))
    cal = colorcube.Calibration.from_file(default_calibration_path())
    assert b_ours.attrs["alpha"] == 0.2 and b_ours.attrs["lambda"] == list(cal.lambda_for(0.2))
    iv = b_ours.values
    assert (iv[..., 0] <= iv[..., 1]).all() and iv.min() >= 0 and iv.max() <= 1
    np.testing.assert_array_equal(iv, np.round(iv * 255).astype(np.float32) / np.float32(255))  # on the 8-bit grid


def test_bands_equal_colorizing_again_at_that_alpha(ours):
    again = colorcube.colorize(ours.gray.values, alpha=0.2).interval.values
    diff = np.abs(ours.colorcube.bands(0.2).values - again)
    assert diff.max() <= 1 / 255 + 1e-6 and (diff > 0).mean() < 1e-3  # a float-rounding tie may move one step


def test_smaller_alpha_gives_wider_bands(ours):
    narrow, wide = ours.colorcube.bands(0.2).values, ours.colorcube.bands(0.05).values
    assert (narrow[..., 0] >= wide[..., 0]).all() and (narrow[..., 1] <= wide[..., 1]).all()  # nested
    unclipped = (wide[..., 0] > 0) & (wide[..., 1] < 1)
    assert unclipped.mean() > 0.2
    w_narrow, w_wide = narrow[..., 1] - narrow[..., 0], wide[..., 1] - wide[..., 0]
    assert (w_narrow[unclipped] < w_wide[unclipped]).mean() > 0.9


def test_own_alpha_gives_the_stored_bands(plain, ours, codes):
    for ds in (plain, ours):
        own = ds.colorcube.bands(0.1)
        np.testing.assert_array_equal(own.values, codes["interval"].astype(np.float32) / np.float32(255))
        assert own.attrs["lambda"] == [float(v) for v in ours.attrs["lambda"]]


def test_to_png_writes_the_rgb_codes(plain, ours, codes, tmp_path):
    for name, ds in (("plain", plain), ("ours", ours)):
        path = ds.colorcube.to_png(tmp_path / f"{name}.png")
        assert path == tmp_path / f"{name}.png"
        with Image.open(path) as im:
            assert im.mode == "RGB"
            np.testing.assert_array_equal(np.asarray(im), codes["rgb"])


def test_coverage_against_the_truth(stored, plain, ours, codes, tmp_path):
    _, rgb8 = stored
    iv = codes["interval"]
    expected = ((rgb8 >= iv[..., 0]) & (rgb8 <= iv[..., 1])).mean(axis=(0, 1))  # in codes, no floats
    truth_png = tmp_path / "truth.png"
    Image.fromarray(rgb8).save(truth_png)
    for ds in (plain, ours):
        for truth in (rgb8, rgb8 / 255.0, truth_png, str(truth_png)):
            cov = ds.colorcube.coverage(truth)
            assert cov.dims == ("channel",) and list(cov.channel.values) == ["R", "G", "B"]
            np.testing.assert_array_equal(cov.values, expected)
            assert cov.attrs["alpha"] == 0.1
    b = ours.colorcube.bands(0.3).values
    t = rgb8.astype(np.float32) / np.float32(255)
    at_03 = ((t >= b[..., 0]) & (t <= b[..., 1])).mean(axis=(0, 1))
    np.testing.assert_array_equal(ours.colorcube.coverage(rgb8, alpha=0.3).values, at_03)
    assert (at_03 <= expected).all()
    with pytest.raises(ColorcubeError, match=r"truth has shape \(10, 10, 3\)"):
        ours.colorcube.coverage(rgb8[:10, :10])
    with pytest.raises(ColorcubeError, match="truth"):
        ours.colorcube.coverage(rgb8 * 2.0)


def test_explore_returns_the_widget(ours):
    app = ours.colorcube.explore(max_side=64)
    assert app.explorer.images["image"]() is ours
    assert max(app.explorer.data["gray"].shape) <= 64


def test_errors_name_what_is_missing(ours):
    with pytest.raises(SchemaError, match="'coefficients' is missing"):
        random_cube().colorcube.bands(0.2)
    assert random_cube().colorcube.bands(0.1).shape == (20, 30, 3, 2)  # its own alpha needs no coefficients
    named = json.loads(ours.attrs["calibration"])
    other = ours.assign_attrs(calibration=json.dumps({**named, "date": "1999-01-01T00:00:00Z"}))
    with pytest.raises(CalibrationError, match="not the shipped one; pass calibration="):
        other.colorcube.bands(0.2)
    np.testing.assert_array_equal(  # the right .cal named explicitly serves it
        other.colorcube.bands(0.2, calibration=default_calibration_path()).values,
        ours.colorcube.bands(0.2).values)
    with pytest.raises(CalibrationError, match="uncalibrated"):
        ours.assign_attrs(calibrated=0).colorcube.bands(0.2)
    with pytest.raises(CalibrationError, match="not for the loaded model"):
        ours.assign_attrs(model_hash="f" * 64).colorcube.bands(0.2, calibration="default")
    with pytest.raises(CalibrationError, match="calibration file not found"):
        ours.colorcube.bands(0.2, calibration="no-such.cal")
    with pytest.raises(CalibrationError, match="alpha=1.5"):
        ours.colorcube.bands(1.5)
    with pytest.raises(SchemaError, match="'rgb' is missing"):
        ours.drop_vars("rgb").colorcube.to_png("x.png")
