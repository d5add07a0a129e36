"""Folders of scans -> one zarr archive of cubes, in bounded memory, resumable.

Layout of an archive (zarr v3, a local path or any fsspec URL)::

    OUT.zarr/images/<name>/{gray, rgb, interval}   one cube per source image
    OUT.zarr/images/<name>.attrs["colorcube_status"]  "incomplete" | "complete" | "failed"

A group is written with status "incomplete" and marked "complete" only after
all its arrays are written, so a crash never leaves a half-written image that
looks finished. Re-running the same command skips complete images whose
source hash is unchanged and redoes the rest.

On one machine, images of up to four chunks go through three overlapped stages
(:func:`colorcube.batch.run_overlapped`): read (threads), the network batched across
images of one input shape (:func:`colorcube.working.network_maps`), then the guided
coefficients, the full-resolution stage and the writes (threads); each cube equals
:func:`colorcube.colorize`'s bit for bit. Larger images follow one at a time, their
full-resolution stage chunk by chunk through dask, streamed to zarr. On a
dask.distributed cluster each image is one task doing all stages.

Whatever goes wrong with one image (a bad file, a damaged one, any exception
while it is processed) becomes that image's "failed" record with a one-line
reason, and the run goes on; only a full or read-only output ends it.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import logging
import os
import time
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import torch
import zarr
from tqdm.auto import tqdm

from .batch import StageTimes, run_overlapped
from .codes import check_compression, encode_gray
from .cube import code_dataset
from .errors import ColorcubeError, HintError, OptionError
from .fullres import stage_codes
from .guided import Coefficients
from .hinting import calibration_hint_points
from .hints import as_hints, find_hint_file
from .io import DEFAULT_MAX_PIXELS, file_hash
from .pipeline import guided_attrs, photo_lambda, prepare_run
from .settings import PipelineSettings
from .sources import Source, group_name, list_sources, read_source, source_data, source_hash, source_pixels
from .store import UNCERTAINTY_COLUMNS, acquire_lock, group_attrs, open_cube, update_group_attrs, write_cube
from .triage import band_summary
from .weights import default_weights_path, load_weights, select_device
from .working import (
    WorkingInput,
    coefficients_of,
    decoded_maps,
    default_batch,
    network_maps,
    working_input,
    working_stage,
)

__all__ = ["ArchiveResult", "colorize_archive"]

log = logging.getLogger(__name__)
_FATAL_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT}
#: images up to this many chunks are colorized in memory, in batches; larger ones chunk by chunk
_SMALL_CHUNKS = 4


def _in_memory(pixels: int, chunk: int) -> bool:
    """Whether an image is small enough (``_SMALL_CHUNKS`` chunks) to be computed in memory at once,
    with no dask graph to build (and to go through the overlapped stages)."""
    return pixels <= _SMALL_CHUNKS * chunk**2


@dataclasses.dataclass
class ArchiveResult:
    """Outcome of :func:`colorize_archive`.

    ``done`` / ``skipped`` / ``failed`` list group names; ``failures`` maps a
    source label to its one-line reason; ``megapixels`` counts processed pixels;
    ``damaged`` maps the label of each damaged file colorized anyway
    (``allow_damaged``) to its damage.
    """

    total: int
    done: list
    skipped: list
    failed: list
    failures: dict
    megapixels: float
    seconds: float
    damaged: dict = dataclasses.field(default_factory=dict)
    stage_times: StageTimes = dataclasses.field(default_factory=StageTimes)

    def summary(self) -> str:
        rate = self.megapixels / self.seconds if self.seconds > 0 else 0.0
        damaged = f" ({len(self.damaged)} damaged)" if self.damaged else ""
        return (f"{len(self.done)} done{damaged}, {len(self.skipped)} already complete, {len(self.failed)} failed of "
                f"{self.total}; {self.megapixels:.1f} MP in {self.seconds:.1f} s ({rate:.2f} MP/s)")


@dataclasses.dataclass(frozen=True)
class _Job:
    """Everything a worker needs besides the source (small and picklable)."""

    out: str
    weights: str
    device: str
    settings: PipelineSettings
    lam: tuple
    chunk: int
    max_pixels: int | None
    attrs: dict
    compression: str = "none"
    allow_damaged: bool = False
    hints: str | None = None  # folder of per-image hint files
    hint_points: int | None = None  # the calibration's simulated hint points (None: uncalibrated)
    scheduler: str = "threads"  # dask's, for a large image's chunks ("synchronous" inside a dask worker)
    photo_lambdas: dict = dataclasses.field(default_factory=dict)  # Run.photo_lambdas


@functools.lru_cache(maxsize=2)
def _model(weights: str, device: str):
    """One model per process (per dask worker), loaded on first use and reused."""
    return load_weights(weights, device=device)


def _block(gray_block, coef, shape, extent, lam, hints=None, block_info=None):
    """Full-resolution codes of one chunk -> (ty, tx, 9) uint8: rgb, lower, upper."""
    (y0, _), (x0, _) = block_info[0]["array-location"]
    c = stage_codes(gray_block, Coefficients(coef, tuple(shape), tuple(extent)), lam, y0=y0, x0=x0, threads=1,
                    hints=hints)
    return np.concatenate([c["rgb"], c["interval"][..., 0], c["interval"][..., 1]], axis=-1)


def _one_line(label: str, exc: BaseException) -> str:
    """A failure's reason on one line, naming the source."""
    text = " ".join(str(exc).split())
    if not isinstance(exc, ColorcubeError):  # not written for users: say what it was
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if label in text else f"{label}: {text}"


