"""Archive throughput: local threads vs a 2-worker LocalCluster, and the cost of a resume.

    python benchmarks/archive.py [FOLDER] [--limit 200] [--chunk 1024]

FOLDER defaults to ../shared/data/bench (colour photos; they are read as gray).
Prints images/s and MP/s for each way of running, measured in this one run,
and the time of re-running over the complete archive (every image skipped).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import time
from pathlib import Path

from colorcube.archive import colorize_archive, list_sources

DEFAULT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "bench"


def timed(label, fn):
    t0 = time.perf_counter()
    res = fn()
    dt = time.perf_counter() - t0
    n = len(res.done) + len(res.skipped)
    print(f"{label:34s} {n:4d} images in {dt:6.1f} s: {n / dt:6.2f} images/s, {res.megapixels / dt:6.2f} MP/s"
          f" ({len(res.done)} computed, {len(res.skipped)} skipped, {len(res.failed)} failed)")
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", nargs="?", default=str(DEFAULT))
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--chunk", type=int, default=1024)
    args = ap.parse_args()
    logging.getLogger("distributed").setLevel(logging.ERROR)
    paths = [s.path for s in list_sources(args.folder)][: args.limit]
    tmp = Path(tempfile.mkdtemp())
    try:
        local = timed("local threads", lambda: colorize_archive(paths, tmp / "a.zarr", chunk=args.chunk,
                                                                progress=False))
        resume = timed("resume over the complete archive", lambda: colorize_archive(paths, tmp / "a.zarr",
                                                                                  chunk=args.chunk, progress=False))
        from distributed import Client, LocalCluster

        with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, \
                Client(cluster) as client:
            dist = timed("LocalCluster, 2 workers", lambda: colorize_archive(paths, tmp / "b.zarr",
                                                                            chunk=args.chunk, client=client,
                                                                            progress=False))
        print(f"ratios in this run: LocalCluster / local time {dist / local:.2f}; resume / first run {resume / local:.3f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
