"""Run the pipeline over colour photos and build a :class:`~colorcube.conformal.Calibration`."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .conformal import LAMBDA_GRID, Calibration, lambda_star, loss_curve, today
from .errors import CalibrationError, ColorcubeError
from .fullres import CODE_MAX
from .io import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, read_truth
from .pipeline import PipelineSettings, predict_bands

__all__ = ["image_curves", "calibrate", "list_images"]

log = logging.getLogger(__name__)


def list_images(folder) -> list[Path]:
    """Image files under ``folder`` (recursive, sorted); a clear error if there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ColorcubeError(f"{folder}: not a folder of photos")
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ColorcubeError(f"{folder}: no image files (.png, .jpg, .tif, ...) found")
    return paths


def image_curves(truth: np.ndarray, gray: np.ndarray, model, settings: PipelineSettings, *, grid=LAMBDA_GRID):
    """Loss curves of one photo.

    Parameters
    ----------
    truth : (y, x, 3) float32 in [0, 1]
    gray : (y, x) float32 in [0, 1], made from ``truth`` as inputs are made

    Returns
    -------
    curves : (3, grid) per-channel loss curves
    joint : (grid,) loss curve of the all-channel miss
    bands : tuple (rgb, lower, upper) of (y, x, 3) arrays, the heuristic bands
    """
    rgb, lower, upper = predict_bands(gray, model, settings)
    ls = lambda_star(rgb, lower, upper, truth, levels=CODE_MAX).reshape(-1, 3)  # the bands as stored
    return loss_curve(ls, grid), loss_curve(ls.max(axis=1), grid), (rgb, lower, upper)


def calibrate(paths, *, model, settings: PipelineSettings | None = None, method: str = "crc",
              delta: float = 0.1, joint: bool = False, source: str = "", progress: bool = True,
              max_pixels=DEFAULT_MAX_PIXELS) -> Calibration:
    """Calibrate the model's bands on colour photos with known truth.

    Parameters
    ----------
    paths : iterable of image paths (colour photos, never seen in training)
    model : ColorNet
    settings : PipelineSettings used for prediction (default settings)
    method : {"crc", "rcps"}; delta : RCPS level; joint : all-channel coverage
    source : str, description recorded in the provenance
    progress : bool, tqdm progress bar

    Returns
    -------
    Calibration with provenance (count, source, model hash, settings, date);
    unreadable photos are skipped with a warning and listed in the provenance.
    """
    from tqdm.auto import tqdm

    settings = settings or PipelineSettings()
    paths = list(paths)
    curves, joints, skipped = [], [], []
    for p in tqdm(paths, desc="calibrate", unit="img", disable=not progress):
        try:
            truth, gray = read_truth(p, max_pixels=max_pixels)
        except ColorcubeError as exc:
            log.warning("%s", exc)
            skipped.append(str(p))
            continue
        c, j, _ = image_curves(truth, gray, model, settings)
        curves.append(c)
        joints.append(j)
    if not curves:
        raise CalibrationError("no readable calibration photos")
    provenance = {
        "n_images": len(curves),
        "source": source,
        "skipped": skipped,
        "model_hash": getattr(model, "weights_hash", ""),
        "model_name": getattr(model, "weights_name", ""),
        "settings": settings.as_dict(model),
        "date": today(),
    }
    return Calibration(curves=np.stack(curves).astype(np.float32), joint_curves=np.stack(joints).astype(np.float32),
                       method=method, delta=delta, joint=joint, provenance=provenance)
