"""Helpers for testing colorcube and code built on it.

Synthetic cubes without the model (:func:`build_cube`, :func:`random_cube`), gray inputs
made the way users make them (:func:`gray_of`, :func:`write_gray_png`), a dask scheduler
that counts computes (:class:`CountingScheduler`), and damaged PNG files
(:func:`png_chunks`, :func:`damage_png`) parsed and written here independently of
:mod:`colorcube.inputs.images`, and an archive of many small synthetic cubes (:func:`synthetic_archive`).
``import colorcube`` does not import this module.
"""

from __future__ import annotations

from pathlib import Path

import dask
import numpy as np
import xarray as xr
from PIL import Image
from tqdm.auto import tqdm

from .cube.attrs import cube_attrs
from .cube.index import band_summary
from .cube.schema import cube_dataset, validate_cube
from .cube.store import update_group_attrs, write_cube
from .errors import ColorcubeError

__all__ = ["DAMAGE_KINDS", "CountingScheduler", "build_cube", "damage_png", "gray_of", "png_chunks", "random_cube",
           "synthetic_archive", "write_gray_png"]

#: the kinds of damage :func:`damage_png` makes
DAMAGE_KINDS = ("idat_crc", "ihdr_crc", "no_iend", "chunk_past_end", "bad_chunk_type")


def build_cube(gray, rgb, interval, *, alpha: float, lam, calibration=None, model=None, settings=None,
               source: str = "<array>", source_hash: str = "", coefficients=None) -> xr.Dataset:
    """Assemble and validate one image's cube from arrays, without the model.

    Parameters
    ----------
    gray : (y, x) float32 in [0, 1]
    rgb : (y, x, 3) float32 in [0, 1]
    interval : (y, x, 3, 2) float32 in [0, 1], lower <= upper
    alpha : float in (0, 1), miscoverage level the bands were built for
    lam : (3,) lambda per channel actually used
    calibration : Calibration or None (None: heuristic, uncalibrated bands)
    model : ColorNet or None, for its name and hash
    settings : dict of pipeline settings
    source, source_hash : str, where the gray input came from
    coefficients : optional ``(coef (gy, gx, 10) float32, extent (2,))``, the guided
        coefficients (see :func:`colorcube.cube.schema.cube_dataset`)

    Returns
    -------
    xarray.Dataset following the cube schema (:mod:`colorcube.cube.schema`), values checked.
    """
    attrs = cube_attrs(alpha=alpha, lam=lam, calibration=calibration, model=model, settings=settings,
                       source=source, source_hash=source_hash)
    ds = cube_dataset(np.asarray(gray, np.float32), np.asarray(rgb, np.float32),
                      np.asarray(interval, np.float32), attrs, coefficients)
    validate_cube(ds, check_values=True)
    return ds


def random_cube(h: int = 20, w: int = 30, *, alpha: float = 0.1, seed: int = 0) -> xr.Dataset:
    """An uncalibrated cube of uniform random values, lambda ``[1, 2, inf]``, source ``"x.png"``.

    Returns
    -------
    xarray.Dataset, ``gray`` (h, w), ``rgb`` (h, w, 3) and ``interval`` (h, w, 3, 2) float32
    in [0, 1], the band ``[rgb / 2, rgb / 2 + 1 / 2]``; no ``coefficients``.
    """
    rng = np.random.default_rng(seed)
    gray = rng.random((h, w)).astype(np.float32)
    rgb = rng.random((h, w, 3)).astype(np.float32)
    iv = np.stack([rgb * 0.5, rgb * 0.5 + 0.5], axis=-1)
    return build_cube(gray, rgb, iv, alpha=alpha, lam=[1.0, 2.0, np.inf], source="x.png")


