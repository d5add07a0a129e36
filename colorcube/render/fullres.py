"""The full-resolution stage as one fused, compiled pass per pixel.

Given the working-resolution guided-filter coefficients, every output pixel
is computed independently: bilinear sample of the :data:`~colorcube.network.guided.N_COEF`
coefficient maps at the pixel, ``q = A * L / 100 + B`` for each of the
:data:`~colorcube.network.guided.N_MAPS` maps (a*, b*, R, G, B band scale), Lab -> sRGB,
and (in the ``codes`` pass) the conformal interval rounded outward to the
storage grid (:mod:`colorcube.render.codes`: the kernel applies the same outward rule as
:func:`colorcube.render.bands.round_outward`, tested). One loop over the pixels instead of
~40 tensor passes; its share of a 1-MP photo's time is printed by
``python benchmarks/throughput.py``.

The kernels release the GIL; :func:`run_rows` splits a tile over threads.
:func:`full_stage`, :func:`stage_codes` and :func:`bands_at` run them on a tile
(or a strided grid) of an image given its guided coefficients
(:class:`colorcube.network.guided.Coefficients`).

Memory safety
-------------
The kernels are compiled without bounds checking, so every index they use is
kept in range by an invariant written where the index is used, and
:func:`_check_inputs` verifies on the Python side, before any kernel runs, the
invariants that depend on the caller: the row/column index arrays lie inside
the coefficient grid and have the tile's length, the coefficients and the
gray are finite, lambda is >= 0. A float becomes an index only after a clamp
that sends NaN to a fixed end of the table, so even a NaN or inf produced
inside a kernel (overflow on absurd but finite coefficients) cannot reach
memory outside a table. ``tests/test_fullres.py`` runs the kernels with
``NUMBA_BOUNDSCHECK=1`` over random shapes, grids and non-finite inputs.
"""

from __future__ import annotations

import functools
import itertools
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import torch

from ..errors import ColorcubeError
from ..network.guided import MAP_A, MAP_B, MAP_SCALE, N_COEF, N_MAPS
from .bands import EPS, interval_codes, lambda_for_codes
from .codes import GRAY_CODE_MAX, encode_gray
from .pins import pin_codes

__all__ = ["bands", "bands_at", "codes", "full_stage", "gamma_table", "lightness_table", "run_rows", "stage_codes"]

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


_F = np.float32
# Only fused multiply-adds and signed-zero freedom: no "no-NaN/no-inf" assumptions (lambda may be large),
# and the NaN-proof clamps below (fmin/fmax, comparisons) rely on NaN semantics that "nnan"/"fast" would drop.
_FAST = {"contract", "nsz"}


