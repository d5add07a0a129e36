"""Conformal calibration of the R, G, B bands: CRC (default) and RCPS.

Notation (DESIGN section 4): per image i, pixel p, channel c, band centre ``f``,
heuristic bounds ``l <= f <= u`` and truth ``y``, all in [0, 1]. The nested
interval for ``lambda >= 0`` is

    T_lambda = [f - lambda (f - l + EPS), f + lambda (u - f + EPS)] clipped to [0, 1]

and the loss of image i is the fraction of its pixels whose truth falls
outside. Each pixel is covered exactly when ``lambda >= lambda*_p``, with
``lambda*_p = (y - f) / (u - f + EPS)`` above the centre and
``(f - y) / (f - l + EPS)`` below, so an image's whole loss curve is one
histogram of ``lambda*`` over a fixed grid. The image, not the pixel, is the
unit of exchangeability: curves are averaged over images, never pooled pixels.
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
    "rcps_lambda",
    "hb_p_value",
    "min_images",
]

EPS = 1e-3
#: Fixed lambda grid: 0, 600 geometric steps (about 1.3 % apart) and +inf,
#: whose interval is all of [0, 1], so every alpha has a solution.
LAMBDA_GRID = np.concatenate([[0.0], np.geomspace(0.01, 50.0, 600), [np.inf]])
_FORMAT = "colorcube-calibration-1"


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
    return np.maximum(np.maximum(up, down), 0.0).astype(np.float32)


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


def crc_lambda(curves: np.ndarray, alpha: float, grid: np.ndarray = LAMBDA_GRID) -> float:
    """Conformal risk control: ``inf{lambda : n/(n+1) mean_i L_i(lambda) + 1/(n+1) <= alpha}``.

    Parameters
    ----------
    curves : (n, grid) per-image loss curves in [0, 1], non-increasing
    alpha : float in (0, 1)

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
    bound = n / (n + 1) * curves.mean(axis=0) + 1.0 / (n + 1)
    ok = np.flatnonzero(bound <= alpha + 1e-12)
    return float(grid[ok[0]])


