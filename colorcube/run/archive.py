"""Folders of scans -> one zarr archive of cubes, in bounded memory, resumable.

Layout of an archive (zarr v3, a local path or any fsspec URL)::

    OUT.zarr/images/<name>/{gray, rgb, interval}   one cube per source image
    OUT.zarr/images/<name>.attrs["colorcube_status"]  "incomplete" | "complete" | "failed"

A group is written with status "incomplete" and marked "complete" only after
all its arrays are written, so a crash never leaves a half-written image that
looks finished. Re-running the same command skips complete images whose
source hash is unchanged and redoes the rest.

On one machine, images of up to four chunks go through three overlapped stages
(:func:`colorcube.run.batch.run_overlapped`): read (threads), the network batched across
images of one input shape (:func:`colorcube.network.working.network_maps`), then the guided
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
import logging
import os
import time
from pathlib import Path

import zarr
from tqdm.auto import tqdm

import colorcube

from ..cube.index import acquire_lock
from ..errors import ColorcubeError, HintError, OptionError
from ..inputs.images import DEFAULT_MAX_PIXELS
from ..inputs.sources import Source, group_name, list_sources, source_pixels
from ..network.weights import default_weights_path, select_device
from ..network.working import (
    default_batch,
)
from ..render.codes import check_compression
from .archive_steps import Job, finish, in_memory, model_for, network, one_line, prepare, process, record_failure
from .batch import StageTimes, run_overlapped
from .pipeline import prepare_run

__all__ = ["ArchiveResult", "colorize_archive"]

log = logging.getLogger(__name__)


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


def _run_local(sources, names, job, collect, *, workers, batch, times) -> None:
    """Small images through the overlapped stages (:func:`colorcube.run.batch.run_overlapped`), the
    network batched; large ones after them, one at a time, chunk by chunk.

    torch gets every core for the network; the other stages run one thread each.
    """
    small, large = [], []
    for item in zip(sources, names):
        (small if in_memory(source_pixels(item[0]), job.chunk) else large).append(item)
    run_overlapped(small, prepare=lambda item: prepare(*item, job),
                   key=lambda w: "hints" if w.inp is None else tuple(w.inp.padded.shape),
                   network=lambda works: network(works, job), finish=lambda w, c: finish(w, c, job, times),
                   collect=collect, batch=batch, workers=workers, times=times)
    for source, name in large:
        collect(times.timed("large images", process, source, name, job))


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
        :func:`colorcube.cube.store.zarr_compressors`
    allow_damaged : bool, colorize files with detectable damage (:func:`colorcube.inputs.images.find_damage`,
        e.g. a PNG chunk with a wrong CRC) instead of refusing them; each is logged as a warning,
        listed in the result's ``damaged`` and marked in the index's ``damaged`` column
    hints : optional folder of per-image hint files, ``<image stem>.json`` or ``<image stem>.png``
        (see :mod:`colorcube.guidance.hints`); images without one are colorized without hints. The
        hints are stored in each cube; a changed hint file makes a re-run redo that image
    batch : int, images per network call (default :func:`colorcube.network.working.default_batch`: 8 on
        a CPU, 32 on a GPU); images up to four chunks are read, batched and written overlapped
        (:func:`colorcube.run.batch.run_overlapped`), larger ones follow one at a time, chunk by chunk

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
    run = prepare_run(alpha=alpha, model=model_for(weights, dev), calibration=calibration, settings=settings)
    out = str(out)
    try:
        zarr.open_group(out, mode="a").attrs.update({"colorcube_archive": 1})
    except OSError as exc:
        raise ColorcubeError(f"{out}: cannot create the archive ({exc.strerror or exc})") from exc
    lock = acquire_lock(out)
    job = Job(out=out, weights=weights, device=dev, run=dataclasses.replace(run, model=None, calibration=None),
               chunk=int(chunk), max_pixels=DEFAULT_MAX_PIXELS if max_pixels == "default" else max_pixels,
               compression=compression, allow_damaged=bool(allow_damaged), hints=None if hints is None else str(hints))
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
            # the job (with a weighted calibration's per-photo lambdas) goes to each worker once, not with every task
            shared = client.scatter(job, broadcast=True)
            futures = {client.submit(process, s, n, shared, in_worker=True, pure=False): (s, n)
                       for s, n in zip(sources, names)}
            for fut in colorcube._deferred("distributed", extra="distributed").as_completed(futures):
                collect(_worker_result(fut, *futures[fut], job))
    finally:
        bar.close()
        if lock is not None:
            lock.unlink(missing_ok=True)
    result.seconds = time.perf_counter() - t0
    if result.stage_times.seconds:
        log.info("archive stages: %s", result.stage_times.summary())
    return result


def _worker_result(fut, source: Source, name: str, job: Job) -> dict:
    """A dask worker's row; a task that died (a worker killed by a crash, a lost
    connection) becomes the image's failure record, like any other exception."""
    try:
        return fut.result()
    except ColorcubeError:
        raise  # the output itself is unwritable: every image would fail
    except Exception as exc:  # noqa: BLE001
        error = one_line(source.label, exc)
        record_failure(job.out, name, source, error)
        return {"name": name, "source": source.label, "status": "failed", "error": error, "megapixels": 0.0}