@numba.njit(cache=True, nogil=True, fastmath=_FAST, error_model="numpy", boundscheck=False)
def _row(gray, coef, i, i0, i1, wy, j0, j1, wx, lut_l, lut_g, row, q, light, f, s):
    """Colour ``f`` (3, tx) and band scale ``s`` (3, tx) of tile row ``i``, float32.

    Written as simple loops over the row so LLVM vectorises them (AVX-512 gathers
    for the tables), rather than one function call per pixel.

    Coefficient layout (:mod:`colorcube.network.guided`): ``coef[..., k]`` is ``A`` and
    ``coef[..., N_MAPS + k]`` is ``B`` of map ``k`` of the N_MAPS maps a*, b*, R, G, B
    scale (``MAP_A``, ``MAP_B``, ``MAP_SCALE + c``), so ``coef.shape[2] == N_COEF == 2 * N_MAPS``.

    Index invariants (the caller's are checked by :func:`_check_inputs`):
    ``0 <= i < len(i0) == len(i1) == len(wy) == gray.shape[0]``;
    ``0 <= i0, i1 < coef.shape[0]``; ``coef.shape[2] == row.shape[1] == N_COEF``;
    ``len(j0) == len(j1) == len(wx) == tx``; ``0 <= j0, j1 < coef.shape[1] == row.shape[0]``;
    ``q``, ``f``, ``s`` are (>= N_MAPS, >= tx), (3, >= tx), (3, >= tx) and ``light``
    (>= tx,); the tables have 65536 and ``_GAMMA_STEPS + 1`` entries."""
    tx = gray.shape[1]
    a0, a1 = _F(1.0) - wy[i], wy[i]
    # i0[i], i1[i] < coef.shape[0] and jj <= j1.max() < coef.shape[1] == row.shape[0] (checked before the call)
    for jj in range(j0.min(), j1.max() + 1):  # the maps interpolated along y, columns the tile needs
        for k in range(N_COEF):
            row[jj, k] = coef[i0[i], jj, k] * a0 + coef[i1[i], jj, k] * a1
    for j in range(tx):
        # fmax/fmin return the non-NaN operand (IEEE maxNum/minNum), so g is in [0, 1] even for
        # NaN and +-inf, and the index in [0, 65535]
        g = np.fmin(np.fmax(gray[i, j], _F(0.0)), _F(1.0))
        light[j] = lut_l[np.int32(g * _F(65535.0) + _F(0.5))]
    for k in range(N_MAPS):  # q = A * L / 100 + B with A, B interpolated along x
        for j in range(tx):
            b0, b1 = _F(1.0) - wx[j], wx[j]
            a = row[j0[j], k] * b0 + row[j1[j], k] * b1
            b = row[j0[j], N_MAPS + k] * b0 + row[j1[j], N_MAPS + k] * b1
            q[k, j] = a * (light[j] * _F(0.01)) + b
    for j in range(tx):  # Lab -> linear sRGB (kornia's constants, D65)
        fy = (light[j] + _F(16.0)) * _F(1.0 / 116.0)
        fx = q[MAP_A, j] * _F(0.002) + fy
        fz = max(fy - q[MAP_B, j] * _F(0.005), _F(0.0))
        x = (fx * fx * fx if fx > _F(0.2068966) else (fx - _F(4.0 / 29.0)) * _F(1.0 / 7.787)) * _F(0.95047)
        y = fy * fy * fy if fy > _F(0.2068966) else (fy - _F(4.0 / 29.0)) * _F(1.0 / 7.787)
        z = (fz * fz * fz if fz > _F(0.2068966) else (fz - _F(4.0 / 29.0)) * _F(1.0 / 7.787)) * _F(1.08883)
        f[0, j] = _F(3.2404813432005266) * x - _F(1.5371515162713185) * y - _F(0.4985363261688878) * z
        f[1, j] = _F(-0.9692549499965682) * x + _F(1.8759900014898907) * y + _F(0.0415559265582928) * z
        f[2, j] = _F(0.0556466391351772) * x - _F(0.2040413383665112) * y + _F(1.0573110696453443) * z
    for c in range(3):  # sRGB encoding by table interpolation; scale clamped at 0
        for j in range(tx):
            # f is NaN when the coefficients are (or overflow: inf - inf in Lab -> RGB), and min/max
            # pass NaN on: int32(NaN) is INT_MIN on x86, an index ~8 GB before the table. fmax/fmin
            # send NaN to 0, so v is in [0, _GAMMA_STEPS], k in [0, _GAMMA_STEPS - 1] and k + 1 in range.
            v = np.fmin(np.fmax(f[c, j], _F(0.0)), _F(1.0)) * _F(_GAMMA_STEPS)
            k = min(np.int32(v), np.int32(_GAMMA_STEPS - 1))
            t = v - _F(k)
            f[c, j] = lut_g[k] * (_F(1.0) - t) + lut_g[k + 1] * t
            # an undefined (NaN) scale becomes an unbounded one: the band then claims nothing
            sp = q[MAP_SCALE + c, j]
            s[c, j] = sp if sp >= _F(0.0) else (_F(0.0) if sp < _F(0.0) else _F(np.inf))


@numba.njit(cache=True, nogil=True, fastmath=_FAST, error_model="numpy", boundscheck=False)
def _bands_rows(gray, coef, i0, i1, wy, j0, j1, wx, lut_l, lut_g, rgb, scale, start, stop):
    """Rows start:stop of :func:`bands`; ``0 <= start <= stop <= gray.shape[0]`` and ``rgb``,
    ``scale`` are (gray.shape[0], tx, 3), so with :func:`_row`'s invariants every index is in range."""
    tx = gray.shape[1]
    row, q, light = np.empty((coef.shape[1], N_COEF), _F), np.empty((N_MAPS, tx), _F), np.empty(tx, _F)
    f, s = np.empty((3, tx), _F), np.empty((3, tx), _F)
    for i in range(start, stop):
        _row(gray, coef, i, i0, i1, wy, j0, j1, wx, lut_l, lut_g, row, q, light, f, s)
        for j in range(tx):
            for c in range(3):
                rgb[i, j, c] = f[c, j]
                scale[i, j, c] = s[c, j]


