"""Hints at work: on the network's working grid, at full resolution, and simulated for calibration.

The hints themselves (:class:`colorcube.guidance.hints.Hints`, parsed and validated from
any accepted form) enter the pipeline (:func:`colorcube.network.working.working_stage`) here:

1. :func:`working_hints` averages the hints' CIE (a*, b*) over each pixel of
   the network's working resolution; :func:`colorcube.network.working.network_input` makes the
   network's hint channels from it (a / 110, b / 110, mask);
2. :func:`colorcube.guidance.propagate.blend_hints` spreads the hint colours along
   regions of similar lightness (geodesic distance), so a stroke's colour
   stops at strong lightness edges;
3. at full resolution, :func:`colorcube.render.pins.pin_codes` (and
   :func:`colorcube.render.pins.pin` for float arrays) sets each hint pixel to
   :func:`target_colours`, the hint's colour as far as
   the pixel's gray allows (the hint shifted by a neutral amount until its
   BT.601 luma equals the gray, then clipped), and widens the band to contain
   both that colour and the hint's own colour.

What the bands claim with hints (:func:`colorcube.cube.attrs.guarantee_note`): a calibration made
with ``k`` simulated random true-colour points per photo (:func:`random_points`; ``k`` kept
in its provenance under :data:`colorcube.conformal.calibration.CALIBRATION_KEY`) carries its coverage
statement for photos hinted that way; with no hints nothing changes; at each
hint pixel the stored band contains the hint's colour, whatever the calibration.
"""

from __future__ import annotations

import numpy as np

from ..color import LUMA_WEIGHTS
from ..errors import HintError
from .hints import Hints

__all__ = ["random_points", "target_colours", "working_hints"]

_LUMA = np.asarray(LUMA_WEIGHTS, np.float64)


# -- working resolution -----------------------------------------------------
def working_hints(hints: Hints, working_shape) -> tuple:
    """The hints' mean (a*, b*) on each pixel of the working grid.

    Parameters
    ----------
    hints : Hints for an (H, W) image
    working_shape : (hw, ww), the network input's size before padding

    Returns
    -------
    ab : (2, hw, ww) float32, mean CIE a*, b* of the hints on each working pixel (0 elsewhere)
    mask : (hw, ww) bool, working pixels that hold a hint
    """
    h, w = hints.shape
    hw, ww = (int(v) for v in working_shape)
    # the working pixel whose area holds the full-resolution pixel's centre
    yw = np.minimum(((hints.y + 0.5) * (hw / h)).astype(np.int64), hw - 1)
    xw = np.minimum(((hints.x + 0.5) * (ww / w)).astype(np.int64), ww - 1)
    flat = yw * ww + xw
    count = np.bincount(flat, minlength=hw * ww)
    ab = hints.ab().astype(np.float64)
    out = np.stack([np.bincount(flat, weights=ab[:, c], minlength=hw * ww) for c in range(2)])
    mask = count > 0
    out[:, mask] /= count[mask]
    return out.reshape(2, hw, ww).astype(np.float32), mask.reshape(hw, ww)


# -- full resolution ----------------------------------------------------------
def target_colours(rgb: np.ndarray, gray: np.ndarray) -> np.ndarray:
    """The hint colours as far as each pixel's gray allows.

    The colour whose BT.601 luma (PIL's ``convert("L")``) equals the pixel's
    gray, reached by adding the same amount to R, G and B (which keeps the
    hint's chroma differences) and clipping to [0, 1]; where a channel clips, the
    rest of the shift goes to the channels that can still move. For a hint that
    is the pixel's true colour this gives back that colour (to the 8-bit rounding
    of the gray).

    Parameters
    ----------
    rgb : (n, 3) hint colours, uint8 or float in [0, 1]
    gray : (n,) float in [0, 1], the input's gray at the hint pixels

    Returns
    -------
    (n, 3) float32 in [0, 1]
    """
    c = np.asarray(rgb, np.float64)
    if np.asarray(rgb).dtype == np.uint8:
        c = c / 255.0
    g = np.asarray(gray, np.float64).reshape(-1)
    for _ in range(4):  # each round either lands on the gray or pins one more channel at 0 or 1
        d = g - c @ _LUMA
        free = ((d[:, None] > 0) & (c < 1)) | ((d[:, None] < 0) & (c > 0))
        wf = (free * _LUMA).sum(axis=1)
        shift = np.divide(d, wf, out=np.zeros_like(d), where=wf > 0)
        c = np.clip(c + free * shift[:, None], 0.0, 1.0)
    return c.astype(np.float32)


# -- simulation and what the bands claim ----------------------------------------
def random_points(truth_rgb, k: int, rng) -> list:
    """``k`` random true-colour hint points on a colour photo (the calibration's hint process).

    Parameters
    ----------
    truth_rgb : (H, W, 3) uint8, or float in [0, 1] (then rounded to 8 bits)
    k : int >= 0, number of points (at most H * W), at distinct pixels drawn uniformly
    rng : numpy.random.Generator or int seed

    Returns
    -------
    list of ``(y, x, (r, g, b))`` with the photo's own 8-bit colour at (y, x),
    the API's point format (``colorize(..., hints=points)``)
    """
    truth = np.asarray(truth_rgb)
    if truth.ndim != 3 or truth.shape[2] != 3:
        raise HintError(f"truth_rgb must be (H, W, 3); got shape {truth.shape}")
    h, w = truth.shape[:2]
    k = int(k)
    if not 0 <= k <= h * w:
        raise HintError(f"k={k} hint points: give 0 to {h * w} (the photo's pixel count)")
    rng = np.random.default_rng(rng)
    flat = rng.choice(h * w, size=k, replace=False) if k else np.zeros(0, np.int64)
    ys, xs = np.divmod(flat, w)
    cols = truth[ys, xs]
    if cols.dtype != np.uint8:
        cols = np.rint(np.clip(cols.astype(np.float64), 0, 1) * 255).astype(np.uint8)
    return [(int(y), int(x), tuple(int(v) for v in c)) for y, x, c in zip(ys, xs, cols)]


