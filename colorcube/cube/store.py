"""Cubes and archives in zarr v3: write the storage codes fast, open them lazily as float32.

The layout is what ``xarray.open_zarr`` reads (``dimension_names`` and a CF
``scale_factor`` per variable); colorcube writes it with zarr directly (no
per-chunk fill-value scan, two arrays at a time) rather than through
``Dataset.to_zarr``, and opens it without xarray's open machinery, which cost
more than the writing itself for a 1-MP image. The codes themselves are defined
in :mod:`colorcube.render.codes`.

Uncompressed cubes held in memory and written to a local folder take a direct
route (:func:`_write_local`): zarr writes the metadata documents of a cube's
arrays once per layout, in memory, and each cube then costs only its file
writes: zarr's array creation costs more CPU than a small photo's network
(``python benchmarks/archive.py``); the files are the ones zarr writes (tested byte for byte).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import uuid
from concurrent.futures import ThreadPoolExecutor
from itertools import product
from pathlib import Path

import dask.array as da
import numpy as np
import xarray as xr
import zarr
from zarr.codecs import BloscCodec, ZstdCodec
from zarr.core.buffer import default_buffer_prototype
from zarr.core.group import GroupMetadata
from zarr.storage import MemoryStore

from ..errors import SchemaError
from ..files import write_atomic
from ..render.codes import BOUNDS, CHANNELS, CODES, DIMS, check_compression, decode
from .schema import encode_cube, validate_cube

__all__ = [
    "cube_to_zarr",
    "group_attrs",
    "lazy_cube",
    "open_cube",
    "update_group_attrs",
    "write_cube",
    "zarr_compressors",
]


def zarr_compressors(compression: str = "none"):
    """The zarr codecs for ``compression``.

    "none" (default) writes fastest; Blosc LZ4 (bit-shuffle) and zstd level 1 write
    fewer bytes for more time. ``python benchmarks/throughput.py`` prints the time
    and size of each on a 1-MP cube (the README's Performance table).
    """
    check_compression(compression)
    return {"none": (), "lz4": (BloscCodec(cname="lz4", clevel=1, shuffle="bitshuffle"),),
            "zstd": (ZstdCodec(level=1),)}[compression]


def cube_to_zarr(ds: xr.Dataset, store, *, chunk: int = 1024, mode: str = "w", group: str | None = None,
                 compression: str = "none"):
    """Write a cube (float32, or already coded by :func:`colorcube.cube.schema.code_dataset`) to
    zarr v3 as storage codes.

    Parameters
    ----------
    ds : xarray.Dataset in the cube schema (numpy- or dask-backed; dask stays
        chunk by chunk under the current scheduler)
    store : path or zarr store
    chunk : int, spatial chunk side (y and x)
    mode : "w" replaces the group (or store), "w-" refuses to overwrite
    group : str, optional path of the group inside the store
    compression : one of :data:`colorcube.render.codes.COMPRESSIONS` (see :func:`zarr_compressors`)

    Returns
    -------
    dict of variable name -> the written ``zarr.Array``

    The layout is what ``xarray.open_zarr`` reads (``dimension_names``, CF
    ``scale_factor``); it is written with zarr directly (see the module notes).
    """
    arrays = write_cube(ds, store, chunk=chunk, mode=mode, group=group, compression=compression)
    if arrays is None:  # written directly: open what was written
        root = zarr.open_group(str(store), path=group, mode="r", zarr_format=3)
        arrays = {name: root[name] for name in ds.data_vars}
    return arrays


def write_cube(ds: xr.Dataset, store, *, chunk: int = 1024, mode: str = "w", group: str | None = None,
               compression: str = "none"):
    """Write a cube as :func:`cube_to_zarr` does, without opening the result.

    Returns
    -------
    dict of name -> ``zarr.Array`` when zarr wrote it, None when it took the direct
    route (uncompressed, in memory, a local folder: see the module notes)
    """
    if ds["rgb"].dtype != CODES["rgb"][0]:
        ds = encode_cube(validate_cube(ds))
    zarr_compressors(compression)  # refuse a bad name before anything is written
    if mode not in ("w", "w-"):
        raise SchemaError(f"mode={mode!r}: use 'w' (replace) or 'w-' (refuse to overwrite)")
    local = _local_path(store)
    if local is not None and compression == "none" and all(isinstance(v.data, np.ndarray)
                                                          for v in ds.data_vars.values()):
        _write_local(ds, local, chunk=chunk, mode=mode, group=group)
        return None
    root = _create_group(store, dict(ds.attrs), group=group, mode=mode)
    return _write_variables(root, ds, chunk=chunk, compression=compression)


def _local_path(store) -> Path | None:
    """The folder of a plain local store path; None for URLs and store objects."""
    if isinstance(store, Path):
        return store
    if isinstance(store, str) and "://" not in store:
        return Path(store)
    return None


def _chunk_sizes(ds: xr.Dataset, chunk: int) -> dict:
    """Chunk length per dim: ``chunk`` in y and x (at most the image's size), whole along the others."""
    return {**ds.sizes, "y": min(chunk, ds.sizes["y"]), "x": min(chunk, ds.sizes["x"])}


def _layout(ds: xr.Dataset, chunk: int) -> tuple:
    """Hashable description of the arrays :func:`_write_variables` would create for ``ds``."""
    sizes = _chunk_sizes(ds, chunk)
    return tuple((name, var.shape, var.dtype.str, tuple(sizes[d] for d in var.dims), var.dims,
                  json.dumps(var.attrs, sort_keys=True)) for name, var in ds.data_vars.items())


@functools.lru_cache(maxsize=64)
def _template(layout: tuple) -> tuple:
    """What zarr writes for a cube of this layout, besides the group document and the
    variables' chunks: (relative key, bytes) of every array document and coordinate chunk."""
    store = MemoryStore()
    root = zarr.create_group(store, zarr_format=3)
    for name, values in (("channel", CHANNELS), ("bound", BOUNDS)):
        root.create_array(name, shape=(len(values),), dtype=str, dimension_names=(name,))[...] = np.array(values)
    for name, shape, dtype, chunks, dims, attrs in layout:
        array = root.create_array(name, shape=shape, dtype=np.dtype(dtype), chunks=chunks, dimension_names=dims,
                                  compressors=(), fill_value=0, attributes=json.loads(attrs),
                                  config={"write_empty_chunks": True})
        meta = array.metadata.to_dict()
        codecs = [(c["name"], c.get("configuration", {}).get("endian", "little")) for c in meta["codecs"]]
        # the direct route writes chunk c/i/j/... as raw little-endian bytes; it refuses any other layout
        if codecs != [("bytes", "little")] or meta["chunk_key_encoding"] != {"name": "default",
                                                                           "configuration": {"separator": "/"}}:
            raise SchemaError(f"zarr {zarr.__version__} stores {name} in a layout the direct writer does not make")
    docs = tuple((key, value.to_bytes()) for key, value in store._store_dict.items() if key != "zarr.json")
    return docs


def _group_document(attrs: dict) -> bytes:
    return GroupMetadata(attributes=attrs, zarr_format=3).to_buffer_dict(default_buffer_prototype())[
        "zarr.json"].to_bytes()


def _write_local(ds: xr.Dataset, root: Path, *, chunk: int, mode: str, group: str | None) -> None:
    """The files zarr would write for ``ds`` (see the module notes), written with plain file I/O."""
    base = root / group if group else root
    if base.exists():
        if mode == "w-":
            raise SchemaError(f"{base}: exists; use mode='w' to replace it")
        shutil.rmtree(base) if base.is_dir() else base.unlink()
    for parent in [root, *[root / Path(*Path(group).parts[:i]) for i in range(1, len(Path(group).parts))]] \
            if group else [root]:
        if not (parent / "zarr.json").exists():
            parent.mkdir(parents=True, exist_ok=True)
            write_atomic(parent / "zarr.json", _group_document({}))
    base.mkdir(parents=True, exist_ok=True)
    # the group document first, as zarr does: a run killed midway leaves a group that says what it is
    write_atomic(base / "zarr.json", _group_document(dict(ds.attrs)))
    layout = _layout(ds, chunk)
    made = set()

    def put(relative: str, data: bytes) -> None:
        folder = os.path.dirname(relative)
        if folder not in made:  # one makedirs per folder: most of the cost of a small cube was mkdir
            os.makedirs(base / folder, exist_ok=True)
            made.add(folder)
        (base / relative).write_bytes(data)

    for key, data in _template(layout):
        put(key, data)
    for name, shape, _, chunks, _, _ in layout:
        values = ds[name].data
        values = values.astype(values.dtype.newbyteorder("<"), copy=False)
        grid = [range(-(-n // c)) for n, c in zip(shape, chunks)]
        for index in product(*grid):
            block = values[tuple(slice(i * c, (i + 1) * c) for i, c in zip(index, chunks))]
            if block.shape != chunks:  # edge chunks are stored whole, padded with the fill value 0
                full = np.zeros(chunks, block.dtype)
                full[tuple(slice(0, n) for n in block.shape)] = block
                block = full
            put("/".join([name, "c", *map(str, index)]), np.ascontiguousarray(block).tobytes())


def group_attrs(store, group: str) -> dict:
    """The attributes of group ``group`` in ``store``; {} when there is no such group."""
    local = _local_path(store)
    if local is not None:
        try:
            return json.loads((local / group / "zarr.json").read_bytes()).get("attributes", {})
        except (FileNotFoundError, NotADirectoryError, ValueError):
            return {}
    try:
        return dict(zarr.open_group(store, path=group, mode="r").attrs)
    except (FileNotFoundError, KeyError, ValueError, zarr.errors.GroupNotFoundError):
        return {}


def update_group_attrs(store, group: str, new: dict) -> None:
    """Update group ``group``'s attributes with ``new``, atomically for a local folder."""
    local = _local_path(store)
    if local is None:
        zarr.open_group(store, path=group, mode="r+").attrs.update(new)
        return
    path = local / group / "zarr.json"
    doc = json.loads(path.read_bytes())
    write_atomic(path, _group_document({**doc.get("attributes", {}), **new}))


def _create_group(store, attrs: dict, *, group: str | None, mode: str):
    """The cube's zarr v3 group with its attributes and the channel / bound coordinates."""
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
    sizes = _chunk_sizes(ds, chunk)
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
    if isinstance(store, Path):
        store = str(store)
    try:
        root = zarr.open_group(store, path=group, mode="r", zarr_format=3)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError) as exc:
        raise SchemaError(f"{store}{'/' + group if group else ''}: no cube there (not a zarr v3 group)") from exc
    arrays = {}
    for name in DIMS:
        try:
            arrays[name] = root[name]
        except KeyError:
            continue  # validate_cube names what is missing
    return lazy_cube(arrays, dict(root.attrs), chunks=chunks)


def lazy_cube(arrays: dict, attrs: dict, *, chunks=None) -> xr.Dataset:
    """The cube over zarr arrays of codes (or float32), lazily decoded; see :func:`open_cube`."""
    data = {}
    for name, arr in arrays.items():
        dims = DIMS[name]
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


