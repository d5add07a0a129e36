"""One photo of an archive, step by step: read (hash, damage and pixels from one read of the file),
the network (batched across photos by :mod:`colorcube.run.archive`), then the per-photo step of
:mod:`colorcube.run.pipeline`, the full-resolution stage and the writes. Whatever fails in a
photo becomes its failure record with a one-line reason; only an unwritable output raises.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import logging
import time
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import torch
import zarr

from ..cube.index import UNCERTAINTY_COLUMNS, band_summary
from ..cube.schema import code_dataset
from ..cube.store import group_attrs, open_cube, update_group_attrs, write_cube
from ..errors import ColorcubeError
from ..guidance.hints import as_hints, find_hint_file
from ..inputs.images import file_hash
from ..inputs.sources import Source, read_source, source_data, source_hash
from ..network.guided import Coefficients
from ..network.weights import load_weights
from ..network.working import (
    WorkingInput,
    coefficients_of,
    decoded_maps,
    network_maps,
    working_input,
    working_stage,
)
from ..render.codes import encode_gray
from ..render.fullres import stage_codes
from .pipeline import Run, colorize_gray, photo_step

__all__ = ["Job", "Work", "finish", "in_memory", "model_for", "network", "one_line", "prepare", "process",
           "record_failure"]

log = logging.getLogger(__name__)


_FATAL_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT}


#: images up to this many chunks are colorized in memory, in batches; larger ones chunk by chunk
_SMALL_CHUNKS = 4


def in_memory(pixels: int, chunk: int) -> bool:
    """Whether an image is small enough (``_SMALL_CHUNKS`` chunks) to be computed in memory at once,
    with no dask graph to build (and to go through the overlapped stages)."""
    return pixels <= _SMALL_CHUNKS * chunk**2


@dataclasses.dataclass(frozen=True)
class Job:
    """Everything a worker needs besides the source (small and picklable)."""

    out: str
    weights: str
    device: str
    run: Run  # without its model and calibration: each process loads the model once (_model)
    chunk: int
    max_pixels: int | None
    compression: str = "none"
    allow_damaged: bool = False
    hints: str | None = None  # folder of per-image hint files
    scheduler: str = "threads"  # dask's, for a large image's chunks ("synchronous" inside a dask worker)


@functools.lru_cache(maxsize=2)
def model_for(weights: str, device: str):
    """One model per process (per dask worker), loaded on first use and reused."""
    return load_weights(weights, device=device)


def _block(gray_block, coef, shape, extent, lam, hints=None, block_info=None):
    """Full-resolution codes of one chunk -> (ty, tx, 9) uint8: rgb, lower, upper."""
    (y0, _), (x0, _) = block_info[0]["array-location"]
    c = stage_codes(gray_block, Coefficients(coef, tuple(shape), tuple(extent)), lam, y0=y0, x0=x0, threads=1,
                    hints=hints)
    return np.concatenate([c["rgb"], c["interval"][..., 0], c["interval"][..., 1]], axis=-1)


def one_line(label: str, exc: BaseException) -> str:
    """A failure's reason on one line, naming the source."""
    text = " ".join(str(exc).split())
    if not isinstance(exc, ColorcubeError):  # not written for users: say what it was
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if label in text else f"{label}: {text}"


@dataclasses.dataclass
class Work:
    """One image between the stages: its row, gray pixels and hints."""

    source: Source
    name: str
    row: dict
    gray: np.ndarray | None = None
    hints: object = None
    hint_hash: str = ""
    inp: WorkingInput | None = None  # the network input, made while reading (images without hints)


def _guarded(work: Work, job: Job, fn, *args, **kwargs):
    """``fn(*args)``; any exception that concerns this image alone becomes its failure record.

    Only a full, read-only or forbidden output (which would fail every image alike)
    raises, as ColorcubeError. Returns ``fn``'s value, or None after a failure.
    """
    label = work.source.label
    try:
        return fn(*args, **kwargs)
    except OSError as exc:
        if exc.errno in _FATAL_ERRNOS:
            raise ColorcubeError(f"{job.out}: cannot write the archive ({exc.strerror}); free space or fix "
                                 "permissions, then re-run the same command to resume") from exc
        work.row["error"] = one_line(label, exc)
    except MemoryError:
        work.row["error"] = f"{label}: not enough memory for this image; lower --chunk or use a bigger machine"
    except Exception as exc:
        log.debug("%s failed", label, exc_info=True)
        work.row["error"] = one_line(label, exc)
    work.row["status"] = "failed"
    record_failure(job.out, work.name, work.source, work.row["error"])
    return None


