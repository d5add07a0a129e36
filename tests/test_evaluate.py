import numpy as np
import pytest

from colorcube.apps.evaluate import coverage_at, evaluate, group_coverage, share_interval, terciles
from colorcube.conformal.records import calibrate
from colorcube.inputs.images import list_images
from colorcube.settings import PipelineSettings


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
    _cal, res = result
    r = res["alphas"]["0.4"]
    from_curves = coverage_at(res["test_curves"], r["lambda"]).mean(axis=0)
    np.testing.assert_allclose(from_curves, r["coverage"], atol=2e-3)


def test_diagnostics_groups_joint_and_per_image(result):
    _cal, res = result
    r = res["alphas"]["0.2"]
    # a pixel covered in all three channels is covered in each
    assert r["joint_coverage_of_per_channel_bands"] <= min(r["coverage"]) + 1e-12
    g = r["groups"]
    assert set(g) == {"source", "brightness", "saturation", "size"}
    for key in ("brightness", "saturation", "size"):
        assert sum(v["n"] for v in g[key].values()) == 6 and len(g[key]) <= 3
    for v in g["brightness"].values():
        assert len(v["coverage"]) == 4  # R, G, B and joint
    pi = r["per_image"]
    assert pi["beta"] == 0.2 and len(pi["share"]) == 3
    for share, (lo, hi) in zip(pi["share"], pi["ci"]):
        assert lo <= share <= hi
    assert "0.8" in res["guarantee"]["0.2"] and len(res["image_stats"]) == 6


def test_group_coverage_interval_by_hand():
    """Coverages 0.8, 0.9, 1.0: mean 0.9, sd 0.1, t(0.975, 2) = 4.303: half-width 0.2484."""
    out = group_coverage(np.array([[0.8], [0.9], [1.0], [0.5]]), ["a", "a", "a", "b"])
    assert out["a"]["n"] == 3 and out["a"]["coverage"] == pytest.approx([0.9])
    assert out["a"]["ci"][0] == pytest.approx([0.9 - 0.24841], abs=1e-4) and out["a"]["ci"][1] == [1.0]
    assert out["b"]["ci"] is None


def test_share_interval_is_clopper_pearson():
    assert share_interval(0, 10) == pytest.approx([0.0, 0.30850], abs=1e-4)
    assert share_interval(10, 10) == pytest.approx([0.69150, 1.0], abs=1e-4)
    assert share_interval(5, 10) == pytest.approx([0.18709, 0.81291], abs=1e-4)


def test_terciles_split_in_thirds():
    labels, edges = terciles(np.arange(1, 10))
    assert sorted(set(labels)) == ["1-low", "2-mid", "3-high"] and [labels.count(x) for x in sorted(set(labels))] == \
        [3, 3, 3]
    assert edges == pytest.approx([11 / 3, 19 / 3])
