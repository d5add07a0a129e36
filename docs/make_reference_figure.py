"""Draw docs/reference.png: colours steered by a reference photo, from real output.

    python docs/make_reference_figure.py [--target PHOTO] [--reference PHOTO] [--out docs/reference.png]

Top row: the gray input, the automatic colours, the colours with the truth itself as
the reference (strength 1: the right colours, their places still the network's
guess) and the truth. Bottom row: another photo as the reference, and the colours
at strength 0.5, 1 and 2. Titles give PSNR against the truth. The default photos
are two Kodak PhotoCD images of the shared benchmark (released for unrestricted use).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np

from colorcube.inputs.images import read_truth
from colorcube.metrics import psnr
from colorcube.network.weights import load_model
from colorcube.render.predict import predict_bands
from colorcube.settings import PipelineSettings

BENCH = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "bench"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default=str(BENCH / "kodak24__23.png"), help="colour photo made gray and colorized")
    ap.add_argument("--reference", default=str(BENCH / "kodak24__03.png"), help="another colour photo")
    ap.add_argument("--out", default=str(Path(__file__).with_name("reference.png")))
    args = ap.parse_args()
    model = load_model(device="cpu")
    settings = PipelineSettings()
    truth, gray = read_truth(args.target)
    other, _ = read_truth(args.reference)

    def run(reference=None, strength=1.0):
        rgb = predict_bands(gray, model, settings, reference=reference, reference_strength=strength)[0]
        return np.round(rgb * 255) / 255

    panels = [
        (np.repeat(gray[..., None], 3, axis=2), "gray input"),
        (run(), "automatic"),
        (run(truth), "reference = the truth"),
        (truth, "truth"),
        (other, f"reference photo ({Path(args.reference).name})"),
        (run(other, 0.5), "that reference, strength 0.5"),
        (run(other, 1.0), "strength 1"),
        (run(other, 2.0), "strength 2"),
    ]
    fig, axes = plt.subplots(2, 4, figsize=(14, 5.6))
    for ax, (img, title) in zip(axes.ravel(), panels):
        ax.imshow(np.clip(img, 0, 1))
        if img is not other and img is not truth and img.shape == truth.shape:
            title += f"\nPSNR {psnr(img.astype(np.float32), truth):.2f} dB"
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
    fig.suptitle(f"reference photo: predicted (a*, b*) distribution reweighted toward the reference's histogram "
                 f"per lightness band (model {model.weights_hash[:12]})", fontsize=10)
    fig.tight_layout()
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