def synthetic_archive(out, n: int, *, side: int = 64, progress: bool = False) -> Path:
    """An archive of ``n`` random cubes (:func:`random_cube`), as ``colorcube archive`` lays one out.

    Photo ``i`` is the group ``images/photo-{i:05d}``, ``side`` x ``1.5 side`` pixels, marked
    complete with its band uncertainty (:func:`colorcube.cube.index.band_summary`); every
    twentieth is a tiny cube marked failed. For gallery tests and benchmarks of archives of
    thousands of photos without running the model. Returns ``out`` as a Path.
    """
    out = Path(out)
    for i in tqdm(range(n), desc="archive", unit="photo", disable=not progress):
        name = f"photo-{i:05d}"
        group = f"images/{name}"
        if i % 20 == 19:
            write_cube(random_cube(8, 8, seed=i), out, group=group)
            update_group_attrs(out, group, {"colorcube_status": "failed", "error": "synthetic failure",
                                            "source": f"{name}.png"})
            continue
        ds = random_cube(side, side + side // 2, seed=i)
        write_cube(ds, out, group=group)
        update_group_attrs(out, group, {"colorcube_status": "complete", "source": f"{name}.png",
                                        **band_summary(ds["interval"].values)})
    return out


def gray_of(rgb_uint8: np.ndarray) -> np.ndarray:
    """PIL ``convert("L")`` of a (y, x, 3) uint8 RGB array, as (y, x) float32 ``code / 255`` in [0, 1].

    This is how calibration and users make gray inputs from colour photos.
    """
    return np.asarray(Image.fromarray(rgb_uint8).convert("L"), dtype=np.float32) / np.float32(255)


def write_gray_png(path, rgb_uint8: np.ndarray) -> Path:
    """Write the 8-bit gray scan of a (y, x, 3) uint8 photo (PIL ``convert("L")``, as
    :func:`gray_of` reads it) as a PNG; returns the path."""
    p = Path(path)
    Image.fromarray(rgb_uint8).convert("L").save(p, format="PNG")
    return p


class CountingScheduler:
    """A dask scheduler that counts computes (as cf-xarray's ``raise_if_dask_computes``).

    Use it with ``dask.config.set(scheduler=CountingScheduler())``; ``calls`` is the number
    of graphs computed so far.
    """

    def __init__(self):
        self.calls = 0

    def __call__(self, dsk, keys, **kwargs):
        self.calls += 1
        return dask.get(dsk, keys, **kwargs)


def png_chunks(data: bytes) -> list:
    """``(type, offset, length)`` of each chunk of PNG bytes (after the 8-byte signature)."""
    out, pos = [], 8
    while pos + 8 <= len(data):
        n = int.from_bytes(data[pos:pos + 4], "big")
        out.append((data[pos + 4:pos + 8], pos, n))
        pos += 12 + n
    return out


def damage_png(data: bytes, kind: str) -> bytes:
    """PNG bytes with one kind of damage that decoders may let through.

    Parameters
    ----------
    data : bytes of a valid PNG
    kind : one of :data:`DAMAGE_KINDS`: ``"idat_crc"`` / ``"ihdr_crc"`` (that chunk's stored
        CRC flipped by one bit, the pixels still decode), ``"no_iend"`` (cut before IEND),
        ``"chunk_past_end"`` (the first IDAT claims 10**6 more bytes than the file has),
        ``"bad_chunk_type"`` (the first IDAT's type made invalid)

    Returns
    -------
    bytes, the damaged file

    Raises
    ------
    ColorcubeError
        ``kind`` is not one of :data:`DAMAGE_KINDS`.
    """
    if kind not in DAMAGE_KINDS:
        raise ColorcubeError(f"kind={kind!r}: give one of {', '.join(DAMAGE_KINDS)}")
    b = bytearray(data)
    chunks = {}
    for t, pos, n in png_chunks(data):
        chunks.setdefault(t, (pos, n))  # the first chunk of each type
    if kind == "idat_crc":
        pos, n = chunks[b"IDAT"]
        b[pos + 8 + n] ^= 0x01
    elif kind == "ihdr_crc":
        pos, n = chunks[b"IHDR"]
        b[pos + 8 + n] ^= 0x01
    elif kind == "no_iend":
        del b[chunks[b"IEND"][0]:]
    elif kind == "chunk_past_end":
        pos, n = chunks[b"IDAT"]
        b[pos:pos + 4] = (n + 10**6).to_bytes(4, "big")
    else:
        b[chunks[b"IDAT"][0] + 4] = ord("1")
    return bytes(b)
