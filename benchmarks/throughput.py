"""Speed of colorcube against the machine's conv throughput and the ECCV16 architecture.

    python benchmarks/throughput.py [--device cpu|cuda] [--repeats 5]

Prints, in one run:
  * the model's FLOPs per working-resolution pixel (torch.utils.flop_counter),
  * the attainable conv throughput of this machine (3x3 conv, 256 -> 256 channels,
    64 x 64, batch 4) in the shipped network's dtype and layout (bf16,
    channels-last) and in fp32, and the model stage's share of each,
  * end-to-end seconds and MP/s for a 1-MP and a 16-MP photo (read -> colorize ->
    intervals -> zarr write, ``colorize(path, out=store)``) with the share of
    time per stage,
  * the per-image time of a re-implementation of Zhang et al. (ECCV 2016):
    VGG-style trunk with dilated blocks, 313-bin head, 256 x 256 input, random
    weights (speed only), decoded and upsampled to the photo, in fp32 as
    published (the acceptance reference) and in bf16 channels-last,
  * what the choices cost or save: the float32 network, BatchNorm folding, and
    zarr codecs for the 1-MP cube.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F


def eccv16() -> nn.Sequential:
    """Zhang, Isola & Efros (2016) colorization network, as published (Caffe prototxt)."""

    def block(cin, cout, n, *, stride_last=1, dilation=1):
        layers = []
        for i in range(n):
            s = stride_last if i == n - 1 else 1
            layers += [nn.Conv2d(cin if i == 0 else cout, cout, 3, stride=s, padding=dilation, dilation=dilation),
                       nn.ReLU(inplace=True)]
        return layers + [nn.BatchNorm2d(cout)]

    return nn.Sequential(
        *block(1, 64, 2, stride_last=2), *block(64, 128, 2, stride_last=2), *block(128, 256, 3, stride_last=2),
        *block(256, 512, 3), *block(512, 512, 3, dilation=2), *block(512, 512, 3, dilation=2),
        *block(512, 512, 3),
        nn.ConvTranspose2d(512, 256, 4, stride=2, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(256, 256, 3, padding=1),
        nn.ReLU(inplace=True), nn.Conv2d(256, 313, 1),
    ).eval()


def timeit(fn, repeats: int, device) -> float:
    """Median seconds of ``fn()`` after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def flops(module, x) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as fc:
        module(x)
    return fc.get_total_flops()


