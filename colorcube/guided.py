"""Fast guided filter (He & Sun 2015) coefficients on the network's output grid, compiled.

The guided upsampling needs box means of the guide, its square, five maps and
their products with the guide, then box means of the resulting (A, B)
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

import numba
import numpy as np

from .errors import ColorcubeError

__all__ = ["guided_coefficients"]


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
    """Needs guide (h, w) with ``h, w >= 1``, maps (5, h, w), coef (h, w, 10), ``r >= 0``:
    then ``c + 5 < 10`` and every (i, j) below is in range, and all of coef is written."""
    h, w = guide.shape
    col = np.empty(w)
    mean_i = guide.astype(np.float64)
    mean_ii = mean_i * mean_i
    _box(mean_i, r, col)
    _box(mean_ii, r, col)
    var = mean_ii - mean_i * mean_i + eps
    for c in range(maps.shape[0]):
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
                coef[i, j, c + 5] = b[i, j]


def guided_coefficients(guide: np.ndarray, maps: np.ndarray, *, radius: int, eps: float) -> np.ndarray:
    """Box-averaged guided-filter coefficients of ``maps`` against ``guide``.

    Parameters
    ----------
    guide : (h, w) float32 in [0, 1], the working-resolution lightness / 100
    maps : (5, h, w) float32, the maps to upsample (a*, b*, R, G, B spread)
    radius : int >= 0, box radius in working pixels
    eps : float > 0, regulariser

    Returns
    -------
    coef : (h, w, 10) float32, ``A`` of the five maps then ``B``; the map at
        full resolution is ``A * guide + B`` with both sampled bilinearly

    Raises
    ------
    ColorcubeError
        Shapes other than the above, an empty grid, a negative radius, eps not
        finite and > 0, or NaN / inf in ``guide`` or ``maps`` (the network's output).
    """
    guide = np.ascontiguousarray(guide, np.float32)
    maps = np.ascontiguousarray(maps, np.float32)
    # the invariants _channels and _box index by (see their docstrings)
    if guide.ndim != 2 or guide.shape[0] < 1 or guide.shape[1] < 1 or maps.shape != (5, *guide.shape):
        raise ColorcubeError(f"guided filter: guide {guide.shape} must be (h >= 1, w >= 1) and maps "
                             f"{maps.shape} (5, h, w)")
    radius, eps = int(radius), float(eps)
    if radius < 0 or not (np.isfinite(eps) and eps > 0):
        raise ColorcubeError(f"guided filter: radius={radius} must be >= 0 and eps={eps} finite and > 0")
    if not (np.isfinite(guide).all() and np.isfinite(maps).all()):
        raise ColorcubeError("the network's output for this image holds NaN or infinite values "
                             "(with precision bfloat16, try --precision float32)")
    coef = np.empty((*guide.shape, 10), np.float32)
    _channels(guide, maps, radius, eps, coef)
    return coef
