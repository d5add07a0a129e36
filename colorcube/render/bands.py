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

from ..errors import ColorcubeError
from .codes import CODE_MAX, decode

__all__ = ["EPS", "band", "interval_codes", "lambda_for_codes", "nested_interval", "outward_codes", "round_outward"]

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


def lambda_for_codes(lam, eps: float = EPS) -> np.ndarray:
    """``lam``: one lambda or one per channel (3,), >= 0, ``inf`` allowed -> float32 (3,), ``inf``
    replaced by a lambda whose band reaches past [0, 1] for any half-width ``s + eps`` (the kernels
    see finite numbers; their loops read exactly 3). ColorcubeError for another shape, NaN or a
    negative value, or an ``eps`` that is not finite and > 0."""
    lam = np.asarray(lam, np.float64).reshape(-1)
    if lam.shape not in ((1,), (3,)) or np.isnan(lam).any() or (lam < 0).any() or not (np.isfinite(eps) and eps > 0):
        raise ColorcubeError(f"lambda must be 1 or 3 values >= 0 (inf allowed) and eps finite > 0; got {lam!r}, "
                             f"{eps!r}")
    return np.broadcast_to(np.where(np.isinf(lam), 2.0 / eps, lam).astype(np.float32), (3,)).copy()


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
    iv = np.asarray(interval, np.float32)
    if iv.ndim == 0 or iv.shape[-1] != 2:
        raise ColorcubeError(f"interval: the last axis must be (lower, upper); got shape {iv.shape}")
    lower = np.empty(iv.shape[:-1], np.uint8)
    upper = np.empty(iv.shape[:-1], np.uint8)
    _outward(iv[..., 0].reshape(-1), iv[..., 1].reshape(-1), lower.reshape(-1), upper.reshape(-1))
    return np.stack([lower, upper], axis=-1)


def band(f, s, lam):
    """The band a cube stores (before pins at hints, :func:`colorcube.render.pins.pinned_band`), from
    a colour estimate and its half-width: the nested interval at ``lam`` rounded outward, by the
    compiled :func:`interval_codes` the full-resolution kernel runs.

    Parameters
    ----------
    f, s : (y, x, 3) float32, colour in [0, 1] and half-width >= 0 (inf allowed), unrounded
        (:func:`colorcube.render.fullres.bands_at`)
    lam : (3,) lambda per channel (or one for all), >= 0, ``inf`` allowed (the band [0, 1])

    Returns
    -------
    lo, hi : (y, x, 3) float32 on the grid ``k / 255``, lo <= hi
    """
    f = np.asarray(f, np.float32)
    n = f.size // 3
    lower = np.empty((n, 3), np.uint8)
    upper = np.empty((n, 3), np.uint8)
    _codes_of(np.ascontiguousarray(f).reshape(n, 3), np.ascontiguousarray(s, np.float32).reshape(n, 3),
              lambda_for_codes(lam), _F(EPS), lower, upper)
    return decode(lower).reshape(f.shape), decode(upper).reshape(f.shape)


def round_outward(lo, hi):
    """Bands (any shape, float in [0, 1]) rounded outward to the storage grid, as stored
    (:func:`outward_codes`), decoded (``code / 255``, float32)."""
    lo, hi = np.broadcast_arrays(np.asarray(lo, np.float32), np.asarray(hi, np.float32))
    lower = np.empty(lo.shape, np.uint8)
    upper = np.empty(hi.shape, np.uint8)
    _outward(lo.ravel(), hi.ravel(), lower.reshape(-1), upper.reshape(-1))
    return decode(lower), decode(upper)


