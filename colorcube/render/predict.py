"""One photo's colour and heuristic band in float (before calibration), for calibration and evaluation."""

from __future__ import annotations

import numpy as np

from ..guidance.hints import as_hints
from ..network.model import ColorNet
from ..network.working import working_stage
from ..settings import PipelineSettings
from .fullres import full_stage
from .pins import pin

__all__ = ["predict_bands"]


def predict_bands(gray, model: ColorNet, settings: PipelineSettings | None = None, *,
                  hints=None, reference=None, reference_strength: float = 1.0, block_pixels: int = 1 << 22):
    """Full pipeline before calibration: numpy (rgb, lower, upper), each (y, x, 3) float32.

    ``rgb`` is in [0, 1]; the heuristic ``lower <= rgb <= upper`` may extend past it.
    ``hints``, ``reference``, ``reference_strength``: see :func:`colorcube.network.working.working_stage`; at hint
    pixels the colour is pinned and the band widened (:func:`colorcube.render.pins.pin`).

    The full-resolution stage runs in row blocks of about ``block_pixels``
    pixels, which bounds the temporaries; results do not depend on the blocks.
    """
    gray = np.asarray(gray, dtype=np.float32)
    hints = as_hints(hints, gray.shape)
    coeffs = working_stage(gray, model, settings or PipelineSettings(), hints=hints, reference=reference,
                           reference_strength=reference_strength)
    h, w = gray.shape
    out = [np.empty((h, w, 3), np.float32) for _ in range(3)]
    rows = max(1, block_pixels // w)
    for y0 in range(0, h, rows):
        rgb, scale = full_stage(gray[y0 : y0 + rows], coeffs, y0=y0)
        out[0][y0 : y0 + rows] = rgb
        np.subtract(rgb, scale, out=out[1][y0 : y0 + rows])
        np.add(rgb, scale, out=out[2][y0 : y0 + rows])
    if hints is not None:
        pin(hints, gray, *out)
    return tuple(out)
