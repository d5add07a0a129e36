"""Colour quality of weight files side by side: train/'s validation split, calib/ by source, bench/, bench/ degraded.

    python benchmarks/compare.py OLD.safetensors NEW.safetensors [--sets val calib bench degraded]
                                 [--per-source N] [--limit N] [--cache DIR] [--json OUT]

``shipped`` names the weights in the package. Gray inputs are PIL ``convert("L")``
(``colorcube.inputs.images.read_truth``); colours are scored as stored (8-bit), at the default
pipeline settings (working size 384, bfloat16 network, guided upsampling). The sets:

* ``val``: the training code's validation split of ``../shared/data/train``
  (``colorcube.network.train.train_v2.split_by_source``, seed 0), unseen by both trainings;
* ``calib``: ``../shared/data/calib`` photo by photo, per source (the first N of each
  source with ``--per-source N``): each source a stand-in for an archive the models did
  not train on (no model trains on calib/);
* ``bench``: ``../shared/data/bench``;
* ``degraded``: the bench photos as archive scans (``colorcube.inputs.degrade.archive_scan``,
  seed = the photo's index), scored against the photo's colour at the degraded
  lightness (``colorcube.inputs.degrade.reference_rgb``), the best a colorizer that keeps the
  input's lightness can give; the gray row is the degraded gray.

Each row: PSNR gain over the gray input (dB), CIEDE2000 and edge error (mean CIEDE2000
within 3 px of the truth's chroma edges) as ratios to the gray input's, colourfulness
(Hasler-Suesstrunk) as a ratio to the truth's. calib/ rows are per source, then the mean
over sources (each source weighs the same) and the worst source.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from quality import scores  # benchmarks/quality.py

from colorcube.inputs.degrade import archive_scan, reference_rgb
from colorcube.inputs.images import list_images, read_truth, source_of
from colorcube.metrics import chroma_edges, colorfulness
from colorcube.network.train.train_v2 import TrainOptions
from colorcube.network.train.trainset import split_by_source
from colorcube.network.weights import default_weights_path, load_weights
from colorcube.render.predict import predict_bands
from colorcube.settings import PipelineSettings

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
SETS = ("val", "calib", "bench", "degraded")


def photo_sets(names, *, per_source: int | None, limit: int | None) -> dict:
    """Set name -> list of (path, source, degradation seed or None)."""
    out = {}
    if "val" in names:
        opts = TrainOptions()
        _, val, _ = split_by_source(list_images(DATA / "train"), val_fraction=opts.val_fraction,
                                    error_split=opts.error_split, seed=opts.seed)
        out["val"] = [(p, source_of(p), None) for p in val[:limit]]
    if "calib" in names:
        by_source: dict = {}
        for p in list_images(DATA / "calib"):
            by_source.setdefault(source_of(p), []).append(p)
        out["calib"] = [(p, s, None) for s, ps in sorted(by_source.items()) for p in ps[:per_source]]
    bench = list_images(DATA / "bench")[:limit]
    if "bench" in names:
        out["bench"] = [(p, "bench", None) for p in bench]
    if "degraded" in names:
        out["degraded"] = [(p, "bench", i) for i, p in enumerate(bench)]
    return out


def photo_scores(path, seed, models: dict) -> dict:
    """Scores of the gray input, the truth's colourfulness and each model on one photo."""
    truth, gray = read_truth(path)
    if seed is not None:
        gray = archive_scan(gray, seed=seed)
        t = torch.from_numpy(truth).permute(2, 0, 1)[None]
        truth = reference_rgb(t, torch.from_numpy(gray)[None, None])[0].permute(1, 2, 0).numpy()
    edges = chroma_edges(truth)
    row = {"gray": scores(np.repeat(gray[..., None], 3, axis=2), truth, edges), "truth_cf": colorfulness(truth)}
    for name, model in models.items():
        stored = np.round(predict_bands(gray, model, PipelineSettings())[0] * 255) / np.float32(255)
        row[name] = scores(stored.astype(np.float32), truth, edges)
    return row


