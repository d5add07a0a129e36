"""Draw docs/dl.png: the whole system on one photo, from real output.

    python docs/make_figure.py [--out docs/dl.png]

gray input -> network (chroma distribution) -> colour estimate -> R, G, B lower and
upper bands -> coverage curve of the shipped calibration on scikit-image test photos.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from PIL import Image
from skimage import data

import colorcube
from colorcube.conformal.lookup import resolve_calibration
from colorcube.conformal.records import image_curves
from colorcube.network.weights import load_model
from colorcube.settings import PipelineSettings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).with_name("dl.png")))
    ap.add_argument("--test-dir", default=str(Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "bench"),
                    help="colour photos for the coverage panel (default: the shared benchmark; "
                         "scikit-image crops when it is absent)")
    ap.add_argument("--limit", type=int, default=80)
    args = ap.parse_args()
    model = load_model(device="cpu")
    cal = resolve_calibration("default", model)
    settings = PipelineSettings.of(cal)
    truth8 = data.chelsea()
    gray = np.asarray(Image.fromarray(truth8).convert("L"), np.float32) / 255
    ds = colorcube.colorize(gray, alpha=0.1, model=model)
    curves, source = [], "scikit-image crops"
    if Path(args.test_dir).is_dir():
        from colorcube.inputs.images import list_images, read_truth

        for p in list_images(args.test_dir)[: args.limit]:
            t, g = read_truth(p)
            curves.append(image_curves(t, g, model, settings)[0])
        source = f"{len(curves)} benchmark photos"
    else:
        for name in ("astronaut", "coffee", "rocket", "chelsea"):
            img = getattr(data, name)()
            h, w = img.shape[:2]
            for i in range(2):
                for j in range(2):
                    crop = np.ascontiguousarray(img[i * h // 2:(i + 1) * h // 2, j * w // 2:(j + 1) * w // 2])
                    g = np.asarray(Image.fromarray(crop).convert("L"), np.float32) / 255
                    curves.append(image_curves(crop / np.float32(255), g, model, settings)[0])
        source = f"{len(curves)} {source}"

    fig = plt.figure(figsize=(19, 6.5))
    grid = fig.add_gridspec(2, 6, width_ratios=[1, 0.8, 1, 1, 1, 1.1], wspace=0.3, hspace=0.3)
    main_axes = []
    ax = fig.add_subplot(grid[:, 0])
    ax.imshow(gray, cmap="gray")
    ax.set_title("1. gray input\n(PIL convert('L'))")
    main_axes.append(ax)
    ax = fig.add_subplot(grid[:, 1])
    ax.text(0.5, 0.5, "2. network (ImageNet\nencoder, U-Net)\n-> 229-bin (a, b)\ndistribution\n\nannealed mean:\ncolour\n\n"
            "error head: R, G, B\nband scale\n\nguided upsampling\nwith full-res L", ha="center", va="center",
            fontsize=11, bbox=dict(boxstyle="round", fc="#eef", ec="#99c"))
    main_axes.append(ax)
    ax = fig.add_subplot(grid[:, 2])
    ax.imshow(ds.rgb.values)
    ax.set_title("3. colour estimate")
    main_axes.append(ax)
    for row, bound in enumerate(("lower", "upper")):
        ax = fig.add_subplot(grid[row, 3])
        ax.imshow(np.stack([ds.interval.sel(channel=ch, bound=bound).values for ch in "RGB"], axis=-1))
        ax.set_title(f"4. {bound} bound (R, G, B), alpha 0.1", fontsize=10)
        ax.set_axis_off()
    main_axes.append(ax)
    ax = fig.add_subplot(grid[:, 4])
    width = (ds.interval.sel(bound="upper") - ds.interval.sel(bound="lower")).mean("channel").values * 255
    im = ax.imshow(width, cmap="magma")
    fig.colorbar(im, ax=ax, orientation="horizontal", pad=0.03, label="mean R, G, B band width (0-255)")
    ax.set_title("band width: where the\ncolour is unsure")
    main_axes.append(ax)
    for a in main_axes:
        a.set_axis_off()
    ax = fig.add_subplot(grid[:, 5])
    colorcube.plot.coverage_curve(cal, np.stack(curves), alphas=np.linspace(0.05, 0.4, 15), ax=ax)
    ax.set_title(f"5. coverage on {source}\n(calibrated on {cal.n} other photos)", fontsize=10)
    ax.set_ylabel("empirical coverage")
    main_axes.append(ax)
    fig.canvas.draw()
    for a, b in zip(main_axes[:-1], main_axes[1:]):
        x = (a.get_position().x1 + b.get_position().x0) / 2
        fig.text(x, 0.5, "\u2192", fontsize=28, ha="center", va="center", color="#446")
    fig.suptitle("colorcube: a colour for every pixel, and an R, G, B interval that holds 1 - alpha coverage",
                 fontsize=14)
    fig.savefig(args.out, dpi=90, bbox_inches="tight")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
