"""Colour quality against the number of random true-colour hint points, and with a reference photo.

    python benchmarks/hints.py [FOLDER] [--limit N] [--points 0 1 2 5 10 20 50] [--plot PNG]
                               [--weights W.safetensors] [--no-propagation] [--suggested]

FOLDER defaults to ../shared/data/bench (colour photos; gray inputs made with
PIL ``convert("L")``). For each photo and each K, K random true-colour points
(:func:`colorcube.guidance.hints.random_points`, seeded by the photo's index, so every
method sees the same points and the run repeats exactly) are given to the
pipeline; the colours are scored as stored (8-bit): mean PSNR (dB) and mean
CIEDE2000 over the photos, and, for K > 0, the median over all hint pixels of
|colour - hint| per channel (0-255 units). Then the reference photo: set to the
truth itself (an upper bound: the right colours, only their places unknown) and
to another photo of the same source (the next photo of that source in file
order, or none when the source has one photo), at strength 1.

``--suggested`` adds, for each K > 0, K points at :func:`colorcube.suggest_hints`
positions of the photo's no-hint bands (alpha 0.1, shipped calibration), each with the
truth's colour there: the same photos and K as the random rows. ``--no-propagation``
scores the network's own hinted output (no edge-aware spreading of the hints).

Prints the table and writes the plot of PSNR and CIEDE2000 against K
(``--plot``, default ``docs/hints.png``; ``--plot ''`` for none).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from colorcube.apps.triage import suggest_hints
from colorcube.conformal.lookup import resolve_calibration
from colorcube.guidance.placement import random_points
from colorcube.inputs.images import list_images, read_truth, source_of
from colorcube.metrics import ciede2000, psnr
from colorcube.network.weights import load_model, load_weights
from colorcube.render.bands import nested_interval
from colorcube.render.predict import predict_bands
from colorcube.settings import PipelineSettings

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / ".." / "shared" / "data" / "bench"


def stored(rgb: np.ndarray) -> np.ndarray:
    return (np.round(rgb * 255) / np.float32(255)).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", nargs="?", default=str(DEFAULT))
    ap.add_argument("--limit", type=int, default=None, help="first N photos only")
    ap.add_argument("--points", type=int, nargs="+", default=[0, 1, 2, 5, 10, 20, 50])
    ap.add_argument("--suggested", action="store_true",
                    help="also K points at colorcube.suggest_hints positions (from the no-hint bands at alpha 0.1, "
                         "shipped calibration), each with the truth's colour")
    ap.add_argument("--no-propagation", action="store_true",
                    help="the network's own hinted output, without the edge-aware propagation")
    ap.add_argument("--weights", help="a .safetensors file (default: the shipped weights)")
    ap.add_argument("--plot", default=str(ROOT / "docs" / "hints.png"), help="plot file ('' for none)")
    args = ap.parse_args()
    paths = list_images(args.folder)
    same_source = {}
    for i, p in enumerate(paths):
        later = [q for q in paths[i + 1 :] + paths[:i] if source_of(q) == source_of(p)]
        same_source[p] = later[0] if later else None
    paths = paths[: args.limit]
    model = load_weights(args.weights) if args.weights else load_model(device="cpu")
    settings = PipelineSettings(propagate=not args.no_propagation)
    rows = {k: {"psnr": [], "ciede2000": [], "hint_err": []} for k in args.points}
    if args.suggested:
        lam = resolve_calibration("default", model).lambda_for(0.1)
        rows.update({f"{k} suggested": {"psnr": [], "ciede2000": [], "hint_err": []} for k in args.points if k})
    refs = {"reference = truth": {"psnr": [], "ciede2000": []},
            "reference = same-source photo": {"psnr": [], "ciede2000": []}}
    auto_scores = {"psnr": [], "ciede2000": []}
    t0 = time.perf_counter()
    for i, p in enumerate(paths):
        truth, gray = read_truth(p)
        truth8 = np.round(truth * 255).astype(np.uint8)
        for k in args.points:
            pts = random_points(truth8, k, i)
            rgb = stored(predict_bands(gray, model, settings, hints=pts or None)[0])
            rows[k]["psnr"].append(psnr(rgb, truth))
            rows[k]["ciede2000"].append(float(ciede2000(rgb, truth).mean()))
            if k:
                ys, xs = np.array([q[0] for q in pts]), np.array([q[1] for q in pts])
                rows[k]["hint_err"].append(np.abs(rgb[ys, xs] * 255 - truth8[ys, xs]))
            if k == 0:
                auto_scores["psnr"].append(rows[k]["psnr"][-1])
                auto_scores["ciede2000"].append(rows[k]["ciede2000"][-1])
        if args.suggested:
            f, lo, hi = predict_bands(gray, model, settings)
            band = np.stack(nested_interval(f, lo, hi, lam), axis=-1)
            for k in args.points:
                if k:
                    pts = [(int(y), int(x), tuple(int(v) for v in truth8[y, x])) for y, x in suggest_hints(band, k, gray=gray)]
                    rgb = stored(predict_bands(gray, model, settings, hints=pts)[0])
                    rows[f"{k} suggested"]["psnr"].append(psnr(rgb, truth))
                    rows[f"{k} suggested"]["ciede2000"].append(float(ciede2000(rgb, truth).mean()))
        if 0 not in args.points:
            rgb = stored(predict_bands(gray, model, settings)[0])
            auto_scores["psnr"].append(psnr(rgb, truth))
            auto_scores["ciede2000"].append(float(ciede2000(rgb, truth).mean()))
        other = same_source[p]
        for name, ref in (("reference = truth", truth), ("reference = same-source photo", other)):
            if ref is None:
                continue
            rgb = stored(predict_bands(gray, model, settings, reference=ref)[0])
            refs[name]["psnr"].append(psnr(rgb, truth) - auto_scores["psnr"][-1])
            refs[name]["ciede2000"].append(float(ciede2000(rgb, truth).mean()) - auto_scores["ciede2000"][-1])
    base_psnr, base_de = float(np.mean(auto_scores["psnr"])), float(np.mean(auto_scores["ciede2000"]))
    print(f"{len(paths)} photos from {args.folder} ({time.perf_counter() - t0:.0f} s), model {model.weights_name} "
          f"{model.weights_hash[:12]}, working size {settings.working_size}")
    print(f"{'hint points':>30s} {'PSNR dB':>8s} {'vs none':>8s} {'CIEDE2000':>10s} {'vs none':>8s} "
          f"{'median |colour - hint| R, G, B (0-255)':>40s}")
    for k, r in rows.items():
        m_psnr, m_de = float(np.mean(r["psnr"])), float(np.mean(r["ciede2000"]))
        err = (", ".join(f"{v:.1f}" for v in np.median(np.concatenate(r["hint_err"]), axis=0))
               if r["hint_err"] else "")
        print(f"{k:>30} {m_psnr:8.2f} {m_psnr - base_psnr:+8.2f} {m_de:10.2f} {m_de - base_de:+8.2f} {err:>40s}")
    for name, r in refs.items():
        if r["psnr"]:
            print(f"{name:>30s} {base_psnr + np.mean(r['psnr']):8.2f} {np.mean(r['psnr']):+8.2f} "
                  f"{base_de + np.mean(r['ciede2000']):10.2f} {np.mean(r['ciede2000']):+8.2f}"
                  f"   ({len(r['psnr'])} photos)")
    if args.plot:
        plot(rows, refs, base_psnr, base_de, len(paths), Path(args.plot))
        print(f"plot: {args.plot}")


def plot(rows, refs, base_psnr, base_de, n, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = [k for k in rows if isinstance(k, int)]
    xs = [max(k, 0.5) for k in ks]  # K = 0 drawn at 0.5 on the log axis
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, key, base, label in ((axes[0], "psnr", base_psnr, "PSNR (dB)"),
                                 (axes[1], "ciede2000", base_de, "CIEDE2000")):
        ax.plot(xs, [np.mean(rows[k][key]) for k in ks], "o-", color="tab:blue", label="random true-colour points")
        for (name, r), style in zip(refs.items(), ("--", ":")):
            if r[key]:
                ax.axhline(base + np.mean(r[key]), color="tab:red", ls=style, lw=1, label=name)
        ax.set_xscale("log")
        ax.set_xticks(xs, ["0" if k == 0 else str(k) for k in ks])
        ax.set_xlabel("hint points per photo")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"colorcube with hints, {n} benchmark photos", fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
