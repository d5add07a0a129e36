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
coefficients (:class:`colorcube.pipeline.Coefficients`, attribute ``extent``)
the bands were made from: with ``gray`` they give back the unrounded colour and
heuristic band half-width of any pixel, so bands for another alpha are rebuilt
exactly from a stored calibration without the model (the explorer's slider);
they cost a few hundred kB per image instead of 3 bytes per pixel.
``ds.interval.sel(channel="R")`` is the specification's m x n x 2 matrix for R.

On disk (zarr) each variable is stored as integer codes with a CF
``scale_factor`` (:data:`CODES`): gray uint16 ``round(g * 65535)`` (exact for
8- and 16-bit inputs; uint8 ``round(g * 255)`` when the input is 8-bit), rgb uint8 ``round(v * 255)``, interval uint8 rounded
*outward* (lower down, upper up, so a stored band contains the computed one and
the guarantee holds): 10 bytes per pixel (9 for 8-bit inputs) instead of 46.
:func:`open_cube` returns float32 values equal to ``code / 255`` computed in
float32, i.e. exactly what an 8-bit truth image reads as, so coverage checked
against truth is exact at a band's edge.
"""

from __future__ import annotations

import json
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import xarray as xr

from .errors import SchemaError

__all__ = ["build_cube", "cube_attrs", "cube_dataset", "code_dataset", "encode_cube", "decode_codes", "lazy_cube",
           "create_cube_group", "create_variables", "fill_variables", "write_variables",
           "zarr_compressors", "COMPRESSIONS", "validate_cube", "cube_to_zarr", "open_cube", "CHANNELS", "BOUNDS", "REQUIRED_ATTRS",
           "CODES"]

CHANNELS = ("R", "G", "B")
BOUNDS = ("lower", "upper")
#: storage code of each variable: (integer dtype, n) with value = code / n
CODES = {"gray": (np.uint16, 65535), "rgb": (np.uint8, 255), "interval": (np.uint8, 255)}
_DIMS = {"gray": ("y", "x"), "rgb": ("y", "x", "channel"), "interval": ("y", "x", "channel", "bound"),
         "coefficients": ("gy", "gx", "coefficient")}
# a float32 value k/255 times 255 lands within 1e-5 of k: this slack keeps the
# outward rounding from widening an already-coded bound by one more step
_SLACK = 1e-3
REQUIRED_ATTRS = ("alpha", "method", "lambda", "calibrated", "guarantee", "model_name", "model_hash",
                  "source", "colorcube_version")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("colorcube")
    except PackageNotFoundError:
        return "0+unknown"


def _finite_or_str(x: float):
    return float(x) if math.isfinite(x) else "inf"


def cube_attrs(*, alpha: float, lam, calibration=None, model=None, settings=None, source: str = "<array>",
               source_hash: str = "") -> dict:
    """The cube's attributes (JSON-able): alpha, method, lambda, guarantee, provenance."""
    lam = [float(v) for v in np.asarray(lam, dtype=np.float64).reshape(-1)]
    if calibration is None:
        method, guarantee = "uncalibrated", ("UNCALIBRATED heuristic bands (lambda = 1): no coverage guarantee; "
                                             "calibrate with `colorcube calibrate`.")
        summary = {}
    else:
        method, guarantee, summary = calibration.method, calibration.guarantee(alpha), calibration.summary()
    return {
        "alpha": float(alpha),
        "method": method,
        "lambda": [_finite_or_str(v) for v in lam],
        "calibrated": int(calibration is not None),
        "guarantee": guarantee,
        "calibration": json.dumps(summary),
        "model_name": getattr(model, "weights_name", "") if model is not None else "",
        "model_hash": getattr(model, "weights_hash", "") if model is not None else "",
        "settings": json.dumps(settings or {}),
        "source": str(source),
        "source_hash": source_hash,
        "colorcube_version": _version(),
    }


def _coefficients_var(coefficients) -> tuple:
    """``(coef, extent)`` -> the ``coefficients`` variable (float32, attribute ``extent``)."""
    coef, extent = coefficients
    return _DIMS["coefficients"], np.asarray(coef, np.float32), {"extent": [float(e) for e in extent]}


def cube_dataset(gray, rgb, interval, attrs: dict, coefficients=None) -> xr.Dataset:
    """Wrap numpy or dask arrays in the cube schema (no value checks, stays lazy).

    ``coefficients`` : optional ``(coef (gy, gx, 10) float32, extent (2,))``.
    """
    data = {
        "gray": (("y", "x"), gray),
        "rgb": (("y", "x", "channel"), rgb),
        "interval": (("y", "x", "channel", "bound"), interval),
    }
    if coefficients is not None:
        data["coefficients"] = _coefficients_var(coefficients)
    return xr.Dataset(
        data,
        coords={"channel": list(CHANNELS), "bound": list(BOUNDS)},
        attrs=attrs,
    )


def code_dataset(codes: dict, attrs: dict, coefficients=None) -> xr.Dataset:
    """Integer code arrays (numpy or dask; keys of :data:`CODES`) -> the Dataset as stored.

    ``coefficients`` : optional ``(coef, extent)``, kept as float32.
    """
    data = {}
    for name, arr in codes.items():
        dtype, n = CODES[name]
        if name == "gray" and arr.dtype == np.uint8:
            dtype, n = np.uint8, 255  # an 8-bit source, stored exactly in half the bytes
        if arr.dtype != dtype:
            raise SchemaError(f"code array {name!r} has dtype {arr.dtype}, expected {np.dtype(dtype)}")
        data[name] = (_DIMS[name], arr, {"scale_factor": 1.0 / n})
    if coefficients is not None:
        data["coefficients"] = _coefficients_var(coefficients)
    return xr.Dataset(data, coords={"channel": list(CHANNELS), "bound": list(BOUNDS)}, attrs=attrs)


def encode_cube(ds: xr.Dataset) -> xr.Dataset:
    """A float32 cube -> its storage codes (lazy for dask-backed cubes); see the module notes."""

    def up(v, n, slack):
        return np.ceil(v.astype(np.float64) * n - slack).clip(0, n)

    def down(v, n, slack):
        return np.floor(v.astype(np.float64) * n + slack).clip(0, n)

    codes = {"gray": ds.gray.astype(np.float64).clip(0, 1) * 65535, "rgb": ds.rgb.astype(np.float64).clip(0, 1) * 255}
    codes = {k: v.round() for k, v in codes.items()}
    lo, hi = ds.interval.sel(bound="lower"), ds.interval.sel(bound="upper")
    codes["interval"] = xr.concat([down(lo, 255, _SLACK), up(hi, 255, _SLACK)], dim="bound").transpose(*_DIMS["interval"])
    coefficients = None
    if "coefficients" in ds.data_vars:
        coefficients = (ds.coefficients.values, ds.coefficients.attrs["extent"])
    return code_dataset({k: v.data.astype(CODES[k][0]) for k, v in codes.items()}, dict(ds.attrs), coefficients)


def decode_codes(codes: dict) -> dict:
    """In-memory code arrays -> float32 ``code / n`` arrays (exact float32 division)."""
    from .fullres import decode

    return {name: decode(arr) for name, arr in codes.items()}


def build_cube(gray, rgb, interval, *, alpha: float, lam, calibration=None, model=None, settings=None,
               source: str = "<array>", source_hash: str = "", coefficients=None) -> xr.Dataset:
    """Assemble and validate one image's Dataset.

    Parameters
    ----------
    gray : (y, x) float32 in [0, 1]
    rgb : (y, x, 3) float32 in [0, 1]
    interval : (y, x, 3, 2) float32 in [0, 1], lower <= upper
    alpha : float, miscoverage level the bands were built for
    lam : (3,) lambda per channel actually used
    calibration : Calibration or None (None: heuristic, uncalibrated bands)
    model : ColorNet or None, for its name and hash
    settings : dict of pipeline settings
    source, source_hash : str, where the gray input came from
    coefficients : optional ``(coef, extent)``, the guided coefficients (see :func:`cube_dataset`)

    Returns
    -------
    xarray.Dataset
    """
    attrs = cube_attrs(alpha=alpha, lam=lam, calibration=calibration, model=model, settings=settings,
                       source=source, source_hash=source_hash)
    ds = cube_dataset(np.asarray(gray, np.float32), np.asarray(rgb, np.float32),
                      np.asarray(interval, np.float32), attrs, coefficients)
    validate_cube(ds, check_values=True)
    return ds


def validate_cube(ds: xr.Dataset, *, check_values: bool = False) -> xr.Dataset:
    """Check dims, coordinates, dtypes and attributes; optionally value ranges.

    ``check_values`` computes the data (avoid it on lazy archives).

    Raises
    ------
    SchemaError naming the variable or attribute at fault.
    """
    if not isinstance(ds, xr.Dataset):
        raise SchemaError(f"expected an xarray.Dataset, got {type(ds).__name__}")
    expected = {"gray": ("y", "x"), "rgb": ("y", "x", "channel"), "interval": ("y", "x", "channel", "bound")}
    for name, dims in expected.items():
        if name not in ds.data_vars:
            raise SchemaError(f"variable {name!r} is missing; a cube holds gray, rgb and interval")
        if ds[name].dims != dims:
            raise SchemaError(f"variable {name!r} has dims {ds[name].dims}, expected {dims}")
        if ds[name].dtype != np.float32:
            raise SchemaError(f"variable {name!r} has dtype {ds[name].dtype}, expected float32")
    if "coefficients" in ds.data_vars:
        c = ds["coefficients"]
        if c.dims != _DIMS["coefficients"] or c.shape[-1] != 10 or len(c.attrs.get("extent", ())) != 2:
            raise SchemaError("variable 'coefficients' must be (gy, gx, coefficient=10) with a 2-value 'extent'")
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
        for name in expected:
            v = np.asarray(ds[name].values)
            if not np.isfinite(v).all():
                raise SchemaError(f"variable {name!r} holds NaN or infinite values")
            if v.size and (v.min() < 0 or v.max() > 1):
                raise SchemaError(f"variable {name!r} has values outside [0, 1]")
        iv = np.asarray(ds["interval"].values)
        if iv.size and (iv[..., 0] > iv[..., 1]).any():
            raise SchemaError("variable 'interval' has lower > upper somewhere")
    return ds


#: Storage compression choices; ``python benchmarks/throughput.py`` measures each on a 1-MP cube.
COMPRESSIONS = ("none", "lz4", "zstd")


def zarr_compressors(compression: str = "none"):
    """The zarr codecs for ``compression``.

    "none" (default) writes fastest: on a 1-MP cube 18 ms and 9.9 MiB against
    30 ms and 7.3 MiB for Blosc LZ4 (bit-shuffle) and 35 ms and 6.1 MiB for zstd
    level 1 (``benchmarks/throughput.py``, 2-core CPU); the storage codes are already
    4.6x smaller than float32. Choose "lz4" when disk matters more than ~10 ms/MP.
    """
    from zarr.codecs import BloscCodec, ZstdCodec

    if compression not in COMPRESSIONS:
        raise SchemaError(f"compression={compression!r}: use one of {', '.join(COMPRESSIONS)}")
    return {"none": (), "lz4": (BloscCodec(cname="lz4", clevel=1, shuffle="bitshuffle"),),
            "zstd": (ZstdCodec(level=1),)}[compression]


def cube_to_zarr(ds: xr.Dataset, store, *, chunk: int = 1024, mode: str = "w", group: str | None = None,
                 compression: str = "none"):
    """Write a cube (float32, or already coded by :func:`code_dataset`) to zarr v3 as storage codes.

    Parameters
    ----------
    ds : xarray.Dataset in the cube schema (numpy- or dask-backed; dask stays
        chunk by chunk under the current scheduler)
    store : path or zarr store
    chunk : int, spatial chunk side (y and x)
    mode : "w" replaces the group (or store), "w-" refuses to overwrite
    group : str, optional path of the group inside the store
    compression : one of :data:`COMPRESSIONS` (see :func:`zarr_compressors`)

    Returns
    -------
    dict of variable name -> the written ``zarr.Array``

    The layout is what ``xarray.open_zarr`` reads (``dimension_names``, CF
    ``scale_factor``); it is written with zarr directly, which measured ~20 ms
    less per image than ``Dataset.to_zarr``.
    """
    if ds["rgb"].dtype != CODES["rgb"][0]:
        ds = encode_cube(validate_cube(ds))
    zarr_compressors(compression)  # refuse a bad name before anything is written
    root = create_cube_group(store, dict(ds.attrs), group=group, mode=mode)
    return write_variables(root, ds, chunk=chunk, compression=compression)


def create_cube_group(store, attrs: dict, *, group: str | None = None, mode: str = "w"):
    """Create a cube's zarr v3 group with its attributes and the channel / bound coordinates.

    ``mode`` : "w" replaces the group (or store), "w-" refuses to overwrite.
    Returns the ``zarr.Group``; fill it with :func:`write_variables`.
    """
    import zarr

    if mode not in ("w", "w-"):
        raise SchemaError(f"mode={mode!r}: use 'w' (replace) or 'w-' (refuse to overwrite)")
    if isinstance(store, Path):
        store = str(store)
    root = zarr.create_group(store, path=group, overwrite=mode == "w", zarr_format=3, attributes=attrs)
    for name, values in (("channel", CHANNELS), ("bound", BOUNDS)):
        root.create_array(name, shape=(len(values),), dtype=str, dimension_names=(name,))[...] = np.array(values)
    return root


def create_variables(root, ds: xr.Dataset, *, chunk: int = 1024, compression: str = "none") -> dict:
    """Create (empty) one array per data variable of ``ds`` in ``root``: name, dims, shape,
    dtype and attributes are taken from ``ds`` (its data may be placeholders such as
    ``np.broadcast_to``). Returns name -> ``zarr.Array``; fill with :func:`fill_variables`."""
    sizes = {**ds.sizes, "y": min(chunk, ds.sizes.get("y", chunk)), "x": min(chunk, ds.sizes.get("x", chunk))}
    compressors = zarr_compressors(compression)
    return {name: root.create_array(
        name, shape=var.shape, dtype=var.dtype, chunks=tuple(sizes[d] for d in var.dims),
        dimension_names=var.dims, compressors=compressors, fill_value=0, attributes=dict(var.attrs),
        # skips zarr's "is this chunk all fill value?" scan: a third of the write time
        config={"write_empty_chunks": True}) for name, var in ds.data_vars.items()}


def fill_variables(arrays: dict, data: dict) -> None:
    """Write numpy or dask ``data[name]`` into ``arrays[name]``.

    numpy data go two arrays at a time (zarr compresses one array per call; two
    keep both cores busy), dask data chunk by chunk with ``da.store`` under the
    current scheduler.
    """
    import dask.array as da

    lazy = {n: d for n, d in data.items() if isinstance(d, da.Array)}
    eager = [(arrays[n], d) for n, d in data.items() if n not in lazy]
    if eager:
        with ThreadPoolExecutor(2) as pool:
            for done in [pool.submit(t.__setitem__, Ellipsis, v) for t, v in eager]:
                done.result()
    if lazy:
        da.store([d.rechunk(arrays[n].chunks) for n, d in lazy.items()], [arrays[n] for n in lazy], lock=False)


def write_variables(root, ds: xr.Dataset, *, chunk: int = 1024, compression: str = "none") -> dict:
    """:func:`create_variables` then :func:`fill_variables` for every data variable of ``ds``."""
    arrays = create_variables(root, ds, chunk=chunk, compression=compression)
    fill_variables(arrays, {name: var.data for name, var in ds.data_vars.items()})
    return arrays


def open_cube(store, *, group: str | None = None, chunks=None) -> xr.Dataset:
    """Open a cube written by :func:`cube_to_zarr` lazily (dask-backed), float32 as in memory.

    Parameters
    ----------
    store : path or zarr store; group : str, optional group path inside it
    chunks : None (the zarr chunks, default) or dict of dim -> chunk size

    Values are decoded as ``code / n`` in float32 (exactly the float32 an 8-bit
    truth pixel reads as). ``xarray.open_zarr`` reads the same store through the
    CF ``scale_factor`` (float64 values, equal after casting to float32).
    """
    import zarr

    if isinstance(store, Path):
        store = str(store)
    try:
        root = zarr.open_group(store, path=group, mode="r", zarr_format=3)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError) as exc:
        raise SchemaError(f"{store}{'/' + group if group else ''}: no cube there (not a zarr v3 group)") from exc
    arrays = {}
    for name in _DIMS:
        try:
            arrays[name] = root[name]
        except KeyError:
            continue  # validate_cube names what is missing
    return lazy_cube(arrays, dict(root.attrs), chunks=chunks)


def lazy_cube(arrays: dict, attrs: dict, *, chunks=None) -> xr.Dataset:
    """The cube over zarr arrays of codes (or float32), lazily decoded; see :func:`open_cube`."""
    import uuid

    import dask.array as da

    from .fullres import decode

    data = {}
    for name, arr in arrays.items():
        dims = _DIMS[name]
        if name == "coefficients":  # a few hundred kB: read now
            data[name] = xr.Variable(dims, arr[...], attrs={"extent": list(arr.attrs["extent"])})
            continue
        # an explicit name skips dask hashing the zarr metadata (a third of the open time)
        x = da.from_array(arr, chunks=arr.chunks, name=f"colorcube-{name}-{uuid.uuid4().hex}", asarray=False,
                          fancy=False)
        if chunks:
            x = x.rechunk(tuple(chunks.get(d, "auto") if d in ("y", "x") else -1 for d in dims))
        if x.dtype != np.float32:
            x = x.map_blocks(decode, dtype=np.float32)
        data[name] = xr.Variable(dims, x, encoding={"chunks": arr.chunks})
    ds = xr.Dataset(data, coords={"channel": list(CHANNELS), "bound": list(BOUNDS)}, attrs=attrs)
    return validate_cube(ds)
