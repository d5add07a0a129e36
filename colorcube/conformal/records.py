"""Run the pipeline over colour photos and build a :class:`~colorcube.conformal.calibration.Calibration`.

One pass of the network per photo gives its *record*: per-channel and joint
loss curves of the bands as stored, the curves of a constant-width reference
band (for benchmarks), and image-level features of the gray input alone
(:func:`colorcube.conformal.weighting.image_features`), cached per photo with ``cache=`` (so
re-calibrating and re-weighting never run the network twice on the same photo).

Modes (the sentence each one gives is :meth:`colorcube.conformal.calibration.Calibration.guarantee`):

* plain CRC on all photos (the default; source-diverse when the photos are);
* ``per_image=BETA``: with probability >= 1 - alpha a new photo has at least
  1 - BETA of its pixels covered;
* ``target=ARCHIVE``: archive-weighted CRC (covariate shift, :mod:`colorcube.conformal.weighting`).
  A cross-fitted probabilistic classifier (scikit-learn) tells the archive's gray
  images from the calibration photos by their features; its odds estimate the
  likelihood ratio ``w(x) = dP_archive / dP_calibration`` of each calibration photo.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..errors import CalibrationError, ColorcubeError
from ..files import atomic_path
from ..guidance.placement import random_points
from ..inputs.images import DEFAULT_MAX_PIXELS, file_hash, list_images, read_truth, source_of
from ..inputs.sources import list_sources, read_source, source_data, source_hash
from ..network.weights import load_model
from ..render.codes import CODE_MAX
from ..render.predict import predict_bands
from ..settings import PipelineSettings
from .calfile import today
from .calibration import CALIBRATION_KEY, Calibration
from .estimators import LAMBDA_GRID, lambda_star, loss_curve
from .weighting import features_of, image_features, network_outputs, reweight

__all__ = ["CONSTANT_HALF_WIDTH", "Records", "calibrate", "gray_features", "image_curves", "image_record",
           "photo_records", "simulated_hints"]

log = logging.getLogger(__name__)

#: half-width of the constant reference band ``f +/- lambda * 0.1`` whose curves records keep
CONSTANT_HALF_WIDTH = 0.1
#: bump when a record's content changes, so stale cache entries are not reused
RECORD_VERSION = 2


def image_curves(truth: np.ndarray, gray: np.ndarray, model, settings: PipelineSettings, *, grid=LAMBDA_GRID,
                 hints=None):
    """Loss curves of one photo.

    Parameters
    ----------
    truth : (y, x, 3) float32 in [0, 1]
    gray : (y, x) float32 in [0, 1], made from ``truth`` as inputs are made
    hints : optional colour hints (any form :func:`colorcube.guidance.hints.as_hints` takes)

    Returns
    -------
    curves : (3, grid) per-channel loss curves
    joint : (grid,) loss curve of the all-channel miss
    bands : tuple (rgb, lower, upper) of (y, x, 3) arrays, the heuristic bands
    """
    rgb, lower, upper = predict_bands(gray, model, settings, hints=hints)
    ls = lambda_star(rgb, lower, upper, truth, levels=CODE_MAX).reshape(-1, 3)  # the bands as stored
    return loss_curve(ls, grid), loss_curve(ls.max(axis=1), grid), (rgb, lower, upper)


def image_record(truth: np.ndarray, gray: np.ndarray, model, settings: PipelineSettings, *,
                 grid=LAMBDA_GRID, hints=None) -> dict:
    """Everything calibration and its benchmarks need from one photo, from one pipeline pass.

    ``hints`` (optional) colour the photo as hinted; the features are always of
    the gray input alone, as an archive's are.

    Returns
    -------
    dict of ``curves`` (3, grid) and ``joint`` (grid,) loss curves of the bands as
    stored, ``constant`` (3, grid) curves of the constant band ``f +/- lambda * 0.1``
    (rounded the same way), ``features`` (d,) from :func:`colorcube.conformal.weighting.image_features`, all float32.
    """
    with network_outputs(model, settings) as kept:  # the features from the pipeline's own network run
        curves, joint, (rgb, _, _) = image_curves(truth, gray, model, settings, grid=grid, hints=hints)
    # a hinted photo's run saw its hints; the features are of the gray input alone, as an archive's are
    features = image_features(model, gray, settings) if hints is not None else features_of(model, gray, settings, kept)
    half = np.float32(CONSTANT_HALF_WIDTH)
    const = loss_curve(lambda_star(rgb, rgb - half, rgb + half, truth, levels=CODE_MAX).reshape(-1, 3), grid)
    return {"curves": curves.astype(np.float32), "joint": joint.astype(np.float32),
            "constant": const.astype(np.float32), "features": features}


@dataclasses.dataclass
class Records:
    """Per-photo records of colour photos with truth (:func:`photo_records`).

    Attributes
    ----------
    curves : (n, 3, grid) float32, per-channel loss curves of the bands as stored
    joint_curves : (n, grid) float32, all-channel loss curves
    constant_curves : (n, 3, grid) float32, curves of the constant reference band
    features : (n, d) float32, :func:`colorcube.conformal.weighting.image_features` of each photo's gray input
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

    def select(self, index) -> Records:
        """The records of some photos (index array or boolean mask)."""
        idx = np.arange(self.n)[index]
        return Records(self.curves[idx], self.joint_curves[idx], self.constant_curves[idx], self.features[idx],
                       [self.files[i] for i in idx], [self.sha256[i] for i in idx], [self.sources[i] for i in idx],
                       list(self.skipped))

    def calibration(self, *, model=None, settings: PipelineSettings | None = None, method: str = "crc",
                    delta: float = 0.1, joint: bool = False, per_image: float | None = None, source: str = "",
                    hints: int = 0) -> Calibration:
        """An unweighted :class:`colorcube.conformal.calibration.Calibration` of these photos, provenance included."""
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
    list of ``(y, x, (r, g, b))`` points (:func:`colorcube.guidance.placement.random_points`)
    """
    rng = np.random.default_rng([int(seed), int(key[:16], 16)])
    truth8 = np.round(np.asarray(truth) * 255).astype(np.uint8)
    return random_points(truth8, min(int(k), truth8.shape[0] * truth8.shape[1]), rng)


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
    with atomic_path(path) as tmp:
        np.savez(tmp, **arrays)


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
        (:func:`colorcube.guidance.placement.random_points`), drawn from a generator seeded by
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
            digest = file_hash(p)
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
                  max_pixels=DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, list[str], list[str]]:
    """:func:`colorcube.conformal.weighting.image_features` of an archive of gray images (no truth needed).

    Parameters
    ----------
    target : folder (recursive), glob, text file of paths, zarr store of gray arrays,
        or a list of paths (see :func:`colorcube.inputs.sources.list_sources`); colour
        files are reduced to gray as the pipeline reduces them
    cache : folder, optional; features are kept in ``cache/features-<key>/<sha256>.npy``

    Returns
    -------
    features : (m, d) float32
    labels : list of m source labels (unreadable images are skipped with a warning)
    digests : list of m SHA-256 (hex) of each image (:func:`colorcube.inputs.sources.source_hash`)
    """
    settings = settings or PipelineSettings()
    folder = _cache_folder(cache, model, settings, "features")
    feats, labels, digests = [], [], []
    for src in tqdm(list_sources(target), desc="archive features", unit="img", disable=not progress):
        try:
            with source_data(src) as data:  # read once: hashed, and decoded unless its features are cached
                digest = source_hash(src, data)
                entry = folder / f"{digest}.npy" if folder is not None else None
                f = _cached_features(entry)
                gray = read_source(src, max_pixels, data)[0] if f is None else None
        except ColorcubeError as exc:
            log.warning("%s", exc)
            continue
        if f is None:
            f = image_features(model, gray, settings)
            if entry is not None:
                with atomic_path(entry) as tmp:
                    np.save(tmp, f)
        feats.append(f)
        labels.append(src.label)
        digests.append(digest)
    if not feats:
        raise CalibrationError(f"{target}: no readable gray images in the target archive")
    return np.stack(feats), labels, digests


def _cached_features(entry: Path | None):
    """The features cached at ``entry``, or None (no cache, none there, or unreadable)."""
    if entry is None or not entry.is_file():
        return None
    try:
        return np.load(entry, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None


def _photo_paths(photos) -> list[Path]:
    if isinstance(photos, (str, Path)) and Path(photos).is_dir():
        return list_images(photos)
    if isinstance(photos, (str, Path)):
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
    model : ColorNet, optional; default the shipped model (:func:`colorcube.network.weights.load_model`)
    settings : PipelineSettings used for prediction (default settings)
    method : {"crc", "rcps"}; delta : RCPS level; joint : all-channel coverage
    per_image : float in [0, 1), optional
        Serve the per-image guarantee by default: with probability >= 1 - alpha a
        new photo has at least ``1 - per_image`` of its pixels covered.
    target : gray archive (folder, glob, list, zarr; see :func:`gray_features`) or
        its (m, d) feature array, optional: archive-weighted calibration (CRC only). Given
        as images, each one's own likelihood ratio is kept, and colorizing that image later
        serves its own weighted-conformal lambda (photos outside it: the archive-wide bound)
    target_description : str, names the archive in the guarantee (default: ``target``)
    source : str, description recorded in the provenance
    progress : bool, tqdm progress bars
    cache : folder, optional, per-photo records and archive features (see :func:`photo_records`)
    seed, clip_quantile : archive weighting, see
        :func:`colorcube.conformal.weighting.likelihood_ratio_weights`; ``seed`` also
        seeds the hint points
    hints : int >= 0, calibrate for photos with this many random true-colour hint points
        (the stated hint process, :func:`colorcube.guidance.placement.random_points`); kept in the
        provenance, and the guarantee then says it holds for photos hinted that way

    Returns
    -------
    Calibration with provenance (count, source, files, SHA-256 of each, sources,
    model hash, settings, date); unreadable photos are skipped with a warning and
    listed in the provenance.
    """
    settings = settings or PipelineSettings()
    model = load_model() if model is None else model
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
        feats, desc, digests = target, target_description or f"{len(target)} images", None
    else:
        feats, _, digests = gray_features(target, model=model, settings=settings, cache=cache, progress=progress,
                                          max_pixels=max_pixels)
        desc = target_description or str(target)
    return reweight(cal, feats, description=desc, seed=seed, clip_quantile=clip_quantile, target_hashes=digests)

