"""The full-resolution stage as one fused, compiled pass per pixel.

Given the working-resolution guided-filter coefficients, every output pixel
is computed independently: bilinear sample of the ten coefficient maps at
the pixel, ``q = A * L / 100 + B`` for (a*, b*, R, G, B spread), Lab -> sRGB,
and (in the ``codes`` pass) the conformal interval rounded outward to the
storage grid. One loop over the pixels instead of ~40 tensor passes: on a
1-MP photo this stage went from about 250 ms (torch) to the figure
``python benchmarks/throughput.py`` prints.

Storage codes
-------------
``rgb`` and ``scale`` are stored as uint8 ``round(v * 255)`` / ``ceil(v * 255)``,
the interval as uint8 with the lower bound rounded *down* and the upper bound
*up* (outward), so a stored band always contains the computed one and the
coverage guarantee is kept; ``gray`` as uint16 ``round(g * 65535)`` (exact for
8- and 16-bit inputs). Decoding is ``code / 255`` (``/ 65535``) in float32,
which gives exactly the float32 value an 8-bit truth image reads as, so
comparisons with truth at a band's edge are exact.

The kernels release the GIL; :func:`run_rows` splits a tile over threads.
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

__all__ = ["lightness_table", "gamma_table", "bands", "codes", "run_rows", "decode", "encode_gray", "round_outward", "CODE_MAX", "GRAY_CODE_MAX"]

CODE_MAX = 255
GRAY_CODE_MAX = 65535
_GAMMA_STEPS = 4096


@functools.cache
def lightness_table() -> np.ndarray:
    """L* of the sRGB gray ``k / 65535`` for k = 0..65535, float32 (same formula as
    :func:`colorcube.color.gray_to_lightness`, evaluated in float64)."""
    g = np.arange(GRAY_CODE_MAX + 1, dtype=np.float64) / GRAY_CODE_MAX
    lin = np.where(g > 0.04045, ((g + 0.055) / 1.055) ** 2.4, g / 12.92)
    f = np.where(lin > 0.008856, np.cbrt(lin), 7.787 * lin + 4.0 / 29.0)
    return (116.0 * f - 16.0).astype(np.float32)


@functools.cache
def gamma_table() -> np.ndarray:
    """sRGB encoding of linear values on a 4096-step grid of [0, 1] (4097 float32 entries).

    Linear interpolation in it is within 2e-5 of the exact curve (0.005 of a
    code), far below the 8-bit storage step."""
    x = np.linspace(0.0, 1.0, _GAMMA_STEPS + 1)
    return np.where(x > 0.0031308, 1.055 * np.maximum(x, 0.0031308) ** (1 / 2.4) - 0.055, 12.92 * x).astype(np.float32)


@numba.njit(cache=True, nogil=True, inline="always")
def _encode(lin, table):
    lin = min(max(lin, 0.0), 1.0) * 4096.0
    k = min(int(lin), 4095)
    t = lin - k
    return table[k] * (1.0 - t) + table[k + 1] * t


@numba.njit(cache=True, nogil=True, inline="always")
def _finv(t):
    return t * t * t if t > 0.2068966 else (t - 4.0 / 29.0) / 7.787


@numba.njit(cache=True, nogil=True, inline="always")
def _row_coefficients(coef, i0, i1, wy, j_lo, j_hi, row):
    # one row of the maps interpolated along y, for the columns the tile needs
    for j in range(j_lo, j_hi + 1):
        for k in range(10):
            row[j, k] = coef[i0, j, k] * (1.0 - wy) + coef[i1, j, k] * wy


@numba.njit(cache=True, nogil=True, inline="always")
def _q(row, j0, j1, wx, k, t):
    a = row[j0, k] * (1.0 - wx) + row[j1, k] * wx
    b = row[j0, k + 5] * (1.0 - wx) + row[j1, k + 5] * wx
    return a * t + b


@numba.njit(cache=True, nogil=True, inline="always")
def _pixel(g, row, j0, j1, wx, lut_l, lut_g):
    """(r, g, b, spread_r, spread_g, spread_b) of one pixel."""
    code = int(min(max(g, 0.0), 1.0) * 65535.0 + 0.5)
    L = lut_l[code]
    t = L * 0.01
    q0 = _q(row, j0, j1, wx, 0, t)
    q1 = _q(row, j0, j1, wx, 1, t)
    fy = (L + 16.0) / 116.0
    fx = q0 / 500.0 + fy
    fz = max(fy - q1 / 200.0, 0.0)
    x = _finv(fx) * 0.95047
    y = _finv(fy)
    z = _finv(fz) * 1.08883
    r = _encode(3.2404813432005266 * x - 1.5371515162713185 * y - 0.4985363261688878 * z, lut_g)
    gg = _encode(-0.9692549499965682 * x + 1.8759900014898907 * y + 0.0415559265582928 * z, lut_g)
    bb = _encode(0.0556466391351772 * x - 0.2040413383665112 * y + 1.0573110696453443 * z, lut_g)
    return (r, gg, bb, max(_q(row, j0, j1, wx, 2, t), 0.0), max(_q(row, j0, j1, wx, 3, t), 0.0),
            max(_q(row, j0, j1, wx, 4, t), 0.0))


@numba.njit(cache=True, nogil=True)
def _bands_rows(gray, coef, i0, i1, wy, j0, j1, wx, lut_l, lut_g, rgb, spread, start, stop):
    row = np.empty((coef.shape[1], 10), np.float32)
    j_lo, j_hi = j0.min(), j1.max()
    for i in range(start, stop):
        _row_coefficients(coef, i0[i], i1[i], wy[i], j_lo, j_hi, row)
        for j in range(gray.shape[1]):
            v = _pixel(gray[i, j], row, j0[j], j1[j], wx[j], lut_l, lut_g)
            for c in range(3):
                rgb[i, j, c] = v[c]
                spread[i, j, c] = v[3 + c]


@numba.njit(cache=True, nogil=True)
def _codes_rows(gray, coef, i0, i1, wy, j0, j1, wx, lut_l, lut_g, lam, eps,
                rgb_code, interval_code, scale_code, start, stop):
    row = np.empty((coef.shape[1], 10), np.float32)
    j_lo, j_hi = j0.min(), j1.max()
    for i in range(start, stop):
        _row_coefficients(coef, i0[i], i1[i], wy[i], j_lo, j_hi, row)
        for j in range(gray.shape[1]):
            v = _pixel(gray[i, j], row, j0[j], j1[j], wx[j], lut_l, lut_g)
            for c in range(3):
                f = v[c]
                s = v[3 + c]
                half = lam[c] * (s + eps)
                lo = min(max(f - half, 0.0), 1.0)
                hi = min(max(f + half, 0.0), 1.0)
                rgb_code[i, j, c] = np.uint8(f * 255.0 + 0.5)
                interval_code[i, j, c, 0] = np.uint8(np.floor(lo * 255.0))
                interval_code[i, j, c, 1] = np.uint8(np.ceil(hi * 255.0))
                scale_code[i, j, c] = np.uint8(min(np.ceil(s * 255.0), 255.0))


def run_rows(fn, n_rows: int, args: tuple, *, threads: int = 1) -> None:
    """Call ``fn(*args, start, stop)`` over row ranges covering ``n_rows``, on ``threads`` threads."""
    if threads <= 1 or n_rows < 2 * threads:
        fn(*args, 0, n_rows)
        return
    edges = np.linspace(0, n_rows, threads + 1).astype(int)
    with ThreadPoolExecutor(threads) as pool:
        for f in [pool.submit(fn, *args, int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]:
            f.result()


def bands(gray, coef, rows, cols, *, threads: int = 1):
    """Colour and heuristic spread of a tile, float32.

    Parameters
    ----------
    gray : (ty, tx) float32 in [0, 1]
    coef : (h, w, 10) float32, the (A, B) guided coefficients of (a*, b*, R, G, B spread)
    rows, cols : (i0, i1, w) index/weight triples of the tile's rows and columns
    threads : int

    Returns
    -------
    rgb : (ty, tx, 3) float32 in [0, 1]; spread : (ty, tx, 3) float32 >= 0
    """
    ty, tx = gray.shape
    rgb = np.empty((ty, tx, 3), np.float32)
    spread = np.empty((ty, tx, 3), np.float32)
    run_rows(_bands_rows, ty, (gray, coef, *rows, *cols, lightness_table(), gamma_table(), rgb, spread),
             threads=threads)
    return rgb, spread


def codes(gray, coef, rows, cols, lam, eps: float, *, threads: int = 1):
    """Storage codes of a tile: rgb (ty, tx, 3) uint8, interval (ty, tx, 3, 2)
    uint8 (rounded outward), scale (ty, tx, 3) uint8.

    ``lam`` : (3,) lambda per channel; ``inf`` gives the band [0, 1].
    """
    ty, tx = gray.shape
    lam = np.where(np.isinf(lam), 2.0 / eps, lam).astype(np.float32)  # reaches past [0, 1]
    out = (np.empty((ty, tx, 3), np.uint8), np.empty((ty, tx, 3, 2), np.uint8), np.empty((ty, tx, 3), np.uint8))
    run_rows(_codes_rows, ty, (gray, coef, *rows, *cols, lightness_table(), gamma_table(), lam, np.float32(eps),
                               *out), threads=threads)
    return out


def round_outward(lo, hi):
    """Bands (any shape, float in [0, 1]) rounded outward to the storage grid, as stored; float32."""
    return (np.floor(np.asarray(lo, np.float64) * CODE_MAX).astype(np.float32) / np.float32(CODE_MAX),
            np.ceil(np.asarray(hi, np.float64) * CODE_MAX).astype(np.float32) / np.float32(CODE_MAX))


def encode_gray(gray) -> np.ndarray:
    """(y, x) gray in [0, 1] -> uint16 ``round(g * 65535)`` (exact for 8- and 16-bit inputs)."""
    return np.rint(np.clip(np.asarray(gray, np.float64), 0.0, 1.0) * GRAY_CODE_MAX).astype(np.uint16)


@functools.cache
def _decode_table(n: int) -> np.ndarray:
    return (np.arange(n + 1, dtype=np.float32) / np.float32(n)).astype(np.float32)


def decode(code: np.ndarray) -> np.ndarray:
    """uint8 codes -> ``code / 255``, uint16 -> ``code / 65535``, float32 (exact division)."""
    code = np.asarray(code)
    n = GRAY_CODE_MAX if code.dtype == np.uint16 else CODE_MAX
    return _decode_table(n)[code]
