"""Colour hints: the four input forms, their validation, and colorize with hints."""

import json

import numpy as np
import pytest
import xarray as xr
from PIL import Image

import colorcube
from colorcube.errors import HintError
from colorcube.guidance.hints import Hints, as_hints, find_hint_file, read_hints
from colorcube.guidance.placement import random_points
from colorcube.testing import gray_of

SHAPE = (40, 60)
POINTS = [(3, 5, (255, 0, 0)), (39, 59, (0, 128, 255)), (20, 30, (10, 200, 30))]


def _rgba(points, shape=SHAPE):
    a = np.zeros((*shape, 4), np.uint8)
    for y, x, c in points:
        a[y, x] = (*c, 255)
    return a


def _same(a: Hints, b: Hints):
    order_a, order_b = np.lexsort((a.x, a.y)), np.lexsort((b.x, b.y))
    np.testing.assert_array_equal(a.y[order_a], b.y[order_b])
    np.testing.assert_array_equal(a.x[order_a], b.x[order_b])
    np.testing.assert_array_equal(a.rgb[order_a], b.rgb[order_b])


def test_four_forms_give_one_representation(tmp_path):
    points = as_hints(POINTS, SHAPE)
    assert len(points) == 3 and points.rgb.dtype == np.uint8
    js = tmp_path / "h.json"
    js.write_text(json.dumps([{"x": x, "y": y, "rgb": list(c)} for y, x, c in POINTS]))
    png = tmp_path / "h.png"
    Image.fromarray(_rgba(POINTS)).save(png)
    for other in (as_hints(_rgba(POINTS), SHAPE), read_hints(js, SHAPE), as_hints(str(png), SHAPE),
                  as_hints([(y, x, "#{:02x}{:02x}{:02x}".format(*c)) for y, x, c in POINTS], SHAPE),
                  as_hints(points.records(), SHAPE)):
        _same(points, other)
    # what export writes reads back as the same hints
    _same(points, read_hints(points.save(tmp_path / "again.json"), SHAPE))
    assert Hints.from_array(points.to_array(), SHAPE).points() == points.points()


def test_semitransparent_pixels_and_duplicates():
    a = _rgba(POINTS)
    a[0, 0] = (1, 2, 3, 127)  # below half opacity: not a stroke
    assert len(as_hints(a, SHAPE)) == 3
    h = as_hints([(1, 1, (0, 0, 0)), (1, 1, (9, 9, 9))], SHAPE)  # the later hint on a pixel wins
    assert len(h) == 1 and h.rgb[0].tolist() == [9, 9, 9]


def test_no_hints_is_none():
    assert as_hints(None, SHAPE) is None and as_hints([], SHAPE) is None
    assert as_hints(np.zeros((*SHAPE, 4), np.uint8), SHAPE) is None


@pytest.mark.parametrize("content, match", [
    ("[{\"x\": 60, \"y\": 0, \"rgb\": [1, 2, 3]}]", "outside the 60 x 40 image"),
    ("[{\"x\": 0, \"y\": -1, \"rgb\": [1, 2, 3]}]", "outside"),
    ("[{\"x\": 1, \"y\": 1, \"rgb\": [1, 2, 300]}]", "0-255 integers"),
    ("[{\"x\": 1, \"y\": 1, \"rgb\": [1, 2]}]", "3 values"),
    ("[{\"x\": 1.5, \"y\": 1, \"rgb\": [1, 2, 3]}]", "must be integers"),
    ("[{\"x\": 1, \"rgb\": [1, 2, 3]}]", "missing y"),
    ("[{\"x\": 1, \"y\": 1, \"rgb\": [1, 2, 3]},]", "not valid JSON"),
    ("{\"x\": 1}", "JSON list"),
    ("\xff\xfe", "not valid JSON|UTF-8"),
])
def test_bad_json_files_name_the_file(tmp_path, content, match):
    p = tmp_path / "bad.json"
    p.write_text(content, encoding="latin-1")
    with pytest.raises(HintError, match=match) as info:
        read_hints(p, SHAPE)
    msg = str(info.value)
    assert str(p) in msg and "\n" not in msg