def prepare(source: Source, name: str, job: Job) -> tuple:
    """(row, work): the image read for the network, or work None when it is skipped or failed."""
    work = Work(source, name, {"name": name, "source": source.label, "status": "failed", "error": "", "height": 0,
                                "width": 0, "hash": "", "megapixels": 0.0, "damaged": ""})

    def read():
        with source_data(source) as data:  # read once: hashed, checked for damage and decoded from it
            return _read(data)

    def _read(data):
        work.row["hash"] = digest = source_hash(source, data)
        have = group_attrs(job.out, f"images/{name}")
        hint_file, work.hint_hash = _hint_file(job.hints, source)
        if (have.get("colorcube_status") == "complete" and have.get("source_hash") == digest
                and have.get("hint_hash", "") == work.hint_hash):
            work.row.update(status="skipped", height=have.get("height", 0), width=have.get("width", 0))
            if any(k not in have for k in UNCERTAINTY_COLUMNS):  # an archive from before the index kept them
                _fill_uncertainty(job, name)
            return False
        work.gray, work.row["damaged"] = read_source(source, job.max_pixels, data, allow_damaged=job.allow_damaged)
        work.hints = as_hints(hint_file, work.gray.shape) if hint_file else None
        if work.hints is None:
            work.inp = working_input(work.gray, job.run.settings, device=job.device)
        return True

    return work.row, (work if _guarded(work, job, read) else None)


def network(works: list, job: Job) -> list:
    """The network's part of each work, None where it failed: the network outputs
    (:func:`colorcube.network.working.network_maps`; undecoded with the learned scale, decoded while finishing) of
    those without hints, in one batched call (if it fails, each alone), and the
    Coefficients of those with hints, one :func:`colorcube.network.working.working_stage` each."""
    model = model_for(job.weights, job.device)
    settings = job.run.settings
    # the decoding (a softmax over the bins per pixel) runs in the finishing threads, beside the
    # next batch's network, which then has the cores to itself only for its convolutions
    decode = settings.scale != "learned"
    out = [None] * len(works)
    plain = [i for i, w in enumerate(works) if w.inp is not None]
    if len(plain) > 1:
        try:
            # the runner sized the batch (batch=): one network call for all of them
            for i, maps in zip(plain, network_maps([works[i].inp for i in plain], model, settings, batch=len(plain),
                                                   decode=decode)):
                out[i] = maps
        except Exception:
            log.debug("a network batch failed; running its images one at a time", exc_info=True)
    for i, w in enumerate(works):
        if out[i] is not None:
            continue
        if w.inp is not None:
            maps = _guarded(w, job, network_maps, [w.inp], model, settings, decode=decode)
            out[i] = None if maps is None else maps[0]
        else:
            out[i] = _guarded(w, job, working_stage, w.gray, model, settings, hints=w.hints)
    return out


def finish(work: Work, result, job: Job, times=None) -> dict:
    """Coefficients (from the network's maps), full-resolution stage and writes of one image; its row."""
    if result is None:
        return work.row
    if _guarded(work, job, _write, work, result, job, times):
        h, w = work.gray.shape
        work.row.update(status="done", height=h, width=w, megapixels=h * w / 1e6)
    return work.row