def cached_scores(path, seed, set_name: str, models: dict, cache_dir: Path | None) -> dict:
    """:func:`photo_scores`, each model's scores kept under ``cache_dir`` by weights hash, set and file name."""
    def file(tag):
        return cache_dir / f"{tag}-{set_name}-{Path(path).name}.json"

    row, todo = {}, dict(models)
    if cache_dir is not None:
        for name, model in models.items():
            if file(model.weights_hash[:16]).is_file() and file("gray").is_file():
                row[name] = json.loads(file(model.weights_hash[:16]).read_text())
                del todo[name]
    if todo or not row:
        new = photo_scores(path, seed, todo)
        row.update(new)
        if cache_dir is not None:
            cache_dir.mkdir(parents=True, exist_ok=True)
            file("gray").write_text(json.dumps({"gray": new["gray"], "truth_cf": new["truth_cf"]}))
            for name in todo:
                file(models[name].weights_hash[:16]).write_text(json.dumps(new[name]))
    else:
        row.update(json.loads(file("gray").read_text()))
    return row


def summary(rows: list, name: str) -> dict:
    """Mean gains and ratios of one model over a list of photo rows."""
    def mean(who, key):
        return float(np.nanmean([r[who][key] for r in rows]))

    return {"photos": len(rows), "psnr_gain": mean(name, "psnr") - mean("gray", "psnr"),
            "ciede2000_ratio": mean(name, "ciede2000") / mean("gray", "ciede2000"),
            "colourfulness_ratio": mean(name, "colorfulness") / float(np.mean([r["truth_cf"] for r in rows])),
            "edge_error_ratio": mean(name, "edge_error") / mean("gray", "edge_error")}


def _line(label: str, s: dict) -> str:
    return (f"{label:40s} {s['photos']:5d} {s['psnr_gain']:+8.2f} {s['ciede2000_ratio']:9.3f} "
            f"{s['colourfulness_ratio']:9.2f} {s['edge_error_ratio']:9.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("weights", nargs="+", help="weight files ('shipped' = the package's)")
    ap.add_argument("--sets", nargs="+", choices=SETS, default=list(SETS))
    ap.add_argument("--per-source", type=int, help="calib/: first N photos of each source")
    ap.add_argument("--limit", type=int, help="val/bench/degraded: first N photos")
    ap.add_argument("--cache", help="folder for per-photo scores (keyed by weights hash): reruns skip them")
    ap.add_argument("--json", help="write the summaries here")
    args = ap.parse_args()
    models = {}
    for w in args.weights:
        model = load_weights(default_weights_path() if w == "shipped" else w)
        models[f"{model.weights_name} {model.weights_hash[:8]}"] = model
    cache_dir = Path(args.cache) if args.cache else None
    result = {}
    for set_name, photos in photo_sets(args.sets, per_source=args.per_source, limit=args.limit).items():
        rows = [{**cached_scores(path, seed, set_name, models, cache_dir), "source": source}
                for path, source, seed in photos]
        print(f"\n{set_name}: {len(rows)} photos")
        print(f"{'model':40s} {'n':>5s} {'PSNR-gray':>8s} {'dE/gray':>9s} {'colourf.':>9s} {'edge/gray':>9s}")
        result[set_name] = {}
        for name in models:
            if set_name == "calib":
                sources = sorted({r["source"] for r in rows})
                per = {s: summary([r for r in rows if r["source"] == s], name) for s in sources}
                for s in sources:
                    print(_line(f"{name[:20]} | {s[:17]}", per[s]))
                mean = {k: float(np.mean([p[k] for p in per.values()])) for k in per[sources[0]]}
                worst = min(sources, key=lambda s: per[s]["psnr_gain"])
                print(_line(f"{name[:20]} | mean of sources", {**mean, "photos": len(rows)}))
                print(f"{'':32s} worst source by PSNR gain: {worst} ({per[worst]['psnr_gain']:+.2f} dB)")
                result[set_name][name] = {"per_source": per, "mean_of_sources": mean, "worst": worst}
            else:
                s = summary(rows, name)
                print(_line(name, s))
                result[set_name][name] = s
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
