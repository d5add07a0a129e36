"""An archive on disk: its index of photos (status, size, per-photo band uncertainty), its cubes
opened by name, and the lock held by the run writing it."""

from __future__ import annotations

import os
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
import zarr

from ..errors import ColorcubeError
from .store import open_cube

__all__ = [
    "UNCERTAINTY_COLUMNS",
    "WIDE_BAND",
    "acquire_lock",
    "archive_index",
    "band_summary",
    "open_archive",
    "open_image",
]


#: a pixel's band is "wide" when its mean width over R, G, B exceeds this (in [0, 1] units; 102/255)
WIDE_BAND = 0.4


_WIDE_CODES = round(3 * WIDE_BAND * 255)  # the same threshold on the sum of the three widths, in storage codes


def band_summary(interval) -> dict:
    """Per-photo uncertainty of a band.

    Parameters
    ----------
    interval : (y, x, channel, bound) uint8 storage codes, or float in [0, 1] (numpy or
        dask: a dask array is reduced chunk by chunk), or a cube's ``interval`` DataArray

    Returns
    -------
    dict of :data:`colorcube.cube.index.UNCERTAINTY_COLUMNS`: ``band_width_R``, ``band_width_G``,
    ``band_width_B`` (mean band width per channel, in [0, 1])
    and ``wide_share`` (share of pixels whose mean width over R, G, B exceeds :data:`WIDE_BAND`)
    """
    data = interval.data if hasattr(interval, "dims") else interval  # a DataArray's numpy or dask array
    data = data if isinstance(data, da.Array) else np.asarray(data)
    if data.ndim != 4 or tuple(data.shape[2:]) != (3, 2):
        raise ColorcubeError(f"interval: expected (y, x, channel=3, bound=2), got shape {tuple(data.shape)}")
    if data.dtype == np.uint8:  # codes: integer widths, no float copy of the band
        width = data[..., 1].astype(np.int16) - data[..., 0].astype(np.int16)
        scale = 255.0
        codes = width.sum(axis=2)
    else:
        width = data[..., 1] - data[..., 0]
        scale = 1.0
        # stored bands lie on the 1/255 grid: compare in codes, so decoded and raw bands agree exactly
        codes = np.rint(width.sum(axis=2) * np.float32(255))
    means = width.mean(axis=(0, 1), dtype=np.float64)  # float32 sums over millions of pixels drift
    wide = (codes > _WIDE_CODES).mean()
    if isinstance(data, da.Array):
        means, wide = dask.compute(means, wide)
    means = np.asarray(means, np.float64) / scale
    return dict(zip(UNCERTAINTY_COLUMNS, [*(float(v) for v in means), float(wide)]))


#: per-photo band uncertainty kept in each archived image's attributes and shown in the index
#: (:func:`colorcube.cube.index.band_summary` computes them)
UNCERTAINTY_COLUMNS = ("band_width_R", "band_width_G", "band_width_B", "wide_share")


def archive_index(out):
    """The archive's index: one row per source (name, source, status, error, damaged, size, hash,
    uncertainty).

    ``damaged`` is the damage found in a file colorized with ``allow_damaged`` ("" for intact files).
    The uncertainty of each complete photo's bands (:func:`colorcube.cube.index.band_summary`):
    ``band_width_R``, ``band_width_G``, ``band_width_B`` the mean band width per channel in [0, 1] and
    ``wide_share`` the share of pixels whose mean band width exceeds
    :data:`colorcube.cube.index.WIDE_BAND`; NaN for failed photos and for photos of an archive
    written before the index kept them (the next ``colorize_archive`` run fills them in
    without colorizing again). Sort by ``wide_share`` to look at the least sure photos first.

    Returns
    -------
    pandas.DataFrame, sorted by name
    """
    try:
        images = zarr.open_group(str(out), path="images", mode="r")
    except (FileNotFoundError, zarr.errors.GroupNotFoundError) as exc:
        raise ColorcubeError(f"{out}: not a colorcube archive (no images group)") from exc
    rows = []
    for name, group in images.groups():
        a = dict(group.attrs)
        rows.append({"name": name, "source": a.get("source", ""), "status": a.get("colorcube_status", "incomplete"),
                     "error": a.get("error", ""), "damaged": a.get("damaged", ""), "height": a.get("height", 0),
                     "width": a.get("width", 0), "hash": a.get("source_hash", ""),
                     **{k: _number(a.get(k)) for k in UNCERTAINTY_COLUMNS}})
    cols = ["name", "source", "status", "error", "damaged", "height", "width", "hash", *UNCERTAINTY_COLUMNS]
    return pd.DataFrame(rows, columns=cols).sort_values("name", ignore_index=True)


def _number(value) -> float:
    """An attribute as a float; NaN when missing or not a number (the index must always load)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def open_image(out, name: str, *, chunks: dict | None = None):
    """One archived cube, lazily (dask chunks = zarr chunks unless ``chunks`` is given)."""
    return open_cube(out, group=f"images/{name}", chunks={} if chunks is None else chunks)


def open_archive(out, *, chunks: dict | None = None):
    """Open an archive lazily as an ``xarray.DataTree``: one dask-backed cube per complete image.

    Incomplete and failed images are left out (see :func:`archive_index`).
    Nothing is computed until the caller asks for values.
    """
    index = archive_index(out)
    done = index[index.status == "complete"]
    dt = xr.DataTree.from_dict({f"/{name}": open_image(out, name, chunks=chunks) for name in done.name})
    dt.attrs["n_images"] = len(done)
    dt.attrs["n_failed"] = int((index.status == "failed").sum())
    return dt


def acquire_lock(out: str):
    """One writer per local archive: a lock file holding the writer's pid.

    A second ``colorcube archive`` on the same folder is refused while the first
    runs; a lock left by a killed run (its pid is gone) is taken over. Remote
    (fsspec URL) archives are not locked: run one writer per URL.
    """
    if "://" in out:
        return None
    lock = Path(out) / ".colorcube.lock"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                pid = int(lock.read_text().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and _pid_alive(pid):
                raise ColorcubeError(f"{out}: another colorcube process (pid {pid}) is writing this archive; "
                                     f"wait for it, or delete {lock} if that process is gone") from None
            lock.unlink(missing_ok=True)  # stale: its writer was killed
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(str(os.getpid()))
        return lock
    raise ColorcubeError(f"{out}: cannot take the archive lock {lock}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
