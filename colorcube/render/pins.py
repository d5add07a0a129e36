"""Hints on a band: at a hint pixel the colour is the hint's as far as the gray allows
(:func:`colorcube.guidance.placement.target_colours`) and the band is widened to hold that colour
and the hint's own. Applied to storage codes by the full-resolution stage (:func:`pin_codes`), to
float bands by calibration (:func:`pin`), and around :func:`colorcube.render.bands.band` by
:func:`pinned_band` for the accessor and the explorer. Kept apart from :mod:`colorcube.render.bands`
because the hints bring torch, which the store and the estimators must not load.
"""

from __future__ import annotations

import numpy as np

from ..guidance.hints import Hints
from ..guidance.placement import target_colours
from .bands import band

__all__ = ["pin", "pin_codes", "pinned_band"]


def pinned_band(f, s, lam, *, hints: Hints | None = None, gray=None, step: int = 1):
    """The band a cube stores, from a colour estimate and its half-width: nested interval at
    ``lam``, rounded outward (:func:`colorcube.render.bands.band`), pinned at hints.

    Parameters
    ----------
    f, s : (y, x, 3) float32, colour in [0, 1] and half-width >= 0 (inf allowed), unrounded
        (:func:`colorcube.render.fullres.bands_at`)
    lam : (3,) lambda per channel, >= 0, ``inf`` allowed (the band [0, 1])
    hints : Hints of the whole image, or None; ``gray`` : (y, x) float32 gray at the same pixels
        (needed with hints); ``step`` : the arrays hold every ``step``-th pixel

    Returns
    -------
    lo, hi : (y, x, 3) float32 on the grid ``k / 255``, lo <= hi
    """
    f = np.ascontiguousarray(f, np.float32)
    if hints is None:
        return band(f, s, lam)
    f = f.copy()  # the colour at a hint pixel is the hint's, before the interval is taken
    pin(hints, gray, f, None, None, step=step)
    lo, hi = band(f, s, lam)
    pin(hints, gray, f, lo, hi, step=step)
    return lo, hi


def pin(hints: Hints, gray, rgb, lower, upper, *, y0: int = 0, x0: int = 0, step: int = 1) -> None:
    """Set the hint pixels of float arrays in place: colour :=
    :func:`colorcube.guidance.placement.target_colours`, and the
    band [lower, upper] widened to contain that colour and the hint's own colour.

    Parameters
    ----------
    gray : (ty, tx) float in [0, 1], the tile's gray; rgb, lower, upper : (ty, tx, 3) float arrays
        (lower / upper may be None to set the colour only)
    y0, x0 : the tile's offset in the image; step : the tile holds every ``step``-th pixel
    """
    ty, tx = np.shape(gray)[:2]
    idx = hints.inside(y0, y0 + ty * step, x0, x0 + tx * step, step)
    if idx.size == 0:
        return
    iy, ix = (hints.y[idx] - y0) // step, (hints.x[idx] - x0) // step
    t = target_colours(hints.rgb[idx], np.asarray(gray)[iy, ix])
    given = hints.rgb[idx].astype(np.float32) / np.float32(255)
    rgb[iy, ix] = t
    if lower is not None:
        lower[iy, ix] = np.minimum(np.minimum(lower[iy, ix], t), given)
        upper[iy, ix] = np.maximum(np.maximum(upper[iy, ix], t), given)


def pin_codes(hints: Hints, gray, codes: dict, *, y0: int = 0, x0: int = 0) -> dict:
    """:func:`pin` on a tile's storage codes (``rgb`` (ty, tx, 3) and ``interval`` (ty, tx, 3, 2)
    uint8), in place: the stored band then contains the stored colour and the hint's colour."""
    ty, tx = np.shape(gray)[:2]
    idx = hints.inside(y0, y0 + ty, x0, x0 + tx)
    if idx.size == 0:
        return codes
    iy, ix = hints.y[idx] - y0, hints.x[idx] - x0
    t = np.rint(target_colours(hints.rgb[idx], np.asarray(gray)[iy, ix]) * 255).astype(np.uint8)
    given = hints.rgb[idx]
    codes["rgb"][iy, ix] = t
    iv = codes["interval"]
    iv[iy, ix, :, 0] = np.minimum(np.minimum(iv[iy, ix, :, 0], t), given)
    iv[iy, ix, :, 1] = np.maximum(np.maximum(iv[iy, ix, :, 1], t), given)
    return codes