def _write(work: Work, result, job: Job, times=None) -> bool:
    t0 = time.perf_counter()
    if isinstance(result, tuple):  # the network's outputs, undecoded
        result = decoded_maps(result, work.inp, model_for(job.weights, job.device), job.run.settings)
    coeffs = result if isinstance(result, Coefficients) else coefficients_of(result, work.inp, job.run.settings)
    gray, hints, name = work.gray, work.hints, work.name
    h, w = gray.shape
    extra = {"source_hash": work.row["hash"], "height": h, "width": w, "colorcube_status": "incomplete"}
    if work.row["damaged"]:
        extra["damaged"] = work.row["damaged"]
    if hints is not None:
        extra["hint_hash"] = work.hint_hash
    step = {"source": work.source.label, "digest": work.row["hash"], "hints": hints, "coeffs": coeffs}
    if in_memory(h * w, job.chunk):
        coloured = colorize_gray(gray, job.run, threads=1, **step)
        codes, attrs = coloured.codes, {**coloured.attrs, **extra, **band_summary(coloured.codes["interval"])}
    else:  # chunk by chunk, streamed to zarr
        photo = photo_step(gray, job.run, **step)
        attrs, lam = {**photo.attrs, **extra}, photo.lam
        g = da.from_array(gray, chunks=(job.chunk, job.chunk))
        stacked = da.map_blocks(_block, g, coeffs.coef, (h, w), coeffs.extent, lam, hints,
                                dtype=np.uint8, new_axis=2, chunks=(g.chunks[0], g.chunks[1], (9,)))
        interval = da.stack([stacked[..., 3:6], stacked[..., 6:9]], axis=-1).rechunk({3: 2})
        # the gray code is decided on the whole image (uint8 for 8-bit sources), as colorize does
        codes = {"gray": da.from_array(encode_gray(gray), chunks=g.chunks), "rgb": stacked[..., :3],
                 "interval": interval}
    ds = code_dataset(codes, attrs, (coeffs.coef, coeffs.extent), None if hints is None else hints.to_array())
    t1 = time.perf_counter()
    done = {"colorcube_status": "complete"}
    with dask.config.set(scheduler=job.scheduler):
        write_cube(ds, job.out, chunk=job.chunk, group=f"images/{name}", compression=job.compression)
        if "wide_share" not in attrs:  # streamed: summarised from the stored band, chunk by chunk
            done.update(_stored_summary(job, name))
    update_group_attrs(job.out, f"images/{name}", done)
    if times is not None:
        times.add("full resolution", t1 - t0)
        times.add("write", time.perf_counter() - t1)
    return True


def process(source: Source, name: str, job: Job, *, in_worker: bool = False) -> dict:
    """Colorize one source into ``images/<name>``, every stage in turn (a dask worker's task,
    and a large image's path in a local run).

    Never raises for anything that concerns this image alone: every exception
    becomes the image's failure record. Only a full, read-only or forbidden
    output (which would fail every image alike) raises, as ColorcubeError.
    """
    if in_worker:
        # One torch thread per task, as in the local run, so the full-resolution
        # chunks do not oversubscribe the worker's cores.
        torch.set_num_threads(1)
        job = dataclasses.replace(job, scheduler="synchronous")
    row, work = prepare(source, name, job)
    if work is None:
        return row
    return finish(work, network([work], job)[0], job)


def _hint_file(folder: str | None, source: Source) -> tuple:
    """(path, SHA-256) of the source's hint file in ``folder`` (``<stem>.json`` / ``.png``); (None, "")."""
    if not folder:
        return None, ""
    stem = Path(source.array).name if source.array is not None else Path(source.path).stem
    found = find_hint_file(folder, stem)
    return (found, file_hash(found)) if found else (None, "")


def record_failure(out: str, name: str, source: Source, error: str) -> None:
    # mode "w" drops whatever a failure midway left in the group
    zarr.open_group(out, path=f"images/{name}", mode="w",
                    attributes={"colorcube_status": "failed", "source": source.label, "error": error})


def _fill_uncertainty(job, name: str) -> None:
    """Write a complete photo's band summary into its group (archives made before the index kept
    it). A cube that cannot be summarised keeps its colours: the columns stay empty (NaN) and a
    warning names it; the photo is not colorized again."""
    try:
        with dask.config.set(scheduler=job.scheduler):
            summary = _stored_summary(job, name)
    except (ColorcubeError, OSError, ValueError, KeyError) as exc:
        log.warning("%s: band uncertainty not added to the index (%s)", name, exc)
        return
    update_group_attrs(job.out, f"images/{name}", summary)


def _stored_summary(job, name: str) -> dict:
    """:func:`colorcube.cube.index.band_summary` of a photo's stored band, read chunk by chunk."""
    return band_summary(open_cube(job.out, group=f"images/{name}", chunks={})["interval"])