@dataclasses.dataclass
class _Work:
    """One image between the stages: its row, gray pixels and hints."""

    source: Source
    name: str
    row: dict
    gray: np.ndarray | None = None
    hints: object = None
    hint_hash: str = ""
    inp: WorkingInput | None = None  # the network input, made while reading (images without hints)


def _guarded(work: _Work, job: _Job, fn, *args, **kwargs):
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
        work.row["error"] = _one_line(label, exc)
    except MemoryError:
        work.row["error"] = f"{label}: not enough memory for this image; lower --chunk or use a bigger machine"
    except Exception as exc:
        log.debug("%s failed", label, exc_info=True)
        work.row["error"] = _one_line(label, exc)
    work.row["status"] = "failed"
    _record_failure(job.out, work.name, work.source, work.row["error"])
    return None


def _prepare(source: Source, name: str, job: _Job) -> tuple:
    """(row, work): the image read for the network, or work None when it is skipped or failed."""
    work = _Work(source, name, {"name": name, "source": source.label, "status": "failed", "error": "", "height": 0,
                                "width": 0, "hash": "", "megapixels": 0.0, "damaged": ""})

    def read():
        data = source_data(source)  # a zarr source is read once for both its hash and its pixels
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
            work.inp = working_input(work.gray, job.settings, device=job.device)
        return True

    return work.row, (work if _guarded(work, job, read) else None)


def _network(works: list, job: _Job) -> list:
    """The network's part of each work, None where it failed: the network outputs
    (:func:`network_maps`; undecoded with the learned scale, decoded while finishing) of
    those without hints, in one batched call (if it fails, each alone), and the
    Coefficients of those with hints, one :func:`working_stage` each."""
    model = _model(job.weights, job.device)
    settings = job.settings
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


def _finish(work: _Work, result, job: _Job, times=None) -> dict:
    """Coefficients (from the network's maps), full-resolution stage and writes of one image; its row."""
    if result is None:
        return work.row
    if _guarded(work, job, _write, work, result, job, times):
        h, w = work.gray.shape
        work.row.update(status="done", height=h, width=w, megapixels=h * w / 1e6)
    return work.row


def _write(work: _Work, result, job: _Job, times=None) -> bool:
    t0 = time.perf_counter()
    if isinstance(result, tuple):  # the network's outputs, undecoded
        result = decoded_maps(result, work.inp, _model(job.weights, job.device), job.settings)
    coeffs = result if isinstance(result, Coefficients) else coefficients_of(result, work.inp, job.settings)
    gray, hints, name = work.gray, work.hints, work.name
    h, w = gray.shape
    lam, own = photo_lambda(job.photo_lambdas, work.row["hash"], job.lam)
    attrs = {**job.attrs, "source": work.source.label, "source_hash": work.row["hash"], "height": h, "width": w,
             "colorcube_status": "incomplete", **own}
    if work.row["damaged"]:
        attrs["damaged"] = work.row["damaged"]
    if hints is not None:
        attrs.update(guided_attrs(attrs, job.hint_points, hints=hints), hint_hash=work.hint_hash)
    if _in_memory(h * w, job.chunk):
        codes = stage_codes(gray, coeffs, lam, threads=1, with_gray=True, hints=hints)
        attrs.update(band_summary(codes["interval"]))
    else:  # chunk by chunk, streamed to zarr
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


