import matplotlib

matplotlib.use("Agg")

import numpy as np

from colorcube.apps.plot import coverage_curve, coverage_histogram, width_map
from colorcube.conformal.calibration import Calibration
from colorcube.conformal.estimators import loss_curve
from colorcube.testing import build_cube


def _curves(rng, n):
    scale = rng.lognormal(0, 0.5, n)
    return np.stack([loss_curve(np.abs(rng.standard_normal((300, n))) * scale) for _ in range(3)], axis=1)


def test_coverage_curve_lines_follow_nominal():
    rng = np.random.default_rng(0)
    cal_curves = _curves(rng, 100)
    cal = Calibration(curves=cal_curves, joint_curves=cal_curves.max(axis=1))
    ax = coverage_curve(cal, _curves(rng, 100), alphas=np.linspace(0.05, 0.3, 6))
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert set(lines) == {"nominal", "R", "G", "B"}
    x, y = lines["R"].get_data()
    assert np.abs(np.asarray(y) - np.asarray(x)).max() < 0.08  # exchangeable data: empirical ~ nominal
    assert ax.get_xlabel().startswith("nominal")


def test_histogram_and_width_map():
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2)
    cov = np.random.default_rng(1).uniform(0.8, 1, (50, 3))
    assert coverage_histogram(cov, alpha=0.1, ax=a1) is a1
    assert len(a1.patches) == 3
    rgb = np.full((40, 60, 3), 0.5, np.float32)
    iv = np.stack([rgb - 0.1, rgb + 0.1], axis=-1)
    iv[:, 30:, 0, 1] = 0.9  # wider on the right in R
    ds = build_cube(rgb[..., 0], rgb, iv, alpha=0.1, lam=[1, 1, 1])
    assert width_map(ds, channel="R", ax=a2) is a2
    img = a2.get_images()[0].get_array()
    assert img[:, 40:].mean() > img[:, :20].mean()
    plt.close(fig)
