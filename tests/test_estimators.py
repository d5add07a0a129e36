"""Conformal calibration: statistical guarantees on synthetic exchangeable data,
plus the mechanics (monotone curves, grid ends, files, errors)."""


import numpy as np
import pytest
from scipy.stats import norm

from colorcube.conformal.calibration import Calibration
from colorcube.conformal.estimators import (
    LAMBDA_GRID,
    crc_lambda,
    effective_sample_size,
    hb_p_value,
    image_level_curves,
    lambda_star,
    loss_curve,
    min_images,
    per_image_scores,
    rcps_lambda,
    weighted_crc_lambda,
)
from colorcube.errors import CalibrationError
from colorcube.render.bands import nested_interval

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
    from colorcube.render.bands import round_outward

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


@pytest.mark.parametrize("alpha", [0, 1, -0.1, 1.5, float("nan"), "x"])
def test_bad_alpha(alpha):
    cal = _cal(np.random.default_rng(9))
    with pytest.raises(CalibrationError, match="alpha"):
        cal.lambda_for(alpha)


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


# -- the +1/(n+1) term, ties at lambda = 0 ----------------------------------------------------------


def test_crc_hand_computed_lambda_needs_the_plus_one_term():
    """n = 9 images on the grid (0, 1, 2, inf), mean losses 0.5, 0.15, 0.05, 0, alpha = 0.2.

    CRC: 9/10 * 0.15 + 1/10 = 0.235 > 0.2 at lambda 1, 9/10 * 0.05 + 1/10 = 0.145 <= 0.2 at lambda 2,
    so lambda = 2. Without the +1/(n+1) term (0.135 <= 0.2) or with mean <= alpha alone (0.15 <= 0.2)
    it would be 1.
    """
    grid = np.array([0.0, 1.0, 2.0, np.inf])
    curves = np.zeros((9, 4))
    curves[:, 0] = 0.5
    curves[[0, 1, 2], 1] = [0.45, 0.45, 0.45]  # mean 0.15
    curves[0, 2] = 0.45  # mean 0.05
    np.testing.assert_allclose(curves.mean(axis=0), [0.5, 0.15, 0.05, 0.0])
    assert crc_lambda(curves, 0.2, grid) == 2.0
    # at alpha = 0.24 the bound 0.235 passes at lambda 1
    assert crc_lambda(curves, 0.24, grid) == 1.0
    # the weighted form with unit weights is the same formula
    assert weighted_crc_lambda(curves, 0.2, np.ones(9), 1.0, grid) == 2.0


