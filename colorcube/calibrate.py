"""Run the pipeline over colour photos and build a :class:`~colorcube.conformal.Calibration`.

One pass of the network per photo gives its *record*: per-channel and joint
loss curves of the bands as stored, the curves of a constant-width reference
band (for benchmarks), and image-level features of the gray input alone
(:func:`image_features`). Records can be cached per photo (``cache=``), so
re-calibrating, re-weighting for another archive and the leave-one-source-out
benchmark never run the network twice on the same photo.

Modes (the sentence each one gives is :meth:`Calibration.guarantee`):

* plain CRC on all photos (the default; source-diverse when the photos are);
* ``per_image=BETA``: with probability >= 1 - alpha a new photo has at least
  1 - BETA of its pixels covered;
* ``target=ARCHIVE``: archive-weighted CRC (covariate shift). A cross-fitted
  probabilistic classifier (scikit-learn) tells the archive's gray images from
  the calibration photos by their features; its odds estimate the likelihood
  ratio ``w(x) = dP_archive / dP_calibration`` of each calibration photo.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits
from torch.nn import functional as F
from tqdm.auto import tqdm

from .color import gray_to_lightness
from .conformal import LAMBDA_GRID, WARN_ESS, Calibration, effective_sample_size, lambda_star, loss_curve, today
from .errors import CalibrationError, ColorcubeError
from .fullres import CODE_MAX
from .hints import CALIBRATION_KEY, random_points
from .io import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, read_truth
from .model import STRIDE, _in_dtype, load_pretrained
from .pipeline import PipelineSettings, predict_bands

__all__ = [
    "CONSTANT_HALF_WIDTH",
    "Records",
    "calibrate",
    "feature_names",
    "file_sha256",
    "gray_features",
    "image_curves",
    "image_features",
    "image_record",
    "clip_weights",
    "likelihood_ratio_weights",
    "likelihood_ratios",
    "list_images",
    "photo_records",
    "ratio_features",
    "reweight",
    "simulated_hints",
    "source_of",
]

log = logging.getLogger(__name__)

#: half-width of the constant reference band ``f +/- lambda * 0.1`` whose curves records keep
CONSTANT_HALF_WIDTH = 0.1
#: bump when a record's content changes, so stale cache entries are not reused
RECORD_VERSION = 1
#: image size and aspect: stored, but left out of the archive classifier (:func:`ratio_features`)
_SIZE_STATS = ("log10_pixels", "log_aspect")
_L_STATS = ("L_mean", "L_std", "L_p05", "L_p50", "L_p95", "gradient") + _SIZE_STATS
_HEAD_STATS = ("err_R_mean", "err_G_mean", "err_B_mean", "err_R_p90", "err_G_p90", "err_B_p90",
               "chroma_mean", "entropy_mean")


def list_images(folder) -> list[Path]:
    """Image files under ``folder`` (recursive, sorted); a clear error if there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ColorcubeError(f"{folder}: not a folder of photos")
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ColorcubeError(f"{folder}: no image files (.png, .jpg, .tif, ...) found")
    return paths


_INDEX_CACHE: dict = {}


def source_of(path) -> str:
    """The source a photo comes from: its ``INDEX.tsv`` row's ``source`` column when its folder
    has one, else the file-name prefix before ``__`` (``kodak24__kodim01.png`` -> ``kodak24``),
    else the folder's name."""
    p = Path(path)
    index = p.parent / "INDEX.tsv"
    if index not in _INDEX_CACHE:
        table = {}
        if index.is_file():
            lines = index.read_text(encoding="utf-8").splitlines()
            head = lines[0].split("\t") if lines else []
            if "file" in head and "source" in head:
                i, j = head.index("file"), head.index("source")
                table = {row[i]: row[j] for row in (ln.split("\t") for ln in lines[1:]) if len(row) > max(i, j)}
        _INDEX_CACHE[index] = table
    if p.name in _INDEX_CACHE[index]:
        return _INDEX_CACHE[index][p.name]
    return p.name.split("__")[0] if "__" in p.name else p.parent.name


