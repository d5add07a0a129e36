import dask
import numpy as np
import pytest

import colorcube
from colorcube.widgets import VIEWS, explore

from .conftest import gray_of
from .test_cube import CountingScheduler


@pytest.fixture(scope="module")
def cube_and_truth(photos):
    rgb8 = photos["coffee"][::2, ::2]
    return colorcube.colorize(gray_of(rgb8), alpha=0.1), rgb8 / 255.0


def test_views_slider_and_pixel_chart(cube_and_truth):
    ds, truth = cube_and_truth
    app = explore(ds, truth=truth)
    e = app.explorer
    assert list(e.view.options) == list(VIEWS)  # miss map offered because the truth is known
    e.view.value = "band width"
    before = e.image.value
    chart = e.pixel_chart.value
    e.alpha.value = 0.3
    assert e.image.value != before and e.pixel_chart.value != chart
    assert e.coverage_panel.layout.display == "flex"
    np.testing.assert_array_equal(e.bands(0.1), ds.interval.values)  # the cube's own alpha: stored bands
    # rebuilt from the stored gray and coefficients: what colorizing again at that alpha stores
    # (a float-rounding tie may move a bound by one step)
    again = colorcube.colorize(ds.gray.values, alpha=0.2).interval.values
    diff = np.abs(e.bands(0.2) - again)
    assert diff.max() <= 1 / 255 + 1e-6 and (diff > 0).mean() < 1e-3
    narrow, wide = e.bands(0.3), e.bands(0.05)
    assert ((wide[..., 1] - wide[..., 0]) >= (narrow[..., 1] - narrow[..., 0]) - 1e-6).all()
    e.view.value = "miss map"
    assert e.current_view().shape == ds.rgb.shape


def test_without_truth_or_matching_calibration(cube_and_truth):
    ds, _ = cube_and_truth
    foreign = ds.assign_attrs(model_hash="f" * 64)
    e = explore(foreign).explorer
    assert "miss map" not in e.view.options and e.coverage_panel.layout.display == "none"
    e.view.value = "band width"
    before = e.image.value
    e.alpha.value = 0.3  # no calibration for this model: stored bands are shown, unchanged
    assert e.image.value == before and "stored bands only" in e.status.value


def test_archive_opens_lazily_and_downsamples(tmp_path, photos):
    from PIL import Image

    for name in ("chelsea", "rocket"):
        Image.fromarray((gray_of(photos[name]) * 255).astype(np.uint8)).save(tmp_path / f"{name}.png")
    colorcube.colorize_archive(tmp_path, tmp_path / "a.zarr", chunk=128, progress=False)
    counter = CountingScheduler()
    with dask.config.set(scheduler=counter):
        app = explore(tmp_path / "a.zarr", max_side=200)
        e = app.explorer
        assert len(e.picker.options) == 2
        loads = counter.calls
        assert max(e.data["gray"].shape) <= 200
        e.picker.value = e.picker.options[1]
    assert counter.calls > loads  # the second image is read only when picked


def test_bad_object():
    with pytest.raises(colorcube.ColorcubeError, match="not a cube"):
        explore(12345)
