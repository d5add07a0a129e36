"""The calibration file object: per-image loss curves that serve any alpha, with provenance.

A :class:`Calibration` holds what one calibration run measured (per-image,
per-channel and joint loss curves on :data:`~colorcube.conformal.estimators.LAMBDA_GRID`,
optionally each photo's gray-image features and archive weights), turns it into
lambdas for any alpha with the estimators of :mod:`colorcube.conformal.estimators`, states
the guarantee those lambdas carry in words, refuses to serve another model or
pipeline than the one calibrated, and saves / loads itself (:mod:`colorcube.conformal.calfile`).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np

from ..errors import CalibrationError
from .calfile import read_cal, write_cal
from .estimators import (
    LAMBDA_GRID,
    _check_beta,
    check_alpha,
    crc_lambda,
    effective_sample_size,
    image_level_curves,
    rcps_lambda,
    weighted_crc_lambda,
    weighted_crc_lambdas,
)
from .statement import statement

__all__ = ["Calibration"]

_FORMAT = "colorcube-calibration-2"
#: the format of files that keep per-photo ratios (3), which earlier readers would take for corrupted
_FORMAT_OWN = "colorcube-calibration-3"
#: formats :meth:`Calibration.from_file` reads (1: curves only, before features and weights)
_READABLE = ("colorcube-calibration-1", _FORMAT, _FORMAT_OWN)
_UNSET = object()
#: The key of a calibration's provenance that holds its number of simulated hint points per photo.
CALIBRATION_KEY = "hint_points"


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
        photo, :data:`colorcube.conformal.calibration.CALIBRATION_KEY`), and for a
        weighted calibration ``target`` (the archive, its size, the effective sample
        size and how the weights were estimated)
    beta : float in [0, 1) or None
        Default per-image tolerance: None serves expected coverage; a float serves
        "with probability >= 1 - alpha, at least 1 - beta of a new photo's pixels
        are covered".
    features : (n, d) float32 or None, per-image features of the gray input
        (:func:`colorcube.conformal.weighting.image_features`), kept so that archive weights
        can be estimated again without running the network on these photos
    weights : (n,) float64 or None, likelihood ratios archive / calibration of the
        calibration photos (archive-weighted calibration; None: unweighted)
    w_test : float or None, the bound used for the new photo's weight (weighted only)
    ratios : (n,) float64 or None, the calibration photos' likelihood ratios unclipped,
        served with a target photo's own ratio (:meth:`lambda_for_photo`)
    target_ratios : (m,) float64 or None, each target archive photo's own likelihood
        ratio (cross-fitted: from a classifier fit that did not see it), on the scale of
        ``ratios``; ``provenance["target"]["sha256"]`` names the photos (SHA-256 of the
        file, or of a zarr array's data, as :func:`colorcube.inputs.sources.source_hash`)
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
    ratios: np.ndarray | None = None
    target_ratios: np.ndarray | None = None
    #: per-(joint, beta, weights) mean (or weighted sum) of the curves over images, and the target photos'
    #: ratios by SHA-256 ("table"), made on first use
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
        if (self.ratios is None) != (self.target_ratios is None) or (self.ratios is not None and not self.weighted):
            raise CalibrationError("ratios and target_ratios come together, in a weighted calibration only")
        if self.ratios is not None:
            self.ratios = r = np.asarray(self.ratios, dtype=np.float64)
            self.target_ratios = t = np.asarray(self.target_ratios, dtype=np.float64)
            names = self.provenance.get("target", {}).get("sha256", [])
            if (r.shape != (c.shape[0],) or t.ndim != 1 or len(t) == 0 or len(names) != len(t)
                    or not (np.isfinite(r).all() and np.isfinite(t).all() and (r >= 0).all() and (t > 0).all())
                    or r.sum() <= 0):
                raise CalibrationError(f"ratios of shape {r.shape} and target ratios of shape {t.shape} for "
                                       f"{len(names)} target photos named: expected ({c.shape[0]},) and one per "
                                       "name, finite, > 0")

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
    def ess_own(self) -> float | None:
        """Effective sample size of the unclipped :attr:`ratios`, which the target archive's own
        photos are served with (:meth:`lambda_for_photo`); None without them."""
        return None if self.ratios is None else effective_sample_size(self.ratios)

    @property
    def hint_points(self) -> int:
        """Random true-colour hint points per photo the calibration simulated (0: none)."""
        return int(self.provenance.get(CALIBRATION_KEY, self.provenance.get("hints", 0)) or 0)

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
            Weighted calibrations: the new photo's weight bound, against the clipped
            :attr:`weights` (default :attr:`w_test`, the archive-wide bound); a target
            archive photo's own weight is served by :meth:`lambda_for_photo`.

        Returns
        -------
        (3,) float64; the three entries are equal when ``joint``.

        Raises
        ------
        CalibrationError
            alpha below what this calibration can serve (too few photos, or too
            small an effective sample size), or an unknown method.
        """
        return self._lambda(alpha, method, delta, joint, beta, self.weights, w_test)

    def _curves_and_sums(self, joint, beta, weights):
        """(n, k, grid) curves for (joint, beta) and their (k, grid) mean (weighted sum with ``weights``)."""
        cur = self.joint_curves[:, None] if joint else self.curves  # (n, k, grid)
        key = (bool(joint), beta, self.weighted, weights is self.ratios)
        if key not in self._sums:  # the (weighted) mean over images is all any alpha needs: made once
            if beta is not None:
                cur = image_level_curves(cur, beta)
            self._sums[key] = (np.einsum("n,nkg->kg", weights, cur.astype(np.float64)) if self.weighted
                               else cur.mean(axis=0, dtype=np.float64))
        return cur, self._sums[key]

    def _lambda(self, alpha, method, delta, joint, beta, weights, w_test) -> np.ndarray:
        method, delta, joint, beta = self._resolve(method, delta, joint, beta)
        cur, sums = self._curves_and_sums(joint, beta, weights)
        k = range(sums.shape[0])  # cur[:, c] below only gives n: the sums stand for the curves
        if self.weighted:
            wt = self.w_test if w_test is None else w_test
            lams = [weighted_crc_lambda(cur[:, c], alpha, weights, wt, self.grid, weighted_sum=sums[c]) for c in k]
        elif method == "crc":
            lams = [crc_lambda(cur[:, c], alpha, self.grid, mean=sums[c]) for c in k]
        else:
            lams = [rcps_lambda(cur[:, c], alpha, delta, self.grid, mean=sums[c]) for c in k]
        return np.full(3, lams[0]) if joint else np.array(lams)

    def photo_ratio(self, digest: str) -> float | None:
        """A target archive photo's own likelihood ratio (:attr:`target_ratios`), None for any other photo."""
        if self.target_ratios is None or not digest:
            return None
        if "table" not in self._sums:
            self._sums["table"] = dict(zip(self._target_names(), self.target_ratios.tolist()))
        return self._sums["table"].get(digest)

    def lambda_for_photo(self, alpha: float, digest: str, *, joint: bool | None = None,
                         beta=_UNSET) -> tuple[np.ndarray, float | None]:
        """Lambda per channel for one photo, and the weight it was served with.

        A photo of the target archive of a weighted calibration (its SHA-256 in
        ``provenance["target"]["sha256"]``) gets weighted CRC with its own likelihood
        ratio as the new photo's weight (Tibshirani et al. 2019; the calibration photos
        weighted by their unclipped :attr:`ratios`). When that weight alone takes more
        than alpha of the risk, nothing short of the whole range [0, 1] can be promised
        for the photo: its lambda is ``inf``. Any other photo gets :meth:`lambda_for`
        (the archive-wide bound :attr:`w_test` for weighted calibrations), weight None.

        Parameters
        ----------
        alpha : float in (0, 1); digest : str, the photo's SHA-256 (hex)
        joint, beta : as :meth:`lambda_for` (default the calibration's own)

        Returns
        -------
        lam : (3,) float64, ``inf`` where the photo gets the band [0, 1]
        weight : float or None, the photo's own ratio when it was used
        """
        w = self.photo_ratio(digest)
        if w is None:
            return self.lambda_for(alpha, joint=joint, beta=beta), None
        return self._own_lambdas(alpha, np.array([w]), joint, beta)[0], w

    def photo_lambdas(self, alpha: float, *, joint: bool | None = None, beta=_UNSET) -> dict:
        """:meth:`lambda_for_photo` of every target archive photo at once (a few ms for
        20,000 photos): ``{SHA-256: ((3,) lambda, weight)}``, empty without per-photo ratios."""
        if self.target_ratios is None:
            return {}
        lams = self._own_lambdas(alpha, self.target_ratios, joint, beta)
        return {d: (lam, float(w)) for d, lam, w in zip(self._target_names(), lams, self.target_ratios)}

    def _own_lambdas(self, alpha, weights_test: np.ndarray, joint, beta) -> np.ndarray:
        """(m, 3) weighted-CRC lambdas (:func:`colorcube.conformal.estimators.weighted_crc_lambdas`),
        one row per new photo weight,
        against the unclipped :attr:`ratios`; ``inf`` where the photo's weight alone exceeds alpha."""
        _, _, joint, beta = self._resolve(None, None, joint, beta)
        alpha = check_alpha(alpha)
        _, sums = self._curves_and_sums(joint, beta, self.ratios)
        lams = np.stack([weighted_crc_lambdas(s, self.ratios.sum(), weights_test, alpha, self.grid) for s in sums],
                        axis=1)
        return np.repeat(lams, 3, axis=1) if joint else lams

    def _target_names(self) -> list:
        names = self.provenance.get("target", {}).get("sha256")
        if names is None or len(names) != len(self.target_ratios):
            raise CalibrationError("this calibration's target ratios name no photos (provenance['target']['sha256'])")
        return names

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
        text = statement(self, *self._resolve(method, delta, joint, beta), alpha=alpha)
        if self.hint_points:
            text += (f" It holds for photos given {self.hint_points} random true-colour hint points (the "
                     "calibration's hint process), not for photos without hints.")
        return text

    def summary(self) -> dict:
        """Small JSON-able description for cube attributes."""
        p = self.provenance
        out = {"n_images": self.n, "source": p.get("source", ""), "model_hash": p.get("model_hash", ""),
               "date": p.get("date", ""), "method": self.method, "joint": self.joint, "beta": self.beta,
               "weighted": self.weighted, "hint_points": self.hint_points}
        if self.weighted:
            t = p.get("target", {})
            out.update(ess=round(self.ess, 2), w_test=self.w_test, target=t.get("description", ""),
                       target_images=t.get("n_images"),
                       own_weights=0 if self.target_ratios is None else len(self.target_ratios))
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

    def subset(self, index) -> Calibration:
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
        meta = {"format": _FORMAT if self.ratios is None else _FORMAT_OWN, "method": self.method, "delta": self.delta,
                "joint": self.joint, "beta": self.beta, "w_test": self.w_test, "provenance": self.provenance}
        arrays = {"curves": self.curves.astype(np.float32), "joint_curves": self.joint_curves.astype(np.float32),
                  "grid": self.grid.astype(np.float64)}
        if self.features is not None:
            arrays["features"] = self.features.astype(np.float32)
        if self.weights is not None:
            arrays["weights"] = self.weights.astype(np.float64)
        if self.ratios is not None:
            arrays["ratios"] = self.ratios.astype(np.float64)
            arrays["target_ratios"] = self.target_ratios.astype(np.float64)
        write_cal(p, arrays, meta)
        return p

    @classmethod
    def from_file(cls, path, *, model_hash: str | None = None) -> Calibration:
        """Load a ``.cal`` file; refuse tampered files and other models' calibrations."""
        p = Path(path)
        if not p.is_file():
            raise CalibrationError(f"{p}: calibration file not found")
        arrays, meta = read_cal(p, readable=_READABLE)
        try:
            cal = cls(curves=arrays["curves"], joint_curves=arrays["joint_curves"], grid=arrays["grid"],
                      method=meta["method"], delta=float(meta["delta"]), joint=bool(meta["joint"]),
                      provenance=meta["provenance"], beta=meta.get("beta"), features=arrays.get("features"),
                      weights=arrays.get("weights"), w_test=meta.get("w_test"), ratios=arrays.get("ratios"),
                      target_ratios=arrays.get("target_ratios"))
        except KeyError as exc:
            raise CalibrationError(f"{p}: calibration file lacks {exc}; recalibrate") from exc
        if model_hash is not None:
            cal.check_compatible(model_hash=model_hash, where=str(p))
        return cal


