"""Colour quality of colorcube vs the gray baseline and vs colorcube without guided upsampling.

    python benchmarks/quality.py [FOLDER] [--limit N] [--working-size S]

FOLDER defaults to ../shared/data/bench (colour photos). Gray inputs are made
with PIL ``convert("L")``. Prints mean PSNR (dB), mean CIEDE2000, colourfulness
(Hasler-Suesstrunk) as a ratio to the truth's, and edge error (mean CIEDE2000
within 3 px of the truth's chroma edges) for each method, scored on the colours
as stored (8-bit). The float32-network row checks the shipped bfloat16 network
(the acceptance bar: PSNR within 0.1 dB).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from colorcube.inputs.images import list_images, read_truth
from colorcube.metrics import chroma_edges, ciede2000, colorfulness, psnr
from colorcube.network.weights import load_model
from colorcube.render.predict import predict_bands
from colorcube.settings import PipelineSettings

DEFAULT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "bench"


def scores(pred, truth, edges):
    de = ciede2000(pred, truth)
    return {"psnr": psnr(pred, truth), "ciede2000": float(de.mean()), "colorfulness": colorfulness(pred),
            "edge_error": float(de[edges].mean()) if edges.any() else np.nan}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", nargs="?", default=str(DEFAULT))
    ap.add_argument("--limit", type=int, default=None, help="first N photos only")
    ap.add_argument("--working-size", type=int, default=384)
    args = ap.parse_args()
    paths = list_images(args.folder)[: args.limit]
    model = load_model(device="cpu")
    methods = {"colorcube": PipelineSettings(working_size=args.working_size),
               "colorcube (float32 network)": PipelineSettings(working_size=args.working_size, precision="float32"),
               "colorcube (no guided upsampling)": PipelineSettings(working_size=args.working_size, guided=False)}
    rows = {name: [] for name in ["gray baseline", *methods]}
    truth_cf = []
    t0 = time.perf_counter()
    for p in paths:
        truth, gray = read_truth(p)
        edges = chroma_edges(truth)
        truth_cf.append(colorfulness(truth))
        rows["gray baseline"].append(scores(np.repeat(gray[..., None], 3, axis=2), truth, edges))
        for name, settings in methods.items():
            stored = np.round(predict_bands(gray, model, settings)[0] * 255) / np.float32(255)
            rows[name].append(scores(stored.astype(np.float32), truth, edges))
    cf_truth = float(np.mean(truth_cf))
    print(f"{len(paths)} photos from {args.folder} ({time.perf_counter() - t0:.0f} s), model {model.weights_name} "
          f"{model.weights_hash[:12]}, working size {args.working_size}")
    print(f"{'method':34s} {'PSNR dB':>8s} {'CIEDE2000':>10s} {'colourf.':>9s} {'ratio':>6s} {'edge err':>9s}")
    gray_de = np.mean([r["ciede2000"] for r in rows["gray baseline"]])
    gray_psnr = np.mean([r["psnr"] for r in rows["gray baseline"]])
    for name, rs in rows.items():
        m = {k: float(np.nanmean([r[k] for r in rs])) for k in rs[0]}
        print(f"{name:34s} {m['psnr']:8.2f} {m['ciede2000']:10.2f} {m['colorfulness']:9.1f} "
              f"{m['colorfulness'] / cf_truth:6.2f} {m['edge_error']:9.2f}"
              + ("" if name == "gray baseline" else
                 f"   (PSNR {m['psnr'] - gray_psnr:+.2f} dB, CIEDE2000 {100 * (m['ciede2000'] / gray_de - 1):+.1f} %)"))
    print(f"{'ground truth colourfulness':34s} {'':8s} {'':10s} {cf_truth:9.1f} {1.0:6.2f}")


if __name__ == "__main__":
    main()
