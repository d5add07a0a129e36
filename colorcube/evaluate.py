"""Coverage and quality of a model + calibration on colour photos with known truth."""

from __future__ import annotations

import logging

import numpy as np

from .calibrate import image_curves
from .conformal import LAMBDA_GRID, nested_interval
from .errors import ColorcubeError
from .fullres import round_outward
from .io import DEFAULT_MAX_PIXELS, read_truth
from .metrics import chroma_edges, ciede2000, colorfulness, psnr
from .pipeline import PipelineSettings

__all__ = ["evaluate", "coverage_at"]

log = logging.getLogger(__name__)


def coverage_at(curves: np.ndarray, lam) -> np.ndarray:
    """Per-image coverage ``1 - L_i(lambda)`` read off test loss curves.

    Parameters
    ----------
    curves : (n, 3, grid) test-image loss curves on ``LAMBDA_GRID``
    lam : (3,) lambda per channel (grid values)

    Returns
    -------
    (n, 3) per-image coverage
    """
    idx = [int(np.searchsorted(LAMBDA_GRID, v)) for v in np.asarray(lam)]
    return 1.0 - np.stack([curves[:, c, i] for c, i in enumerate(idx)], axis=1)


def evaluate(paths, *, model, calibration, alphas=(0.05, 0.1, 0.2), settings: PipelineSettings | None = None,
             progress: bool = True, max_pixels=DEFAULT_MAX_PIXELS) -> dict:
    """Evaluate coverage, band width and colour quality.

    Parameters
    ----------
    paths : colour photos (truth); gray inputs are made as PIL's ``convert("L")``
    model : ColorNet
    calibration : Calibration (its settings are used unless ``settings`` is given)
    alphas : miscoverage levels to report

    Returns
    -------
    dict (JSON-able) with, per alpha: lambda, per-channel and joint coverage
    (mean over images, the guaranteed quantity, and pooled over pixels),
    per-image coverage, mean width in 0-255 units, coverage by heuristic-width
    quartile and in the chroma-edge band vs the interior; quality metrics of
    the colour estimate and of the gray baseline; test loss curves for plots.
    """
    from tqdm.auto import tqdm

    settings = settings or PipelineSettings.of(calibration)
    lams = {a: calibration.lambda_for(a) for a in alphas}
    joint_lams = {a: calibration.lambda_for(a, joint=True) for a in alphas}
    acc = {a: {"cov": [], "joint": [], "pix": np.zeros(3), "width": [], "quart": np.zeros((4, 3)),
               "edge": np.zeros(3), "interior": np.zeros(3)} for a in alphas}
    n_pix, quart_n, edge_n, int_n = 0, np.zeros(4), 0, 0
    quality, curves, names = [], [], []
    for p in tqdm(list(paths), desc="evaluate", unit="img", disable=not progress):
        try:
            truth, gray = read_truth(p, max_pixels=max_pixels)
        except ColorcubeError as exc:
            log.warning("%s", exc)
            continue
        c, _, (rgb, lower, upper) = image_curves(truth, gray, model, settings)
        curves.append(c)
        names.append(str(p))
        edges = chroma_edges(truth)
        width_h = upper - lower
        qs = np.quantile(width_h.reshape(-1, 3), [0.25, 0.5, 0.75], axis=0)  # per channel
        quart = (width_h[..., None, :] > qs[None, None]).sum(axis=2)  # (y, x, 3) in 0..3
        n_pix += gray.size
        edge_n += int(edges.sum())
        int_n += int((~edges).sum())
        for k in range(4):
            quart_n[k] += (quart == k).sum() / 3.0
        for a in alphas:
            lo, hi = round_outward(*nested_interval(rgb, lower, upper, lams[a]))  # as stored
            inside = (truth >= lo) & (truth <= hi)
            jlo, jhi = round_outward(*nested_interval(rgb, lower, upper, joint_lams[a]))
            r = acc[a]
            r["cov"].append(inside.reshape(-1, 3).mean(axis=0))
            r["joint"].append(((truth >= jlo) & (truth <= jhi)).all(axis=-1).mean())
            r["pix"] += inside.reshape(-1, 3).sum(axis=0)
            r["width"].append(((hi - lo) * 255.0).reshape(-1, 3).mean(axis=0))
            for k in range(4):
                r["quart"][k] += (inside & (quart == k)).reshape(-1, 3).sum(axis=0)
            r["edge"] += inside[edges].sum(axis=0)
            r["interior"] += inside[~edges].sum(axis=0)
        gray3 = np.repeat(gray[..., None], 3, axis=2)
        de, de_gray = ciede2000(rgb, truth), ciede2000(gray3, truth)
        quality.append({
            "psnr": psnr(rgb, truth), "psnr_gray": psnr(gray3, truth),
            "ciede2000": float(de.mean()), "ciede2000_gray": float(de_gray.mean()),
            "edge_error": float(de[edges].mean()) if edges.any() else float("nan"),
            "edge_error_gray": float(de_gray[edges].mean()) if edges.any() else float("nan"),
            "colorfulness": colorfulness(rgb), "colorfulness_truth": colorfulness(truth),
        })
    if not curves:
        raise ColorcubeError("no readable photos to evaluate")
    out = {"n_images": len(curves), "images": names, "calibration": calibration.summary(),
           "settings": settings.as_dict(model), "alphas": {}}
    for a in alphas:
        r = acc[a]
        cov = np.array(r["cov"])
        out["alphas"][str(a)] = {
            "lambda": [float(v) for v in lams[a]],
            "coverage": cov.mean(axis=0).tolist(),
            "coverage_pooled": (r["pix"] / n_pix).tolist(),
            "joint_coverage": float(np.mean(r["joint"])),
            "per_image_coverage": cov.tolist(),
            "mean_width_255": np.mean(r["width"], axis=0).tolist(),
            "coverage_by_width_quartile": (r["quart"] / np.maximum(quart_n[:, None], 1)).tolist(),
            "coverage_edge_band": (r["edge"] / max(edge_n, 1)).tolist(),
            "coverage_interior": (r["interior"] / max(int_n, 1)).tolist(),
        }
    q = {k: float(np.nanmean([row[k] for row in quality])) for k in quality[0]}
    q["colorfulness_ratio"] = q["colorfulness"] / max(q["colorfulness_truth"], 1e-9)
    out["quality"] = q
    out["test_curves"] = np.stack(curves).astype(np.float32)
    return out
