"""Archive weighting under covariate shift: image features, likelihood ratios, reweighted calibrations.

A calibration made on colour photos describes photos like those. For a gray
archive that looks different, each calibration photo is weighted by the
likelihood ratio ``w(x) = dP_archive / dP_calibration`` of its gray image, and
weighted conformal risk control (:func:`colorcube.conformal.estimators.weighted_crc_lambda`)
serves the archive:

* :func:`image_features`: what the ratio is estimated from, one vector per gray
  image (the network's pooled bottleneck, its error and colour heads' summary,
  lightness statistics), stored with every calibration record;
* :func:`likelihood_ratios`: a cross-fitted probabilistic classifier
  (scikit-learn) tells the archive's images from the calibration photos by
  their :func:`ratio_features`; its odds estimate ``w(x)``;
* :func:`clip_weights`: the bound ``w_test`` for a new archive photo's weight;
* :func:`reweight`: an archive-weighted copy of a :class:`~colorcube.conformal.calibration.Calibration`.
"""

from __future__ import annotations

import contextlib
import math
import warnings

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from ..errors import CalibrationError, ColorcubeError
from ..network.decode import _in_dtype
from ..network.model import OUT_STRIDE
from ..network.working import network_shape, working_gray, working_input
from ..settings import PipelineSettings
from .calibration import Calibration
from .estimators import effective_sample_size

__all__ = [
    "WARN_ESS",
    "clip_weights",
    "feature_names",
    "features_of",
    "image_features",
    "likelihood_ratio_weights",
    "likelihood_ratios",
    "network_outputs",
    "ratio_features",
    "reweight",
]

#: an effective sample size below this (or below a quarter of n) draws a warning
WARN_ESS = 100.0
#: image size and aspect: stored, but left out of the archive classifier (:func:`ratio_features`)
_SIZE_STATS = ("log10_pixels", "log_aspect")
_L_STATS = ("L_mean", "L_std", "L_p05", "L_p50", "L_p95", "gradient") + _SIZE_STATS
_HEAD_STATS = ("err_R_mean", "err_G_mean", "err_B_mean", "err_R_p90", "err_G_p90", "err_B_p90",
               "chroma_mean", "entropy_mean")


def feature_names(model) -> list[str]:
    """Names of the entries of :func:`image_features` for ``model``."""
    return [f"embed_{k}" for k in range(model.embedding_dim)] + list(_HEAD_STATS) + list(_L_STATS)


def image_features(model, gray: np.ndarray, settings: PipelineSettings | None = None) -> np.ndarray:
    """Image-level features of a gray input that carry content, for archive weighting.

    The network runs once on the working-resolution lightness, in the settings'
    precision, as the pipeline feeds it; a forward hook keeps its bottleneck (the
    network's ``embedding_layer``: v2's features after self-attention at 1/16, v3's
    first decoder level at 1/32), so the features follow any change of the
    network's forward. Calibration photos and archive images must use the same
    model and settings (the cache key and :func:`reweight` see to that).

    Parameters
    ----------
    model : ColorNet
    gray : (y, x) float32 in [0, 1]
    settings : PipelineSettings (its ``working_size`` is used)

    Returns
    -------
    (embedding_dim + 16,) float32, named by :func:`feature_names`: the mean-pooled
    bottleneck embedding; the error head's mean and 90 % quantile per channel, the
    mean chroma |ab| / 110 and mean entropy (nats) of the colour distribution;
    the lightness statistics mean, std, 5/50/95 % quantiles (gray in [0, 1]),
    mean gradient magnitude, log10 pixel count and log aspect ratio.
    """
    settings = settings or PipelineSettings()
    g = _check_gray(gray)
    device = next(model.parameters()).device
    with network_outputs(model, settings) as kept, torch.inference_mode():
        _network(model, settings)(working_input(g, settings, device=device).padded)
    return features_of(model, g, settings, kept)


def _check_gray(gray) -> np.ndarray:
    g = np.asarray(gray, dtype=np.float32)
    if g.ndim != 2 or g.size == 0:
        raise ColorcubeError(f"image_features: expected a (y, x) gray array, got shape {g.shape}")
    return g


def _network(model, settings: PipelineSettings):
    return _in_dtype(model, getattr(torch, settings.precision))  # the pipeline's cached bf16 copy, if bf16


