"""Speed of colorcube against the machine's conv throughput and the ECCV16 architecture.

    python benchmarks/throughput.py [--device cpu|cuda] [--repeats 5]

Prints, in one run:
  * the model's FLOPs per working-resolution pixel (torch.utils.flop_counter),
  * the attainable conv throughput of this machine (3x3 conv, 256 -> 256 channels,
    64 x 64, batch 4, the model's dtype and layout) and the model stage's share of it,
  * end-to-end seconds and MP/s for a 1-MP and a 16-MP photo (read -> colorize ->
    intervals -> zarr write) with the share of time per stage,
  * the same per-image time for a re-implementation of Zhang et al. (ECCV 2016):
    VGG-style trunk with dilated blocks, 313-bin head, 256 x 256 input, random
    weights (speed only), decoded and upsampled to the photo like colorcube,
  * what the choices cost or save: the working stage at one torch thread (as
    shipped, bit-reproducible) against all threads, the network in bf16
    channels-last (not shipped), and zarr codecs for the 1-MP cube.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
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


def codecs(ds, tmp: Path, cube_to_zarr) -> None:
    """Write time and size of the 1-MP cube with each zarr codec."""
    from unittest import mock

    from zarr.codecs import BloscCodec, ZstdCodec

    choices = {"blosc lz4 bitshuffle (shipped)": (BloscCodec(cname="lz4", clevel=1, shuffle="bitshuffle"),),
               "zstd level 1": (ZstdCodec(level=1),), "zstd level 3 (zarr default)": (ZstdCodec(level=3),),
               "none": ()}
    for name, comp in choices.items():
        path = tmp / f"codec-{len(name)}.zarr"
        with mock.patch("colorcube.cube.zarr_compressors", lambda comp=comp: comp):
            seconds = timeit(lambda: cube_to_zarr(ds, path), 3, torch.device("cpu"))
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20
        print(f"  zarr codec {name:28s}: {seconds * 1e3:5.0f} ms, {size:5.1f} MiB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    from PIL import Image
    from skimage import data

    from colorcube.color import gray_to_lightness, lab_to_rgb
    from colorcube.conformal import nested_interval
    from colorcube.cube import build_cube, cube_to_zarr
    from colorcube.io import read_gray
    from colorcube.model import load_pretrained
    from colorcube.pipeline import (
        PipelineSettings,
        _one_torch_thread,
        _working_stage,
        full_stage,
        resolve_calibration,
        working_stage,
    )

    dev = torch.device(args.device)
    model = load_pretrained(device=dev)
    cal = resolve_calibration("default", model)
    settings = PipelineSettings.of(cal)
    lam = cal.lambda_for(0.1)
    print(f"device {dev} ({torch.cuda.get_device_name() if dev.type == 'cuda' else f'{torch.get_num_threads()} threads'}),"
          f" torch {torch.__version__}, working size {settings.working_size}")

    side = settings.working_size
    x = torch.full((1, 1, side, side), 50.0, device=dev)
    per_px = flops(model, x) / side**2
    conv = nn.Conv2d(256, 256, 3, padding=1, bias=False).to(dev).eval()
    xc = torch.randn(4, 256, 64, 64, device=dev)
    with torch.inference_mode():
        t_conv = timeit(lambda: conv(xc), args.repeats, dev)
        t_model = timeit(lambda: model(x), args.repeats, dev)
    peak = 2 * 256 * 256 * 9 * 64 * 64 * 4 / t_conv / 1e9
    achieved = per_px * side**2 / t_model / 1e9
    print(f"model: {per_px / 1e3:.1f} kFLOP per working pixel; {per_px * side**2 / 1e9:.2f} GFLOP at {side} x {side}")
    print(f"attainable conv throughput (3x3, 256->256, 64x64, batch 4, fp32): {peak:.0f} GFLOP/s")
    print(f"model stage: {t_model * 1e3:.0f} ms, {achieved:.0f} GFLOP/s = {achieved / peak:.0%} of attainable")
    with torch.inference_mode(), _one_torch_thread():
        t_one = timeit(lambda: model(x), args.repeats, dev)
    one = per_px * side**2 / t_one / 1e9
    print(f"model stage as the pipeline runs it (one torch thread, for bit-identical results): "
          f"{t_one * 1e3:.0f} ms, {one:.0f} GFLOP/s = {one / peak:.0%} of the {torch.get_num_threads()}-thread figure")

    from safetensors.torch import load_file

    from colorcube.model import ColorNet, default_weights_path

    unfolded = ColorNet(model.config).to(dev).eval()
    unfolded.load_state_dict({k: v.float() for k, v in load_file(str(default_weights_path())).items()})
    with torch.inference_mode():
        t_unfolded = timeit(lambda: unfolded(x), args.repeats, dev)
    print(f"BatchNorm folded into the convolutions (shipped) {t_model * 1e3:.0f} ms against "
          f"{t_unfolded * 1e3:.0f} ms unfolded")

    if dev.type == "cpu":
        import copy

        with torch.inference_mode():
            reference = model(x)[0]
        mcl = copy.deepcopy(model).to(memory_format=torch.channels_last)  # .to() is in place: keep the model
        xcl = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            t_bf = timeit(lambda: mcl(xcl), args.repeats, dev)
            diff = (mcl(xcl)[0].float() - reference).abs().max()
        print(f"not shipped: network in bf16 channels-last {t_bf * 1e3:.0f} ms ({t_model / t_bf:.1f}x the fp32 "
              f"{torch.get_num_threads()}-thread time), largest logit change {float(diff):.3f}")

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
            stages, cubes = {}, {}

            def run():
                t0 = time.perf_counter()
                gray = read_gray(path)
                t1 = time.perf_counter()
                coeffs = working_stage(gray, model, settings)
                t2 = time.perf_counter()
                rgb, lower, upper = (t.cpu().numpy() for t in full_stage(gray, coeffs))
                lo, hi = nested_interval(rgb, lower, upper, lam)
                ds = build_cube(gray, rgb, np.stack([lo, hi], axis=-1), alpha=0.1, lam=lam, calibration=cal,
                                model=model, scale=upper - rgb)
                cubes[mp] = ds
                t3 = time.perf_counter()
                cube_to_zarr(ds, Path(tmp) / f"c{mp}.zarr")
                t4 = time.perf_counter()
                for k, v in (("read", t1 - t0), ("network + guided coefficients", t2 - t1),
                             ("full-resolution stage + intervals", t3 - t2), ("zarr write", t4 - t3)):
                    stages.setdefault(k, []).append(v)

            total = timeit(run, max(2, args.repeats // 2), dev)
            share = ", ".join(f"{k} {statistics.median(v) / total:.0%}" for k, v in stages.items())
            print(f"{mp:2d}-MP photo ({s} x {s}): {total:.3f} s, {mp / total:.2f} MP/s ({share})")

            if mp == 1:
                gray = read_gray(path)

                def ref_run():
                    with torch.inference_mode():
                        g = torch.from_numpy(gray).to(dev)
                        small = F.interpolate(g[None, None], size=(256, 256), mode="bilinear", antialias=True)
                        logits = ref(small * 100.0 - 50.0)
                        p = torch.softmax(logits / 0.38, dim=1)  # annealed mean, T = 0.38 as published
                        ab = torch.einsum("bqhw,qc->bchw", p, ref_bins)
                        ab = F.interpolate(ab, size=g.shape, mode="bilinear")
                        return lab_to_rgb(torch.cat([gray_to_lightness(g)[None, None], ab], dim=1))

                t_ref = timeit(ref_run, args.repeats, dev)
                t_ours = timeit(lambda: full_stage(gray, working_stage(gray, model, settings)), args.repeats, dev)
                print(f"1-MP photo, image in -> colour out: ECCV16 {t_ref:.3f} s, colorcube {t_ours:.3f} s "
                      f"(ECCV16 / colorcube = {t_ref / t_ours:.1f}x)")

                def multi():
                    with torch.inference_mode():
                        return full_stage(gray, _working_stage(gray, model, settings))

                t_multi = timeit(multi, args.repeats, dev)
                print(f"  the same with the working stage on all {torch.get_num_threads()} threads (not shipped: "
                      f"not bit-reproducible across thread counts): {t_multi:.3f} s ({t_ref / t_multi:.1f}x)")
                codecs(cubes[1], Path(tmp), cube_to_zarr)


if __name__ == "__main__":
    main()