def test_weighted_crc_hand_computed():
    """Weights (1, 1, 2) and w_test = 1: p = (1, 1, 2, 1) / 5; losses at lambda 1 are (0, 0, 0.2):
    0.4 * 0.2 + 0.2 * B = 0.28. alpha 0.3 -> lambda 1; alpha 0.25 -> lambda 2 (losses 0: 0.2 <= 0.25)."""
    grid = np.array([0.0, 1.0, 2.0, np.inf])
    curves = np.array([[1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [1.0, 0.2, 0.0, 0.0]])
    w = np.array([1.0, 1.0, 2.0])
    assert weighted_crc_lambda(curves, 0.3, w, 1.0, grid) == 1.0
    assert weighted_crc_lambda(curves, 0.25, w, 1.0, grid) == 2.0
    # the test weight alone: p_test = 1/5 = 0.2 > alpha = 0.15 -> refused, naming the effective sample size
    with pytest.raises(CalibrationError, match="effective sample size is 2.7 of 3"):
        weighted_crc_lambda(curves, 0.15, w, 1.0, grid)
    # scale invariance: weights and w_test times 7 give the same lambda
    assert weighted_crc_lambda(curves, 0.3, 7 * w, 7.0, grid) == 1.0


def test_weighted_with_unit_weights_is_crc_and_grows_with_w_test():
    rng = np.random.default_rng(21)
    curves = synthetic_curves(rng, 80)
    for alpha in (0.05, 0.1, 0.2, 0.3):
        assert weighted_crc_lambda(curves, alpha, np.ones(80), 1.0) == crc_lambda(curves, alpha)
    w = rng.lognormal(0, 1, 80)
    lams = [weighted_crc_lambda(curves, 0.2, w, wt) for wt in (0.1, 1.0, 5.0, 10.0)]
    assert lams == sorted(lams)  # a larger bound on the test weight is conservative


def test_effective_sample_size():
    assert effective_sample_size(np.ones(50)) == pytest.approx(50)
    assert effective_sample_size([0, 0, 3.0, 0]) == pytest.approx(1)
    assert effective_sample_size([1, 1, 2]) == pytest.approx(16 / 6)


def test_ties_at_lambda_zero_are_missed_as_stored():
    """A centre on the storage grid (clipped to 0 or 1) gives lambda* = 0 but the stored band [f, f]
    misses the neighbouring code: the loss at lambda = 0 must count exactly what the stored band misses."""
    from colorcube.render.bands import round_outward

    rng = np.random.default_rng(11)
    n = 5000
    f = rng.choice([0.0, 1.0], size=(n, 3)).astype(np.float32)
    s = (rng.random((n, 3)) * 0.2).astype(np.float32)
    y = np.clip(f + rng.integers(-2, 3, (n, 3)) / 255, 0, 1).astype(np.float32)
    ls = lambda_star(f, f - s, f + s, y, levels=255)
    lo, hi = round_outward(*nested_interval(f, f - s, f + s, 0.0))
    stored_miss = 1 - ((y >= lo) & (y <= hi)).mean(axis=0)
    assert (stored_miss > 0.3).all()  # the case happens: about 3/5 of the pixels
    np.testing.assert_allclose(loss_curve(ls)[:, 0], stored_miss, atol=0)
    # from the next grid value on, the ties are covered, as the stored band covers them
    lo, hi = round_outward(*nested_interval(f, f - s, f + s, LAMBDA_GRID[1]))
    covered = (y >= lo) & (y <= hi)
    ties = (ls > 0) & (ls < 1e-30)
    assert ties.any() and covered[ties].all()
    # interior centres near a code: the curve never claims more coverage at lambda = 0 than stored
    f = (rng.integers(1, 255, (n, 3)) / 255).astype(np.float32)
    y = np.clip(f + rng.integers(-1, 2, (n, 3)) / 255, 0, 1).astype(np.float32)
    ls = lambda_star(f, f - s, f + s, y, levels=255)
    lo, hi = round_outward(*nested_interval(f, f - s, f + s, 0.0))
    assert (loss_curve(ls)[:, 0] >= 1 - ((y >= lo) & (y <= hi)).mean(axis=0)).all()


# -- per-image guarantee --------------------------------------------------------------------------


def test_per_image_lambda_is_the_conformal_order_statistic():
    rng = np.random.default_rng(13)
    curves = synthetic_curves(rng, 57)
    for alpha, beta in ((0.1, 0.2), (0.2, 0.1), (0.05, 0.3)):
        s = np.sort(per_image_scores(curves, beta))
        k = int(np.ceil((57 + 1) * (1 - alpha)))
        assert crc_lambda(image_level_curves(curves, beta), alpha) == s[k - 1]
        # the image-level event at that lambda: at most (n+1) alpha - 1 images miss
        lam = s[k - 1]
        assert (curves[:, np.searchsorted(LAMBDA_GRID, lam)] > beta).sum() <= (57 + 1) * alpha - 1


def test_image_level_event_compares_in_float32():
    curves = np.array([[0.5, np.float32(0.2), 0.19, 0.0]], np.float32)
    np.testing.assert_array_equal(image_level_curves(curves, 0.2), [[1, 0, 0, 0]])
    with pytest.raises(CalibrationError, match="beta"):
        image_level_curves(curves, 1.0)


COARSE_GRID = np.concatenate([[0.0], np.geomspace(0.01, 50.0, 150), [np.inf]])


def _population_curves(scale, grid=COARSE_GRID):
    """Exact per-image loss curves P(s |Z| > lambda) = 2 sf(lambda / s): a bounded monotone loss per image."""
    with np.errstate(divide="ignore"):
        return 2 * norm.sf(grid[None, :] / np.asarray(scale)[:, None])


@pytest.mark.slow
def test_per_image_guarantee_holds_on_exchangeable_images():
    """P(L_new(lambda) > beta) <= alpha over draws of (calibration set, new image).

    Images have pixel lambda* = s_i |Z|, s_i ~ LogNormal(0, 0.5), with their exact loss curves;
    the per-image miss of each repeat is Bernoulli(p <= alpha), so the mean over R repeats
    exceeds alpha by more than 3 binomial standard deviations with probability below 0.002. And
    split conformal is nearly tight: p >= alpha - 1/(n+1) - P(tie), where a tie is the new score
    s = inf{lambda : L(lambda) <= beta} = s_new * z_(1 - beta/2) falling in the grid cell of the chosen
    lambda: log s is N(., 0.5^2), so a cell of log-width c holds at most c / (0.5 sqrt(2 pi)).
    """
    rng = np.random.default_rng(2024)
    alpha, beta, n, repeats = 0.1, 0.2, 99, 3000
    misses = 0
    for _ in range(repeats):
        curves = _population_curves(rng.lognormal(0.0, 0.5, n + 1))
        lam = crc_lambda(image_level_curves(curves[:n], beta), alpha, COARSE_GRID)
        misses += curves[n, np.searchsorted(COARSE_GRID, lam)] > np.float32(beta)
    sd = np.sqrt(alpha * (1 - alpha) / repeats)
    assert misses / repeats <= alpha + 3 * sd
    tie = np.log(COARSE_GRID[2] / COARSE_GRID[1]) / (0.5 * np.sqrt(2 * np.pi))
    assert misses / repeats >= alpha - 1 / (n + 1) - tie - 3 * sd


@pytest.mark.slow
def test_weighted_crc_controls_risk_under_covariate_shift():
    """Calibration images have x ~ N(0, 1), the archive x ~ N(1, 1); the image's difficulty is
    s = exp(0.6 x) and its loss curve 2 sf(lambda / s). With the exact likelihood ratio
    w(x) = exp(x - 1/2) and the new image's own weight, weighted CRC keeps the archive risk <= alpha
    (mean over R iid repeats; 4 standard errors of the mean, false alarm < 1e-4), while plain CRC
    on the same calibration images exceeds alpha by far (the archive's images are harder).
    """
    rng = np.random.default_rng(99)
    alpha, n, repeats, mu = 0.1, 100, 1500, 1.0
    risk_w, risk_plain = [], []
    for _ in range(repeats):
        x = rng.standard_normal(n)
        x_new = mu + rng.standard_normal()
        curves = _population_curves(np.exp(0.6 * x))
        w = np.exp(mu * x - mu * mu / 2)
        s_new = np.exp(0.6 * x_new)
        try:
            lam = weighted_crc_lambda(curves, alpha, w, np.exp(mu * x_new - mu * mu / 2), COARSE_GRID)
        except CalibrationError:  # the new image's weight alone exceeds alpha: the all-[0, 1] band
            lam = np.inf
        risk_w.append(2 * norm.sf(lam / s_new))
        risk_plain.append(2 * norm.sf(crc_lambda(curves, alpha, COARSE_GRID) / s_new))
    risk_w, risk_plain = np.array(risk_w), np.array(risk_plain)
    assert risk_w.mean() <= alpha + 4 * risk_w.std(ddof=1) / np.sqrt(repeats)
    assert risk_plain.mean() > alpha + 4 * risk_plain.std(ddof=1) / np.sqrt(repeats)


# -- the Calibration object ------------------------------------------------------------------------


def test_too_few_images_says_how_many():
    rng = np.random.default_rng(10)
    curves = synthetic_curves(rng, 10)
    assert min_images(0.05) == 19
    with pytest.raises(CalibrationError, match="at least 19"):
        crc_lambda(curves, 0.05)
    with pytest.raises(CalibrationError, match="at least"):
        rcps_lambda(curves, 0.1, 0.1)
