"""Does the palette offer the right colour? Top-k colours of the predicted distribution against the truth.

    python benchmarks/palette.py [FOLDER] [--limit N] [--pixels 200] [--k 5] [--threshold 10] [--weights W]

FOLDER defaults to ../shared/data/bench. In each photo (gray from PIL ``convert("L")``)
``--pixels`` pixels are drawn uniformly (seed = the photo's index); at each,
:func:`colorcube.palette` gives the k most probable distinct colours of the network's
prediction (at the pixel's own lightness). Prints the share of pixels whose true colour
lies within CIEDE2000 ``--threshold`` of one of the top 1, 2, ..., k colours (pooled over
pixels, and the mean over photos), and the same share for the colour estimate itself.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from colorcube.apps.triage import palette
from colorcube.inputs.images import list_images, read_truth
from colorcube.metrics import ciede2000
from colorcube.network.weights import load_model, load_weights
from colorcube.render.predict import predict_bands

DEFAULT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "bench"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", nargs="?", default=str(DEFAULT))
    ap.add_argument("--limit", type=int, help="first N photos only")
    ap.add_argument("--pixels", type=int, default=200, help="pixels drawn per photo")
    ap.add_argument("--k", type=int, default=5, help="palette size")
    ap.add_argument("--threshold", type=float, default=10.0, help="CIEDE2000 that counts as the right colour")
    ap.add_argument("--weights", help="a .safetensors file (default: the shipped weights)")
    args = ap.parse_args()
    model = load_weights(args.weights) if args.weights else load_model(device="cpu")
    paths = list_images(args.folder)[: args.limit]
    hits, estimate, per_photo = [], [], []
    t0 = time.perf_counter()
    for i, p in enumerate(paths):
        truth, gray = read_truth(p)
        rng = np.random.default_rng(i)
        flat = rng.choice(gray.size, size=min(args.pixels, gray.size), replace=False)
        ys, xs = np.divmod(flat, gray.shape[1])
        pal = palette(gray, np.stack([ys, xs], axis=1), model=model, k=args.k)
        t = truth[ys, xs][:, None]  # (n, 1, 3)
        de = np.full((len(ys), args.k), np.inf)
        for j, colours in enumerate(pal):
            cols = np.stack([c["rgb"] for c in colours])[:, None]  # (m, 1, 3)
            de[j, : len(colours)] = ciede2000(cols, np.repeat(t[j : j + 1], len(colours), axis=0))[:, 0]
        within = np.minimum.accumulate(de, axis=1) <= args.threshold  # (n, k): within one of the top j
        hits.append(within)
        per_photo.append(within[:, -1].mean())
        rgb = np.round(predict_bands(gray, model)[0] * 255) / 255
        estimate.append(ciede2000(rgb[ys, xs][:, None], t)[:, 0] <= args.threshold)
    hits = np.concatenate(hits)
    print(f"{len(paths)} photos of {args.folder}, {hits.shape[0]} pixels ({time.perf_counter() - t0:.0f} s); "
          f"model {model.weights_name} {model.weights_hash[:12]}; CIEDE2000 <= {args.threshold:g}")
    print("top k  share of pixels whose true colour is within reach")
    for j in range(args.k):
        print(f"{j + 1:5d}  {hits[:, j].mean():.3f}")
    print(f"mean over photos (top {args.k}): {np.mean(per_photo):.3f}; the colour estimate alone: "
          f"{np.concatenate(estimate).mean():.3f}")


if __name__ == "__main__":
    main()
