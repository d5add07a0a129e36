"""Choices made on the validation split of train/: vividness, guided filter and the band scale.

    python benchmarks/validation.py [--train-dir DIR] [--weights W.safetensors] [--limit N]

The split is the training code's own (``colorcube.network.train.train_v2.split_by_source``: per
source, by a hash of the file name, seed 0), never calib/ or bench/. For each
vividness it prints the PSNR and CIEDE2000 change against the gray input and
the colourfulness ratio to the truth; then, for the guided filter's radius and
eps, PSNR and CIEDE2000; then, for three band shapes around the colour
estimate, the mean band width (0-255) and coverage at alpha 0.1 after CRC
calibration on one half of the split and testing on the other half: a
constant band, the colour distribution's spread, and the learned error head
(the shipped default).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from colorcube.conformal.estimators import crc_lambda, lambda_star, loss_curve
from colorcube.inputs.images import list_images, read_truth
from colorcube.metrics import ciede2000, colorfulness, psnr
from colorcube.network.train.train_v2 import TrainOptions
from colorcube.network.train.trainset import split_by_source
from colorcube.network.weights import load_model, load_weights
from colorcube.render.bands import nested_interval
from colorcube.render.predict import predict_bands
from colorcube.settings import PipelineSettings

DEFAULT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "train"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-dir", default=str(DEFAULT))
    ap.add_argument("--weights", help="a .safetensors file (default: the shipped weights)")
    ap.add_argument("--vividness", type=float, nargs="+", default=[0.2, 0.25, 0.3, 0.4, 0.5])
    ap.add_argument("--limit", type=int, help="use every k-th validation photo so that about N remain")
    args = ap.parse_args()
    model = load_weights(args.weights) if args.weights else load_model(device="cpu")
    opts = TrainOptions()
    _, val, _ = split_by_source(list_images(args.train_dir), val_fraction=opts.val_fraction,
                                error_split=opts.error_split, seed=opts.seed)
    if args.limit:
        val = val[:: max(1, len(val) // args.limit)]
    data = [read_truth(p) for p in val]
    print(f"{len(data)} validation photos of {args.train_dir}; model {model.weights_name} {model.weights_hash[:12]}")
    print(f"{'vividness':>9s} {'PSNR vs gray':>13s} {'CIEDE2000 vs gray':>18s} {'colourfulness':>14s}")
    for t in args.vividness:
        rows = []
        for truth, gray in data:
            rgb = predict_bands(gray, model, PipelineSettings(vividness=t))[0]
            g3 = np.repeat(gray[..., None], 3, axis=2)
            rows.append([psnr(rgb, truth) - psnr(g3, truth), ciede2000(rgb, truth).mean(),
                         ciede2000(g3, truth).mean(), colorfulness(rgb), colorfulness(truth)])
        r = np.mean(rows, axis=0)
        print(f"{t:9.2f} {r[0]:+10.2f} dB {100 * (r[1] / r[2] - 1):+16.1f} % {r[3] / r[4]:14.2f}")

    print(f"{'guided filter':>22s} {'PSNR vs gray':>13s} {'CIEDE2000':>10s}")
    for label, kw in (("radius 2, eps 1e-3 (shipped)", {}), ("radius 1, eps 1e-3", {"radius": 1}),
                      ("radius 2, eps 1e-4", {"eps": 1e-4}), ("radius 1, eps 1e-4", {"radius": 1, "eps": 1e-4}),
                      ("none (bilinear)", {"guided": False})):
        r = np.mean([[psnr(rgb := predict_bands(gray, model, PipelineSettings(**kw))[0], truth)
                      - psnr(np.repeat(gray[..., None], 3, axis=2), truth), ciede2000(rgb, truth).mean()]
                     for truth, gray in data], axis=0)
        print(f"{label:>30s} {r[0]:+8.2f} dB {r[1]:10.2f}")

    shapes = {"constant 0.1": [], "distribution spread": [], "learned error head (shipped)": []}
    for truth, gray in data:
        rgb, lower, upper = predict_bands(gray, model, PipelineSettings())
        shapes["constant 0.1"].append((truth, rgb, rgb - 0.1, rgb + 0.1))
        shapes["learned error head (shipped)"].append((truth, rgb, lower, upper))
        _, lower, upper = predict_bands(gray, model, PipelineSettings(scale="spread"))
        shapes["distribution spread"].append((truth, rgb, lower, upper))
    order = np.random.default_rng(0).permutation(len(data))
    cal, test = order[: len(data) // 2], order[len(data) // 2 :]
    print(f"band shapes, alpha 0.1, CRC on {len(cal)} photos, tested on {len(test)}:")
    for name, recs in shapes.items():
        curves = np.stack([loss_curve(lambda_star(f, lo, hi, t).reshape(-1, 3)) for t, f, lo, hi in
                           (recs[i] for i in cal)])
        lam = np.array([crc_lambda(curves[:, c], 0.1) for c in range(3)])
        cov, width = [], []
        for t, f, lo, hi in (recs[i] for i in test):
            a, b = nested_interval(f, lo, hi, lam)
            cov.append(((t >= a) & (t <= b)).reshape(-1, 3).mean(axis=0))
            width.append(((b - a) * 255).reshape(-1, 3).mean(axis=0))
        print(f"  {name:30s} width {np.mean(width):5.1f} (R, G, B {', '.join(f'{v:.1f}' for v in np.mean(width, 0))})"
              f"  coverage {', '.join(f'{v:.3f}' for v in np.mean(cov, 0))}")


if __name__ == "__main__":
    main()