def run_child(cmd, **kwargs) -> tuple[int, str, str, float, float]:
    """Run ``cmd``: (return code, stdout, stderr, wall seconds, peak RSS in MiB of that child
    alone). ``os.wait4`` reports the child's own peak, where ``getrusage(RUSAGE_CHILDREN)``
    would give the largest of every child this process ever waited for (dask workers too)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, **kwargs)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        return proc.returncode, out.read(), err.read(), seconds, usage.ru_maxrss / 1024  # KiB on Linux


def attainable(dev, dtype, repeats: int) -> float:
    """GFLOP/s of a 3x3, 256 -> 256 convolution on 64 x 64 maps, batch 4: what this machine's
    convolutions reach in ``dtype``, in the layout the pipeline runs the network in (a bf16
    copy in channels-last; fp32 as is)."""
    low = dtype != torch.float32
    conv = nn.Conv2d(256, 256, 3, padding=1, bias=False).to(dev).eval()
    xc = torch.randn(4, 256, 64, 64, device=dev)
    if low:
        conv = copy.deepcopy(conv).to(dtype).to(memory_format=torch.channels_last)
        xc = xc.to(dtype).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        seconds = timeit(lambda: conv(xc), repeats, dev)
    return 2 * 256 * 256 * 9 * 64 * 64 * 4 / seconds / 1e9


def codecs(ds, tmp: Path, cube_to_zarr) -> None:
    """Write time and size of the 1-MP cube (storage codes) with each compression choice."""
    from colorcube.render.codes import COMPRESSIONS

    for name in COMPRESSIONS:
        path = tmp / f"codec-{name}.zarr"
        seconds = timeit(lambda: cube_to_zarr(ds, path, compression=name), 5, torch.device("cpu"))
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20
        shipped = " (default)" if name == "none" else ""
        print(f"  zarr compression {name + shipped:14s}: {seconds * 1e3:5.0f} ms, {size:5.1f} MiB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    from PIL import Image
    from skimage import data

    from colorcube import colorize
    from colorcube.color import gray_to_lightness, lab_to_rgb
    from colorcube.conformal.lookup import resolve_calibration
    from colorcube.cube.attrs import cube_attrs
    from colorcube.cube.schema import code_dataset
    from colorcube.cube.store import cube_to_zarr
    from colorcube.inputs.images import read_gray
    from colorcube.network.weights import load_model
    from colorcube.network.working import working_stage
    from colorcube.render.codes import encode_gray
    from colorcube.render.fullres import stage_codes
    from colorcube.settings import PipelineSettings

    dev = torch.device(args.device)
    model = load_model(device=dev)
    cal = resolve_calibration("default", model)
    settings = PipelineSettings.of(cal)
    lam = cal.lambda_for(0.1)
    print(f"device {dev} ({torch.cuda.get_device_name() if dev.type == 'cuda' else f'{torch.get_num_threads()} threads'}),"
          f" torch {torch.__version__}, working size {settings.working_size}, network {settings.precision}")

    side = settings.working_size
    x = torch.full((1, 1, side, side), 50.0, device=dev).contiguous(memory_format=torch.channels_last)
    per_px = flops(model, x) / side**2
    print(f"model: {per_px / 1e3:.1f} kFLOP per working pixel; {per_px * side**2 / 1e9:.2f} GFLOP at {side} x {side}")
    from colorcube.network.decode import _in_dtype

    for dtype in (torch.bfloat16, torch.float32):
        low = dtype != torch.float32
        net = _in_dtype(model, dtype)
        with torch.inference_mode():
            t_model = timeit(lambda: net(x), args.repeats, dev)
        peak, achieved = attainable(dev, dtype, args.repeats), per_px * side**2 / t_model / 1e9
        layout = "bf16 channels-last (shipped)" if low else "fp32"
        print(f"{layout:29s} attainable conv (3x3, 256->256, 64x64, batch 4) {peak:5.0f} GFLOP/s; model stage "
              f"{t_model * 1e3:4.0f} ms, {achieved:5.0f} GFLOP/s = {achieved / peak:.0%} of attainable")

    from safetensors.torch import load_file

    from colorcube.network.weights import build_network, default_weights_path

    unfolded = build_network(model.config).to(dev).eval().to(memory_format=torch.channels_last)
    unfolded.load_state_dict({k: v.float() for k, v in load_file(str(default_weights_path())).items()})
    unfolded = unfolded.to(torch.bfloat16)
    with torch.inference_mode():
        t_folded = timeit(lambda: _in_dtype(model, torch.bfloat16)(x), args.repeats, dev)
        t_unfolded = timeit(lambda: unfolded(x), args.repeats, dev)
    print(f"BatchNorm folded into the convolutions (shipped) {t_folded * 1e3:.0f} ms against "
          f"{t_unfolded * 1e3:.0f} ms unfolded (bf16)")

    ref = eccv16().to(dev)
    ref_bins = torch.randn(313, 2, device=dev)
    xr = torch.zeros(1, 1, 256, 256, device=dev)
    print(f"ECCV16 reference: {flops(ref, xr) / 1e9:.1f} GFLOP per 256 x 256 image")

    photo = Image.fromarray(data.astronaut()).convert("L")
    with tempfile.TemporaryDirectory() as tmp:
        for mp in (1, 16):
            s = int(round(1000 * mp**0.5))
            path = Path(tmp) / f"p{mp}.png"
            photo.resize((s, s), Image.Resampling.LANCZOS).save(path, compress_level=1)
            out = Path(tmp) / f"c{mp}.zarr"
            stages, cubes = {}, {}

            def run():
                # colorize(path, out=...) step by step, to time each stage
                t0 = time.perf_counter()
                gray = read_gray(path)
                t1 = time.perf_counter()
                coeffs = working_stage(gray, model, settings)
                t2 = time.perf_counter()
                codes = stage_codes(gray, coeffs, lam)
                codes["gray"] = encode_gray(gray)
                ds = code_dataset(codes, cube_attrs(alpha=0.1, lam=lam, calibration=cal, model=model,
                                                    settings=settings.as_dict(model), source=str(path)),
                                  (coeffs.coef, coeffs.extent))
                cubes[mp] = ds
                t3 = time.perf_counter()
                cube_to_zarr(ds, out)
                t4 = time.perf_counter()
                for k, v in (("read", t1 - t0), ("network + guided coefficients", t2 - t1),
                             ("full-resolution stage + intervals", t3 - t2), ("zarr write", t4 - t3)):
                    stages.setdefault(k, []).append(v)

            staged = timeit(run, args.repeats, dev)
            total = timeit(lambda: colorize(path, model=model, calibration=cal, out=out), args.repeats, dev)
            share = ", ".join(f"{k} {statistics.median(v) / staged:.0%}" for k, v in stages.items())
            print(f"{mp:2d}-MP photo ({s} x {s}), colorize(path, out=zarr): {total:.3f} s, {mp / total:.2f} MP/s "
                  f"(stages one after another {staged:.3f} s: {share})")

            if mp == 1:
                gray = read_gray(path)

                def ref_run(net, dtype):
                    with torch.inference_mode():
                        g = torch.from_numpy(gray).to(dev)
                        small = F.interpolate(g[None, None], size=(256, 256), mode="bilinear", antialias=True)
                        with torch.autocast(dev.type, dtype=dtype, enabled=dtype != torch.float32):
                            logits = net(small * 100.0 - 50.0).float()
                        p = torch.softmax(logits / 0.38, dim=1)  # annealed mean, T = 0.38 as published
                        ab = torch.einsum("bqhw,qc->bchw", p, ref_bins)
                        ab = F.interpolate(ab, size=g.shape, mode="bilinear")
                        return lab_to_rgb(torch.cat([gray_to_lightness(g)[None, None], ab], dim=1))

                t_ref = timeit(lambda: ref_run(ref, torch.float32), args.repeats, dev)
                ref_cl = eccv16().to(dev).to(memory_format=torch.channels_last)
                t_ref16 = timeit(lambda: ref_run(ref_cl, torch.bfloat16), args.repeats, dev)
                print(f"1-MP photo: ECCV16 image in -> colour out {t_ref:.3f} s (fp32, as published); colorcube "
                      f"end to end (read -> zarr) {total:.3f} s: ECCV16 / colorcube = {t_ref / total:.1f}x")
                print(f"  ECCV16 with the same bf16 channels-last treatment: {t_ref16:.3f} s "
                      f"({t_ref16 / total:.1f}x colorcube's end-to-end time)")
                f32 = PipelineSettings(**{**settings.as_dict(), "precision": "float32"})
                t_f32 = timeit(lambda: working_stage(gray, model, f32), args.repeats, dev)
                t_b16 = timeit(lambda: working_stage(gray, model, settings), args.repeats, dev)
                print(f"  working stage with the network in float32 {t_f32 * 1e3:.0f} ms against "
                      f"{t_b16 * 1e3:.0f} ms in bfloat16 (shipped)")
                codecs(cubes[1], Path(tmp), cube_to_zarr)


if __name__ == "__main__":
    main()