def image_curves(truth: np.ndarray, gray: np.ndarray, model, settings: PipelineSettings, *, grid=LAMBDA_GRID,
                 hints=None):
    """Loss curves of one photo.

    Parameters
    ----------
    truth : (y, x, 3) float32 in [0, 1]
    gray : (y, x) float32 in [0, 1], made from ``truth`` as inputs are made
    hints : optional colour hints (any form :func:`colorcube.hints.as_hints` takes)

    Returns
    -------
    curves : (3, grid) per-channel loss curves
    joint : (grid,) loss curve of the all-channel miss
    bands : tuple (rgb, lower, upper) of (y, x, 3) arrays, the heuristic bands
    """
    rgb, lower, upper = predict_bands(gray, model, settings, hints=hints)
    ls = lambda_star(rgb, lower, upper, truth, levels=CODE_MAX).reshape(-1, 3)  # the bands as stored
    return loss_curve(ls, grid), loss_curve(ls.max(axis=1), grid), (rgb, lower, upper)


def feature_names(model) -> list[str]:
    """Names of the entries of :func:`image_features` for ``model``."""
    dim = model.attention.proj.out_channels if hasattr(model.attention, "proj") else 4 * model.config.width
    return [f"embed_{k}" for k in range(dim)] + list(_HEAD_STATS) + list(_L_STATS)


