"""Conformal calibration: statistical guarantees on synthetic exchangeable data,
plus the mechanics (monotone curves, grid ends, files, errors)."""

import numpy as np
import pytest
from scipy.stats import norm

from colorcube.conformal import (
    LAMBDA_GRID,
    Calibration,
    crc_lambda,
    hb_p_value,
    lambda_star,
    loss_curve,
    min_images,
    nested_interval,
    rcps_lambda,
)
from colorcube.errors import CalibrationError

M = 400  # pixels per synthetic image


def synthetic_curves(rng, n_images):
    """Per-image loss curves of images whose pixels have lambda* = s_i |Z|.

    s_i ~ LogNormal(0, 0.5) makes images differ (within-image dependence), so
    the image, not the pixel, is the exchangeable unit, as for photographs.
    """
    scale = rng.lognormal(0.0, 0.5, size=n_images)
    lam_star = np.abs(rng.standard_normal((M, n_images))) * scale[None, :]
    return loss_curve(lam_star)  # (n_images, grid)


def population_risk(lam, rng):
    """True risk E_s[P(s|Z| > lam)] by averaging the exact Gaussian tail over many s."""
    s = rng.lognormal(0.0, 0.5, size=200_000)
    return float(np.mean(2 * norm.sf(lam / s))) if np.isfinite(lam) else 0.0


@pytest.mark.slow
@pytest.mark.parametrize("alpha", [0.05, 0.1, 0.2])
def test_crc_controls_risk_and_is_nearly_tight(alpha):
    rng = np.random.default_rng(12345)
    n, repeats = 99, 500
    risks, jumps = [], []
    for _ in range(repeats):
        curves = synthetic_curves(rng, n + 1)
        cal, test = curves[:n], curves[n]
        lam = crc_lambda(cal, alpha)
        k = int(np.searchsorted(LAMBDA_GRID, lam))
        risks.append(test[k])
        # the grid can overshoot the continuous solution by one step's drop in risk
        jumps.append(cal.mean(axis=0)[max(k - 1, 0)] - cal.mean(axis=0)[k])
    risks = np.array(risks)
    # Mean of `repeats` iid test risks: 4 standard errors leave a false-alarm
    # probability below 1e-4 per side (normal approximation, repeats = 500).
    tol = 4 * risks.std(ddof=1) / np.sqrt(repeats)
    assert risks.mean() <= alpha + tol
    # CRC lower bound (Angelopoulos et al. 2022, Thm 2): alpha - 2B/(n+1), B = 1,
    # less the largest discretisation step of the empirical risk on the grid.
    assert risks.mean() >= alpha - 2 / (n + 1) - max(jumps) - tol


@pytest.mark.slow
def test_rcps_holds_alpha_delta_statement():
    rng = np.random.default_rng(777)
    alpha, delta, n, repeats = 0.1, 0.1, 200, 300
    grid_risk = {}
    violations = 0
    for _ in range(repeats):
        lam = rcps_lambda(synthetic_curves(rng, n), alpha, delta)
        if lam not in grid_risk:
            grid_risk[lam] = population_risk(lam, np.random.default_rng(1))
        violations += grid_risk[lam] > alpha
    # Violations ~ Binomial(repeats, p <= delta): 3 standard deviations above delta.
    assert violations / repeats <= delta + 3 * np.sqrt(delta * (1 - delta) / repeats)
    # and RCPS is stricter than CRC on the same data
    curves = synthetic_curves(rng, n)
    assert rcps_lambda(curves, alpha, delta) >= crc_lambda(curves, alpha)


def test_loss_curve_monotone_with_grid_ends():
    rng = np.random.default_rng(0)
    ls = np.abs(rng.standard_normal((1000, 3)))
    ls[:10, 0] = 0.0  # exactly at the centre: covered even at lambda = 0
    curves = loss_curve(ls)
    assert curves.shape == (3, len(LAMBDA_GRID))
    assert (np.diff(curves, axis=1) <= 0).all()
    assert curves[0, 0] == pytest.approx(0.99)
    assert (curves[:, -1] == 0).all()  # lambda = inf covers everything
    assert ((curves >= 0) & (curves <= 1)).all()


def test_lambda_star_agrees_with_nested_interval():
    rng = np.random.default_rng(3)
    f = rng.random((500, 3)).astype(np.float32)
    lower = f - rng.random((500, 3)).astype(np.float32) * f
    upper = f + rng.random((500, 3)).astype(np.float32) * (1 - f)
    y = rng.random((500, 3)).astype(np.float32)
    ls = lambda_star(f, lower, upper, y)
    for lam in (0.0, 0.3, 1.0, 2.5):
        lo, hi = nested_interval(f, lower, upper, lam)
        covered = (y >= lo) & (y <= hi)
        decided = np.abs(ls - lam) > 1e-4  # away from float ties
        np.testing.assert_array_equal(covered[decided], (ls <= lam)[decided])
    lo, hi = nested_interval(f, lower, upper, np.inf)
    assert (lo == 0).all() and (hi == 1).all()