def _process(source: Source, name: str, job: _Job, *, in_worker: bool = False) -> dict:
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
    row, work = _prepare(source, name, job)
    if work is None:
        return row
    return _finish(work, _network([work], job)[0], job)


def _hint_file(folder: str | None, source: Source) -> tuple:
    """(path, SHA-256) of the source's hint file in ``folder`` (``<stem>.json`` / ``.png``); (None, "")."""
    if not folder:
        return None, ""
    stem = Path(source.array).name if source.array is not None else Path(source.path).stem
    found = find_hint_file(folder, stem)
    return (found, file_hash(found)) if found else (None, "")


def _record_failure(out: str, name: str, source: Source, error: str) -> None:
    # mode "w" drops whatever a failure midway left in the group
    zarr.open_group(out, path=f"images/{name}", mode="w",
                    attributes={"colorcube_status": "failed", "source": source.label, "error": error})


def _run_local(sources, names, job, collect, *, workers, batch, times) -> None:
    """Small images through the overlapped stages (:func:`colorcube.batch.run_overlapped`), the
    network batched; large ones after them, one at a time, chunk by chunk.

    torch gets every core for the network; the other stages run one thread each.
    """
    small, large = [], []
    for item in zip(sources, names):
        (small if _in_memory(source_pixels(item[0]), job.chunk) else large).append(item)
    run_overlapped(small, prepare=lambda item: _prepare(*item, job),
                   key=lambda w: "hints" if w.inp is None else tuple(w.inp.padded.shape),
                   network=lambda works: _network(works, job), finish=lambda w, c: _finish(w, c, job, times),
                   collect=collect, batch=batch, workers=workers, times=times)
    for source, name in large:
        collect(times.timed("large images", _process, source, name, job))


