"""A cube's attributes: what was run (model, settings, calibration, alpha, lambda) and what the
bands then claim (the ``guarantee``), with the user's guidance recorded."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

import colorcube

__all__ = ["cube_attrs", "guarantee_note", "guided_attrs"]


def guarantee_note(*, hint_points: int | None, n_hints: int = 0, reference: str | None = None) -> str:
    """What the bands claim with ``n_hints`` user hints and/or a reference photo, in words
    (appended to the cube's ``guarantee``); "" when there are neither.

    ``hint_points`` : the calibration's simulated hint points per photo
    (:func:`colorcube.conformal.lookup.calibration_hint_points`), None for uncalibrated bands.
    """
    notes = []
    if n_hints:
        if hint_points:
            notes.append(f"The statement covers hints placed by the calibration's process ({hint_points} random "
                         "true-colour points per photo), not hints chosen otherwise.")
        elif hint_points is not None:
            notes.append(f"The calibration used no hints, so with these {n_hints} hinted pixels the statement is "
                         "not guaranteed (the bands were calibrated for the automatic mode).")
        notes.append(f"At each of the {n_hints} hint pixels the band contains the hint's colour.")
    if reference is not None and hint_points is not None:
        notes.append(f"A reference photo ({reference}) reweighted the colours; the calibration used none, so the "
                     "statement is not guaranteed for these bands.")
    return " ".join(notes)


def _finite_or_str(x: float):
    return float(x) if math.isfinite(x) else "inf"


def cube_attrs(*, alpha: float, lam, calibration=None, model=None, settings=None, source: str = "<array>",
               source_hash: str = "") -> dict:
    """The cube's attributes (JSON-able): alpha, method, lambda, guarantee, provenance
    (:data:`colorcube.cube.schema.REQUIRED_ATTRS` and more)."""
    lam = [float(v) for v in np.asarray(lam, dtype=np.float64).reshape(-1)]
    if calibration is None:
        method, guarantee = "uncalibrated", ("UNCALIBRATED heuristic bands (lambda = 1): no coverage guarantee; "
                                             "calibrate with `colorcube calibrate`.")
        summary = {}
    else:
        method, guarantee, summary = calibration.method, calibration.guarantee(alpha), calibration.summary()
    return {
        "alpha": float(alpha),
        "method": method,
        "lambda": [_finite_or_str(v) for v in lam],
        "calibrated": int(calibration is not None),
        "guarantee": guarantee,
        "calibration": json.dumps(summary),
        "model_name": getattr(model, "weights_name", "") if model is not None else "",
        "model_hash": getattr(model, "weights_hash", "") if model is not None else "",
        "settings": json.dumps(settings or {}),
        "source": str(source),
        "source_hash": source_hash,
        "colorcube_version": colorcube.__version__,
    }


def guided_attrs(attrs: dict, hint_points: int | None, *, hints=None, reference=None, strength: float = 1.0) -> dict:
    """The cube attributes that record user guidance: ``hints`` (count), ``hint_source``,
    ``reference``, ``reference_strength``, and the ``guarantee`` with what it claims then
    (:func:`colorcube.cube.attrs.guarantee_note`; ``hint_points``: the calibration's simulated hint
    points, :func:`colorcube.conformal.lookup.calibration_hint_points`, None when uncalibrated)."""
    new = {}
    ref_name = None
    if reference is not None:
        ref_name = getattr(reference, "source", None) or (str(reference) if isinstance(reference, (str, Path))
                                                           else "<array>")
        new.update(reference=ref_name, reference_strength=float(strength))
    if hints is not None:
        new.update(hints=len(hints), hint_source=hints.source)
    note = guarantee_note(hint_points=hint_points, n_hints=len(hints) if hints is not None else 0, reference=ref_name)
    if note:
        new["guarantee"] = f"{attrs['guarantee']} {note}"
    return new
