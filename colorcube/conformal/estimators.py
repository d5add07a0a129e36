"""Conformal estimators of the R, G, B bands' lambda: CRC (default), RCPS, per-image and archive-weighted.

Notation: per image i, pixel p, channel c, band centre
``f``, heuristic bounds ``l <= f <= u`` and truth ``y``, all in [0, 1]. The
nested interval for ``lambda >= 0`` is

    T_lambda = [f - lambda (f - l + EPS), f + lambda (u - f + EPS)] clipped to [0, 1]

and the loss of image i is the fraction of its pixels whose truth falls
outside. Each pixel is covered exactly when ``lambda >= lambda*_p``, with
``lambda*_p = (y - f) / (u - f + EPS)`` above the centre and
``(f - y) / (f - l + EPS)`` below, so an image's whole loss curve is one
histogram of ``lambda*`` over a fixed grid. The image, not the pixel, is the
unit of exchangeability: curves are averaged over images, never pooled pixels.

Three statements can be served from the same stored curves (one sentence each
in :meth:`colorcube.conformal.calibration.Calibration.guarantee`, which holds the curves):

* expected coverage (CRC): ``E[L_new(lambda)] <= alpha``;
* per-image coverage (``beta``): ``P(L_new(lambda) > beta) <= alpha``, CRC on the
  image-level event ``1[L_i(lambda) > beta]``, i.e. split conformal on
  ``s_i = inf{lambda : L_i(lambda) <= beta}`` (:func:`per_image_scores`);
* archive-weighted (covariate shift, Tibshirani et al. 2019 in risk-control
  form): :func:`weighted_crc_lambda` with per-image likelihood-ratio weights.
"""

from __future__ import annotations

import math

import numpy as np

import colorcube

from ..errors import CalibrationError
from ..render.bands import EPS

__all__ = [
    "LAMBDA_GRID",
    "check_alpha",
    "crc_lambda",
    "effective_sample_size",
    "hb_p_value",
    "image_level_curves",
    "lambda_star",
    "loss_curve",
    "min_images",
    "per_image_scores",
    "rcps_lambda",
    "weighted_crc_lambda",
    "weighted_crc_lambdas",
]

#: Fixed lambda grid: 0, 600 geometric steps (about 1.3 % apart) and +inf,
#: whose interval is all of [0, 1], so every alpha has a solution.
LAMBDA_GRID = np.concatenate([[0.0], np.geomspace(0.01, 50.0, 600), [np.inf]])
#: lambda* within this of 0 counts as a tie at lambda = 0 (float rounding of f * 255 decides
#: those), so the curves never count a pixel as covered by the lambda = 0 band unless it is
_TIE = 1e-4


def lambda_star(f, lower, upper, truth, *, levels: int | None = None) -> np.ndarray:
    """Smallest lambda whose interval covers each truth value, shape of ``f``.

    ``levels`` : int, optional
        The bands are stored rounded outward to the grid ``k / levels`` (255 in
        colorcube): the stored upper bound ``ceil(hi * levels) / levels`` reaches
        ``t`` exactly when ``hi > (ceil(t * levels) - 1) / levels`` (and the lower
        bound mirrored), so lambda* is computed against those effective targets.
        The loss curves then describe the bands as stored, not a narrower ideal
        that the rounding would silently over-cover.

        The inequality is *strict*: a pixel is covered when ``lambda > lambda*``.
        Between grid values that is the same as ``>=`` (ties have probability 0),
        but at ``lambda = 0`` it is not: a centre ``f`` that sits on the storage
        grid (clipped to 0 or 1, most often) gives ``lambda* = 0`` and a stored
        band ``[f, f]`` that misses the next code. Such ties (within ``1e-4``
        of 0, where float rounding of ``f * 255`` decides) are returned as the
        smallest positive float32, so :func:`loss_curve` counts them as missed at
        ``lambda = 0`` and covered from the next grid value on.
    """
    f, lower, upper, truth = (np.asarray(a, np.float32) for a in (f, lower, upper, truth))
    if levels is None:
        above = truth >= f
        num = np.where(above, truth - f, f - truth)
        den = np.where(above, upper - f, f - lower) + EPS
        return num / den
    t = truth.astype(np.float64) * levels
    # 1e-3 of a step absorbs the float32 error of t = k / levels * levels
    reach_up = (np.ceil(t - 1e-3) - 1) / levels
    reach_down = (np.floor(t + 1e-3) + 1) / levels
    up = (reach_up - f) / (upper.astype(np.float64) - f + EPS)
    down = (f - reach_down) / (f - lower.astype(np.float64) + EPS)
    ls = np.maximum(up, down)
    out = np.maximum(ls, 0.0).astype(np.float32)
    out[ls > -_TIE] = np.maximum(out[ls > -_TIE], np.finfo(np.float32).tiny)  # ties at 0: missed at lambda = 0
    return out


