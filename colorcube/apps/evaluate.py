"""Coverage and quality of a model + calibration on colour photos with known truth.

Besides the mean coverage (the quantity CRC controls) it reports where the
bands fall short: coverage per source, by terciles of image brightness,
saturation and size, each with a 95 % confidence interval over images (the
image is the exchangeable unit; pixels of one image are not independent), the
joint R, G, B coverage of the per-channel bands, and the share of images with
at least ``1 - beta`` of their pixels covered (the per-image guarantee).
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import stats
from tqdm.auto import tqdm

from ..conformal.estimators import LAMBDA_GRID
from ..conformal.records import image_curves, simulated_hints
from ..errors import CalibrationError, ColorcubeError
from ..inputs.images import DEFAULT_MAX_PIXELS, file_hash, read_truth, source_of
from ..metrics import chroma_edges, ciede2000, colorfulness, psnr
from ..render.bands import nested_interval, round_outward
from ..settings import PipelineSettings

__all__ = ["coverage_at", "evaluate", "group_coverage", "share_interval", "terciles"]

log = logging.getLogger(__name__)
#: beta of the per-image report when the calibration has none of its own
DEFAULT_BETA = 0.2


def group_coverage(per_image: np.ndarray, labels, *, level: float = 0.95) -> dict:
    """Mean per-image coverage by group, with a t confidence interval over the group's images.

    Parameters
    ----------
    per_image : (n, k) per-image coverage (k channels)
    labels : (n,) group of each image
    level : confidence level of the interval

    Returns
    -------
    dict group -> {"n": images, "coverage": (k,) mean, "ci": [(k,) low, (k,) high]}
    (``ci`` is None for a group of one image).
    """
    per_image = np.asarray(per_image, np.float64)
    labels = np.asarray(labels)
    out = {}
    for g in sorted(set(labels.tolist()), key=str):
        x = per_image[labels == g]
        mean = x.mean(axis=0)
        if len(x) > 1:
            half = stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(axis=0, ddof=1) / np.sqrt(len(x))
            ci = [np.clip(mean - half, 0, 1).tolist(), np.clip(mean + half, 0, 1).tolist()]
        else:
            ci = None
        out[str(g)] = {"n": len(x), "coverage": mean.tolist(), "ci": ci}
    return out


def terciles(values, names=("low", "mid", "high")) -> tuple[list, list]:
    """Label each value by its tercile among ``values``; returns (labels, [edge1, edge2])."""
    v = np.asarray(values, np.float64)
    edges = np.quantile(v, [1 / 3, 2 / 3])
    idx = np.searchsorted(edges, v, side="right")
    return [f"{k}-{names[i]}" for k, i in zip(idx + 1, idx)], edges.tolist()


def share_interval(successes: int, n: int, *, level: float = 0.95) -> list:
    """Clopper-Pearson interval of a binomial share (exact, conservative)."""
    lo = stats.beta.ppf((1 - level) / 2, successes, n - successes + 1) if successes > 0 else 0.0
    hi = stats.beta.ppf(1 - (1 - level) / 2, successes + 1, n - successes) if successes < n else 1.0
    return [float(lo), float(hi)]


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
             progress: bool = True, max_pixels=DEFAULT_MAX_PIXELS, beta: float | None = None) -> dict:
    """Evaluate coverage, band width and colour quality.

    Parameters
    ----------
    paths : colour photos (truth); gray inputs are made as PIL's ``convert("L")``
    model : ColorNet
    calibration : Calibration (its settings are used unless ``settings`` is given);
        its own mode (expected or per-image, plain or archive-weighted) makes the bands
    alphas : miscoverage levels to report
    beta : float in [0, 1), optional; tolerance of the per-image report (default
        the calibration's own, else 0.2)

    Returns
    -------
    dict (JSON-able) with, per alpha: lambda, per-channel and joint coverage
    (mean over images, the guaranteed quantity, and pooled over pixels), the joint
    coverage of the per-channel bands, per-image coverage, mean width in 0-255
    units, coverage by heuristic-width quartile and in the chroma-edge band vs the
    interior, ``groups`` (coverage by source and by brightness, saturation and
    size terciles of the images, with 95 % intervals over images: see
    :func:`group_coverage`) and ``per_image`` (at the per-image lambda for
    ``beta``: the share of images with at least 1 - beta of their pixels covered,
    per channel and joint, with Clopper-Pearson intervals); ``image_stats``; quality
    metrics of the colour estimate and of the gray baseline; ``test_curves`` for plots.
    """
    settings = settings or PipelineSettings.of(calibration)
    beta = beta if beta is not None else (calibration.beta if calibration.beta is not None else DEFAULT_BETA)
    lams = {a: calibration.lambda_for(a) for a in alphas}
    joint_lams = {a: calibration.lambda_for(a, joint=True) for a in alphas}
    acc = {a: {"cov": [], "joint": [], "joint_pc": [], "pix": np.zeros(3), "width": [], "quart": np.zeros((4, 3)),
               "edge": np.zeros(3), "interior": np.zeros(3)} for a in alphas}
    n_pix, quart_n, edge_n, int_n = 0, np.zeros(4), 0, 0
    quality, curves, joints, names, image_stats = [], [], [], [], []
    for p in tqdm(list(paths), desc="evaluate", unit="img", disable=not progress):
        try:
            truth, gray = read_truth(p, max_pixels=max_pixels)
        except ColorcubeError as exc:
            log.warning("%s", exc)
            continue
        # a calibration made for hinted photos is evaluated on photos hinted the same way
        hints = (simulated_hints(truth, calibration.hint_points, key=file_hash(p), seed=1)
                 if calibration.hint_points else None)
        c, j, (rgb, lower, upper) = image_curves(truth, gray, model, settings, hints=hints)
        curves.append(c)
        joints.append(j)
        names.append(str(p))
        mx, mn = truth.max(axis=-1), truth.min(axis=-1)
        image_stats.append({"source": source_of(p), "brightness": float(gray.mean()),
                            "saturation": float(np.mean((mx - mn) / np.maximum(mx, 1e-6))),
                            "pixels": int(gray.size)})
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
            r["joint_pc"].append(inside.all(axis=-1).mean())
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
    test_curves, test_joint = np.stack(curves).astype(np.float32), np.stack(joints).astype(np.float32)
    groupings = {"source": [s["source"] for s in image_stats]}
    edges_of = {}
    for key in ("brightness", "saturation", "pixels"):
        groupings[key if key != "pixels" else "size"], edges_of[key] = terciles([s[key] for s in image_stats])
    out = {"n_images": len(curves), "images": names, "calibration": calibration.summary(),
           "guarantee": {str(a): calibration.guarantee(a) for a in alphas},
           "settings": settings.as_dict(model), "tercile_edges": edges_of, "image_stats": image_stats, "alphas": {}}
    for a in alphas:
        r = acc[a]
        cov = np.array(r["cov"])
        both = np.column_stack([cov, r["joint_pc"]])  # R, G, B, joint of the per-channel bands
        out["alphas"][str(a)] = {
            "lambda": [float(v) for v in lams[a]],
            "coverage": cov.mean(axis=0).tolist(),
            "coverage_pooled": (r["pix"] / n_pix).tolist(),
            "joint_coverage": float(np.mean(r["joint"])),
            "joint_coverage_of_per_channel_bands": float(np.mean(r["joint_pc"])),
            "per_image_coverage": cov.tolist(),
            "mean_width_255": np.mean(r["width"], axis=0).tolist(),
            "coverage_by_width_quartile": (r["quart"] / np.maximum(quart_n[:, None], 1)).tolist(),
            "coverage_edge_band": (r["edge"] / max(edge_n, 1)).tolist(),
            "coverage_interior": (r["interior"] / max(int_n, 1)).tolist(),
            "groups": {key: group_coverage(both, labels) for key, labels in groupings.items()},
            "per_image": _per_image_report(calibration, a, beta, test_curves, test_joint),
        }
    q = {k: float(np.nanmean([row[k] for row in quality])) for k in quality[0]}
    q["colorfulness_ratio"] = q["colorfulness"] / max(q["colorfulness_truth"], 1e-9)
    out["quality"] = q
    out["test_curves"] = test_curves
    return out


def _per_image_report(calibration, alpha: float, beta: float, curves: np.ndarray, joint: np.ndarray) -> dict:
    """Share of test images with >= 1 - beta of their pixels covered at the per-image lambdas, read
    off the test curves (exact for the bands as stored)."""
    try:
        lam = calibration.lambda_for(alpha, beta=beta)
        lam_joint = calibration.lambda_for(alpha, beta=beta, joint=True)
    except CalibrationError as exc:  # too few calibration photos for this alpha
        return {"beta": beta, "error": str(exc)}
    # the per-image event as calibrated: loss <= beta, compared in float32 (image_level_curves)
    idx = [int(np.searchsorted(LAMBDA_GRID, v)) for v in lam]
    ok = np.stack([curves[:, c, i] for c, i in enumerate(idx)], axis=1) <= np.float32(beta)
    k = int(np.searchsorted(LAMBDA_GRID, lam_joint[0]))
    ok_joint = joint[:, k] <= np.float32(beta)
    n = len(curves)
    return {"beta": beta, "lambda": [float(v) for v in lam], "lambda_joint": float(lam_joint[0]),
            "share": ok.mean(axis=0).tolist(), "share_joint": float(ok_joint.mean()),
            "ci": [share_interval(int(k), n) for k in ok.sum(axis=0)],
            "ci_joint": share_interval(int(ok_joint.sum()), n), "nominal": 1 - alpha}