@numba.njit(cache=True, nogil=True, fastmath=_FAST, error_model="numpy", boundscheck=False)
def _codes_rows(gray, coef, i0, i1, wy, j0, j1, wx, lut_l, lut_g, lam, eps, rgb_code, interval_code, start, stop):
    """Rows start:stop of :func:`codes`; ``0 <= start <= stop <= gray.shape[0]``, ``lam`` is (3,)
    and the outputs are (gray.shape[0], tx, 3[, 2]), so with :func:`_row`'s invariants every
    index is in range."""
    tx = gray.shape[1]
    row, q, light = np.empty((coef.shape[1], N_COEF), _F), np.empty((N_MAPS, tx), _F), np.empty(tx, _F)
    f, s = np.empty((3, tx), _F), np.empty((3, tx), _F)
    for i in range(start, stop):
        _row(gray, coef, i, i0, i1, wy, j0, j1, wx, lut_l, lut_g, row, q, light, f, s)
        for c in range(3):
            lc = lam[c]
            for j in range(tx):
                rgb_code[i, j, c] = np.uint8(f[c, j] * _F(255.0) + _F(0.5))  # f in [0, 1] after the table
                interval_code[i, j, c, 0], interval_code[i, j, c, 1] = interval_codes(f[c, j], s[c, j], lc, eps)


def run_rows(fn, n_rows: int, args: tuple, *, threads: int = 1) -> None:
    """Call ``fn(*args, start, stop)`` over row ranges covering ``n_rows``, on ``threads`` threads.

    The ranges are disjoint and ``0 <= start <= stop <= n_rows``, so the threads
    write disjoint rows of the outputs; each call allocates its own scratch rows.
    """
    if threads <= 1 or n_rows < 2 * threads:
        fn(*args, 0, n_rows)
        return
    # linspace hits 0 and n_rows exactly and is non-decreasing, so the edges stay in [0, n_rows]
    edges = np.linspace(0, n_rows, threads + 1).astype(int)
    with ThreadPoolExecutor(threads) as pool:
        for f in [pool.submit(fn, *args, int(a), int(b)) for a, b in itertools.pairwise(edges)]:
            f.result()


def bands(gray, coef, rows, cols, *, threads: int = 1):
    """Colour and band scale of a tile, float32.

    Parameters
    ----------
    gray : (ty, tx) float32 in [0, 1]
    coef : (h, w, N_COEF) float32, the (A, B) guided coefficients of (a*, b*, R, G, B band scale)
    rows, cols : (i0, i1, w) index/weight triples of the tile's rows and columns
    threads : int

    Returns
    -------
    rgb : (ty, tx, 3) float32 in [0, 1]; scale : (ty, tx, 3) float32 >= 0
    """
    gray, coef, rows, cols = _check_inputs(gray, coef, rows, cols)
    ty, tx = gray.shape
    rgb = np.empty((ty, tx, 3), np.float32)
    scale = np.empty((ty, tx, 3), np.float32)
    if gray.size:  # the kernels take j0.min(): no empty rows
        run_rows(_bands_rows, ty, (gray, coef, *rows, *cols, lightness_table(), gamma_table(), rgb, scale),
                 threads=threads)
    return rgb, scale


def codes(gray, coef, rows, cols, lam, eps: float, *, threads: int = 1):
    """Storage codes of a tile: rgb (ty, tx, 3) uint8, interval (ty, tx, 3, 2)
    uint8 (rounded outward).

    ``lam`` : (3,) lambda per channel (or one for all), >= 0; ``inf`` gives the band [0, 1]
    (:func:`colorcube.render.bands.lambda_for_codes`).
    """
    gray, coef, rows, cols = _check_inputs(gray, coef, rows, cols)
    ty, tx = gray.shape
    lam = lambda_for_codes(lam, eps)
    out = (np.empty((ty, tx, 3), np.uint8), np.empty((ty, tx, 3, 2), np.uint8))
    if gray.size:  # the kernels take j0.min(): no empty rows
        run_rows(_codes_rows, ty, (gray, coef, *rows, *cols, lightness_table(), gamma_table(), lam,
                                   np.float32(eps), *out), threads=threads)
    return out