def test_bad_png_and_other_files(tmp_path):
    wrong = tmp_path / "wrong.png"
    Image.fromarray(_rgba(POINTS, (41, 60))).save(wrong)
    with pytest.raises(HintError, match=r"wrong.png: hint image is 60 x 41 but the photo is 60 x 40"):
        as_hints(wrong, SHAPE)
    rgb = tmp_path / "rgb.png"
    Image.fromarray(np.zeros((*SHAPE, 3), np.uint8)).save(rgb)
    with pytest.raises(HintError, match="rgb.png: a hint image must be an RGBA PNG"):
        as_hints(rgb, SHAPE)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not a png")
    with pytest.raises(HintError, match="junk.png: cannot read"):
        as_hints(junk, SHAPE)
    (tmp_path / "x.txt").write_text("[]")
    with pytest.raises(HintError, match="hint files are .json"):
        as_hints(tmp_path / "x.txt", SHAPE)
    with pytest.raises(HintError, match="not found"):
        as_hints(tmp_path / "missing.json", SHAPE)
    with pytest.raises(HintError, match=r"hints\[0\]: .* is not a point"):
        as_hints([(1, 2)], SHAPE)
    with pytest.raises(HintError, match="hint image is 60 x 40 but the photo is 61 x 40"):
        as_hints(_rgba(POINTS), (40, 61))


def test_find_hint_file(tmp_path):
    (tmp_path / "a.json").write_text("[]")
    (tmp_path / "b.json").write_text("[]")
    Image.fromarray(_rgba([])).save(tmp_path / "b.png")
    assert find_hint_file(tmp_path, "a") == tmp_path / "a.json"
    assert find_hint_file(tmp_path, "c") is None
    with pytest.raises(HintError, match="both b.json and b.png"):
        find_hint_file(tmp_path, "b")


@pytest.fixture(scope="module")
def astronaut(photos):
    rgb8 = photos["astronaut"][::2, ::2]
    return rgb8, gray_of(rgb8)


def test_no_hints_is_the_automatic_mode(astronaut, shipped):
    _, gray = astronaut
    auto = colorcube.colorize(gray, model=shipped)
    xr.testing.assert_identical(auto, colorcube.colorize(gray, model=shipped, hints=None, reference=None))
    xr.testing.assert_identical(auto, colorcube.colorize(gray, model=shipped, hints=[]))
    xr.testing.assert_identical(auto, colorcube.colorize(gray, model=shipped,
                                                         hints=np.zeros((*gray.shape, 4), np.uint8)))
    assert "hints" not in auto and "hints" not in auto.attrs


def test_colorize_with_hints(astronaut, shipped, tmp_path):
    truth, gray = astronaut
    pts = random_points(truth, 20, 0)
    auto = colorcube.colorize(gray, model=shipped)
    ds = colorcube.colorize(gray, model=shipped, hints=pts)
    ys, xs = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
    hint = truth[ys, xs].astype(np.float32)
    iv = ds.interval.values[ys, xs] * 255
    assert (iv[..., 0] <= hint + 1e-3).all() and (hint <= iv[..., 1] + 1e-3).all()
    assert np.median(np.abs(ds.rgb.values[ys, xs] * 255 - hint)) <= 1.0  # true-colour hints: the truth there
    assert np.abs(ds.rgb.values - auto.rgb.values).max() > 0.1  # the hints changed more than their pixels
    assert ds.attrs["hints"] == 20 and "band contains the hint" in ds.attrs["guarantee"]
    np.testing.assert_array_equal(ds.hints.values, as_hints(pts, gray.shape).to_array())
    # stored in the zarr cube, so an archive keeps what the user said
    lazy = colorcube.colorize(gray, model=shipped, hints=pts, out=tmp_path / "c.zarr")
    assert Hints.from_array(colorcube.open_cube(tmp_path / "c.zarr").hints.values, gray.shape).points() == \
        as_hints(pts, gray.shape).points()
    xr.testing.assert_identical(lazy.compute(), ds.compute())


def test_bad_hints_fail_before_the_model(astronaut):
    _, gray = astronaut
    with pytest.raises(HintError, match="outside"):
        colorcube.colorize(gray, hints=[(gray.shape[0], 0, (1, 2, 3))], model=object())
