"""Cubes in zarr v3: write the storage codes fast, open them lazily as float32.

The layout is what ``xarray.open_zarr`` reads (``dimension_names`` and a CF
``scale_factor`` per variable); colorcube writes it with zarr directly (no
per-chunk fill-value scan, two arrays at a time) rather than through
``Dataset.to_zarr``, and opens it without xarray's open machinery: both were
the larger share of a 1-MP image's write and open time when they were measured. The codes themselves are defined in :mod:`colorcube.cube`.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import xarray as xr

from .cube import _DIMS, BOUNDS, CHANNELS, CODES, encode_cube, validate_cube
from .errors import SchemaError

__all__ = ["COMPRESSIONS", "cube_to_zarr", "lazy_cube", "open_cube", "zarr_compressors"]


#: Storage compression choices; ``python benchmarks/throughput.py`` measures each on a 1-MP cube.
COMPRESSIONS = ("none", "lz4", "zstd")


def zarr_compressors(compression: str = "none"):
    """The zarr codecs for ``compression``.

    "none" (default) writes fastest; Blosc LZ4 (bit-shuffle) and zstd level 1 write
    fewer bytes for more time. ``python benchmarks/throughput.py`` prints the time
    and size of each on a 1-MP cube (the README's Performance table).
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
    ``scale_factor``); it is written with zarr directly (see the module notes).
    """
    if ds["rgb"].dtype != CODES["rgb"][0]:
        ds = encode_cube(validate_cube(ds))
    zarr_compressors(compression)  # refuse a bad name before anything is written
    root = _create_group(store, dict(ds.attrs), group=group, mode=mode)
    return _write_variables(root, ds, chunk=chunk, compression=compression)


def _create_group(store, attrs: dict, *, group: str | None, mode: str):
    """The cube's zarr v3 group with its attributes and the channel / bound coordinates."""
    import zarr

    if mode not in ("w", "w-"):
        raise SchemaError(f"mode={mode!r}: use 'w' (replace) or 'w-' (refuse to overwrite)")
    if isinstance(store, Path):
        store = str(store)
    root = zarr.create_group(store, path=group, overwrite=mode == "w", zarr_format=3, attributes=attrs)
    for name, values in (("channel", CHANNELS), ("bound", BOUNDS)):
        root.create_array(name, shape=(len(values),), dtype=str, dimension_names=(name,))[...] = np.array(values)
    return root


def _write_variables(root, ds: xr.Dataset, *, chunk: int, compression: str) -> dict:
    """One array per data variable of ``ds`` (codes or coefficients), created and filled.

    numpy data go two arrays at a time (zarr compresses one array per call; two
    keep both cores busy), dask data chunk by chunk with ``da.store`` under the
    current scheduler. Returns name -> ``zarr.Array``.
    """
    import dask.array as da

    sizes = {**ds.sizes, "y": min(chunk, ds.sizes["y"]), "x": min(chunk, ds.sizes["x"])}
    compressors = zarr_compressors(compression)
    arrays = {name: root.create_array(
        name, shape=var.shape, dtype=var.dtype, chunks=tuple(sizes[d] for d in var.dims),
        dimension_names=var.dims, compressors=compressors, fill_value=0, attributes=dict(var.attrs),
        # skips zarr's "is this chunk all fill value?" scan of every chunk written
        config={"write_empty_chunks": True}) for name, var in ds.data_vars.items()}
    lazy = {n: v.data for n, v in ds.data_vars.items() if isinstance(v.data, da.Array)}
    eager = [(arrays[n], v.data) for n, v in ds.data_vars.items() if n not in lazy]
    with ThreadPoolExecutor(2) as pool:
        for done in [pool.submit(a.__setitem__, Ellipsis, v) for a, v in eager]:
            done.result()
    if lazy:
        da.store([d.rechunk(arrays[n].chunks) for n, d in lazy.items()], [arrays[n] for n in lazy], lock=False)
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
        if name == "hints":  # the user's hints, (n, 5) int32: small, read now
            data[name] = xr.Variable(dims, np.asarray(arr[...], np.int32))
            continue
        # an explicit name skips dask hashing the zarr metadata on every open
        x = da.from_array(arr, chunks=arr.chunks, name=f"colorcube-{name}-{uuid.uuid4().hex}", asarray=False,
                          fancy=False)
        if chunks:
            x = x.rechunk(tuple(chunks.get(d, "auto") if d in ("y", "x") else -1 for d in dims))
        if x.dtype != np.float32:
            x = x.map_blocks(decode, dtype=np.float32)
        data[name] = xr.Variable(dims, x, encoding={"chunks": arr.chunks})
    ds = xr.Dataset(data, coords={"channel": list(CHANNELS), "bound": list(BOUNDS)}, attrs=attrs)
    return validate_cube(ds)