def _bilinear_axis(n_out: int, n_in: int, extent: float, start: int, stop: int, step: int = 1):
    """Source indices and weights of output rows start:stop:step (align_corners=False) when
    the ``n_out`` output rows span ``extent`` source rows (the first ``n_in`` of which exist).

    Returns ``i0, i1`` int64 with ``0 <= i0 <= i1 <= n_in - 1`` and ``w`` float32 in [0, 1].
    """
    extent = float(extent)
    if not (n_in >= 1 and n_out >= 1 and step >= 1 and 0 <= start <= stop <= n_out):
        raise ColorcubeError(f"rows {start}:{stop}:{step} of {n_out} over a grid of {n_in} are out of range")
    if not (np.isfinite(extent) and extent > 0):
        # a NaN position would survive clip() and floor() to INT64_MIN, an index
        raise ColorcubeError(f"the coefficient grid's extent {extent!r} must be finite and > 0; "
                             "the stored cube's 'coefficients' attribute is damaged: recompute it")
    pos = (np.arange(start, stop, step, dtype=np.float64) + 0.5) * (extent / n_out) - 0.5
    # pos is finite, and clipping it (not trusting extent <= n_in, nor the rounding at the last
    # row) keeps floor(pos) in [0, n_in - 1] for every tile, including those at the image's edges
    pos = pos.clip(0, n_in - 1)
    i0 = np.floor(pos).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (pos - i0).astype(np.float32)


def _check_axis(axis, n_in: int, n_out: int, name: str) -> tuple:
    """``(i0, i1, w)`` as the kernels need them, after checking the invariants they index by."""
    try:
        i0, i1, w = axis
    except (TypeError, ValueError):
        raise ColorcubeError(f"{name}: expected an (i0, i1, weight) triple") from None
    i0 = np.ascontiguousarray(i0, np.int64)
    i1 = np.ascontiguousarray(i1, np.int64)
    w = np.ascontiguousarray(w, np.float32)
    if not (i0.shape == i1.shape == w.shape == (n_out,)):
        raise ColorcubeError(f"{name}: index arrays of shapes {i0.shape}, {i1.shape}, {w.shape}; the tile has {n_out}")
    if n_out and (min(i0.min(), i1.min()) < 0 or max(i0.max(), i1.max()) >= n_in):
        raise ColorcubeError(f"{name}: indices [{min(i0.min(), i1.min())}, {max(i0.max(), i1.max())}] "
                             f"outside the coefficient grid's {n_in}")
    if n_out and not (w.min() >= 0 and w.max() <= 1):  # NaN fails too
        raise ColorcubeError(f"{name}: interpolation weights must be in [0, 1]")
    return i0, i1, w


def _check_inputs(gray, coef, rows, cols) -> tuple:
    """Check, before a kernel runs without bounds checking, every invariant it relies on
    that the caller supplies (see :func:`_row`).

    Returns
    -------
    gray, coef, rows, cols : as given, in the kernels' dtypes and C order

    Raises
    ------
    ColorcubeError
        Non-finite gray or coefficients, a coefficient grid that is not (h >= 1, w >= 1, N_COEF),
        or index arrays that do not fit the tile and the grid.
    """
    gray = np.ascontiguousarray(gray, np.float32)
    coef = np.ascontiguousarray(coef, np.float32)
    if gray.ndim != 2:
        raise ColorcubeError(f"gray must be a (y, x) array, got shape {gray.shape}")
    if coef.ndim != 3 or coef.shape[2] != N_COEF or coef.shape[0] < 1 or coef.shape[1] < 1:  # _row's layout
        raise ColorcubeError(f"coefficients must be (gy >= 1, gx >= 1, {N_COEF}), got shape {coef.shape}")
    if not np.isfinite(coef).all():
        raise ColorcubeError(f"the guided coefficients hold {int((~np.isfinite(coef)).sum())} NaN or infinite "
                             "values: the network's output for this image was not finite (with precision "
                             "bfloat16, try --precision float32)")
    if gray.size and not (np.isfinite(gray.min()) and np.isfinite(gray.max())):  # cheaper than isfinite(gray)
        raise ColorcubeError("gray holds NaN or infinite values; give values in [0, 1]")
    return (gray, coef, _check_axis(rows, coef.shape[0], gray.shape[0], "rows"),
            _check_axis(cols, coef.shape[1], gray.shape[1], "columns"))


def _tile_axes(coeffs, y0: int, ty: int, x0: int, tx: int):
    h, w, _ = coeffs.coef.shape
    return (_bilinear_axis(coeffs.shape[0], h, coeffs.extent[0], y0, y0 + ty),
            _bilinear_axis(coeffs.shape[1], w, coeffs.extent[1], x0, x0 + tx))


