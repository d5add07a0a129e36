"""Archive throughput against the ECCV16 network's own time, the network's utilisation, memory.

    python benchmarks/archive.py [FOLDER] [--limit 80] [--chunk 1024] [--device cpu|cuda]
                                 [--memory 200] [--no-cluster]

FOLDER defaults to ../shared/data/bench (colour photos; they are read as gray).
Prints, measured in this one run:

* the ECCV16 network's own time per image (Zhang et al. 2016, fp32 as published,
  256 x 256, batch 1; ``benchmarks/throughput.py`` builds it),
* the archive of the first LIMIT photos (local threads, batched network, overlapped
  stages): images/s, MP/s, and images/s times the ECCV16 time (how many images the
  archive finishes in the time ECCV16's network colours one); the busy time per stage,
* the model stage's share of the attainable bf16 convolution throughput, inside the
  archive (network FLOPs / network busy time; the attainable measured just before and
  just after the archive, since this machine changes state) and by batch size 1 to 16 alone,
* re-running over the complete archive, a 2-worker ``LocalCluster`` (unless --no-cluster),
* the peak resident memory of ``colorcube archive`` over MEMORY photos in a child
  process, and on a GPU the mean GPU utilisation during the archive (needs pynvml).
"""

from __future__ import annotations

import argparse
import collections
import logging
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch
from PIL import Image
from throughput import attainable, eccv16, flops, run_child, timeit

from colorcube.inputs.sources import list_sources
from colorcube.network.decode import _in_dtype, predict
from colorcube.network.weights import load_model, select_device
from colorcube.network.working import network_shape
from colorcube.run.archive import colorize_archive
from colorcube.settings import PipelineSettings

DEFAULT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "bench"


def timed(label, fn):
    t0 = time.perf_counter()
    res = fn()
    dt = time.perf_counter() - t0
    n = len(res.done) + len(res.skipped)
    print(f"{label:34s} {n:4d} images in {dt:6.2f} s: {n / dt:6.2f} images/s, {res.megapixels / dt:6.2f} MP/s"
          f" ({len(res.done)} computed, {len(res.skipped)} skipped, {len(res.failed)} failed)")
    return dt, res


def gpu_sampler(dev):
    """(stop, samples): a thread sampling the GPU's utilisation every 50 ms; None without pynvml."""
    if dev.type != "cuda":
        return None
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(dev.index or 0)
    except Exception:  # noqa: BLE001 - optional measurement
        return None
    stop, samples = threading.Event(), []

    def run():
        while not stop.wait(0.05):
            samples.append(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)

    threading.Thread(target=run, daemon=True).start()
    return stop, samples


