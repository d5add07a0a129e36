"""Choices made on the held-out 5 % of train/: vividness and the band shape.

    python benchmarks/validation.py [--train-dir DIR] [--weights W.safetensors]

The split is the training code's own (hash of the file name, seed 0), never
calib/ or bench/. For each vividness it prints the PSNR and CIEDE2000 change
against the gray input and the colourfulness ratio to the truth; then, for
the guided filter's radius and eps, PSNR and CIEDE2000; then, for four band
shapes around the colour estimate, the mean band width (0-255) and coverage at
alpha 0.1 after CRC calibration on one half of the split and testing on the
other half: a constant band, the distribution spread (shipped), the network's
pinball-trained quantile heads, and the spread mapped monotonically to the
90 % quantile of |error| (map fitted on the calibration half).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from colorcube.calibrate import list_images
from colorcube.color import gray_to_lightness
from colorcube.conformal import crc_lambda, lambda_star, loss_curve, nested_interval
from colorcube.io import read_truth
from colorcube.metrics import ciede2000, colorfulness, psnr
from colorcube.model import OUT_STRIDE, STRIDE, load_pretrained, load_weights
from colorcube.pipeline import PipelineSettings, predict_bands
from colorcube.train import _is_val

DEFAULT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "train"


def head_bands(model, gray, rgb):
    """Bands from the quantile heads: [min(q05, f), max(q95, f)] (images within the working size)."""
    h, w = gray.shape
    lightness = gray_to_lightness(torch.from_numpy(gray))[None, None]
    padded = F.pad(lightness, (0, (-w) % STRIDE, 0, (-h) % STRIDE), mode="replicate")
    with torch.inference_mode():
        quant = torch.sigmoid(model(padded)[1].float())
    q = F.interpolate(quant, scale_factor=OUT_STRIDE, mode="bilinear")[0, :, :h, :w].permute(1, 2, 0).numpy()
    return np.minimum(q[..., :3], rgb), np.maximum(q[..., 3:], rgb)


def quantile_mapped(recs, fit, q=0.9, bins=20):
    """Bands whose half-width is a monotone per-channel map of the spread to the q-quantile of
    |error| at that spread, fitted on the photos ``fit`` (the calibration half)."""
    spread = np.concatenate([(hi - f).reshape(-1, 3) for _, f, _, hi in (recs[i] for i in fit)])
    err = np.concatenate([np.abs(t - f).reshape(-1, 3) for t, f, _, _ in (recs[i] for i in fit)])
    edges = np.quantile(spread, np.linspace(0, 1, bins + 1), axis=0)
    centres, table = (edges[:-1] + edges[1:]) / 2, np.zeros((bins, 3))
    for c in range(3):
        b = np.clip(np.searchsorted(edges[:, c], spread[:, c]) - 1, 0, bins - 1)
        table[:, c] = np.maximum.accumulate([np.quantile(err[b == k, c], q) if (b == k).any() else 0.0
                                             for k in range(bins)])
    out = []
    for t, f, _, hi in recs:
        half = np.stack([np.interp((hi - f)[..., c], centres[:, c], table[:, c]) for c in range(3)], -1) + 1e-3
        out.append((t, f, f - half, f + half))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-dir", default=str(DEFAULT))
    ap.add_argument("--weights", help="a .safetensors file (default: the shipped weights)")
    ap.add_argument("--vividness", type=float, nargs="+", default=[0.2, 0.3, 0.4, 0.5, 1.0])
    args = ap.parse_args()
    model = load_weights(args.weights) if args.weights else load_pretrained(device="cpu")
    val = [p for p in list_images(args.train_dir) if _is_val(p.name, 0.05, 0)]
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

    shapes = {"constant 0.1": [], "distribution spread (shipped)": [], "quantile heads": []}
    for truth, gray in data:
        rgb, lower, upper = predict_bands(gray, model, PipelineSettings())
        shapes["constant 0.1"].append((truth, rgb, rgb - 0.1, rgb + 0.1))
        shapes["distribution spread (shipped)"].append((truth, rgb, lower, upper))
        shapes["quantile heads"].append((truth, rgb, *head_bands(model, gray, rgb)))
    order = np.random.default_rng(0).permutation(len(data))
    cal, test = order[: len(data) // 2], order[len(data) // 2 :]
    shapes["spread mapped to the 90 % |error| quantile"] = quantile_mapped(shapes["distribution spread (shipped)"], cal)
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
