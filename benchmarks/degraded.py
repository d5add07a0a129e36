"""Quality and coverage on clean photos and on the same photos degraded as archive scans.

    python benchmarks/degraded.py [FOLDER] [--limit N] [--alpha 0.1] [--calibration default|FILE]

FOLDER defaults to ../shared/data/bench. Each photo's gray (PIL ``convert("L")``) is
degraded by the fixed recipe ``colorcube.inputs.degrade.ARCHIVE_SCAN`` (faded contrast, uneven
exposure, blur 1 px, grain 0.03, dust, a scratch, JPEG quality 40; seed = the photo's
index in name order). colorcube keeps the input's lightness, so a degraded input is
scored against the photo's (a, b) at the degraded lightness
(``colorcube.inputs.degrade.reference_rgb``): the best colour it can give, the colour the bands
should hold. Prints, for clean and degraded inputs: PSNR gain over the (clean or
degraded) gray input, CIEDE2000 as a ratio to the gray's, colourfulness as a ratio to
the truth's, and per-channel coverage and mean width (0-255) of the bands as stored at
``--alpha`` with the shipped calibration (or ``--calibration``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from colorcube.conformal.lookup import resolve_calibration
from colorcube.inputs.degrade import archive_scan, reference_rgb
from colorcube.inputs.images import list_images, read_truth
from colorcube.metrics import ciede2000, colorfulness, psnr
from colorcube.network.weights import load_model
from colorcube.render.bands import nested_interval, round_outward
from colorcube.render.predict import predict_bands
from colorcube.settings import PipelineSettings

DEFAULT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "bench"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", nargs="?", default=str(DEFAULT))
    ap.add_argument("--limit", type=int, help="first N photos only")
    ap.add_argument("--alpha", type=float, default=0.1)
    ap.add_argument("--calibration", default="default", help="'default' (shipped) or a .cal file")
    args = ap.parse_args()
    model = load_model(device="cpu")
    cal = resolve_calibration(args.calibration, model)
    settings = PipelineSettings.of(cal)
    lam = cal.lambda_for(args.alpha)
    rows = {"clean": [], "degraded": []}
    t0 = time.perf_counter()
    paths = list_images(args.folder)[: args.limit]
    for i, p in enumerate(paths):
        truth, gray = read_truth(p)
        worn = archive_scan(gray, seed=i)
        ref = reference_rgb(torch.from_numpy(truth).permute(2, 0, 1)[None],
                            torch.from_numpy(worn)[None, None])[0].permute(1, 2, 0).numpy()
        for kind, g, t in (("clean", gray, truth), ("degraded", worn, ref)):
            f, lo, hi = predict_bands(g, model, settings)
            stored = (np.round(f * 255) / 255).astype(np.float32)
            low, up = round_outward(*nested_interval(f, lo, hi, lam))
            g3 = np.repeat(g[..., None], 3, axis=2)
            rows[kind].append({
                "psnr_gain": psnr(stored, t) - psnr(g3, t), "de": float(ciede2000(stored, t).mean()),
                "de_gray": float(ciede2000(g3, t).mean()), "cf": colorfulness(stored), "cf_truth": colorfulness(t),
                "coverage": ((t >= low) & (t <= up)).reshape(-1, 3).mean(axis=0),
                "width": ((up - low) * 255).reshape(-1, 3).mean(axis=0)})
    print(f"{len(paths)} photos of {args.folder} ({time.perf_counter() - t0:.0f} s); model {model.weights_name} "
          f"{model.weights_hash[:12]}; alpha {args.alpha}, lambda R, G, B {', '.join(f'{v:.3f}' for v in lam)}")
    print(f"{'input':9s} {'PSNR-gray':>9s} {'dE/gray':>8s} {'colourf.':>8s} {'coverage R, G, B':>22s} "
          f"{'width R, G, B':>20s}")
    for kind, rs in rows.items():
        cov = np.mean([r["coverage"] for r in rs], axis=0)
        width = np.mean([r["width"] for r in rs], axis=0)
        de = np.mean([r["de"] for r in rs]) / np.mean([r["de_gray"] for r in rs])
        cf = np.mean([r["cf"] for r in rs]) / np.mean([r["cf_truth"] for r in rs])
        print(f"{kind:9s} {np.mean([r['psnr_gain'] for r in rs]):+9.2f} {de:8.3f} {cf:8.2f} "
              f"{', '.join(f'{v:.3f}' for v in cov):>22s} {', '.join(f'{v:.1f}' for v in width):>20s}")


if __name__ == "__main__":
    main()
