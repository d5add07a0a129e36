import warnings

import numpy as np
import pytest
import tifffile
from PIL import Image

from colorcube.errors import ImageReadError
from colorcube.inputs.images import array_to_gray, read_gray, read_rgb, read_truth
from colorcube.testing import gray_of


@pytest.fixture()
def rgb8(photos):
    return np.ascontiguousarray(photos["chelsea"][::4, ::4])


def test_png_gray_8bit_exact(tmp_path, rgb8):
    g8 = np.asarray(Image.fromarray(rgb8).convert("L"))
    Image.fromarray(g8).save(tmp_path / "g.png")
    out = read_gray(tmp_path / "g.png")
    assert out.dtype == np.float32 and out.shape == g8.shape
    np.testing.assert_array_equal(out, g8.astype(np.float32) / np.float32(255))


def test_png_16bit_keeps_precision(tmp_path):
    g16 = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    out = read_gray(tmp_path / "g16.png")
    np.testing.assert_allclose(out, g16 / 65535.0, atol=1e-6)
    assert len(np.unique(out)) > 256  # not squeezed to 8 bits


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_tiff_depths(tmp_path, dtype):
    base = np.linspace(0, 1, 50 * 40, dtype=np.float64).reshape(50, 40)
    arr = base.astype(np.float32) if dtype == np.float32 else (base * np.iinfo(dtype).max).round().astype(dtype)
    tifffile.imwrite(tmp_path / "x.tif", arr)
    np.testing.assert_allclose(read_gray(tmp_path / "x.tif"), base, atol=1 / 255 if dtype == np.uint8 else 1e-4)


def test_rgb16_tiff_to_gray(tmp_path, rgb8):
    arr16 = rgb8.astype(np.uint16) * 257
    tifffile.imwrite(tmp_path / "c16.tif", arr16, photometric="rgb")
    with pytest.warns(UserWarning, match="colour image converted"):
        out = read_gray(tmp_path / "c16.tif")
    np.testing.assert_allclose(out, gray_of(rgb8), atol=1 / 255)


def test_rgb_jpeg_warns_and_matches_pil(tmp_path, rgb8):
    Image.fromarray(rgb8).save(tmp_path / "c.png")
    with pytest.warns(UserWarning, match="c.png"):
        out = read_gray(tmp_path / "c.png")
    assert np.abs(out - gray_of(rgb8)).max() <= 0.51 / 255


def test_gray_input_does_not_warn(tmp_path, rgb8):
    Image.fromarray(np.repeat(gray_of(rgb8)[..., None] * 255, 3, -1).astype(np.uint8)).save(tmp_path / "g3.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_gray(tmp_path / "g3.png")


def test_palette_and_alpha(tmp_path, rgb8):
    Image.fromarray(rgb8).convert("P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "p.png")
    assert read_gray(tmp_path / "p.png", warn_color=False).shape == rgb8.shape[:2]
    rgba = np.dstack([np.full(rgb8.shape[:2] + (3,), 0, np.uint8), np.zeros(rgb8.shape[:2], np.uint8)])
    rgba[:, : rgb8.shape[1] // 2, 3] = 255  # left opaque black, right fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    g = read_gray(tmp_path / "a.png")
    assert g[:, 0].max() == 0.0 and g[:, -1].min() == 1.0  # transparency composited on white


def test_exif_orientation_is_applied(tmp_path, rgb8):
    g8 = np.asarray(Image.fromarray(rgb8).convert("L"))
    im = Image.fromarray(g8)
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 CW on display
    im.save(tmp_path / "r.jpg", exif=exif, quality=95)
    out = read_gray(tmp_path / "r.jpg")
    assert out.shape == (g8.shape[1], g8.shape[0])


def test_read_truth_gray_is_pil_convert_L(tmp_path, rgb8):
    Image.fromarray(rgb8).save(tmp_path / "t.png")
    rgb, gray = read_truth(tmp_path / "t.png")
    np.testing.assert_array_equal(gray, gray_of(rgb8))
    np.testing.assert_array_equal(rgb, rgb8.astype(np.float32) / np.float32(255))


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: p.write_text("hello, not an image"), "not a recognised image"),
        (lambda p: p.write_text("<html><body>404</body></html>"), "not a recognised image"),
        (lambda p: p.mkdir(), "directory"),
    ],
)
def test_bad_files_give_one_line_errors(tmp_path, make, reason):
    p = tmp_path / "bad.png"
    make(p)
    with pytest.raises(ImageReadError) as exc:
        read_gray(p)
    msg = str(exc.value)
    assert str(p) in msg and reason in msg and "\n" not in msg


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "TIFF"])
def test_truncated_files(tmp_path, rgb8, fmt):
    p = tmp_path / f"t.{fmt.lower()}"
    Image.fromarray(rgb8).save(p, format=fmt)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=str(p.name)):
        read_gray(p)


def test_missing_file(tmp_path):
    with pytest.raises(ImageReadError, match="not found"):
        read_gray(tmp_path / "nope.png")


def test_pixel_ceiling(tmp_path):
    Image.new("L", (300, 200)).save(tmp_path / "big.png")
    with pytest.raises(ImageReadError, match="ceiling"):
        read_gray(tmp_path / "big.png", max_pixels=50_000)
    assert read_gray(tmp_path / "big.png", max_pixels=None).shape == (200, 300)


def test_read_rgb_of_gray_file(tmp_path):
    Image.new("L", (5, 4), 128).save(tmp_path / "g.png")
    out = read_rgb(tmp_path / "g.png")
    assert out.shape == (4, 5, 3) and np.allclose(out, 128 / 255)


def test_arrays_become_gray_by_one_rule():
    rgb16 = np.random.default_rng(1).integers(0, 65536, (6, 5, 3), dtype=np.uint16)
    with pytest.warns(UserWarning, match="BT.601"):
        gray = array_to_gray(rgb16)
    luma = (rgb16 / 65535.0) @ np.array([0.299, 0.587, 0.114])
    assert gray.dtype == np.float32 and gray.shape == (6, 5)
    np.testing.assert_allclose(gray, luma, atol=1e-6)
    np.testing.assert_array_equal(array_to_gray(np.array([[0, 255]], np.uint8)), [[0.0, 1.0]])


@pytest.mark.parametrize("bad, match", [
    (np.array([[-1, 3]], np.int16), "negative"),
    (np.array([[np.nan, 0.5]]), "NaN"),
    (np.array([[1.5, 0.5]]), r"\[0, 1\]"),
    (np.ones((2, 2), bool), "dtype"),
    (np.zeros((2, 2, 4)), "shape"),
    (np.zeros((0, 3)), "shape"),
])
def test_bad_arrays_are_refused_naming_the_argument(bad, match):
    with pytest.raises(ImageReadError, match=f"scan-7.*{match}|{match}.*scan-7"):
        array_to_gray(bad, name="scan-7", error=ImageReadError)