def peak_memory(paths, n: int, tmp: Path, chunk: int, device: str) -> None:
    """Peak RSS of ``colorcube archive`` over ``n`` photos, in a child process."""
    listing = tmp / "memory.txt"
    listing.write_text("\n".join(str(p) for p in (paths * (n // max(len(paths), 1) + 1))[:n]))
    cmd = [sys.executable, "-m", "colorcube.apps.cli", "archive", str(listing), str(tmp / "memory.zarr"),
           "--chunk", str(chunk), "--device", device]
    code, _, err, seconds, peak = run_child(cmd)
    if code:
        sys.exit(f"colorcube archive failed:\n{err}")
    print(f"colorcube archive of {n} photos in a child process: peak RSS {peak:.0f} MiB, {seconds:.1f} s "
          f"(with interpreter start and model load)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", nargs="?", default=str(DEFAULT))
    ap.add_argument("--limit", type=int, default=80)
    ap.add_argument("--chunk", type=int, default=1024)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--memory", type=int, default=200, help="photos for the peak-memory run (0: skip)")
    ap.add_argument("--no-cluster", action="store_true")
    args = ap.parse_args()
    logging.getLogger("distributed").setLevel(logging.ERROR)
    dev = select_device(args.device)
    paths = [s.path for s in list_sources(args.folder)]
    chosen = paths[: args.limit]
    name = torch.cuda.get_device_name() if dev.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device {dev} ({name}), torch {torch.__version__}, {len(chosen)} photos from {args.folder}")

    ref = eccv16().to(dev)
    x_ref = torch.zeros(1, 1, 256, 256, device=dev)
    with torch.inference_mode():
        t_eccv = timeit(lambda: ref(x_ref), args.repeats, dev)
    print(f"ECCV16 network alone (fp32 as published, 256 x 256, batch 1): {t_eccv * 1e3:.0f} ms per image")

    tmp = Path(tempfile.mkdtemp())
    try:
        colorize_archive(chosen[:8], tmp / "warm.zarr", chunk=args.chunk, device=args.device, progress=False)
        settings = PipelineSettings()
        low = torch.bfloat16 if settings.precision == "bfloat16" else torch.float32
        # this machine's convolution throughput changes state within minutes (bf16 measured ~800 or
        # ~2,700 GFLOP/s on the 2-core AMX CPU): measured just before and just after the archive
        peak_before = attainable(dev, low, args.repeats)
        sampler = gpu_sampler(dev)
        dt, res = timed("archive, local threads", lambda: colorize_archive(
            chosen, tmp / "a.zarr", chunk=args.chunk, device=args.device, progress=False))
        if sampler is not None:
            sampler[0].set()
            print(f"GPU utilisation during the archive: mean {statistics.mean(sampler[1] or [0]):.0f} %")
        n = len(res.done)
        peak_after = attainable(dev, low, args.repeats)
        print(f"  = {n / dt * t_eccv:.1f} x: images the archive finishes in the ECCV16 network's time for one")
        print(f"  stages: {res.stage_times.summary()}")

        model = load_model(device=dev)
        shapes = collections.Counter()
        for p in chosen:
            with Image.open(p) as im:
                shapes[network_shape((im.height, im.width), settings)] += 1
        side = settings.working_size
        x = torch.full((1, 1, side, side), 50.0, device=dev).contiguous(memory_format=torch.channels_last)
        per_px = flops(model, x) / side**2
        peak = attainable(dev, low, args.repeats)
        net_flop = sum(per_px * h * w * k for (h, w), k in shapes.items())
        busy = res.stage_times.seconds.get("network", float("nan"))
        print(f"attainable conv ({low}, 3x3 256->256, 64x64, batch 4): {peak_before:.0f} GFLOP/s just before the "
              f"archive, {peak_after:.0f} just after, {peak:.0f} now")
        achieved = net_flop / busy / 1e9
        print(f"model stage in the archive (the network; its outputs are decoded while finishing): {achieved:.0f} "
              f"GFLOP/s = {achieved / peak_before:.0%} / {achieved / peak_after:.0%} of attainable before / after "
              f"(network FLOPs / its busy time, batches of "
              f"{sum(res.stage_times.batches) / max(len(res.stage_times.batches), 1):.1f})"
              + ("" if max(peak_before, peak_after) < 1.5 * min(peak_before, peak_after) else
                 "; the machine changed state during the archive: run again"))
        net = _in_dtype(model, low)
        (h, w), _ = shapes.most_common(1)[0]
        xb = torch.full((16, 1, h, w), 50.0, device=dev).contiguous(memory_format=torch.channels_last)
        for b in (1, 2, 4, 8, 16):
            with torch.inference_mode():
                t = timeit(lambda b=b: net(xb[:b]), args.repeats, dev) / b
                t_dec = timeit(lambda b=b: predict(model, xb[:b], dtype=low), args.repeats, dev) / b
            achieved = per_px * h * w / t / 1e9
            print(f"  network alone at {h} x {w}, batch {b:2d}: {t * 1e3:5.1f} ms per image, {achieved:5.0f} GFLOP/s "
                  f"= {achieved / peak:.0%} of attainable now (with decoding {t_dec * 1e3:5.1f} ms)")

        resume, _ = timed("resume over the complete archive", lambda: colorize_archive(
            chosen, tmp / "a.zarr", chunk=args.chunk, device=args.device, progress=False))
        print(f"  resume / first run {resume / dt:.3f}")
        if not args.no_cluster:
            from distributed import Client, LocalCluster

            with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, \
                    Client(cluster) as client:
                dist, _ = timed("LocalCluster, 2 workers", lambda: colorize_archive(
                    chosen, tmp / "b.zarr", chunk=args.chunk, client=client, device=args.device, progress=False))
            print(f"  LocalCluster / local time {dist / dt:.2f}")
        if args.memory:
            peak_memory(paths, args.memory, tmp, args.chunk, args.device)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