def loss_curve(lam_star: np.ndarray, grid: np.ndarray = LAMBDA_GRID) -> np.ndarray:
    """Per-image loss on ``grid``: fraction of pixels with ``lambda* > lambda``.

    Parameters
    ----------
    lam_star : (pixels,) or (pixels, channel) array of lambda* values

    Returns
    -------
    (grid,) or (channel, grid) float64, non-increasing in lambda, in [0, 1]
    """
    lam_star = np.asarray(lam_star)
    flat = lam_star.ndim == 1
    if flat:
        lam_star = lam_star[:, None]
    if lam_star.shape[0] == 0:
        raise CalibrationError("an image with no pixels has no loss curve")
    if np.isnan(lam_star).any():
        raise CalibrationError("lambda* contains NaN (NaN in predictions or truth)")
    n = lam_star.shape[0]
    covered = np.stack([np.searchsorted(np.sort(lam_star[:, c]), grid, side="right")
                        for c in range(lam_star.shape[1])])
    out = 1.0 - covered / n
    return out[0] if flat else out


def min_images(alpha: float, *, method: str = "crc", delta: float = 0.1) -> int:
    """Fewest calibration images for which ``alpha`` is attainable at all."""
    check_alpha(alpha)
    if method == "crc":
        # n/(n+1) * 0 + 1/(n+1) <= alpha at lambda = inf
        return max(1, math.ceil(1.0 / alpha - 1.0 - 1e-12))
    # RCPS at lambda = inf (risk 0): (1 - alpha)^n < delta
    return math.floor(math.log(delta) / math.log1p(-alpha)) + 1


def check_alpha(alpha) -> float:
    """``alpha`` as a float in (0, 1), the miscoverage of a band; CalibrationError otherwise."""
    try:
        a = float(alpha)
    except (TypeError, ValueError) as exc:
        raise CalibrationError(f"alpha={alpha!r} is not a number; give a miscoverage level in (0, 1)") from exc
    if not 0.0 < a < 1.0 or math.isnan(a):
        raise CalibrationError(f"alpha={alpha!r} is outside (0, 1); e.g. alpha=0.1 for 90 % coverage")
    return a


def _check_beta(beta) -> float | None:
    if beta is None:
        return None
    try:
        b = float(beta)
    except (TypeError, ValueError) as exc:
        raise CalibrationError(f"beta={beta!r} is not a number; give the tolerated share of missed pixels "
                               "per image in [0, 1), e.g. beta=0.2") from exc
    if not 0.0 <= b < 1.0 or math.isnan(b):
        raise CalibrationError(f"beta={beta!r} is outside [0, 1); e.g. beta=0.2: at least 80 % of an image's "
                               "pixels covered")
    return b


def crc_lambda(curves: np.ndarray, alpha: float, grid: np.ndarray = LAMBDA_GRID, *, mean=None) -> float:
    """Conformal risk control: ``inf{lambda : n/(n+1) mean_i L_i(lambda) + 1/(n+1) <= alpha}``.

    Parameters
    ----------
    curves : (n, grid) per-image loss curves in [0, 1], non-increasing
    alpha : float in (0, 1)
    mean : (grid,) float64, optional, ``curves.mean(axis=0)`` computed once (speed)

    Returns
    -------
    lambda_hat : float (``inf`` only when nothing smaller controls the risk)
    """
    alpha = check_alpha(alpha)
    n = curves.shape[0]
    if n < min_images(alpha):
        raise CalibrationError(
            f"CRC at alpha={alpha} needs at least {min_images(alpha)} calibration images, got {n}"
        )
    mean = curves.mean(axis=0, dtype=np.float64) if mean is None else mean
    bound = n / (n + 1) * mean + 1.0 / (n + 1)
    ok = np.flatnonzero(bound <= alpha + 1e-12)
    return float(grid[ok[0]])