def image_features(model, gray: np.ndarray, settings: PipelineSettings | None = None) -> np.ndarray:
    """Image-level features of a gray input that carry content, for archive weighting.

    The network runs once on the working-resolution lightness, in the settings'
    precision, as the pipeline feeds it; a forward hook keeps its bottleneck (the
    1/16-resolution features after self-attention, which the network's own
    scene-context branch pools), so the features follow any change of the
    network's forward. Calibration photos and archive images must use the same
    model and settings (the cache key and :func:`reweight` see to that).

    Parameters
    ----------
    model : ColorNet
    gray : (y, x) float32 in [0, 1]
    settings : PipelineSettings (its ``working_size`` is used)

    Returns
    -------
    (4 * width + 16,) float32, named by :func:`feature_names`: the mean-pooled
    bottleneck embedding; the error head's mean and 90 % quantile per channel, the
    mean chroma |ab| / 110 and mean entropy (nats) of the colour distribution;
    the lightness statistics mean, std, 5/50/95 % quantiles (gray in [0, 1]),
    mean gradient magnitude, log10 pixel count and log aspect ratio.
    """
    settings = settings or PipelineSettings()
    g = np.asarray(gray, dtype=np.float32)
    if g.ndim != 2 or g.size == 0:
        raise ColorcubeError(f"image_features: expected a (y, x) gray array, got shape {g.shape}")
    h, w = g.shape
    scale = min(1.0, int(settings.working_size) / max(h, w))
    hw, ww = max(1, round(h * scale)), max(1, round(w * scale))
    device = next(model.parameters()).device
    net = _in_dtype(model, getattr(torch, settings.precision))  # the pipeline's cached bf16 copy, if bf16
    kept = {}
    hook_at = net.attention if hasattr(net, "attention") else net.down16
    handle = hook_at.register_forward_hook(lambda _m, _i, out: kept.__setitem__("f16", out))
    try:
        with torch.inference_mode():
            t = torch.as_tensor(g, device=device)
            if (hw, ww) != (h, w):
                t = F.interpolate(t[None, None], size=(hw, ww), mode="bilinear", antialias=True,
                                  align_corners=False)[0, 0]
            work = t
            lin = F.pad(gray_to_lightness(t)[None, None], (0, (-ww) % STRIDE, 0, (-hw) % STRIDE), mode="replicate")
            logits, err = net(lin)
    finally:
        handle.remove()
    f16 = kept["f16"].float()[0, :, : -(-hw // 16), : -(-ww // 16)]
    emb = f16.mean(dim=(1, 2))
    h4, w4 = -(-hw // 4), -(-ww // 4)
    e = err.float()[0, :, :h4, :w4].reshape(3, -1)
    z = logits.float()[0, :, :h4, :w4].reshape(logits.shape[1], -1)
    p = torch.softmax(z, dim=0)
    chroma = (model.bins.float().T @ p).norm(dim=0).mean() / 110.0
    entropy = -(p * torch.log(p.clamp_min(1e-12))).sum(dim=0).mean()
    head = torch.cat([e.mean(dim=1), torch.quantile(e, 0.9, dim=1), chroma[None], entropy[None]])
    wk = work.float().cpu().numpy()
    gradient = np.hypot(*np.gradient(wk)).mean() if min(wk.shape) > 1 else 0.0
    stats = [g.mean(), g.std(), *np.quantile(g, [0.05, 0.5, 0.95]), gradient,
             math.log10(g.size), math.log(h / w)]
    out = np.concatenate([emb.cpu().numpy(), head.cpu().numpy(), np.asarray(stats, np.float64)])
    return out.astype(np.float32)


def ratio_features(features: np.ndarray) -> np.ndarray:
    """The columns of :func:`image_features` the archive classifier sees: all but image size and aspect.

    A collection is often scanned or resized to one size, so size and aspect identify
    it without saying how hard its colours are: with them, leave-one-source-out on
    ``calib/`` gave cross-fitted AUC 1.00 for imagenette (effective sample size 3 of
    1,070), 0.79 without; the mean |coverage - 0.9| of the weighted bands (alpha 0.1,
    median w_test) went from 0.040 to 0.035 (plain 0.039), temporary weights.

    Parameters
    ----------
    features : (n, d) or (d,) array from :func:`image_features`

    Returns
    -------
    (n, d - 2) or (d - 2,) view
    """
    return np.asarray(features)[..., : -len(_SIZE_STATS)]


def image_record(truth: np.ndarray, gray: np.ndarray, model, settings: PipelineSettings, *,
                 grid=LAMBDA_GRID, hints=None) -> dict:
    """Everything calibration and its benchmarks need from one photo, from one pipeline pass.

    ``hints`` (optional) colour the photo as hinted; the features are always of
    the gray input alone, as an archive's are.

    Returns
    -------
    dict of ``curves`` (3, grid) and ``joint`` (grid,) loss curves of the bands as
    stored, ``constant`` (3, grid) curves of the constant band ``f +/- lambda * 0.1``
    (rounded the same way), ``features`` (d,) from :func:`image_features`, all float32.
    """
    curves, joint, (rgb, _, _) = image_curves(truth, gray, model, settings, grid=grid, hints=hints)
    half = np.float32(CONSTANT_HALF_WIDTH)
    const = loss_curve(lambda_star(rgb, rgb - half, rgb + half, truth, levels=CODE_MAX).reshape(-1, 3), grid)
    return {"curves": curves.astype(np.float32), "joint": joint.astype(np.float32),
            "constant": const.astype(np.float32), "features": image_features(model, gray, settings)}


@dataclasses.dataclass
class Records:
    """Per-photo records of colour photos with truth (:func:`photo_records`).

    Attributes
    ----------
    curves : (n, 3, grid) float32, per-channel loss curves of the bands as stored
    joint_curves : (n, grid) float32, all-channel loss curves
    constant_curves : (n, 3, grid) float32, curves of the constant reference band
    features : (n, d) float32, :func:`image_features` of each photo's gray input
    files, sha256, sources : list of str, one per photo
    skipped : list of str, unreadable photos
    """

    curves: np.ndarray
    joint_curves: np.ndarray
    constant_curves: np.ndarray
    features: np.ndarray
    files: list
    sha256: list
    sources: list
    skipped: list = dataclasses.field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.files)

    def select(self, index) -> "Records":
        """The records of some photos (index array or boolean mask)."""
        idx = np.arange(self.n)[index]
        return Records(self.curves[idx], self.joint_curves[idx], self.constant_curves[idx], self.features[idx],
                       [self.files[i] for i in idx], [self.sha256[i] for i in idx], [self.sources[i] for i in idx],
                       list(self.skipped))

    def calibration(self, *, model=None, settings: PipelineSettings | None = None, method: str = "crc",
                    delta: float = 0.1, joint: bool = False, per_image: float | None = None, source: str = "",
                    hints: int = 0) -> Calibration:
        """An unweighted :class:`Calibration` of these photos, provenance included."""
        if self.n == 0:
            raise CalibrationError("no readable calibration photos")
        settings = settings or PipelineSettings()
        provenance = {
            "n_images": self.n,
            "source": source,
            "skipped": list(self.skipped),
            "model_hash": getattr(model, "weights_hash", ""),
            "model_name": getattr(model, "weights_name", ""),
            "settings": settings.as_dict(model),
            "date": today(),
            CALIBRATION_KEY: int(hints),
            "files": list(self.files),
            "sha256": list(self.sha256),
            "sources": list(self.sources),
            "source_counts": {s: self.sources.count(s) for s in sorted(set(self.sources))},
        }
        return Calibration(curves=self.curves, joint_curves=self.joint_curves, method=method, delta=delta,
                           joint=joint, provenance=provenance, beta=per_image, features=self.features)


def simulated_hints(truth: np.ndarray, k: int, *, key: str, seed: int = 0) -> list:
    """The calibration's hint process: ``k`` random true-colour points on a photo.

    Parameters
    ----------
    truth : (y, x, 3) float in [0, 1], the photo's colours
    k : int >= 0, points (capped at the pixel count)
    key : str of hex digits (the photo's SHA-256): with ``seed`` it seeds the draw, so a
        photo always gets the same points

    Returns
    -------
    list of ``(y, x, (r, g, b))`` points (:func:`colorcube.hints.random_points`)
    """
    rng = np.random.default_rng([int(seed), int(key[:16], 16)])
    truth8 = np.round(np.asarray(truth) * 255).astype(np.uint8)
    return random_points(truth8, min(int(k), truth8.shape[0] * truth8.shape[1]), rng)


def file_sha256(path) -> str:
    """SHA-256 (hex) of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _cache_folder(cache, model, settings: PipelineSettings, kind: str, **extra) -> Path | None:
    """``cache/<kind>-<key>``: one folder per model, pipeline settings, record version (and ``extra``)."""
    if cache is None:
        return None
    key = json.dumps({"model": getattr(model, "weights_hash", "") or "unnamed", "settings": settings.as_dict(model),
                      "version": RECORD_VERSION, "grid": hashlib.sha256(LAMBDA_GRID.tobytes()).hexdigest(), **extra},
                     sort_keys=True)
    folder = Path(cache) / f"{kind}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _save_npz(path: Path, **arrays) -> None:
    tmp = path.with_name(path.name + ".part.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


def _load_npz(path: Path, keys) -> dict | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in keys}
    except (OSError, KeyError, ValueError, EOFError):
        return None  # a torn or stale entry is recomputed


def photo_records(paths, *, model, settings: PipelineSettings | None = None, cache=None, progress: bool = True,
                  max_pixels=DEFAULT_MAX_PIXELS, desc: str = "photos", hints: int = 0, seed: int = 0) -> Records:
    """Records of colour photos, one network pass per photo, cached by file content.

    Parameters
    ----------
    paths : iterable of colour photo paths
    model : ColorNet; settings : PipelineSettings (default settings)
    cache : folder, optional
        Keep each photo's record in ``cache/records-<key>/<sha256>.npz`` (key: the
        model's hash, the settings, the record version and the hint process), and reuse it.
    progress : bool, a tqdm progress bar (on stderr)
    hints : int >= 0, the hint process: ``hints`` random true-colour points per photo
        (:func:`colorcube.hints.random_points`), drawn from a generator seeded by
        ``seed`` and the photo's SHA-256, so a photo always gets the same points

    Returns
    -------
    Records; unreadable photos are skipped with a warning and listed in ``skipped``.
    """
    settings = settings or PipelineSettings()
    hints = int(hints)
    if hints < 0:
        raise CalibrationError(f"hints={hints}: give the number of random hint points per photo, 0 or more")
    folder = _cache_folder(cache, model, settings, "records", **({"hints": hints, "seed": seed} if hints else {}))
    keys = ("curves", "joint", "constant", "features")
    out = {k: [] for k in keys}
    files, hashes, sources, skipped = [], [], [], []
    reused = 0
    bar = tqdm(list(paths), desc=desc, unit="img", disable=not progress)
    for p in bar:
        try:
            digest = file_sha256(p)
        except OSError as exc:
            log.warning("%s: cannot be read (%s)", p, exc.strerror or exc)
            skipped.append(str(p))
            continue
        entry = folder / f"{digest}.npz" if folder is not None else None
        rec = _load_npz(entry, keys) if entry is not None and entry.is_file() else None
        if rec is None:
            try:
                truth, gray = read_truth(p, max_pixels=max_pixels)
            except ColorcubeError as exc:
                log.warning("%s", exc)
                skipped.append(str(p))
                continue
            points = simulated_hints(truth, hints, key=digest, seed=seed) if hints else None
            rec = image_record(truth, gray, model, settings, hints=points)
            if entry is not None:
                _save_npz(entry, **rec)
        else:
            reused += 1
        for k in keys:
            out[k].append(rec[k])
        files.append(str(p))
        hashes.append(digest)
        sources.append(source_of(p))
        bar.set_postfix(cached=reused, refresh=False)
    if not files:
        return Records(np.zeros((0, 3, len(LAMBDA_GRID)), np.float32), np.zeros((0, len(LAMBDA_GRID)), np.float32),
                       np.zeros((0, 3, len(LAMBDA_GRID)), np.float32), np.zeros((0, 0), np.float32), [], [], [],
                       skipped)
    return Records(np.stack(out["curves"]), np.stack(out["joint"]), np.stack(out["constant"]),
                   np.stack(out["features"]), files, hashes, sources, skipped)


def gray_features(target, *, model, settings: PipelineSettings | None = None, cache=None, progress: bool = True,
                  max_pixels=DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, list[str]]:
    """:func:`image_features` of an archive of gray images (no truth needed).

    Parameters
    ----------
    target : folder (recursive), glob, text file of paths, zarr store of gray arrays,
        or a list of paths (see :func:`colorcube.sources.list_sources`); colour
        files are reduced to gray as the pipeline reduces them
    cache : folder, optional; features are kept in ``cache/features-<key>/<sha256>.npy``

    Returns
    -------
    features : (m, d) float32
    labels : list of m source labels (unreadable images are skipped with a warning)
    """
    from .sources import list_sources, read_source, source_data, source_hash

    settings = settings or PipelineSettings()
    folder = _cache_folder(cache, model, settings, "features")
    feats, labels = [], []
    for src in tqdm(list_sources(target), desc="archive features", unit="img", disable=not progress):
        try:
            data = source_data(src)
            digest = source_hash(src, data)
            entry = folder / f"{digest}.npy" if folder is not None else None
            if entry is not None and entry.is_file():
                try:
                    feats.append(np.load(entry, allow_pickle=False))
                    labels.append(src.label)
                    continue
                except (OSError, ValueError, EOFError):
                    pass
            gray, _ = read_source(src, max_pixels, data)
        except ColorcubeError as exc:
            log.warning("%s", exc)
            continue
        f = image_features(model, gray, settings)
        if entry is not None:
            tmp = entry.with_name(entry.name + ".part.npy")
            np.save(tmp, f)
            tmp.replace(entry)
        feats.append(f)
        labels.append(src.label)
    if not feats:
        raise CalibrationError(f"{target}: no readable gray images in the target archive")
    return np.stack(feats), labels


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
    # one BLAS thread: these fits are small, and threaded BLAS made them 35x slower in CPU time on a
    # busy 2-core machine (19.5 s against 0.55 s for 100 photos x 272 features)
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
    w_cal, w_tgt, info = likelihood_ratios(calib_features, target_features, folds=folds, seed=seed,
                                           components=components)
    w_cal, w_test = clip_weights(w_cal, w_tgt, clip_quantile)
    info.update(ess=effective_sample_size(w_cal), w_test=w_test, w_target_median=float(np.median(w_tgt)),
                clip_quantile=float(clip_quantile))
    return w_cal, w_test, info


def reweight(calibration: Calibration, target_features: np.ndarray, *, description: str = "", folds: int = 5,
             seed: int = 0, components: int = 32, clip_quantile: float = 0.95, warn: bool = True,
             ratios: tuple | None = None) -> Calibration:
    """An archive-weighted copy of ``calibration`` for an archive with these features.

    Needs the calibration's stored features (``calibration.features``); the
    network is not run again on the calibration photos. The target features come
    from :func:`gray_features` with the same model and settings. Warns when the
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

    Returns
    -------
    Calibration with ``weights``, ``w_test`` and ``provenance["target"]``
    """
    if calibration.features is None:
        raise CalibrationError("this calibration keeps no image features (made before colorcube stored them); "
                               "recalibrate with `colorcube calibrate` to weight it for an archive")
    if ratios is None:
        ratios = likelihood_ratios(ratio_features(calibration.features), ratio_features(target_features),
                                   folds=folds, seed=seed, components=components)
    w_cal, w_tgt, info = ratios
    w, w_test = clip_weights(w_cal, w_tgt, clip_quantile)
    info = {**info, "ess": effective_sample_size(w), "w_test": w_test, "w_target_median": float(np.median(w_tgt)),
            "clip_quantile": float(clip_quantile)}
    prov = dict(calibration.provenance)
    prov["target"] = {"description": description, "n_images": int(len(target_features)), **info}
    out = Calibration(curves=calibration.curves, joint_curves=calibration.joint_curves, grid=calibration.grid,
                      method="crc", delta=calibration.delta, joint=calibration.joint, provenance=prov,
                      beta=calibration.beta, features=calibration.features, weights=w, w_test=w_test)
    ess = out.ess
    if warn and (ess < WARN_ESS or ess < calibration.n / 4):
        warnings.warn(
            f"the archive {description or ''} looks unlike the calibration photos: effective sample size {ess:.0f} of "
            f"{calibration.n} (classifier AUC {info['auc']:.2f}); its bands are wider, rest on the estimated weights, "
            f"and alpha below {out.min_alpha():.3f} cannot be served; calibration photos that look like the archive "
            "would help", stacklevel=2)
    return out


def _photo_paths(photos) -> list[Path]:
    if isinstance(photos, (str, Path)) and Path(photos).is_dir():
        return list_images(photos)
    if isinstance(photos, (str, Path)):
        from .sources import list_sources

        srcs = list_sources(photos)
        if any(s.array is not None for s in srcs):
            raise CalibrationError(f"{photos}: calibration needs colour photo files with their true colours, not a "
                                   "zarr of gray arrays")
        return [Path(s.path) for s in srcs]
    return [Path(p) for p in photos]


def calibrate(photos, *, model=None, settings: PipelineSettings | None = None, method: str = "crc",
              delta: float = 0.1, joint: bool = False, per_image: float | None = None, target=None,
              target_description: str = "", source: str = "", progress: bool = True,
              max_pixels=DEFAULT_MAX_PIXELS, cache=None, seed: int = 0, clip_quantile: float = 0.95,
              hints: int = 0) -> Calibration:
    """Calibrate the model's bands on colour photos with known truth.

    Parameters
    ----------
    photos : folder (recursive), glob, text file of paths, or iterable of paths of
        colour photos never seen in training; the more sources, the better the
        default calibration carries over to new archives
    model : ColorNet, optional; default the shipped model (:func:`colorcube.model.load_pretrained`)
    settings : PipelineSettings used for prediction (default settings)
    method : {"crc", "rcps"}; delta : RCPS level; joint : all-channel coverage
    per_image : float in [0, 1), optional
        Serve the per-image guarantee by default: with probability >= 1 - alpha a
        new photo has at least ``1 - per_image`` of its pixels covered.
    target : gray archive (folder, glob, list, zarr; see :func:`gray_features`) or
        its (m, d) feature array, optional: archive-weighted calibration (CRC only)
    target_description : str, names the archive in the guarantee (default: ``target``)
    source : str, description recorded in the provenance
    progress : bool, tqdm progress bars
    cache : folder, optional, per-photo records and archive features (see :func:`photo_records`)
    seed, clip_quantile : archive weighting, see :func:`likelihood_ratio_weights`; ``seed`` also
        seeds the hint points
    hints : int >= 0, calibrate for photos with this many random true-colour hint points
        (the stated hint process, :func:`colorcube.hints.random_points`); kept in the
        provenance, and the guarantee then says it holds for photos hinted that way

    Returns
    -------
    Calibration with provenance (count, source, files, SHA-256 of each, sources,
    model hash, settings, date); unreadable photos are skipped with a warning and
    listed in the provenance.
    """
    settings = settings or PipelineSettings()
    model = load_pretrained() if model is None else model
    if target is not None and method != "crc":
        raise CalibrationError(f"method={method!r} with a target archive: archive-weighted calibration is CRC only")
    recs = photo_records(_photo_paths(photos), model=model, settings=settings, cache=cache, progress=progress,
                         max_pixels=max_pixels, desc="calibrate", hints=hints, seed=seed)
    if recs.n == 0:
        raise CalibrationError(f"{photos if isinstance(photos, (str, Path)) else 'photos'}: no readable calibration "
                               "photos")
    cal = recs.calibration(model=model, settings=settings, method=method, delta=delta, joint=joint,
                           per_image=per_image, source=source, hints=hints)
    if target is None:
        return cal
    if isinstance(target, np.ndarray):
        feats, desc = target, target_description or f"{len(target)} images"
    else:
        feats, _ = gray_features(target, model=model, settings=settings, cache=cache, progress=progress,
                                 max_pixels=max_pixels)
        desc = target_description or str(target)
    return reweight(cal, feats, description=desc, seed=seed, clip_quantile=clip_quantile)


class _CallableModule(types.ModuleType):
    """``colorcube.calibrate(photos, ...)`` calls :func:`calibrate`; the module's other names stay reachable."""

    def __call__(self, *args, **kwargs):
        return calibrate(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
