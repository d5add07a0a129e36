"""Coverage and width of the shipped calibration on a benchmark, vs a constant-width band.

    python benchmarks/coverage.py [--bench DIR] [--calib DIR] [--limit N]

Both band shapes are calibrated the same way (CRC on the calibration photos,
per channel, bands rounded outward to the 1/255 storage grid as stored):
colorcube's adaptive bands (the spread of the model's colour distribution
scaled by lambda) and a constant band f +/- lambda * 0.1. For alpha in {0.05, 0.1, 0.2}
it prints per-channel coverage (mean over photos) and mean width (0-255) on
the benchmark photos, and the adaptive / constant width ratio. It also times
``Calibration.lambda_for`` (changing alpha needs no model call).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from colorcube.calibrate import list_images
from colorcube.conformal import EPS, LAMBDA_GRID, crc_lambda, lambda_star, loss_curve, nested_interval
from colorcube.fullres import CODE_MAX, round_outward
from colorcube.io import read_truth
from colorcube.model import load_pretrained
from colorcube.pipeline import PipelineSettings, predict_bands, resolve_calibration

ROOT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
CONST = 0.1  # half-width of the constant band before scaling


def bands(paths, model, settings, desc):
    for p in tqdm(paths, desc=desc, unit="img"):
        truth, gray = read_truth(p)
        yield truth, predict_bands(gray, model, settings)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bench", default=str(ROOT / "bench"))
    ap.add_argument("--calib", default=str(ROOT / "calib"))
    ap.add_argument("--limit", type=int, default=None)
    args = ap.parse_args()
    model = load_pretrained(device="cpu")
    cal = resolve_calibration("default", model)
    settings = PipelineSettings.of(cal)
    alphas = (0.05, 0.1, 0.2)

    t0 = time.perf_counter()
    for a in np.linspace(0.02, 0.5, 100):
        cal.lambda_for(a)
    per_alpha_ms = (time.perf_counter() - t0) / 100 * 1e3

    const_curves = []
    for truth, (f, _, _) in bands(list_images(args.calib)[: args.limit], model, settings, "calib (constant)"):
        const_curves.append(loss_curve(lambda_star(f, f - CONST, f + CONST, truth, levels=CODE_MAX).reshape(-1, 3)))
    const_curves = np.stack(const_curves)
    const_lam = {a: np.array([crc_lambda(const_curves[:, c], a) for c in range(3)]) for a in alphas}
    adapt_lam = {a: cal.lambda_for(a) for a in alphas}

    res = {a: {k: [] for k in ("cov_a", "w_a", "cov_c", "w_c")} for a in alphas}
    bench = list_images(args.bench)[: args.limit]
    for truth, (f, lo, hi) in bands(bench, model, settings, "bench"):
        for a in alphas:
            for tag, (l, u) in (("a", round_outward(*nested_interval(f, lo, hi, adapt_lam[a]))),
                                ("c", round_outward(*nested_interval(f, f - CONST, f + CONST, const_lam[a])))):
                res[a][f"cov_{tag}"].append(((truth >= l) & (truth <= u)).reshape(-1, 3).mean(axis=0))
                res[a][f"w_{tag}"].append(((u - l) * 255).reshape(-1, 3).mean(axis=0))
    print(f"calibration: {cal.n} photos ({cal.provenance.get('source')}), method {cal.method}; "
          f"benchmark: {len(bench)} photos from {args.bench}")
    print(f"lambda_for(alpha): {per_alpha_ms:.3f} ms per new alpha, no model call (grid of {len(LAMBDA_GRID)} lambdas)")
    print(f"{'alpha':>5s} {'band':9s} {'coverage R, G, B':>22s} {'width R, G, B (0-255)':>24s}  lambda R, G, B")
    for a in alphas:
        r = res[a]
        for tag, name, lam in (("a", "adaptive", adapt_lam[a]), ("c", "constant", const_lam[a])):
            cov, w = np.mean(r[f"cov_{tag}"], axis=0), np.mean(r[f"w_{tag}"], axis=0)
            print(f"{a:5.2f} {name:9s} {', '.join(f'{v:.3f}' for v in cov):>22s} "
                  f"{', '.join(f'{v:5.1f}' for v in w):>24s}  {', '.join(f'{v:.3g}' for v in lam)}")
        ratio = np.mean(r["w_a"]) / np.mean(r["w_c"])
        print(f"{a:5.2f} width ratio adaptive / constant: {ratio:.3f}")
    print(f"(EPS = {EPS}; constant band half-width {CONST} before scaling)")


if __name__ == "__main__":
    main()