@contextlib.contextmanager
def network_outputs(model, settings: PipelineSettings):
    """Keep what :func:`features_of` needs from the next network run in the settings' precision
    (its bottleneck ``embedding_layer``, its logits and error scale): a dict, filled by forward
    hooks while the block is open, so a pipeline pass (``predict_bands`` without hints) yields
    the features without running the network again."""
    net = _network(model, settings)
    kept: dict = {}
    handles = [net.embedding_layer.register_forward_hook(lambda _m, _i, out: kept.__setitem__("embedding", out)),
               net.register_forward_hook(lambda _m, _i, out: kept.__setitem__("out", out))]
    try:
        yield kept
    finally:
        for h in handles:
            h.remove()


def features_of(model, gray: np.ndarray, settings: PipelineSettings, kept: dict) -> np.ndarray:
    """:func:`image_features` from the outputs :func:`network_outputs` kept of one network run on
    ``gray`` (without hints). The block keeps the last run of the model's network in any thread:
    run one image in it, in one thread."""
    if "out" not in kept:
        raise ColorcubeError("features_of: the network did not run inside network_outputs()")
    g = _check_gray(gray)
    logits, err = kept["out"]
    want = tuple(s // OUT_STRIDE for s in network_shape(g.shape, settings))
    if logits.shape[0] != 1 or tuple(logits.shape[-2:]) != want:
        raise ColorcubeError(f"features_of: the kept network run was of shape {tuple(logits.shape)}, not one image "
                             f"of this gray's network shape (1, Q, {want[0]}, {want[1]})")
    with torch.inference_mode():
        work = working_gray(torch.as_tensor(g), int(settings.working_size))
        hw, ww = work.shape
        stride = model.embedding_stride
        emb = kept["embedding"].float()[0, :, : -(-hw // stride), : -(-ww // stride)].mean(dim=(1, 2))
        h4, w4 = -(-hw // 4), -(-ww // 4)
        e = err.float()[0, :, :h4, :w4].reshape(3, -1)
        z = logits.float()[0, :, :h4, :w4].reshape(logits.shape[1], -1)
        p = torch.softmax(z, dim=0)
        chroma = (model.bins.float().T @ p).norm(dim=0).mean() / 110.0
        entropy = -(p * torch.log(p.clamp_min(1e-12))).sum(dim=0).mean()
        head = torch.cat([e.mean(dim=1), torch.quantile(e, 0.9, dim=1), chroma[None], entropy[None]]).cpu()
    wk = work.float().numpy()
    gradient = np.hypot(*np.gradient(wk)).mean() if min(wk.shape) > 1 else 0.0
    stats = [g.mean(), g.std(), *np.quantile(g, [0.05, 0.5, 0.95]), gradient,
             math.log10(g.size), math.log(g.shape[0] / g.shape[1])]
    out = np.concatenate([emb.cpu().numpy(), head.numpy(), np.asarray(stats, np.float64)])
    return out.astype(np.float32)


def ratio_features(features: np.ndarray) -> np.ndarray:
    """The columns of :func:`image_features` the archive classifier sees: all but image size and aspect.

    A collection is often scanned or resized to one size, so size and aspect identify
    it without saying how hard its colours are: with them the classifier separates a
    source by its size alone and the weights collapse onto a few photos.

    Parameters
    ----------
    features : (n, d) or (d,) array from :func:`image_features`

    Returns
    -------
    (n, d - 2) or (d - 2,) view
    """
    return np.asarray(features)[..., : -len(_SIZE_STATS)]


def _classifier(n_train: int, dim: int, components: int, seed: int, inner: int):
    """Standardise, PCA to ``components`` dimensions, class-balanced logistic regression with
    its L2 strength chosen by inner cross-validated log-loss (warm-started along the path)."""
    k = max(1, min(components, dim, n_train - 2))
    if inner < 2:  # a single target image in the fold: no inner split, a fixed moderate strength
        lr = LogisticRegression(C=0.1, class_weight="balanced", max_iter=1000)
    else:
        lr = LogisticRegressionCV(Cs=np.logspace(-3, 0, 7), cv=StratifiedKFold(inner, shuffle=True, random_state=seed),
                                  scoring="neg_log_loss", class_weight="balanced", max_iter=1000)
    return make_pipeline(StandardScaler(), PCA(n_components=k, random_state=seed), lr)


def likelihood_ratios(calib_features: np.ndarray, target_features: np.ndarray, *, folds: int = 5, seed: int = 0,
                      components: int = 32):
    """Cross-fitted likelihood ratios ``w(x) = dP_target(x) / dP_calibration(x)``, unclipped.

    A class-balanced probabilistic classifier ``c(x) = P(target | x)`` (standardise,
    PCA, logistic regression with cross-validated L2 strength) is fitted ``folds``
    times; each image's ``c(x)`` comes from the fit that did not see it, and its
    odds ``c / (1 - c)`` estimate the density ratio (balanced classes: no prior
    correction), scaled to mean 1 over the calibration photos.

    Parameters
    ----------
    calib_features : (n, d) float array; target_features : (m, d) float array
    folds : cross-fitting folds (at most the smaller class size)
    seed : fold and PCA randomness
    components : PCA dimensions kept before the logistic regression

    Returns
    -------
    w_calib : (n,) float64 > 0, the calibration photos' ratios
    w_target : (m,) float64 > 0, the archive images' own ratios
    info : dict (JSON-able): ``auc`` (cross-fitted ROC AUC; 0.5: the archive looks like
        the calibration photos), the L2 strengths chosen and the settings used
    """
    xc = np.asarray(calib_features, np.float64)
    xt = np.asarray(target_features, np.float64)
    if xc.ndim != 2 or xt.ndim != 2 or xc.shape[1] != xt.shape[1]:
        raise CalibrationError(f"features of shapes {xc.shape} and {xt.shape}: expected (n, d) and (m, d), same d "
                               "(made by the same model and settings)")
    n, m = len(xc), len(xt)
    k = min(int(folds), n, m)
    if k < 2:
        raise CalibrationError(f"archive weighting needs at least 2 target images and 2 calibration photos, got "
                               f"{m} and {n}; give a larger archive (20 or more images) or calibrate without a target")
    x = np.concatenate([xc, xt])
    y = np.concatenate([np.zeros(n, int), np.ones(m, int)])
    prob = np.empty(n + m)
    chosen = []
    # one BLAS thread: these fits are small, and threads spinning on a busy machine cost far more
    # CPU time than the arithmetic
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore")  # sklearn's convergence chatter on tiny folds
        for train, test in StratifiedKFold(k, shuffle=True, random_state=seed).split(x, y):
            inner = int(min(3, np.bincount(y[train]).min()))
            clf = _classifier(len(train), x.shape[1], components, seed, inner).fit(x[train], y[train])
            prob[test] = clf.predict_proba(x[test])[:, 1]
            lr = clf[-1]
            chosen.append(float(lr.C_[0] if hasattr(lr, "C_") else lr.C))
    prob = prob.clip(1e-6, 1 - 1e-6)
    odds = prob / (1 - prob)
    scale = odds[:n].mean()
    info = {"auc": float(roc_auc_score(y, prob)), "folds": k, "components": int(components), "C": chosen,
            "seed": int(seed),
            "classifier": "standardise + PCA + class-balanced logistic regression (L2 strength by inner "
                          f"3-fold log-loss), {k}-fold cross-fitted"}
    return odds[:n] / scale, odds[n:] / scale, info


def clip_weights(w_calib: np.ndarray, w_target: np.ndarray, clip_quantile: float = 0.95):
    """``w_test`` = the ``clip_quantile`` quantile of the archive's own ratios, and the
    calibration ratios clipped at it.

    ``w_test`` is the bound used for a new archive photo's weight: every archive photo
    whose ratio is at most ``w_test`` (a share ``clip_quantile`` of them) gets a lambda
    at least as large as its own weighted-conformal one; 1.0 takes the largest ratio.

    Returns
    -------
    w_calib : (n,) float64, clipped; w_test : float
    """
    if not 0.0 < clip_quantile <= 1.0:
        raise CalibrationError(f"clip_quantile={clip_quantile!r}: give a quantile in (0, 1], e.g. 0.95")
    w_test = float(np.quantile(np.asarray(w_target, np.float64), clip_quantile))
    return np.minimum(np.asarray(w_calib, np.float64), w_test), w_test


def likelihood_ratio_weights(calib_features: np.ndarray, target_features: np.ndarray, *, folds: int = 5,
                             seed: int = 0, components: int = 32, clip_quantile: float = 0.95):
    """:func:`likelihood_ratios` then :func:`clip_weights`.

    Returns
    -------
    w_calib : (n,) float64 > 0, clipped at ``w_test``
    w_test : float, the bound for a new archive photo's weight
    info : dict (JSON-able): ``ess``, ``auc``, ``w_test``, ``w_target_median``,
        ``clip_quantile`` and the classifier's settings
    """
    ratios = likelihood_ratios(calib_features, target_features, folds=folds, seed=seed, components=components)
    return _clipped(ratios, clip_quantile)


def _clipped(ratios: tuple, clip_quantile: float):
    """:func:`clip_weights` on ``likelihood_ratios(...)`` output: ``(w_calib, w_test, info)``, ``info``
    a new dict with the effective sample size, ``w_test``, the archive's median ratio and the quantile."""
    w_cal, w_tgt, info = ratios
    w, w_test = clip_weights(w_cal, w_tgt, clip_quantile)
    info = {**info, "ess": effective_sample_size(w), "w_test": w_test, "w_target_median": float(np.median(w_tgt)),
            "clip_quantile": float(clip_quantile)}
    return w, w_test, info


def reweight(calibration: Calibration, target_features: np.ndarray, *, description: str = "", folds: int = 5,
             seed: int = 0, components: int = 32, clip_quantile: float = 0.95, warn: bool = True,
             ratios: tuple | None = None, target_hashes=None) -> Calibration:
    """An archive-weighted copy of ``calibration`` for an archive with these features.

    Needs the calibration's stored features (``calibration.features``); the
    network is not run again on the calibration photos. The target features come
    from :func:`colorcube.conformal.records.gray_features` with the same model and settings. Warns when the
    archive looks unlike the calibration photos (small effective sample size).

    Parameters
    ----------
    calibration : Calibration with features
    target_features : (m, d) features of the archive's gray images
    description : names the archive in the guarantee
    folds, seed, components : see :func:`likelihood_ratios`
    clip_quantile : see :func:`clip_weights`
    warn : bool, warn when the effective sample size is small
    ratios : optional ``likelihood_ratios(...)`` output for the :func:`ratio_features` of these, reused
        (e.g. to compare clip quantiles without refitting the classifier)
    target_hashes : sequence of m str, optional, the SHA-256 of each archive image
        (:func:`colorcube.inputs.sources.source_hash`, in the order of ``target_features``): the
        calibration then keeps each one's own ratio, so that colorizing it serves the
        weighted-conformal lambda of that photo
        (:meth:`~colorcube.conformal.calibration.Calibration.lambda_for_photo`)

    Returns
    -------
    Calibration with ``weights``, ``w_test`` and ``provenance["target"]`` (and with
    ``target_hashes``: ``ratios``, ``target_ratios`` and ``provenance["target"]["sha256"]``)
    """
    if calibration.features is None:
        raise CalibrationError("this calibration keeps no image features (made before colorcube stored them); "
                               "recalibrate with `colorcube calibrate` to weight it for an archive")
    if ratios is None:
        ratios = likelihood_ratios(ratio_features(calibration.features), ratio_features(target_features),
                                   folds=folds, seed=seed, components=components)
    w, w_test, info = _clipped(ratios, clip_quantile)
    prov = dict(calibration.provenance)
    prov["target"] = {"description": description, "n_images": len(target_features), **info}
    own = {}
    if target_hashes is not None:
        target_hashes = [str(h) for h in target_hashes]
        if len(target_hashes) != len(target_features):
            raise CalibrationError(f"{len(target_hashes)} target hashes for {len(target_features)} target images; "
                                   "give one per image, in the same order")
        prov["target"]["sha256"] = target_hashes
        own = {"ratios": ratios[0], "target_ratios": ratios[1]}
    out = Calibration(curves=calibration.curves, joint_curves=calibration.joint_curves, grid=calibration.grid,
                      method="crc", delta=calibration.delta, joint=calibration.joint, provenance=prov,
                      beta=calibration.beta, features=calibration.features, weights=w, w_test=w_test, **own)
    ess = min(out.ess, out.ess_own or out.ess)  # the archive's own photos are served with the unclipped ratios
    if warn and (ess < WARN_ESS or ess < calibration.n / 4):
        warnings.warn(
            f"the archive {description or ''} looks unlike the calibration photos: effective sample size {ess:.0f} of "
            f"{calibration.n} (classifier AUC {info['auc']:.2f}); its bands are wider, rest on the estimated weights, "
            f"and alpha below {out.min_alpha():.3f} cannot be served; calibration photos that look like the archive "
            "would help", stacklevel=2)
    return out