def test_lambda_star_of_stored_bands_agrees_with_outward_rounding():
    """With ``levels=255``, lambda* decides coverage of the bands as stored (rounded outward) of 8-bit truth."""
    from colorcube.fullres import round_outward

    rng = np.random.default_rng(4)
    f = rng.random((4000, 3)).astype(np.float32)
    s = (rng.random((4000, 3)) * 0.1).astype(np.float32)
    y = (rng.integers(0, 256, (4000, 3)) / 255).astype(np.float32)  # as an 8-bit truth image reads
    ls = lambda_star(f, f - s, f + s, y, levels=255)
    plain = lambda_star(f, f - s, f + s, y)
    assert (ls <= plain + 1e-6).all() and (ls < plain - 1e-3).mean() > 0.5  # rounding covers more, earlier
    for lam in (0.0, 0.3, 1.0, 2.5):
        lo, hi = round_outward(*nested_interval(f, f - s, f + s, lam))
        covered = (y >= lo) & (y <= hi)
        decided = np.abs(ls - lam) > 1e-4
        assert decided.mean() > 0.95
        np.testing.assert_array_equal(covered[decided], (ls <= lam)[decided])


def _cal(rng, n=60, **kw):
    curves = np.stack([synthetic_curves(rng, n) for _ in range(3)], axis=1)
    joint = np.maximum.reduce([curves[:, c] for c in range(3)])
    return Calibration(curves=curves, joint_curves=joint, provenance={"model_hash": "a" * 64, "settings": {}}, **kw)


def test_any_alpha_and_joint_is_wider():
    cal = _cal(np.random.default_rng(5))
    lam1, lam2 = cal.lambda_for(0.2), cal.lambda_for(0.05)
    assert (lam2 > lam1).all()
    joint = cal.lambda_for(0.1, joint=True)
    assert (joint >= cal.lambda_for(0.1)).all() and len(set(joint)) == 1
    assert "0.9" in cal.guarantee(0.1) and "60 calibration images" in cal.guarantee(0.1)
    assert "RCPS" in cal.guarantee(0.1, method="rcps")


def test_file_round_trip_and_refusals(tmp_path):
    cal = _cal(np.random.default_rng(6), method="rcps", delta=0.05)
    path = cal.to_file(tmp_path / "c.cal")
    back = Calibration.from_file(path, model_hash="a" * 64)
    np.testing.assert_array_equal(back.curves, cal.curves)
    assert back.method == "rcps" and back.delta == 0.05
    for a in (0.07, 0.1, 0.3):
        np.testing.assert_array_equal(back.lambda_for(a), cal.lambda_for(a))
    with pytest.raises(CalibrationError, match="not for the loaded model"):
        Calibration.from_file(path, model_hash="b" * 64)
    # truncated
    (tmp_path / "t.cal").write_bytes(path.read_bytes()[:500])
    with pytest.raises(CalibrationError, match="t.cal"):
        Calibration.from_file(tmp_path / "t.cal")
    # tampered content with a valid zip: rewrite curves, keep the stored checksum
    import io
    import zipfile

    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    buf = io.BytesIO()
    np.save(buf, np.zeros_like(cal.curves))
    members["curves.npy"] = buf.getvalue()
    with zipfile.ZipFile(tmp_path / "x.cal", "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    with pytest.raises(CalibrationError, match="checksum"):
        Calibration.from_file(tmp_path / "x.cal")


def test_pipeline_settings_mismatch_is_refused():
    cal = _cal(np.random.default_rng(8))
    cal.provenance["settings"] = {"working_size": 512}
    with pytest.raises(CalibrationError, match="working_size"):
        cal.check_compatible(settings={"working_size": 256})


@pytest.mark.parametrize("alpha", [0, 1, -0.1, 1.5, float("nan"), "x"])
def test_bad_alpha(alpha):
    cal = _cal(np.random.default_rng(9))
    with pytest.raises(CalibrationError, match="alpha"):
        cal.lambda_for(alpha)


def test_too_few_images_says_how_many():
    rng = np.random.default_rng(10)
    curves = synthetic_curves(rng, 10)
    assert min_images(0.05) == 19
    with pytest.raises(CalibrationError, match="at least 19"):
        crc_lambda(curves, 0.05)
    with pytest.raises(CalibrationError, match="at least"):
        rcps_lambda(curves, 0.1, 0.1)


def test_nan_and_shape_errors():
    with pytest.raises(CalibrationError, match="NaN"):
        loss_curve(np.array([0.1, np.nan]))
    with pytest.raises(CalibrationError, match="expected"):
        Calibration(curves=np.zeros((4, 2, len(LAMBDA_GRID))), joint_curves=np.zeros((4, len(LAMBDA_GRID))))
    bad = np.zeros((4, 3, len(LAMBDA_GRID)))
    bad[0, 0, 0] = np.nan
    with pytest.raises(CalibrationError, match="NaN"):
        Calibration(curves=bad, joint_curves=np.zeros((4, len(LAMBDA_GRID))))


def test_hb_p_value_behaviour():
    # far below alpha with many samples: strong evidence (tiny p); at alpha: no evidence
    assert hb_p_value(np.array([0.01]), 1000, 0.1)[0] < 1e-10
    assert hb_p_value(np.array([0.1]), 1000, 0.1)[0] > 0.5