def effective_sample_size(weights) -> float:
    """Kish's effective sample size ``(sum w)^2 / sum w^2`` of non-negative weights (n for equal ones)."""
    w = np.asarray(weights, dtype=np.float64)
    s2 = float(np.sum(w * w))
    return float(np.sum(w)) ** 2 / s2 if s2 > 0 else 0.0


def weighted_crc_lambda(curves: np.ndarray, alpha: float, weights, w_test: float,
                        grid: np.ndarray = LAMBDA_GRID, *, bound: float = 1.0, weighted_sum=None) -> float:
    """Weighted conformal risk control under covariate shift.

    ``lambda_hat = inf{lambda : sum_i p_i L_i(lambda) + p_test * B <= alpha}`` with
    ``p_i = w_i / (sum_j w_j + w_test)`` and ``p_test = w_test / (sum_j w_j + w_test)``
    (Tibshirani et al. 2019, weighted conformal prediction, in the risk-control form
    of Angelopoulos et al.). With all weights 1 it is :func:`crc_lambda`.

    Parameters
    ----------
    curves : (n, grid) per-image loss curves in [0, bound], non-increasing
    alpha : float in (0, 1)
    weights : (n,) non-negative likelihood ratios ``dP_target / dP_calibration`` of
        the calibration images (any common scale)
    w_test : float > 0, the new image's weight on the same scale; a bound that is
        at least the new image's true weight gives a larger, conservative lambda
    bound : float, the largest loss B (1 for the coverage losses)
    weighted_sum : (grid,) float64, optional, ``weights @ curves`` computed once (speed)

    Returns
    -------
    lambda_hat : float

    Raises
    ------
    CalibrationError
        When ``p_test * B > alpha``: the new image's own weight takes more than the
        whole risk budget (the effective sample size is too small for ``alpha``).
    """
    alpha = check_alpha(alpha)
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.shape[0] != curves.shape[0]:
        raise CalibrationError(f"{w.shape[0]} weights for {curves.shape[0]} loss curves; give one weight per image")
    if not (np.isfinite(w).all() and (w >= 0).all() and w.sum() > 0):
        raise CalibrationError("weights must be finite, non-negative and not all zero")
    w_test = float(w_test)
    if not (math.isfinite(w_test) and w_test > 0):
        raise CalibrationError(f"w_test={w_test!r}: the new image's weight must be finite and > 0")
    total = w.sum() + w_test
    p_test = w_test / total
    if p_test * bound > alpha + 1e-12:
        raise CalibrationError(
            f"archive-weighted calibration cannot reach alpha={alpha}: the effective sample size is "
            f"{effective_sample_size(w):.1f} of {len(w)} calibration photos, and the new photo's weight alone takes "
            f"{p_test * bound:.3f} of the risk budget. Use alpha >= {math.ceil(p_test * bound * 1000) / 1000:.3f}, "
            "add calibration photos that look like the archive, or calibrate without a target")
    wsum = w @ np.asarray(curves, dtype=np.float64) if weighted_sum is None else weighted_sum
    return float(weighted_crc_lambdas(wsum, w.sum(), [w_test], alpha, grid, bound=bound)[0])