def colorize_archive(src, out, *, alpha: float = 0.1, chunk: int = 1024, device: str = "auto",
                     calibration="default", weights=None, settings=None, client=None,
                     max_pixels="default", workers: int | None = None, progress: bool = True,
                     compression: str = "none", allow_damaged: bool = False, hints=None,
                     batch: int | None = None) -> ArchiveResult:
    """Colorize many images into one zarr archive.

    Parameters
    ----------
    src : folder, glob, text file of paths, zarr store of gray arrays, or a list of paths
    out : zarr store path or fsspec URL (``file://``, ``memory://``, ``s3://`` ...)
    alpha : float in (0, 1), miscoverage of the bands
    chunk : int, spatial chunk side in pixels (also the zarr chunking)
    device : "auto", "cpu" or "cuda" for the network
    calibration : "default", a .cal path, a Calibration, or None (uncalibrated); one weighted
        for this archive (``calibrate(..., target=...)``) gives each image its own lambda
    weights : optional .safetensors path (default: the shipped weights)
    settings : PipelineSettings, optional (default: the calibration's)
    client : dask.distributed.Client, optional; images then run as tasks on its
        workers, each worker loading the model once
    max_pixels : pixel ceiling per image ("default": 200 MP; None: none)
    workers : threads for reading and for the full-resolution stage and writes on this
        machine (default: CPU count); the network runs on torch's own threads
    progress : bool, tqdm bar with images and MP/s
    compression : "none" (default, fastest), "lz4" or "zstd" (smaller archives); see
        :func:`colorcube.store.zarr_compressors`
    allow_damaged : bool, colorize files with detectable damage (:func:`colorcube.io.find_damage`,
        e.g. a PNG chunk with a wrong CRC) instead of refusing them; each is logged as a warning,
        listed in the result's ``damaged`` and marked in the index's ``damaged`` column
    hints : optional folder of per-image hint files, ``<image stem>.json`` or ``<image stem>.png``
        (see :mod:`colorcube.hints`); images without one are colorized without hints. The
        hints are stored in each cube; a changed hint file makes a re-run redo that image
    batch : int, images per network call (default :func:`colorcube.working.default_batch`: 8 on
        a CPU, 32 on a GPU); images up to four chunks are read, batched and written overlapped
        (:func:`colorcube.batch.run_overlapped`), larger ones follow one at a time, chunk by chunk

    Returns
    -------
    ArchiveResult, with per-stage busy times in ``stage_times``
    """
    if hints is not None and not Path(hints).is_dir():
        raise HintError(f"{hints}: not a folder of per-image hint files (<image stem>.json or .png)")
    if int(chunk) < 16:
        raise OptionError(f"chunk={chunk!r} is too small; use at least 16 (default 1024)")
    if batch is not None and int(batch) < 1:
        raise OptionError(f"batch={batch!r}: use at least 1 image per network call")
    if workers is not None and int(workers) < 1:
        raise OptionError(f"workers={workers!r}: use at least 1")
    check_compression(compression)  # a bad name fails before any work
    sources = list_sources(src)
    weights = str(weights or default_weights_path())
    dev = str(select_device(device))
    run = prepare_run(alpha=alpha, model=_model(weights, dev), calibration=calibration, settings=settings)
    cal, attrs = run.calibration, run.attrs
    out = str(out)
    try:
        zarr.open_group(out, mode="a").attrs.update({"colorcube_archive": 1})
    except OSError as exc:
        raise ColorcubeError(f"{out}: cannot create the archive ({exc.strerror or exc})") from exc
    lock = acquire_lock(out)
    job = _Job(out=out, weights=weights, device=dev, settings=run.settings,
               lam=tuple(float(v) for v in run.lam),
               chunk=int(chunk), max_pixels=DEFAULT_MAX_PIXELS if max_pixels == "default" else max_pixels,
               attrs=attrs, compression=compression, allow_damaged=bool(allow_damaged),
               hints=None if hints is None else str(hints),
               hint_points=None if cal is None else calibration_hint_points(cal), photo_lambdas=run.photo_lambdas)
    names = [group_name(s) for s in sources]
    result = ArchiveResult(len(sources), [], [], [], {}, 0.0, 0.0)
    t0 = time.perf_counter()
    bar = tqdm(total=len(sources), unit="img", desc="archive", disable=not progress)

    def collect(row):
        result.megapixels += row["megapixels"]
        {"done": result.done, "skipped": result.skipped, "failed": result.failed}[row["status"]].append(row["name"])
        if row["status"] == "failed":
            result.failures[row["source"]] = row["error"]
            log.warning("%s", row["error"])
        elif row.get("damaged"):
            result.damaged[row["source"]] = row["damaged"]
            log.warning("%s: damaged file (%s); colorized anyway", row["source"], row["damaged"])
        bar.update(1)
        bar.set_postfix(MPps=f"{result.megapixels / max(time.perf_counter() - t0, 1e-9):.2f}",
                        failed=len(result.failed))

    try:
        if client is None:
            _run_local(sources, names, job, collect, workers=int(workers or os.cpu_count() or 1),
                       batch=int(batch or default_batch(dev)), times=result.stage_times)
        else:
            from distributed import as_completed

            # the job (with a weighted calibration's per-photo lambdas) goes to each worker once, not with every task
            shared = client.scatter(job, broadcast=True)
            futures = {client.submit(_process, s, n, shared, in_worker=True, pure=False): (s, n)
                       for s, n in zip(sources, names)}
            for fut in as_completed(futures):
                collect(_worker_result(fut, *futures[fut], job))
    finally:
        bar.close()
        if lock is not None:
            lock.unlink(missing_ok=True)
    result.seconds = time.perf_counter() - t0
    if result.stage_times.seconds:
        log.info("archive stages: %s", result.stage_times.summary())
    return result


def _worker_result(fut, source: Source, name: str, job: _Job) -> dict:
    """A dask worker's row; a task that died (a worker killed by a crash, a lost
    connection) becomes the image's failure record, like any other exception."""
    try:
        return fut.result()
    except ColorcubeError:
        raise  # the output itself is unwritable: every image would fail
    except Exception as exc:  # noqa: BLE001
        error = _one_line(source.label, exc)
        _record_failure(job.out, name, source, error)
        return {"name": name, "source": source.label, "status": "failed", "error": error, "megapixels": 0.0}


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
    """:func:`colorcube.triage.band_summary` of a photo's stored band, read chunk by chunk."""
    return band_summary(open_cube(job.out, group=f"images/{name}", chunks={})["interval"])
