"""Where archive inputs come from: folders, globs, lists, zarr stores of gray arrays.

Also the safe, stable group name of each source and its content hash.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import hashlib
import mmap
import os
import re
from pathlib import Path

import numpy as np
import zarr
from PIL import Image

from ..errors import ColorcubeError, ImageReadError
from .images import IMAGE_SUFFIXES, array_to_gray, image_digest, read_gray_checked

__all__ = ["Source", "group_name", "list_sources", "read_source", "source_data", "source_hash", "source_pixels"]


@dataclasses.dataclass(frozen=True)
class Source:
    """One input image: a file, or a 2-D array inside a zarr store (``array`` set)."""

    path: str
    array: str | None = None

    @property
    def label(self) -> str:
        return self.path if self.array is None else f"{self.path}::{self.array}"


def list_sources(src) -> list[Source]:
    """Expand SRC: a folder (recursive, sorted), a glob, a text file of paths, a zarr of gray images.

    A list of paths is taken as is. Files in a folder are those with an image
    suffix; broken ones are kept (and later reported), other files ignored.
    """
    if isinstance(src, (list, tuple)):
        return [Source(str(p)) for p in src]
    text = str(src)
    p = Path(text)
    if any(ch in text for ch in "*?[") and not p.exists():
        files = sorted(f for f in glob.glob(text, recursive=True) if Path(f).is_file())
        if not files:
            raise ColorcubeError(f"{text}: the glob matches no files")
        return [Source(f) for f in files]
    if not p.exists():
        raise ColorcubeError(f"{p}: source not found; give a folder, a glob, a text file of paths or a zarr")
    if p.is_dir() and (p.suffix == ".zarr" or (p / "zarr.json").is_file()):
        return _zarr_sources(p)
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and not f.is_dir())
        if not files:
            raise ColorcubeError(f"{p}: no image files (.png, .jpg, .tif, ...) in this folder")
        return [Source(str(f)) for f in files]
    if p.suffix.lower() in (".txt", ".lst", ".csv"):
        lines = [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines()]
        base = p.parent
        return [Source(str(Path(ln) if Path(ln).is_absolute() else base / ln)) for ln in lines
                if ln and not ln.startswith("#")]
    return [Source(str(p))]


def _zarr_sources(p: Path) -> list[Source]:
    root = zarr.open_group(str(p), mode="r")
    out = [Source(str(p), name) for name, arr in root.arrays() if arr.ndim == 2]
    for gname, group in root.groups():
        out += [Source(str(p), f"{gname}/{name}") for name, arr in group.arrays() if arr.ndim == 2]
    if not out:
        raise ColorcubeError(f"{p}: the zarr store holds no 2-D gray arrays")
    return sorted(out, key=lambda s: s.array)


def group_name(source: Source) -> str:
    """A safe, stable, unique group name: cleaned stem + 8 hex of the full source label.

    Only ``[A-Za-z0-9._-]`` survive, so no name can climb out of the archive
    (``..``, ``/``) and two ``scan.png`` in different folders stay distinct.
    """
    stem = Path(source.array or source.path).stem
    clean = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._-")[:60] or "image"
    return f"{clean}-{hashlib.sha256(source.label.encode()).hexdigest()[:8]}"


@contextlib.contextmanager
def source_data(source: Source):
    """The source read once, to be hashed, checked for damage and decoded (a context manager):
    a file mapped read-only into memory (its pages are the system's file cache, not a copy; an
    empty file is ``b""``), or a zarr source's array, decompressed. ImageReadError when a file
    cannot be read."""
    if source.array is not None:
        yield np.ascontiguousarray(zarr.open_array(source.path, path=source.array, mode="r")[...])
        return
    try:
        with open(source.path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            data = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
    except (OSError, ValueError) as exc:
        raise ImageReadError(f"{source.path}: cannot be read ({getattr(exc, 'strerror', None) or exc})") from exc
    try:
        yield data
    finally:
        if isinstance(data, mmap.mmap):
            data.close()


def source_hash(source: Source, data=None) -> str:
    """SHA-256 of the file's bytes, or of a zarr array's data (``data``: :func:`source_data`):
    :func:`colorcube.inputs.images.image_digest` of the source."""
    if data is not None:
        return image_digest(data)
    if source.array is None:
        return image_digest(Path(source.path))
    with source_data(source) as arr:
        return image_digest(arr)


def source_pixels(source: Source) -> int:
    """Pixel count of the source from its header alone (0 when the header cannot be read:
    reading it in full then reports what is wrong)."""
    try:
        if source.array is not None:
            return int(np.prod(zarr.open_array(source.path, path=source.array, mode="r").shape))
        with Image.open(source.path) as im:
            return im.width * im.height
    except Exception:  # noqa: BLE001 - any unreadable header: the full read names the problem
        return 0


def read_source(source: Source, max_pixels, data=None, *, allow_damaged: bool = False) -> tuple[np.ndarray, str]:
    """The source as (y, x) float32 gray in [0, 1] (``data``: :func:`source_data`), and the
    damage found in its file ("" if none; a damaged file is refused unless ``allow_damaged``),
    see :func:`colorcube.inputs.images.find_damage`."""
    if source.array is None:
        return read_gray_checked(source.path, max_pixels=max_pixels, warn_color=False, allow_damaged=allow_damaged,
                                 data=data)
    if data is None:
        with source_data(source) as arr:
            return array_to_gray(arr, name=source.label, warn=False, error=ImageReadError), ""
    return array_to_gray(data, name=source.label, warn=False, error=ImageReadError), ""