def weighted_crc_lambdas(weighted_sum: np.ndarray, sum_weights: float, w_test, alpha: float,
                         grid: np.ndarray = LAMBDA_GRID, *, bound: float = 1.0) -> np.ndarray:
    """:func:`weighted_crc_lambda` for many new-photo weights at once (no input checks), ``inf``
    where it would refuse (the weight alone takes more than alpha of the risk: only the band
    [0, 1] serves that photo).

    Parameters
    ----------
    weighted_sum : (grid,) float64, ``weights @ curves``; sum_weights : float, ``weights.sum()``
    w_test : (m,) new-photo weights

    Returns
    -------
    (m,) float64 lambdas
    """
    w_test = np.atleast_1d(np.asarray(w_test, np.float64))
    out = np.empty(len(w_test))
    for start in range(0, len(w_test), 1024):  # bounded temporaries: (1024, grid) at a time
        w = w_test[start : start + 1024]
        total = sum_weights + w
        p_test = w / total
        ok = weighted_sum[None, :] / total[:, None] + p_test[:, None] * bound <= alpha + 1e-12
        lam = np.asarray(grid)[ok.argmax(axis=1)]
        lam[~ok.any(axis=1) | (p_test * bound > alpha + 1e-12)] = np.inf
        out[start : start + len(w)] = lam
    return out


def image_level_curves(curves: np.ndarray, beta: float) -> np.ndarray:
    """The per-image event ``1[L_i(lambda) > beta]`` (fewer than 1 - beta of the pixels covered).

    Parameters
    ----------
    curves : (..., grid) loss curves in [0, 1], non-increasing
    beta : float in [0, 1)

    Returns
    -------
    float32 array of 0 / 1 shaped like ``curves``, non-increasing in lambda. The
    comparison is made in float32, the curves' storage precision.
    """
    beta = _check_beta(beta)
    return (np.asarray(curves, np.float32) > np.float32(beta)).astype(np.float32)


def per_image_scores(curves: np.ndarray, beta: float, grid: np.ndarray = LAMBDA_GRID) -> np.ndarray:
    """``s_i = inf{lambda in grid : L_i(lambda) <= beta}``: the smallest grid lambda covering >= 1 - beta.

    CRC on :func:`image_level_curves` returns the ``ceil((n + 1)(1 - alpha))``-th
    smallest ``s_i`` (split conformal on these scores; ``inf`` when that rank
    exceeds n).

    Parameters
    ----------
    curves : (n, grid) loss curves

    Returns
    -------
    (n,) float64 grid values (``inf`` for an image only the all-[0, 1] band covers)
    """
    miss = image_level_curves(curves, beta)
    first = np.argmax(miss == 0, axis=-1)  # the curves end at L(inf) = 0, so a zero exists
    return np.asarray(grid)[first]


def hb_p_value(risk_hat: np.ndarray, n: int, alpha: float) -> np.ndarray:
    """Hoeffding-Bentkus p-value of H0: risk > alpha (Bates et al., 2021)."""
    r = np.minimum(np.asarray(risk_hat, np.float64), alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        h1 = np.where(r > 0, r * np.log(r / alpha), 0.0) + (1 - r) * np.log((1 - r) / (1 - alpha))
    hoeffding = np.exp(-n * h1)
    bentkus = np.e * colorcube._deferred("scipy.stats").binom.cdf(np.ceil(n * np.asarray(risk_hat, np.float64)), n, alpha)
    return np.minimum(hoeffding, bentkus)


def rcps_lambda(curves: np.ndarray, alpha: float, delta: float, grid: np.ndarray = LAMBDA_GRID, *,
                mean=None) -> float:
    """Risk-controlling prediction set: with probability >= 1 - delta the risk is <= alpha.

    The smallest grid lambda from which on every larger lambda rejects
    ``risk > alpha`` at level ``delta`` with the Hoeffding-Bentkus p-value
    (``mean``: ``curves.mean(axis=0)`` computed once, optional).
    """
    alpha = check_alpha(alpha)
    if not 0.0 < float(delta) < 1.0:
        raise CalibrationError(f"delta={delta!r} is outside (0, 1); e.g. delta=0.1")
    n = curves.shape[0]
    need = min_images(alpha, method="rcps", delta=delta)
    if n < need:
        raise CalibrationError(f"RCPS at alpha={alpha}, delta={delta} needs at least {need} images, got {n}")
    p = hb_p_value(curves.mean(axis=0, dtype=np.float64) if mean is None else mean, n, alpha)
    bad = np.flatnonzero(p >= delta)
    return float(grid[0] if bad.size == 0 else grid[min(bad[-1] + 1, len(grid) - 1)])
