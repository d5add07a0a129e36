"""The band of a pixel: the nested interval at lambda, rounded outward to the storage grid, pinned at hints.

One rule, in one place, for every path that makes or rebuilds a band: the full-resolution kernel
(:mod:`colorcube.render.fullres`) compiles :func:`interval_codes` into its pass over the pixels, and
:func:`band` applies the same compiled function to arrays for the accessor's bands at another
alpha and the explorer; calibration and evaluation take the same nested interval
(:func:`nested_interval`) and outward rounding (:func:`round_outward`) on float bands.

With ``f`` the colour estimate and ``s`` the heuristic half-width, the band at lambda is
``[f - lambda (s + EPS), f + lambda (s + EPS)]`` clipped to [0, 1]; stored as 8-bit codes its
lower edge is ``floor(lo * 255)`` and its upper edge ``ceil(hi * 255)`` (multiplied in float32),
so the stored band always contains the computed one. At a hint pixel the colour is the hint's
as far as the gray allows and the band is widened to hold it and the hint's own colour.
"""

from __future__ import annotations

import numba
import numpy as np

from ..guidance.hints import Hints
from ..guidance.placement import target_colours
from .codes import CODE_MAX, decode

__all__ = ["EPS", "band", "interval_codes", "lambda_for_codes", "nested_interval", "outward_codes", "pin", "pin_codes",
           "round_outward"]

#: the band's floor: ``lambda * EPS`` keeps a band of zero heuristic width from claiming a single value
EPS = 1e-3
_F = np.float32
# the full-resolution kernel's flags: fused multiply-adds and signed-zero freedom only (see fullres)
_FAST = {"contract", "nsz"}


@numba.njit(cache=True, nogil=True, fastmath=_FAST, error_model="numpy")
def interval_codes(f, s, lam, eps):
    """The stored band of one value: float32 ``f`` in [0, 1], half-width ``s`` >= 0 (inf allowed),
    ``lam`` >= 0 (finite), ``eps`` -> (lower, upper) uint8 codes. NaN (``lam`` 0 times an infinite
    ``s``) is sent outward: the lower edge to 0, the upper to 255."""
    half = lam * (s + eps)
    lo = np.fmin(np.fmax(f - half, _F(0.0)), _F(1.0))
    hi = np.fmax(np.fmin(f + half, _F(1.0)), _F(0.0))
    return np.uint8(np.floor(lo * _F(CODE_MAX))), np.uint8(np.ceil(hi * _F(CODE_MAX)))


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _codes_of(f, s, lam, eps, lower, upper):
    for i in range(f.shape[0]):
        for c in range(f.shape[1]):
            lower[i, c], upper[i, c] = interval_codes(f[i, c], s[i, c], lam[c], eps)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _outward(lo, hi, lower, upper):
    for i in range(lo.shape[0]):
        # zero half-width: the edges are the values, rounded outward as the kernel rounds them
        lower[i], _ = interval_codes(lo[i], _F(0.0), _F(0.0), _F(0.0))
        _, upper[i] = interval_codes(hi[i], _F(0.0), _F(0.0), _F(0.0))


def lambda_for_codes(lam) -> np.ndarray:
    """``lam`` (3,) >= 0, ``inf`` allowed -> float32 (3,), ``inf`` replaced by a lambda whose band
    reaches past [0, 1] for any half-width (so the kernels see finite numbers)."""
    lam = np.asarray(lam, np.float64).reshape(-1)
    return np.where(np.isinf(lam), 2.0 / EPS, lam).astype(np.float32)


def nested_interval(f, lower, upper, lam):
    """The nested interval ``T_lambda`` of float bands: ``[f - lambda (f - lower + EPS),
    f + lambda (upper - f + EPS)]`` clipped to [0, 1].

    Parameters
    ----------
    f, lower, upper : (..., channel) float32 arrays with lower <= f <= upper
    lam : scalar or (channel,) array, >= 0 (``inf`` gives [0, 1])

    Returns
    -------
    lo, hi : float32 arrays shaped like ``f``, in [0, 1]
    """
    lam = np.asarray(lam, dtype=np.float64)
    lam = np.where(np.isinf(lam), 2.0 / EPS, lam).astype(np.float32)  # reaches past [0, 1]
    lo = np.clip(f - lam * (f - lower + EPS), 0, 1)
    hi = np.clip(f + lam * (upper - f + EPS), 0, 1)
    return lo, hi


def outward_codes(interval) -> np.ndarray:
    """Bands ``(..., 2)`` (lower, upper), float in [0, 1], as the storage codes :func:`interval_codes`
    writes: ``(..., 2)`` uint8, the lower edge rounded down and the upper up (in float32)."""
    iv = np.ascontiguousarray(interval, np.float32)
    lower = np.empty(iv.shape[:-1], np.uint8)
    upper = np.empty(iv.shape[:-1], np.uint8)
    _outward(np.ascontiguousarray(iv[..., 0]).reshape(-1), np.ascontiguousarray(iv[..., 1]).reshape(-1),
             lower.reshape(-1), upper.reshape(-1))
    return np.stack([lower, upper], axis=-1)


def round_outward(lo, hi):
    """Bands (any shape, float in [0, 1]) rounded outward to the storage grid, as stored
    (:func:`outward_codes`), decoded (``code / 255``, float32)."""
    codes = outward_codes(np.stack(np.broadcast_arrays(np.asarray(lo, np.float32), np.asarray(hi, np.float32)),
                                   axis=-1))
    return decode(codes[..., 0]), decode(codes[..., 1])


def band(f, s, lam, *, hints: Hints | None = None, gray=None, step: int = 1):
    """The band a cube stores, from a colour estimate and its half-width: nested interval at
    ``lam``, rounded outward, pinned at hints.

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
    if hints is not None:  # the colour at a hint pixel is the hint's, before the interval is taken
        f = f.copy()
        pin(hints, gray, f, None, None, step=step)
    n = f.shape[0] * f.shape[1]
    lower = np.empty((n, 3), np.uint8)
    upper = np.empty((n, 3), np.uint8)
    _codes_of(f.reshape(n, 3), np.ascontiguousarray(s, np.float32).reshape(n, 3), lambda_for_codes(lam),
              _F(EPS), lower, upper)
    lo, hi = decode(lower).reshape(f.shape), decode(upper).reshape(f.shape)
    if hints is not None:
        pin(hints, gray, f.copy(), lo, hi, step=step)
    return lo, hi


def pin(hints: Hints, gray, rgb, lower, upper, *, y0: int = 0, x0: int = 0, step: int = 1) -> None:
    """Set the hint pixels of float arrays in place: colour := :func:`target_colours`, and the
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


