"""The cube schema: one image's gray input, colour estimate and R, G, B bands.

======== ========================== ================ ===============================
variable dims                       dtype / range    meaning
======== ========================== ================ ===============================
gray     (y, x)                     float32 [0, 1]   input lightness as read
rgb      (y, x, channel)            float32 [0, 1]   colorized point estimate
interval (y, x, channel, bound)     float32 [0, 1]   conformal lower / upper bounds
======== ========================== ================ ===============================

Coordinates ``channel = ["R", "G", "B"]`` and ``bound = ["lower", "upper"]``.
An optional ``coefficients`` (gy, gx, coefficient) float32 holds the guided
coefficients (:class:`colorcube.network.guided.Coefficients`, attribute ``extent``)
the bands were made from: with ``gray`` they give back the unrounded colour and
band scale (the heuristic band's half-width before lambda) of any pixel, so bands for another alpha are rebuilt
exactly from a stored calibration without the model (the explorer's slider);
they cost a few hundred kB per image instead of 3 bytes per pixel.
``ds.interval.sel(channel="R")`` is the specification's m x n x 2 matrix for R.
An optional ``hints`` (hint, hint_field) int32 holds the user's colour hints the
cube was made with, one row ``(y, x, r, g, b)`` per hinted pixel (input-pixel
position, 8-bit sRGB; :class:`colorcube.guidance.hints.Hints`), so an archive keeps what
the user said; attributes ``hints`` (their count) and ``hint_source`` go with it.

On disk (zarr, :mod:`colorcube.cube.store`) each variable is stored as its integer
storage code (:mod:`colorcube.render.codes`) with a CF ``scale_factor``: 10 bytes per pixel
(9 for 8-bit inputs) instead of 46. The cube's attributes are made by
:func:`colorcube.run.pipeline.cube_attrs` and must hold :data:`REQUIRED_ATTRS`.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
import xarray as xr

from ..errors import SchemaError
from ..render.bands import outward_codes
from ..render.codes import BOUNDS, CHANNELS, CODES, DIMS, decode, encode_gray

__all__ = ["REQUIRED_ATTRS", "code_dataset", "cube_dataset", "decode_codes", "encode_cube", "validate_cube"]

_IMAGE_VARIABLES = ("gray", "rgb", "interval")
REQUIRED_ATTRS = ("alpha", "method", "lambda", "calibrated", "guarantee", "model_name", "model_hash",
                  "source", "colorcube_version")


def _coefficients_var(coefficients) -> tuple:
    """``(coef, extent)`` -> the ``coefficients`` variable (float32, attribute ``extent``)."""
    coef, extent = coefficients
    return DIMS["coefficients"], np.asarray(coef, np.float32), {"extent": [float(e) for e in extent]}


def _hints_var(hints) -> tuple:
    """(n, 5) rows of (y, x, r, g, b) -> the ``hints`` variable (int32)."""
    return DIMS["hints"], np.asarray(hints, np.int32).reshape(-1, 5)


def cube_dataset(gray, rgb, interval, attrs: dict, coefficients=None, hints=None) -> xr.Dataset:
    """Wrap numpy or dask arrays in the cube schema (no value checks, stays lazy).

    ``coefficients`` : optional ``(coef (gy, gx, 10) float32, extent (2,))``.
    ``hints`` : optional (n, 5) int array of (y, x, r, g, b) (:meth:`colorcube.guidance.hints.Hints.to_array`).
    """
    data = {
        "gray": (("y", "x"), gray),
        "rgb": (("y", "x", "channel"), rgb),
        "interval": (("y", "x", "channel", "bound"), interval),
    }
    if coefficients is not None:
        data["coefficients"] = _coefficients_var(coefficients)
    if hints is not None:
        data["hints"] = _hints_var(hints)
    return xr.Dataset(
        data,
        coords={"channel": list(CHANNELS), "bound": list(BOUNDS)},
        attrs=attrs,
    )


def code_dataset(codes: dict, attrs: dict, coefficients=None, hints=None) -> xr.Dataset:
    """Integer code arrays (numpy or dask; keys of :data:`CODES`) -> the Dataset as stored.

    ``coefficients`` : optional ``(coef, extent)``, kept as float32; ``hints`` : optional
    (n, 5) int array of (y, x, r, g, b), kept as int32.
    """
    data = {}
    for name, arr in codes.items():
        dtype, n = CODES[name]
        if name == "gray" and arr.dtype == np.uint8:
            dtype, n = np.uint8, 255  # an 8-bit source, stored exactly in half the bytes
        if arr.dtype != dtype:
            raise SchemaError(f"code array {name!r} has dtype {arr.dtype}, expected {np.dtype(dtype)}")
        data[name] = (DIMS[name], arr, {"scale_factor": 1.0 / n})
    if coefficients is not None:
        data["coefficients"] = _coefficients_var(coefficients)
    if hints is not None:
        data["hints"] = _hints_var(hints)
    return xr.Dataset(data, coords={"channel": list(CHANNELS), "bound": list(BOUNDS)}, attrs=attrs)


def encode_cube(ds: xr.Dataset) -> xr.Dataset:
    """A float32 cube -> its storage codes (lazy for dask-backed cubes); see the module notes."""

    iv = ds.interval.transpose(*DIMS["interval"]).data
    # the renderer's outward rule (in float32, where a decoded k / 255 times 255 is exactly k)
    interval = (iv.rechunk({3: 2}).map_blocks(outward_codes, dtype=np.uint8) if isinstance(iv, da.Array)
                else outward_codes(iv))
    codes = {"rgb": (ds.rgb.astype(np.float64).clip(0, 1) * 255).round().data.astype(np.uint8), "interval": interval}
    g = ds.gray.data
    # the same gray code as colorize (uint8 for 8-bit inputs); dask blocks need one dtype: uint16
    codes["gray"] = (g.map_blocks(encode_gray, bits=16, dtype=np.uint16) if isinstance(g, da.Array)
                     else encode_gray(g))
    coefficients = None
    if "coefficients" in ds.data_vars:
        coefficients = (ds.coefficients.values, ds.coefficients.attrs["extent"])
    hints = ds.hints.values if "hints" in ds.data_vars else None
    return code_dataset(codes, dict(ds.attrs), coefficients, hints)


def decode_codes(codes: dict) -> dict:
    """In-memory code arrays -> float32 ``code / n`` arrays (exact float32 division)."""
    return {name: decode(arr) for name, arr in codes.items()}


def validate_cube(ds: xr.Dataset, *, check_values: bool = False) -> xr.Dataset:
    """Check dims, coordinates, dtypes and attributes; optionally value ranges.

    ``check_values`` computes the data (avoid it on lazy archives).

    Raises
    ------
    SchemaError naming the variable or attribute at fault.
    """
    if not isinstance(ds, xr.Dataset):
        raise SchemaError(f"expected an xarray.Dataset, got {type(ds).__name__}")
    for name in _IMAGE_VARIABLES:
        dims = DIMS[name]
        if name not in ds.data_vars:
            raise SchemaError(f"variable {name!r} is missing; a cube holds gray, rgb and interval")
        if ds[name].dims != dims:
            raise SchemaError(f"variable {name!r} has dims {ds[name].dims}, expected {dims}")
        if ds[name].dtype != np.float32:
            raise SchemaError(f"variable {name!r} has dtype {ds[name].dtype}, expected float32")
    if "coefficients" in ds.data_vars:
        c = ds["coefficients"]
        if c.dims != DIMS["coefficients"] or c.shape[-1] != 10 or len(c.attrs.get("extent", ())) != 2:
            raise SchemaError("variable 'coefficients' must be (gy, gx, coefficient=10) with a 2-value 'extent'")
    if "hints" in ds.data_vars:
        c = ds["hints"]
        if c.dims != DIMS["hints"] or c.shape[-1] != 5 or c.dtype != np.int32:
            raise SchemaError("variable 'hints' must be int32 (hint, hint_field=5) rows of y, x, r, g, b")
    for coord, values in (("channel", CHANNELS), ("bound", BOUNDS)):
        if coord not in ds.coords or tuple(str(v) for v in ds[coord].values) != values:
            raise SchemaError(f"coordinate {coord!r} must be {list(values)}")
    for key in REQUIRED_ATTRS:
        if key not in ds.attrs:
            raise SchemaError(f"attribute {key!r} is missing")
    alpha = ds.attrs["alpha"]
    if not isinstance(alpha, (int, float)) or not 0 < float(alpha) < 1:
        raise SchemaError(f"attribute 'alpha'={alpha!r} must be a number in (0, 1)")
    if len(ds.attrs["lambda"]) != 3:
        raise SchemaError("attribute 'lambda' must hold one value per channel (R, G, B)")
    if check_values:
        for name in _IMAGE_VARIABLES:
            v = np.asarray(ds[name].values)
            if not np.isfinite(v).all():
                raise SchemaError(f"variable {name!r} holds NaN or infinite values")
            if v.size and (v.min() < 0 or v.max() > 1):
                raise SchemaError(f"variable {name!r} has values outside [0, 1]")
        iv = np.asarray(ds["interval"].values)
        if iv.size and (iv[..., 0] > iv[..., 1]).any():
            raise SchemaError("variable 'interval' has lower > upper somewhere")
    return ds