def hb_p_value(risk_hat: np.ndarray, n: int, alpha: float) -> np.ndarray:
    """Hoeffding-Bentkus p-value of H0: risk > alpha (Bates et al., 2021)."""
    from scipy.stats import binom

    r = np.minimum(np.asarray(risk_hat, np.float64), alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        h1 = np.where(r > 0, r * np.log(r / alpha), 0.0) + (1 - r) * np.log((1 - r) / (1 - alpha))
    hoeffding = np.exp(-n * h1)
    bentkus = np.e * binom.cdf(np.ceil(n * np.asarray(risk_hat, np.float64)), n, alpha)
    return np.minimum(hoeffding, bentkus)


def rcps_lambda(curves: np.ndarray, alpha: float, delta: float, grid: np.ndarray = LAMBDA_GRID) -> float:
    """Risk-controlling prediction set: with probability >= 1 - delta the risk is <= alpha.

    The smallest grid lambda from which on every larger lambda rejects
    ``risk > alpha`` at level ``delta`` with the Hoeffding-Bentkus p-value.
    """
    alpha = _check_alpha(alpha)
    if not 0.0 < float(delta) < 1.0:
        raise CalibrationError(f"delta={delta!r} is outside (0, 1); e.g. delta=0.1")
    n = curves.shape[0]
    need = min_images(alpha, method="rcps", delta=delta)
    if n < need:
        raise CalibrationError(f"RCPS at alpha={alpha}, delta={delta} needs at least {need} images, got {n}")
    p = hb_p_value(curves.mean(axis=0), n, alpha)
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
    provenance : dict, what it was calibrated on (n, source, model hash,
        pipeline settings, date)
    """

    curves: np.ndarray
    joint_curves: np.ndarray
    grid: np.ndarray = dataclasses.field(default_factory=lambda: LAMBDA_GRID.copy())
    method: str = "crc"
    delta: float = 0.1
    joint: bool = False
    provenance: dict = dataclasses.field(default_factory=dict)

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

    @property
    def n(self) -> int:
        """Number of calibration images."""
        return int(self.curves.shape[0])

    def lambda_for(self, alpha: float, *, method: str | None = None, delta: float | None = None,
                   joint: bool | None = None) -> np.ndarray:
        """Lambda per channel (R, G, B) for miscoverage ``alpha``; no model call.

        Returns
        -------
        (3,) float64; the three entries are equal when ``joint``.
        """
        method = self.method if method is None else method
        delta = self.delta if delta is None else delta
        joint = self.joint if joint is None else joint
        solve = (lambda cur: crc_lambda(cur, alpha, self.grid)) if method == "crc" else (
            lambda cur: rcps_lambda(cur, alpha, delta, self.grid))
        if method not in ("crc", "rcps"):
            raise CalibrationError(f"method={method!r}; use 'crc' or 'rcps'")
        if joint:
            return np.full(3, solve(self.joint_curves))
        return np.array([solve(self.curves[:, c]) for c in range(3)])

    def guarantee(self, alpha: float, *, method: str | None = None, delta: float | None = None,
                  joint: bool | None = None) -> str:
        """The statistical statement the bands carry, in words."""
        method = self.method if method is None else method
        delta = self.delta if delta is None else delta
        joint = self.joint if joint is None else joint
        what = "all three of its true R, G, B values lie" if joint else "its true value of each channel (R, G, B) lies"
        base = (f"For a new photograph exchangeable with the {self.n} calibration images, a uniformly chosen "
                f"pixel has {what} inside the band")
        if method == "crc":
            return base + f" with probability at least {1 - alpha:.3g} (conformal risk control, expected over images)."
        return base + (f" for at least a fraction {1 - alpha:.3g} of pixels in expectation, with probability at "
                       f"least {1 - delta:.3g} over the calibration set (RCPS, Hoeffding-Bentkus).")

    def summary(self) -> dict:
        """Small JSON-able description for cube attributes."""
        p = self.provenance
        return {"n_images": self.n, "source": p.get("source", ""), "model_hash": p.get("model_hash", ""),
                "date": p.get("date", ""), "method": self.method, "joint": self.joint}

    def check_compatible(self, *, model_hash: str | None = None, settings: dict | None = None, where="") -> None:
        """Refuse to serve a model or pipeline other than the one calibrated."""
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

    def to_file(self, path) -> Path:
        """Save as one small ``.cal`` file (a zip of .npy arrays plus JSON; no pickle)."""
        p = Path(path)
        meta = {"format": _FORMAT, "method": self.method, "delta": self.delta, "joint": self.joint,
                "provenance": self.provenance}
        arrays = {"curves": self.curves.astype(np.float32), "joint_curves": self.joint_curves.astype(np.float32),
                  "grid": self.grid.astype(np.float64)}
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
                arrays = {k: z[k] for k in ("curves", "joint_curves", "grid")}
                meta_bytes, stored = z["meta"].tobytes(), z["sha256"].tobytes().decode()
            meta = json.loads(meta_bytes)
        except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError, UnicodeDecodeError) as exc:
            raise CalibrationError(f"{p}: not a readable colorcube calibration file ({exc})") from exc
        if meta.get("format") != _FORMAT:
            raise CalibrationError(f"{p}: unknown calibration format {meta.get('format')!r}")
        if _digest(arrays, meta) != stored:
            raise CalibrationError(f"{p}: checksum mismatch, the file was modified or corrupted; recalibrate")
        cal = cls(curves=arrays["curves"], joint_curves=arrays["joint_curves"], grid=arrays["grid"],
                  method=meta["method"], delta=float(meta["delta"]), joint=bool(meta["joint"]),
                  provenance=meta["provenance"])
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
