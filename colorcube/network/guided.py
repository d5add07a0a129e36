"""Fast guided filter (He & Sun 2015) coefficients on the network's output grid, compiled.

The guided upsampling needs box means of the guide, its square, the
:data:`N_MAPS` maps (:data:`MAPS`) and their products with the guide, then box means of the resulting (A, B)
coefficients: 22 box filters over the grid. Running sums in float64
(so the variance terms cannot cancel) over both axes make each one O(1) per
pixel whatever the radius, in one compiled pass instead of a dozen torch
passes over the maps.

The kernels run without bounds checking: each index is kept in range by the
invariant written beside it, and :func:`guided_coefficients` checks the shapes
those invariants assume before the kernel runs (``tests/test_guided.py`` runs
the kernel with ``NUMBA_BOUNDSCHECK=1``). No float is ever used as an index.
"""

from __future__ import annotations

import dataclasses

import numba
import numpy as np

from ..errors import ColorcubeError

__all__ = ["MAPS", "MAP_A", "MAP_B", "MAP_SCALE", "N_COEF", "N_MAPS", "Coefficients", "guided_coefficients"]

#: The maps the working stage upsamples, in this order: the colour estimate's CIE a* and b*,
#: then the R, G, B band scales.
MAPS = ("a*", "b*", "R scale", "G scale", "B scale")
N_MAPS = len(MAPS)
#: Index of a*, of b* and of the first band scale (R; G and B follow) among the maps.
MAP_A, MAP_B, MAP_SCALE = 0, 1, 2
#: Coefficients per grid cell: ``A`` of the N_MAPS maps, then ``B`` of them, so map ``k`` at
#: full resolution is ``coef[..., k] * guide + coef[..., N_MAPS + k]``.
N_COEF = 2 * N_MAPS


@numba.njit(cache=True, nogil=True)
def _box(x, r, col):
    """In-place (2r+1)^2 box mean of x (h, w) float64 with edge replication; col: (w,) scratch.

    Needs ``h, w >= 1``, ``r >= 0`` and ``col.shape == (w,)``: every row index is then clamped
    into [0, h - 1] and every column index into [0, w - 1], whatever r is (r may exceed h, w)."""
    h, w = x.shape
    k = 2 * r + 1
    rows = np.empty((h, w))
    # vertical running sums, all columns at once (row-major friendly)
    col[:] = 0.0
    for d in range(-r, r + 1):
        col += x[min(max(d, 0), h - 1)]
    rows[0] = col
    for i in range(1, h):
        col += x[min(i + r, h - 1)] - x[max(i - r - 1, 0)]
        rows[i] = col
    for i in range(h):
        row = rows[i]
        s = 0.0
        for d in range(-r, r + 1):
            s += row[min(max(d, 0), w - 1)]
        x[i, 0] = s / (k * k)
        for j in range(1, w):
            s += row[min(j + r, w - 1)] - row[max(j - r - 1, 0)]
            x[i, j] = s / (k * k)


@numba.njit(cache=True, nogil=True)
def _channels(guide, maps, r, eps, coef):
    """``A`` of map ``c`` into ``coef[..., c]`` and its ``B`` into ``coef[..., n + c]``, n maps.

    Needs guide (h, w) with ``h, w >= 1``, maps (n, h, w), coef (h, w, 2 n) and ``r >= 0``
    (:func:`guided_coefficients` checks them): then ``c + n < 2 n`` and every (i, j) below is
    in range, and all of coef is written."""
    h, w = guide.shape
    n = maps.shape[0]
    col = np.empty(w)
    mean_i = guide.astype(np.float64)
    mean_ii = mean_i * mean_i
    _box(mean_i, r, col)
    _box(mean_ii, r, col)
    var = mean_ii - mean_i * mean_i + eps
    for c in range(n):
        p = maps[c].astype(np.float64)
        ip = p * guide
        _box(p, r, col)
        _box(ip, r, col)
        a = (ip - mean_i * p) / var
        b = p - a * mean_i
        _box(a, r, col)
        _box(b, r, col)
        for i in range(h):
            for j in range(w):
                coef[i, j, c] = a[i, j]
                coef[i, j, c + n] = b[i, j]


def guided_coefficients(guide: np.ndarray, maps: np.ndarray, *, radius: int, eps: float) -> np.ndarray:
    """Box-averaged guided-filter coefficients of ``maps`` against ``guide``.

    Parameters
    ----------
    guide : (h, w) float32 in [0, 1], the working-resolution lightness / 100
    maps : (N_MAPS, h, w) float32, the maps to upsample (:data:`MAPS`: a*, b*, R, G, B scale)
    radius : int >= 0, box radius in working pixels
    eps : float > 0, regulariser

    Returns
    -------
    coef : (h, w, N_COEF) float32, ``A`` of the N_MAPS maps then ``B`` (:data:`N_COEF`); the
        map at full resolution is ``A * guide + B`` with both sampled bilinearly

    Raises
    ------
    ColorcubeError
        Shapes other than the above, an empty grid, a negative radius, eps not
        finite and > 0, or NaN / inf in ``guide`` or ``maps`` (the network's output).
    """
    guide = np.ascontiguousarray(guide, np.float32)
    maps = np.ascontiguousarray(maps, np.float32)
    # the invariants _channels and _box index by (see their docstrings)
    if guide.ndim != 2 or guide.shape[0] < 1 or guide.shape[1] < 1 or maps.shape != (N_MAPS, *guide.shape):
        raise ColorcubeError(f"guided filter: guide {guide.shape} must be (h >= 1, w >= 1) and maps "
                             f"{maps.shape} ({N_MAPS}, h, w)")
    radius, eps = int(radius), float(eps)
    if radius < 0 or not (np.isfinite(eps) and eps > 0):
        raise ColorcubeError(f"guided filter: radius={radius} must be >= 0 and eps={eps} finite and > 0")
    if not (np.isfinite(guide).all() and np.isfinite(maps).all()):
        raise ColorcubeError("the network's output for this image holds NaN or infinite values "
                             "(with precision bfloat16, try --precision float32)")
    coef = np.empty((*guide.shape, N_COEF), np.float32)  # maps checked above: N_COEF = 2 * maps.shape[0]
    _channels(guide, maps, radius, eps, coef)
    return coef


@dataclasses.dataclass
class Coefficients:
    """Guided-filter coefficients on the network's output grid, on the CPU.

    ``coef`` : (h, w, 10) float32 array, the ``A`` then the ``B`` maps of
    (:data:`MAPS`: a*, b*, R scale, G scale, B scale); ``shape`` is the full-resolution
    (y, x); ``extent`` the (y, x) size, in grid cells, that the image spans.
    """

    coef: np.ndarray
    shape: tuple
    extent: tuple

