import dask
import numpy as np
import pytest

import colorcube
from colorcube.apps.explorer import VIEWS, explore
from colorcube.testing import CountingScheduler, gray_of


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


def test_one_slider_move_builds_the_bands_once(cube_and_truth, monkeypatch):
    """The image, the pixel chart and the coverage panel redraw from one set of bands."""
    ds, truth = cube_and_truth
    e = explore(ds, truth=truth).explorer
    e.view.value = "band width"
    built = []
    real = type(e)._bands_for
    monkeypatch.setattr(type(e), "_bands_for", lambda self, lam: built.append(lam) or real(self, lam))
    e.alpha.value = 0.25
    assert len(built) == 1
    e.alpha.value = 0.15
    assert len(built) == 2
    e.bands()  # the alpha on show again: kept
    assert len(built) == 2


def test_without_truth_or_matching_calibration(cube_and_truth):
    ds, _ = cube_and_truth
    foreign = ds.assign_attrs(model_hash="f" * 64)
    e = explore(foreign).explorer
    assert "miss map" not in e.view.options and e.coverage_panel.layout.display == "none"
    e.view.value = "band width"
    before = e.image.value
    e.alpha.value = 0.3  # no calibration for this model: stored bands are shown, unchanged
    assert e.image.value == before and "stored bands only" in e.status.value


def test_the_shipped_calibration_serves_only_cubes_that_name_it(cube_and_truth):
    """As ``ds.colorcube.bands``: a cube made with another calibration of the same model is not
    rescaled with the shipped one unless that one is given."""
    from colorcube.conformal.lookup import resolve_calibration

    ds, _ = cube_and_truth
    other = resolve_calibration("default").subset(np.arange(150))
    own = colorcube.colorize(ds.gray.values, alpha=0.1, calibration=other)
    e = explore(own).explorer
    assert e.data["cal"] is None and "stored bands only" in e.status.value
    with pytest.raises(colorcube.CalibrationError, match="not the shipped one"):
        own.colorcube.bands(0.2)
    given = explore(own, calibration=other).explorer
    assert given.data["cal"] is other
    np.testing.assert_array_equal(given.bands(0.2), own.colorcube.bands(0.2, calibration=other).values)


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


def _decode(png: bytes) -> np.ndarray:
    import io

    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float32)


def test_click_place_hint_undo_and_export(cube_and_truth, tmp_path):
    import json

    ds, _ = cube_and_truth
    e = explore(ds).explorer
    original = e.image.value
    h, w = e.data["gray"].shape
    e._on_click({"type": "click", "dataX": w // 3 + 0.6, "dataY": h // 2 + 0.2})  # what ipyevents sends
    assert (e.px.value, e.py.value) == (w // 3, h // 2)
    e.colour.value = "#1060ff"
    e.place_hint()
    after = _decode(e.image.value)
    y, x = h // 2, w // 3
    before = _decode(original)
    near = (slice(y - 2, y + 3), slice(x - 2, x + 3))
    # bluer there than before, and the hint pixel itself is the hint's colour as far as its gray allows
    def blue_minus_red(img):
        return (img[near][..., 2] - img[near][..., 0]).mean()

    assert blue_minus_red(after) > blue_minus_red(before) + 20
    assert e.hints().points() == [(y * e.data["step"], x * e.data["step"], (16, 96, 255))]
    bands = e.bands()
    assert (bands[y, x, :, 0] * 255 <= np.array([16, 96, 255]) + 1e-3).all()
    assert (np.array([16, 96, 255]) <= bands[y, x, :, 1] * 255 + 1e-3).all()
    assert "1 hint pixels" in e.hint_status.value
    out = e.export_hints(tmp_path / "h.json")
    assert json.loads(out.read_text()) == [{"x": x * e.data["step"], "y": y * e.data["step"], "rgb": [16, 96, 255]}]
    # the full cube with the hint is what colorize makes with the exported file
    cube = e.cube(alpha=0.1)
    again = colorcube.colorize(ds.gray.values, alpha=0.1, hints=out)
    np.testing.assert_array_equal(cube.rgb.values, again.rgb.values)
    e.undo_hint()
    assert e.image.value == original and e.hints() is None


def test_a_cube_made_with_hints_keeps_them(cube_and_truth):
    ds, _ = cube_and_truth
    pts = [(10, 12, (250, 20, 20)), (40, 90, (20, 240, 20))]
    hinted = colorcube.colorize(ds.gray.values, alpha=0.1, hints=pts)
    e = explore(hinted).explorer
    assert e.hints().points() == sorted(pts) or sorted(e.hints().points()) == sorted(pts)
    # rebuilt bands at another alpha still contain the hints (the coefficients do not know the pins)
    iv = e.bands(0.3)
    assert (iv[10, 12, :, 0] * 255 <= np.array([250, 20, 20]) + 1e-3).all()
    e.undo_hint()  # the stored hints come back off as one placement
    assert e.hints() is None


def test_hints_need_the_cubes_model(cube_and_truth):
    ds, _ = cube_and_truth
    e = explore(ds.assign_attrs(model_hash="f" * 64)).explorer
    before = e.image.value
    e.place_hint(5, 5, "#ff0000")
    assert "needs the model that made this cube" in e.hint_status.value
    assert e.image.value == before and e.hints() is None


def test_suggested_positions_are_marked_and_a_palette_swatch_places_a_hint(cube_and_truth):
    ds, _ = cube_and_truth
    e = explore(ds).explorer
    plain = _decode(e.image.value)
    pts = e.suggest_positions(3)
    step = e.data["step"]
    assert pts.shape == (3, 2) and len(e.suggestions.children) == 3
    np.testing.assert_array_equal(pts, colorcube.suggest_hints(e.bands(), 3, gray=e.data["gray"]) * step)
    marked = _decode(e.image.value)
    y, x = e.suggested[0]
    assert not np.array_equal(marked, plain) and (marked[y - 4, x] != plain[y - 4, x]).any()  # a ring there
    e.suggestions.children[0].click()  # pick the first suggestion: its palette appears
    assert (e.py.value, e.px.value) == (int(y), int(x))
    swatches = e.swatches.children
    assert 1 <= len(swatches) <= 5
    expect = colorcube.palette(e._gray[e.picker.value], [(y * step, x * step)], model=e.model)[0]
    assert [s.description for s in swatches] == [f"{c['probability']:.0%}" for c in expect]
    swatches[0].click()  # accept: the top colour becomes a hint at the suggested pixel
    ((hy, hx, colour),) = e.hints().points()
    assert (hy, hx) == (y * step, x * step)
    assert "#" + "".join(f"{v:02x}" for v in colour) == swatches[0].style.button_color
