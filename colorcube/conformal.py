"""Conformal calibration of the R, G, B bands: CRC (default), RCPS, per-image and archive-weighted.

Notation (DESIGN sections 4 and 8): per image i, pixel p, channel c, band centre
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
in :meth:`Calibration.guarantee`):

* expected coverage (CRC): ``E[L_new(lambda)] <= alpha``;
* per-image coverage (``beta``): ``P(L_new(lambda) > beta) <= alpha``, CRC on the
  image-level event ``1[L_i(lambda) > beta]``, i.e. split conformal on
  ``s_i = inf{lambda : L_i(lambda) <= beta}`` (:func:`per_image_scores`);
* archive-weighted (covariate shift, Tibshirani et al. 2019 in risk-control
  form): :func:`weighted_crc_lambda` with per-image likelihood-ratio weights.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import io
import json
import math
import os
import zipfile
from pathlib import Path

import numpy as np

from .errors import CalibrationError

__all__ = [
    "EPS",
    "LAMBDA_GRID",
    "Calibration",
    "nested_interval",
    "lambda_star",
    "loss_curve",
    "crc_lambda",
    "weighted_crc_lambda",
    "effective_sample_size",
    "image_level_curves",
    "per_image_scores",
    "rcps_lambda",
    "hb_p_value",
    "min_images",
]

EPS = 1e-3
#: Fixed lambda grid: 0, 600 geometric steps (about 1.3 % apart) and +inf,
#: whose interval is all of [0, 1], so every alpha has a solution.
LAMBDA_GRID = np.concatenate([[0.0], np.geomspace(0.01, 50.0, 600), [np.inf]])
_FORMAT = "colorcube-calibration-2"
#: formats :meth:`Calibration.from_file` reads (1: curves only, before features and weights)
_READABLE = ("colorcube-calibration-1", _FORMAT)
#: lambda* within this of 0 counts as a tie at lambda = 0 (float rounding of f * 255 decides
#: those), so the curves never count a pixel as covered by the lambda = 0 band unless it is
_TIE = 1e-4
#: an effective sample size below this (or below a quarter of n) draws a warning
WARN_ESS = 100.0
_UNSET = object()


def nested_interval(f, lower, upper, lam):
    """The nested interval ``T_lambda`` (works on numpy arrays and torch tensors).

    Parameters
    ----------
    f, lower, upper : (..., channel) arrays in [0, 1] with lower <= f <= upper
    lam : scalar or (channel,) array, >= 0 (``inf`` gives [0, 1])

    Returns
    -------
    lo, hi : arrays shaped like ``f``, clipped to [0, 1]
    """
    lam = np.asarray(lam, dtype=np.float64)
    if np.isinf(lam).any():
        big = np.where(np.isinf(lam), 2.0 / EPS, lam)  # reaches past [0, 1]
        lam = big
    if hasattr(f, "new_tensor"):  # torch
        lam_t = f.new_tensor(lam)
        lo = (f - lam_t * (f - lower + EPS)).clamp(0, 1)
        hi = (f + lam_t * (upper - f + EPS)).clamp(0, 1)
        return lo, hi
    lam = lam.astype(np.float32)
    lo = np.clip(f - lam * (f - lower + EPS), 0, 1)
    hi = np.clip(f + lam * (upper - f + EPS), 0, 1)
    return lo, hi


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
    _check_alpha(alpha)
    if method == "crc":
        # n/(n+1) * 0 + 1/(n+1) <= alpha at lambda = inf
        return max(1, math.ceil(1.0 / alpha - 1.0 - 1e-12))
    # RCPS at lambda = inf (risk 0): (1 - alpha)^n < delta
    return math.floor(math.log(delta) / math.log1p(-alpha)) + 1


def _check_alpha(alpha) -> float:
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
    alpha = _check_alpha(alpha)
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
    of Angelopoulos et al.; DESIGN section 8). With all weights 1 it is :func:`crc_lambda`.

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
    alpha = _check_alpha(alpha)
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
    risk = wsum / total + p_test * bound
    ok = np.flatnonzero(risk <= alpha + 1e-12)
    return float(grid[ok[0]])


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
    from scipy.stats import binom  # lazy: scipy.stats adds ~0.3 s to `import colorcube`

    r = np.minimum(np.asarray(risk_hat, np.float64), alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        h1 = np.where(r > 0, r * np.log(r / alpha), 0.0) + (1 - r) * np.log((1 - r) / (1 - alpha))
    hoeffding = np.exp(-n * h1)
    bentkus = np.e * binom.cdf(np.ceil(n * np.asarray(risk_hat, np.float64)), n, alpha)
    return np.minimum(hoeffding, bentkus)


def rcps_lambda(curves: np.ndarray, alpha: float, delta: float, grid: np.ndarray = LAMBDA_GRID, *,
                mean=None) -> float:
    """Risk-controlling prediction set: with probability >= 1 - delta the risk is <= alpha.

    The smallest grid lambda from which on every larger lambda rejects
    ``risk > alpha`` at level ``delta`` with the Hoeffding-Bentkus p-value
    (``mean``: ``curves.mean(axis=0)`` computed once, optional).
    """
    alpha = _check_alpha(alpha)
    if not 0.0 < float(delta) < 1.0:
        raise CalibrationError(f"delta={delta!r} is outside (0, 1); e.g. delta=0.1")
    n = curves.shape[0]
    need = min_images(alpha, method="rcps", delta=delta)
    if n < need:
        raise CalibrationError(f"RCPS at alpha={alpha}, delta={delta} needs at least {need} images, got {n}")
    p = hb_p_value(curves.mean(axis=0, dtype=np.float64) if mean is None else mean, n, alpha)
    bad = np.flatnonzero(p >= delta)
    return float(grid[0] if bad.size == 0 else grid[min(bad[-1] + 1, len(grid) - 1)])


@dataclasses.dataclass
class Calibration:
    """Per-image loss curves on a fixed lambda grid: any alpha, instantly.

    Attributes
    ----------
    curves : (n, 3, grid) float32, per-image, per-channel (R, G, B) loss curves
    joint_curves : (n, grid) float32, loss counting a pixel missed if any channel is
    grid : (grid,) float64 lambda grid (ends with ``inf``)
    method : {"crc", "rcps"} default method; ``delta`` its RCPS level
    joint : bool, default to joint (all-channel) coverage
    provenance : dict, what it was calibrated on: n, source, model hash, pipeline
        settings, date, ``files`` (names), ``sha256`` (of each file), ``sources``
        (each photo's source), ``hint_points`` (random true-colour hint points per
        photo, :data:`colorcube.hints.CALIBRATION_KEY`), and for a
        weighted calibration ``target`` (the archive, its size, the effective sample
        size and how the weights were estimated)
    beta : float in [0, 1) or None
        Default per-image tolerance: None serves expected coverage; a float serves
        "with probability >= 1 - alpha, at least 1 - beta of a new photo's pixels
        are covered".
    features : (n, d) float32 or None, per-image features of the gray input
        (:func:`colorcube.calibrate.image_features`), kept so that archive weights
        can be estimated again without running the network on these photos
    weights : (n,) float64 or None, likelihood ratios archive / calibration of the
        calibration photos (archive-weighted calibration; None: unweighted)
    w_test : float or None, the bound used for the new photo's weight (weighted only)
    """

    curves: np.ndarray
    joint_curves: np.ndarray
    grid: np.ndarray = dataclasses.field(default_factory=lambda: LAMBDA_GRID.copy())
    method: str = "crc"
    delta: float = 0.1
    joint: bool = False
    provenance: dict = dataclasses.field(default_factory=dict)
    beta: float | None = None
    features: np.ndarray | None = None
    weights: np.ndarray | None = None
    w_test: float | None = None
    #: per-(joint, beta) mean (or weighted sum) of the curves over images, made on first use
    _sums: dict = dataclasses.field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.method not in ("crc", "rcps"):
            raise CalibrationError(f"method={self.method!r}; use 'crc' or 'rcps'")
        # float32 in memory exactly as on disk, so a saved file serves the same lambdas
        self.curves = c = np.asarray(self.curves, dtype=np.float32)
        self.joint_curves = j = np.asarray(self.joint_curves, dtype=np.float32)
        self.grid = np.asarray(self.grid, dtype=np.float64)
        if c.ndim != 3 or c.shape[1] != 3 or c.shape[2] != len(self.grid) or j.shape != (c.shape[0], len(self.grid)):
            raise CalibrationError(f"loss curves have shapes {c.shape} and {j.shape}; expected (n, 3, {len(self.grid)})")
        if not (np.isfinite(c).all() and np.isfinite(j).all()):
            raise CalibrationError("loss curves contain NaN or infinite values")
        self.beta = _check_beta(self.beta)
        if self.features is not None:
            self.features = f = np.asarray(self.features, dtype=np.float32)
            if f.ndim != 2 or f.shape[0] != c.shape[0] or not np.isfinite(f).all():
                raise CalibrationError(f"features have shape {f.shape}; expected ({c.shape[0]}, d), finite")
        if self.weights is not None:
            self.weights = w = np.asarray(self.weights, dtype=np.float64)
            if w.shape != (c.shape[0],) or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
                raise CalibrationError(f"weights have shape {w.shape}; expected ({c.shape[0]},), finite, >= 0, "
                                       "not all zero")
            if self.w_test is None or not (math.isfinite(float(self.w_test)) and float(self.w_test) > 0):
                raise CalibrationError(f"w_test={self.w_test!r}: a weighted calibration needs the new photo's "
                                       "weight bound, finite and > 0")
            self.w_test = float(self.w_test)
            if self.method != "crc":
                raise CalibrationError("an archive-weighted calibration serves CRC only; use method='crc'")

    @property
    def n(self) -> int:
        """Number of calibration images."""
        return int(self.curves.shape[0])

    @property
    def weighted(self) -> bool:
        """Whether lambdas come from archive-weighted CRC."""
        return self.weights is not None

    @property
    def ess(self) -> float:
        """Effective sample size ``(sum w)^2 / sum w^2`` (n when unweighted)."""
        return effective_sample_size(self.weights) if self.weighted else float(self.n)

    @property
    def hint_points(self) -> int:
        """Random true-colour hint points per photo the calibration simulated (0: none)."""
        return int(self.provenance.get("hint_points", self.provenance.get("hints", 0)) or 0)

    def _resolve(self, method, delta, joint, beta):
        method = self.method if method is None else method
        delta = self.delta if delta is None else delta
        joint = self.joint if joint is None else joint
        beta = self.beta if beta is _UNSET else _check_beta(beta)
        if method not in ("crc", "rcps"):
            raise CalibrationError(f"method={method!r}; use 'crc' or 'rcps'")
        if method != "crc" and self.weighted:
            raise CalibrationError("an archive-weighted calibration serves CRC only; use method='crc' (RCPS has no "
                                   "weighted form here)")
        return method, delta, joint, beta

    def lambda_for(self, alpha: float, *, method: str | None = None, delta: float | None = None,
                   joint: bool | None = None, beta=_UNSET, w_test: float | None = None) -> np.ndarray:
        """Lambda per channel (R, G, B) for miscoverage ``alpha``; no model call.

        Parameters
        ----------
        alpha : float in (0, 1)
        method, delta, joint : override the calibration's defaults
        beta : float in [0, 1) or None, optional
            Per-image tolerance; default the calibration's own (:attr:`beta`);
            None asks for expected coverage.
        w_test : float, optional
            Weighted calibrations: the new photo's weight (default :attr:`w_test`,
            the archive-wide bound); a smaller one gives that photo its own,
            narrower lambda.

        Returns
        -------
        (3,) float64; the three entries are equal when ``joint``.

        Raises
        ------
        CalibrationError
            alpha below what this calibration can serve (too few photos, or too
            small an effective sample size), or an unknown method.
        """
        method, delta, joint, beta = self._resolve(method, delta, joint, beta)
        cur = self.joint_curves[:, None] if joint else self.curves  # (n, k, grid)
        key = (bool(joint), beta, self.weighted)
        if key not in self._sums:  # the (weighted) mean over images is all any alpha needs: made once
            if beta is not None:
                cur = image_level_curves(cur, beta)
            self._sums[key] = (np.einsum("n,nkg->kg", self.weights, cur.astype(np.float64)) if self.weighted
                               else cur.mean(axis=0, dtype=np.float64))
        sums = self._sums[key]
        k = range(sums.shape[0])  # cur[:, c] below only gives n: the sums stand for the curves
        if self.weighted:
            wt = self.w_test if w_test is None else w_test
            lams = [weighted_crc_lambda(cur[:, c], alpha, self.weights, wt, self.grid, weighted_sum=sums[c]) for c in k]
        elif method == "crc":
            lams = [crc_lambda(cur[:, c], alpha, self.grid, mean=sums[c]) for c in k]
        else:
            lams = [rcps_lambda(cur[:, c], alpha, delta, self.grid, mean=sums[c]) for c in k]
        return np.full(3, lams[0]) if joint else np.array(lams)

    def min_alpha(self, *, method: str | None = None, delta: float | None = None) -> float:
        """Smallest alpha this calibration can serve (at ``lambda = inf``, the band [0, 1]).

        CRC: ``1 / (n + 1)``; weighted CRC: ``w_test / (sum w + w_test)``; RCPS:
        ``1 - delta^(1/n)``. The same for expected, per-image and joint coverage.
        """
        method, delta, _, _ = self._resolve(method, delta, None, None)
        if self.weighted:
            return self.w_test / (float(self.weights.sum()) + self.w_test)
        if method == "crc":
            return 1.0 / (self.n + 1)
        return 1.0 - float(delta) ** (1.0 / self.n)

    def guarantee(self, alpha: float, *, method: str | None = None, delta: float | None = None,
                  joint: bool | None = None, beta=_UNSET) -> str:
        """The statistical statement the bands carry, in one sentence (a second one for hints)."""
        text = self._statement(alpha, method, delta, joint, beta)
        if self.hint_points:
            text += (f" It holds for photos given {self.hint_points} random true-colour hint points (the "
                     "calibration's hint process), not for photos without hints.")
        return text

    def _statement(self, alpha, method, delta, joint, beta) -> str:
        method, delta, joint, beta = self._resolve(method, delta, joint, beta)
        a = f"{1 - alpha:.3g}"
        who = (f"a new photograph exchangeable with the {self.n} calibration images" if not self.weighted else
               f"a photograph from the target archive ({self._target_words()})")
        if beta is None:
            where = ("a uniformly chosen pixel's true R, G and B values lie inside their bands, all three at once,"
                     if joint else "a uniformly chosen pixel's true value of each channel (R, G, B) lies inside that "
                     "channel's band (each channel separately, not all three at once)")
            if self.weighted:
                return (f"Approximately: for {who}, {where} with probability at least {a}, averaged over photos "
                        "(archive-weighted conformal risk control; it assumes the colours given the gray image are as "
                        "in the calibration photos and that the estimated weights are right).")
            if method == "crc":
                return (f"For {who}, {where} with probability at least {a} (conformal risk control, expected over "
                        "images: one photograph may fall short).")
            each = "for all three of R, G, B at once" if joint else "in each channel (R, G, B) separately"
            return (f"With probability at least {1 - delta:.3g} over the calibration set, for {who} the expected "
                    f"share of pixels whose true value lies inside the band is at least {a}, {each} (RCPS, "
                    "Hoeffding-Bentkus).")
        share = f"{1 - beta:.3g}"
        where = ("all three of their true R, G, B values inside their bands" if joint else
                 "their true value inside the band, in each channel (R, G, B) separately")
        if self.weighted:
            return (f"Approximately: with probability at least {a}, {who} has at least {share} of its pixels with "
                    f"{where} (archive-weighted per-image conformal guarantee; it assumes the colours given the gray "
                    "image are as in the calibration photos and that the estimated weights are right).")
        if method == "crc":
            return (f"With probability at least {a}, {who} has at least {share} of its pixels with {where} "
                    "(per-image conformal guarantee).")
        return (f"With probability at least {1 - delta:.3g} over the calibration set, at most a fraction {alpha:.3g} "
                f"of new photographs exchangeable with the {self.n} calibration images have fewer than {share} of "
                f"their pixels with {where} (RCPS on the per-image event, Hoeffding-Bentkus).")

    def _target_words(self) -> str:
        t = self.provenance.get("target", {})
        name = t.get("description") or "the archive"
        return (f"{name}, {t.get('n_images', '?')} images; likelihood ratio estimated from gray-image features; "
                f"effective sample size {self.ess:.0f} of {self.n} calibration photos")

    def summary(self) -> dict:
        """Small JSON-able description for cube attributes."""
        p = self.provenance
        out = {"n_images": self.n, "source": p.get("source", ""), "model_hash": p.get("model_hash", ""),
               "date": p.get("date", ""), "method": self.method, "joint": self.joint, "beta": self.beta,
               "weighted": self.weighted, "hint_points": self.hint_points}
        if self.weighted:
            t = p.get("target", {})
            out.update(ess=round(self.ess, 2), w_test=self.w_test, target=t.get("description", ""),
                       target_images=t.get("n_images"))
        return out

    def check_compatible(self, *, model_hash: str | None = None, settings: dict | None = None,
                         hints: int | None = None, where="") -> None:
        """Refuse to serve a model or pipeline other than the one calibrated.

        ``hints`` : the number of hint points the photo to colorize has (None: not
        checked). A calibration made with random hints (:attr:`hint_points` > 0)
        describes hinted photos only, so it is refused for a photo without hints.
        """
        prov = self.provenance
        if model_hash and prov.get("model_hash") and prov["model_hash"] != model_hash:
            raise CalibrationError(
                f"{where or 'calibration'}: computed for model {prov['model_hash'][:12]}, not for the loaded model "
                f"{model_hash[:12]}; recalibrate with `colorcube calibrate`")
        for key, value in (settings or {}).items():
            have = prov.get("settings", {}).get(key)
            if have is not None and have != value:
                raise CalibrationError(
                    f"{where or 'calibration'}: computed with {key}={have!r} but the pipeline uses {key}={value!r}; "
                    f"the guarantee only holds for the calibrated pipeline: use {key}={have!r} or recalibrate")
        k = self.hint_points
        if hints is not None and k > 0 and int(hints) == 0:
            raise CalibrationError(
                f"{where or 'calibration'}: calibrated with {k} random hint points per photo, so its guarantee is for "
                "hinted photos; give hints or use a calibration made without --hints")

    def subset(self, index) -> "Calibration":
        """The calibration restricted to some photos (index or boolean mask), unweighted.

        Provenance lists (``files``, ``sha256``, ``sources``) follow the selection.
        """
        idx = np.arange(self.n)[index]
        prov = {k: v for k, v in self.provenance.items() if k != "target"}
        for key in ("files", "sha256", "sources"):
            if isinstance(prov.get(key), list) and len(prov[key]) == self.n:
                prov[key] = [prov[key][i] for i in idx]
        prov["n_images"] = len(idx)
        return Calibration(curves=self.curves[idx], joint_curves=self.joint_curves[idx], grid=self.grid,
                           method=self.method, delta=self.delta, joint=self.joint, provenance=prov, beta=self.beta,
                           features=None if self.features is None else self.features[idx])

    def to_file(self, path) -> Path:
        """Save as one small ``.cal`` file (a zip of .npy arrays plus JSON; no pickle)."""
        p = Path(path)
        meta = {"format": _FORMAT, "method": self.method, "delta": self.delta, "joint": self.joint,
                "beta": self.beta, "w_test": self.w_test, "provenance": self.provenance}
        arrays = {"curves": self.curves.astype(np.float32), "joint_curves": self.joint_curves.astype(np.float32),
                  "grid": self.grid.astype(np.float64)}
        if self.features is not None:
            arrays["features"] = self.features.astype(np.float32)
        if self.weights is not None:
            arrays["weights"] = self.weights.astype(np.float64)
        digest = _digest(arrays, meta)
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8),
                            sha256=np.frombuffer(digest.encode(), np.uint8))
        tmp = p.with_name(p.name + ".part")
        tmp.write_bytes(buf.getvalue())
        os.replace(tmp, p)
        return p

    @classmethod
    def from_file(cls, path, *, model_hash: str | None = None) -> "Calibration":
        """Load a ``.cal`` file; refuse tampered files and other models' calibrations."""
        p = Path(path)
        if not p.is_file():
            raise CalibrationError(f"{p}: calibration file not found")
        try:
            with np.load(p, allow_pickle=False) as z:
                arrays = {k: z[k] for k in ("curves", "joint_curves", "grid", "features", "weights") if k in z.files}
                meta_bytes, stored = z["meta"].tobytes(), z["sha256"].tobytes().decode()
            meta = json.loads(meta_bytes)
        except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError, UnicodeDecodeError) as exc:
            raise CalibrationError(f"{p}: not a readable colorcube calibration file ({exc})") from exc
        if meta.get("format") not in _READABLE:
            raise CalibrationError(f"{p}: unknown calibration format {meta.get('format')!r}")
        if _digest(arrays, meta) != stored:
            raise CalibrationError(f"{p}: checksum mismatch, the file was modified or corrupted; recalibrate")
        try:
            cal = cls(curves=arrays["curves"], joint_curves=arrays["joint_curves"], grid=arrays["grid"],
                      method=meta["method"], delta=float(meta["delta"]), joint=bool(meta["joint"]),
                      provenance=meta["provenance"], beta=meta.get("beta"), features=arrays.get("features"),
                      weights=arrays.get("weights"), w_test=meta.get("w_test"))
        except KeyError as exc:
            raise CalibrationError(f"{p}: calibration file lacks {exc}; recalibrate") from exc
        if model_hash is not None:
            cal.check_compatible(model_hash=model_hash, where=str(p))
        return cal


def _digest(arrays: dict, meta: dict) -> str:
    h = hashlib.sha256(json.dumps(meta, sort_keys=True).encode())
    for key in sorted(arrays):
        h.update(key.encode())
        h.update(np.ascontiguousarray(arrays[key]).tobytes())
    return h.hexdigest()


def today() -> str:
    """ISO date stamp for provenance."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
