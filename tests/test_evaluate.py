import numpy as np
import pytest

from colorcube.calibrate import calibrate, list_images
from colorcube.evaluate import coverage_at, evaluate
from colorcube.pipeline import PipelineSettings


@pytest.fixture(scope="module")
def result(tiny_model, photo_dir):
    paths = list_images(photo_dir)
    cal = calibrate(paths[::2], model=tiny_model, settings=PipelineSettings(working_size=96), progress=False)
    return cal, evaluate(paths[1::2], model=tiny_model, calibration=cal, alphas=(0.2, 0.4), progress=False)


def test_structure_and_ranges(result):
    cal, res = result
    assert res["n_images"] == 6 and res["test_curves"].shape == (6, 3, len(cal.grid))
    for a in ("0.2", "0.4"):
        r = res["alphas"][a]
        assert all(0 <= v <= 1 for v in r["coverage"] + r["coverage_pooled"] + [r["joint_coverage"]])
        assert np.array(r["per_image_coverage"]).shape == (6, 3)
        assert np.array(r["coverage_by_width_quartile"]).shape == (4, 3)
        assert len(r["coverage_edge_band"]) == 3 and len(r["coverage_interior"]) == 3
    lo, hi = res["alphas"]["0.4"], res["alphas"]["0.2"]
    assert all(h >= l for h, l in zip(hi["coverage"], lo["coverage"]))
    assert all(h >= l for h, l in zip(hi["mean_width_255"], lo["mean_width_255"]))
    q = res["quality"]
    assert q["psnr_gray"] > 10 and q["ciede2000"] >= 0 and q["colorfulness_truth"] > 0


def test_coverage_from_curves_matches_direct_count(result):
    cal, res = result
    r = res["alphas"]["0.4"]
    from_curves = coverage_at(res["test_curves"], r["lambda"]).mean(axis=0)
    np.testing.assert_allclose(from_curves, r["coverage"], atol=2e-3)
