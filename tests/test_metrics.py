import numpy as np
import pytest

from colorcube.metrics import chroma_edges, ciede2000, colorfulness, coverage, edge_error, mean_width, psnr


def test_psnr_known_value():
    a = np.zeros((10, 10, 3))
    b = np.full((10, 10, 3), 0.1)
    assert psnr(a, b) == pytest.approx(20.0)
    assert psnr(a, a) == float("inf")


def test_colorfulness_gray_is_zero_and_saturation_raises_it(photos):
    gray = np.repeat(np.linspace(0, 1, 100)[None, :, None], 3, axis=2) * np.ones((50, 1, 1))
    assert colorfulness(gray) == pytest.approx(0.0, abs=1e-9)
    rgb = photos["coffee"] / 255.0
    washed = 0.5 * rgb + 0.5 * rgb.mean(axis=2, keepdims=True)
    assert colorfulness(rgb) > colorfulness(washed) > 0


def test_ciede2000_zero_for_identity_and_positive_otherwise(photos):
    rgb = photos["chelsea"][::8, ::8] / 255.0
    assert np.allclose(ciede2000(rgb, rgb), 0)
    assert ciede2000(rgb[..., ::-1], rgb).mean() > 5


def test_chroma_edges_find_a_colour_step_not_a_gray_one():
    img = np.zeros((40, 40, 3))
    img[:, :20] = [0.8, 0.2, 0.2]
    img[:, 20:] = [0.2, 0.2, 0.8]
    mask = chroma_edges(img, radius=3)
    assert mask[:, 16:24].all() and not mask[:, :12].any() and not mask[:, 28:].any()
    gray_step = np.zeros((40, 40, 3))
    gray_step[:, 20:] = 1.0
    assert not chroma_edges(gray_step).any()
    assert np.isnan(edge_error(gray_step, gray_step))
    assert edge_error(img[:, ::-1], img) > 10


def test_coverage_and_width():
    truth = np.full((2, 2, 3), 0.5)
    iv = np.zeros((2, 2, 3, 2))
    iv[..., 1] = 1.0
    iv[0, 0, 0] = [0.6, 0.9]  # one miss in R
    np.testing.assert_allclose(coverage(iv, truth), [0.75, 1, 1])
    assert float(coverage(iv, truth, joint=True)) == 0.75
    np.testing.assert_allclose(mean_width(iv), [(3 * 255 + 0.3 * 255) / 4, 255, 255])