def _threads(threads: int | None) -> int:
    """``threads``, or by default torch's intra-op thread count (the pipeline's thread setting)."""
    return max(1, torch.get_num_threads() if threads is None else int(threads))


def full_stage(gray_tile, coeffs, *, y0: int = 0, x0: int = 0, threads: int | None = None):
    """Colour and band scale of a full-resolution tile.

    Pointwise given ``coeffs`` (bilinear samples at each pixel's global
    position), so any tiling reproduces the untiled result exactly.

    Parameters
    ----------
    gray_tile : (ty, tx) float32 in [0, 1], the tile of the input at [y0:, x0:]
    coeffs : Coefficients of the whole image
    y0, x0 : int, the tile's offset in the full image
    threads : int, optional; default torch's intra-op thread count

    Returns
    -------
    rgb : (ty, tx, 3) float32 array in [0, 1], the colour estimate
    scale : (ty, tx, 3) float32 array >= 0, the band scale: the heuristic band's half-width
        before lambda (:func:`colorcube.render.bands.nested_interval`)
    """
    g = np.ascontiguousarray(gray_tile, dtype=np.float32)
    rows, cols = _tile_axes(coeffs, y0, g.shape[0], x0, g.shape[1])
    return bands(g, coeffs.coef, rows, cols, threads=_threads(threads))


def bands_at(gray, coef, extent, *, shape=None, step: int = 1, threads: int | None = None):
    """Unrounded colour and band scale at every ``step``-th pixel of a stored cube.

    Parameters
    ----------
    gray : (ceil(y/step), ceil(x/step)) float32 in [0, 1], the cube's gray at those pixels
        (``ds.gray[::step, ::step]``)
    coef : (gy, gx, N_COEF) float32 and extent : (2,), the cube's ``coefficients``
        variable and its ``extent`` attribute
    shape : (y, x) full-resolution size (default: ``gray.shape``, i.e. step 1)
    step : int, subsampling of rows and columns (the explorer's display grid)

    Returns
    -------
    rgb, scale : shaped like ``gray`` plus a channel axis of 3, float32, as the
        pipeline computed them before rounding, so ``nested_interval`` at any lambda
        rebuilds the bands colorize would store
    """
    coef = np.ascontiguousarray(coef, np.float32)
    g = np.ascontiguousarray(gray, np.float32)
    h, w = g.shape if shape is None else shape
    rows = _bilinear_axis(h, coef.shape[0], float(extent[0]), 0, h, step)
    cols = _bilinear_axis(w, coef.shape[1], float(extent[1]), 0, w, step)
    if (len(rows[0]), len(cols[0])) != g.shape:
        raise ColorcubeError(f"gray has shape {g.shape}; every {step}-th pixel of {(h, w)} is "
                             f"{(len(rows[0]), len(cols[0]))}")
    return bands(g, coef, rows, cols, threads=_threads(threads))


def stage_codes(gray_tile, coeffs, lam, *, y0: int = 0, x0: int = 0, threads: int | None = None,
                with_gray: bool = False, hints=None):
    """Storage codes of a tile's cube, straight from the coefficients (see :mod:`colorcube.render.fullres`).

    Parameters
    ----------
    gray_tile, coeffs, y0, x0, threads : as :func:`full_stage`
    lam : (3,) float, conformal lambda per channel (``inf`` allowed)
    with_gray : bool, also the gray's code (:func:`colorcube.render.codes.encode_gray`); for a
        whole image only: its dtype depends on every pixel
    hints : :class:`colorcube.guidance.hints.Hints` of the whole image or None; those inside the tile
        are pinned (:func:`colorcube.render.pins.pin_codes`)

    Returns
    -------
    dict of ``rgb`` (ty, tx, 3) uint8 and ``interval`` (ty, tx, 3, 2) uint8 rounded outward
    (and ``gray`` (ty, tx) uint8 or uint16 with ``with_gray``)
    """
    g = np.ascontiguousarray(gray_tile, dtype=np.float32)
    rows, cols = _tile_axes(coeffs, y0, g.shape[0], x0, g.shape[1])
    out = codes(g, coeffs.coef, rows, cols, np.asarray(lam, np.float64).reshape(3), EPS, threads=_threads(threads))
    result = dict(zip(("rgb", "interval"), out))
    if hints is not None:
        pin_codes(hints, g, result, y0=y0, x0=x0)
    if with_gray:
        result["gray"] = encode_gray(gray_tile)
    return result
