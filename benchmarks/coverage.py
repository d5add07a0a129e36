"""Coverage of the conformal bands: on the benchmark, and leave-one-source-out on calib/.

    python benchmarks/coverage.py [--bench DIR] [--calib DIR] [--calibration default|FILE] [--cache DIR]
                                  [--hints K]
    python benchmarks/coverage.py --leave-one-source-out [--calib DIR] [--cache DIR] [--per-source N]
                                  [--weights W.safetensors]

Benchmark mode (default). Both band shapes are calibrated the same way (CRC on
the calibration photos, per channel, bands rounded outward to the 1/255
storage grid as stored): colorcube's adaptive bands (the shipped calibration,
or ``--calibration``) and a constant band f +/- lambda * 0.1 (calibrated on the
records of ``--calib``). For alpha in {0.05, 0.1, 0.2} it prints per-channel
coverage (mean over photos, with 95 % intervals over photos), the joint
coverage of the per-channel bands, mean width (0-255), coverage per benchmark
source, and the per-image guarantee (alpha 0.1, beta 0.2: share of photos with
at least 80 % of pixels covered, Clopper-Pearson interval). It also times
``Calibration.lambda_for`` (changing alpha needs no model call). ``--target-bench`` also
weights the calibration for the benchmark's own gray images (their features, from the same
records as calibration photos': no truth used for the weights) and reports the coverage of
each photo's own weighted lambda, read off its loss curves. ``--hints K`` gives every benchmark
photo K random true-colour points (and the constant band's calibration photos the same hint
process): with ``--calibration`` a file from ``colorcube calibrate --hints K`` it measures the
bands of hinted photos, to set beside the no-hint run's widths.

Leave-one-source-out mode. For each source of calib/ (the file-name prefix,
or INDEX.tsv's ``source`` column), calibrate on the other sources -- plain CRC,
archive-weighted CRC with the held-out source's gray images as the target,
and the per-image mode (beta 0.2), plain and weighted -- and report coverage on
the held-out source. Weighted modes: "weighted own" gives each held-out photo
weighted CRC with its own likelihood ratio (what colorize serves the photos of
``calibrate --target``), tabulated; and for each ``--clip-quantile`` q one lambda
for all with w_test = the q quantile of the held-out source's own weights (what
any other photo gets). One classifier fit per source serves them all; all are
summarised, with the issue's acceptance checks at alpha 0.1. Each photo's loss curves and features are computed once
(``--cache`` keeps them across runs, shared with ``colorcube calibrate --cache``);
the weighting and every held-out source reuse them, so no model runs twice.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from colorcube.apps.evaluate import group_coverage, share_interval
from colorcube.conformal.estimators import LAMBDA_GRID, crc_lambda
from colorcube.conformal.lookup import resolve_calibration
from colorcube.conformal.records import CONSTANT_HALF_WIDTH, photo_records
from colorcube.conformal.weighting import likelihood_ratios, ratio_features, reweight
from colorcube.errors import CalibrationError
from colorcube.guidance.placement import random_points
from colorcube.inputs.images import list_images, read_truth, source_of
from colorcube.network.weights import load_model, load_weights
from colorcube.render.bands import EPS, nested_interval, round_outward
from colorcube.render.predict import predict_bands
from colorcube.settings import PipelineSettings

ROOT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
ALPHAS = (0.05, 0.1, 0.2)
OWN = "weighted own"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "colorcube"


def _fmt(v, digits=3) -> str:
    return ", ".join(f"{x:.{digits}f}" for x in v)


def _photo_lambdas(test, cal, alpha, *, joint=False, beta=None) -> np.ndarray:
    """(n, 3) lambda of each photo of ``test``: its own (:meth:`Calibration.photo_lambdas`) when
    ``cal`` keeps the photos' ratios, else the calibration's one lambda."""
    table = cal.photo_lambdas(alpha, joint=joint, beta=beta)
    everyone = None if len(table) == test.n else cal.lambda_for(alpha, joint=joint, beta=beta)
    return np.array([table[d][0] if d in table else everyone for d in test.sha256]).reshape(test.n, 3)


def _loss_at(curves: np.ndarray, lams: np.ndarray) -> np.ndarray:
    """(n, k) losses of (n, k, grid) curves at each photo's (n, k) grid lambdas."""
    idx = np.searchsorted(LAMBDA_GRID, lams)
    return np.take_along_axis(curves, idx[..., None], axis=2)[..., 0]


def _subset(paths, per_source):
    if not per_source:
        return paths
    seen, out = {}, []
    for p in paths:
        s = source_of(p)
        seen[s] = seen.get(s, 0) + 1
        if seen[s] <= per_source:
            out.append(p)
    return out


def bench(args, model, cal, settings) -> dict:
    t0 = time.perf_counter()
    for a in np.linspace(0.02, 0.5, 100):
        cal.lambda_for(a)
    per_alpha_ms = (time.perf_counter() - t0) / 100 * 1e3

    calib = photo_records(_subset(list_images(args.calib), args.per_source)[: args.limit], model=model,
                          settings=settings, cache=args.cache, desc="calib records", hints=args.hints, seed=args.seed)
    const_lam = {a: np.array([crc_lambda(calib.constant_curves[:, c], a) for c in range(3)]) for a in ALPHAS}
    adapt_lam = {a: cal.lambda_for(a, beta=None) for a in ALPHAS}
    pi_alpha, beta = 0.1, args.beta
    pi_lam, pi_joint = cal.lambda_for(pi_alpha, beta=beta), cal.lambda_for(pi_alpha, beta=beta, joint=True)

    res = {a: {k: [] for k in ("cov_a", "w_a", "cov_c", "w_c", "joint_a")} for a in ALPHAS}
    per_image, per_image_joint, sources = [], [], []
    paths = _subset(list_images(args.bench), args.per_source)[: args.limit]
    weighted = None
    if args.target_bench:
        # the benchmark's gray images as the archive (their features only: no truth used for the weights),
        # each photo served its own weight; its coverage read off the photo's loss curves
        bench_recs = photo_records(paths, model=model, settings=settings, cache=args.cache, desc="bench records")
        weighted = reweight(cal, bench_recs.features, description="the benchmark", target_hashes=bench_recs.sha256,
                            warn=False)
        for a in ALPHAS:
            res[a]["cov_w"] = 1 - _loss_at(bench_recs.curves, _photo_lambdas(bench_recs, weighted, a))
    for i, p in enumerate(tqdm(paths, desc="bench", unit="img")):
        truth, gray = read_truth(p)
        # --hints: the calibration's hint process, K random true-colour points (seeded by the photo's index)
        points = random_points(truth, args.hints, np.random.default_rng([args.seed, i])) if args.hints else None
        f, lo, hi = predict_bands(gray, model, settings, hints=points)
        sources.append(source_of(p))
        for a in ALPHAS:
            for tag, (l, u) in (("a", round_outward(*nested_interval(f, lo, hi, adapt_lam[a]))),
                                ("c", round_outward(*nested_interval(f, f - CONSTANT_HALF_WIDTH,
                                                                     f + CONSTANT_HALF_WIDTH, const_lam[a])))):
                inside = (truth >= l) & (truth <= u)
                res[a][f"cov_{tag}"].append(inside.reshape(-1, 3).mean(axis=0))
                res[a][f"w_{tag}"].append(((u - l) * 255).reshape(-1, 3).mean(axis=0))
                if tag == "a":
                    res[a]["joint_a"].append(inside.all(axis=-1).mean())
        l, u = round_outward(*nested_interval(f, lo, hi, pi_lam))
        per_image.append(((truth >= l) & (truth <= u)).reshape(-1, 3).mean(axis=0))
        l, u = round_outward(*nested_interval(f, lo, hi, pi_joint))
        per_image_joint.append(((truth >= l) & (truth <= u)).all(axis=-1).mean())

    n = len(paths)
    print(f"calibration: {cal.n} photos ({cal.provenance.get('source')}), method {cal.method}, "
          f"sources {cal.provenance.get('source_counts', '?')}; benchmark: {n} photos from {args.bench}")
    print(f"lambda_for(alpha): {per_alpha_ms:.3f} ms per new alpha, no model call (grid of {len(LAMBDA_GRID)} lambdas)")
    print(f"{'alpha':>5s} {'band':9s} {'coverage R, G, B [95% CI]':>44s} {'joint':>6s} "
          f"{'width R, G, B (0-255)':>22s}  lambda R, G, B")
    out = {"n_bench": n, "alphas": {}}
    for a in ALPHAS:
        r = res[a]
        for tag, name, lam in (("a", "adaptive", adapt_lam[a]), ("c", "constant", const_lam[a])):
            cov = np.array(r[f"cov_{tag}"])
            g = group_coverage(cov, ["all"] * n)["all"]
            ci = "" if g["ci"] is None else " [" + "; ".join(f"{x:.3f}-{y:.3f}" for x, y in zip(*g["ci"])) + "]"
            w = np.mean(r[f"w_{tag}"], axis=0)
            joint = f"{np.mean(r['joint_a']):.3f}" if tag == "a" else ""
            print(f"{a:5.2f} {name:9s} {_fmt(g['coverage']) + ci:>44s} {joint:>6s} {_fmt(w, 1):>22s}  "
                  + ", ".join(f"{v:.3g}" for v in lam))
        ratio = np.mean(r["w_a"]) / np.mean(r["w_c"])
        cov_a = np.mean(r["cov_a"], axis=0)
        ok = bool(np.all(np.abs(cov_a - (1 - a)) <= 0.015))
        print(f"{a:5.2f} width ratio adaptive / constant: {ratio:.3f}; per-channel coverage within 1.5 points of "
              f"{1 - a:.2f}: {'yes' if ok else 'NO'}")
        if weighted is not None:
            cov_w = np.mean(r["cov_w"], axis=0)
            ok_w = bool(np.all(np.abs(cov_w - (1 - a)) <= 0.015))
            print(f"{a:5.2f} archive-weighted for the benchmark's gray images (each photo its own weight; effective "
                  f"sample size {weighted.ess:.0f}): coverage {_fmt(cov_w)}; within 1.5 points: "
                  f"{'yes' if ok_w else 'NO'}")
        out["alphas"][str(a)] = {"coverage": cov_a.tolist(), "joint_of_per_channel": float(np.mean(r["joint_a"])),
                                 "width": np.mean(r["w_a"], axis=0).tolist(), "width_ratio": float(ratio),
                                 "within_1.5_points": ok,
                                 "by_source": group_coverage(np.array(r["cov_a"]), sources)}
    print("adaptive bands per benchmark source at alpha 0.1 (R, G, B, 95% CI over photos):")
    for s, g in out["alphas"]["0.1"]["by_source"].items():
        ci = "" if g["ci"] is None else " [" + "; ".join(f"{x:.2f}-{y:.2f}" for x, y in zip(*g["ci"])) + "]"
        print(f"  {s:20s} n={g['n']:4d}  {_fmt(g['coverage'])}{ci}")
    ok = np.array(per_image) >= 1 - beta - 1e-9
    okj = np.array(per_image_joint) >= 1 - beta - 1e-9
    share = ok.mean(axis=0)
    cis = [share_interval(int(k), n) for k in ok.sum(axis=0)]
    print(f"per-image mode (alpha {pi_alpha}, beta {beta}; lambda R, G, B = {_fmt(pi_lam)}): share of photos with "
          f">= {1 - beta:.0%} of pixels covered R, G, B = {_fmt(share)} (95% CI "
          + "; ".join(f"{x:.3f}-{y:.3f}" for x, y in cis) + f"); joint bands {okj.mean():.3f} "
          f"(lambda {pi_joint[0]:.3g}); nominal {1 - pi_alpha:.2f}: "
          + ("consistent" if all(hi >= 1 - pi_alpha for _, hi in cis) else "BELOW"))
    print(f"(EPS = {EPS}; constant band half-width {CONSTANT_HALF_WIDTH} before scaling)")
    out["per_image"] = {"alpha": pi_alpha, "beta": beta, "share": share.tolist(), "ci": cis,
                        "share_joint": float(okj.mean())}
    return out


def _losses(test, cal, alpha, *, joint=False, beta=None) -> np.ndarray:
    """(n, 3) (or (n, 1) joint) losses of the held-out photos at their lambdas (:func:`_photo_lambdas`)."""
    lams = _photo_lambdas(test, cal, alpha, joint=joint, beta=beta)
    return _loss_at(test.joint_curves[:, None], lams[:, :1]) if joint else _loss_at(test.curves, lams)


def _evaluate_on(test, cal, alpha, beta) -> dict:
    """Coverage (expected and per-image) of ``cal``'s lambdas on the held-out records ``test``."""
    entry = {}
    try:
        cov = 1 - _losses(test, cal, alpha).mean(axis=0)
        joint = float(1 - _losses(test, cal, alpha, joint=True).mean())
        entry["expected"] = {"coverage": cov.tolist(), "joint": joint, "dev": float(np.mean(np.abs(cov - (1 - alpha))))}
        if cal.target_ratios is None:
            entry["expected"]["lambda"] = cal.lambda_for(alpha).tolist()
        else:  # the share of photos whose own weight allows no finite lambda
            entry["expected"]["full_band"] = float(np.isinf(_photo_lambdas(test, cal, alpha)).all(axis=1).mean())
    except CalibrationError as exc:
        entry["expected"] = {"refused": str(exc)}
    try:
        share = (_losses(test, cal, alpha, beta=beta) <= np.float32(beta)).mean(axis=0)
        entry["per_image"] = {"share": share.tolist()}
    except CalibrationError as exc:
        entry["per_image"] = {"refused": str(exc)}
    return entry


def _summary(rows, mode, alpha) -> dict:
    """Mean |coverage - (1 - alpha)| over held-out sources for ``mode`` vs plain; a refused
    weighted calibration counts with its plain deviation (the user falls back to plain)."""
    key = str(alpha)
    plain = {s: r["alphas"][key]["plain"]["expected"]["dev"] for s, r in rows.items()}
    dev = {s: r["alphas"][key][mode]["expected"].get("dev", plain[s]) for s, r in rows.items()}
    refused = sorted(s for s, r in rows.items() if "refused" in r["alphas"][key][mode]["expected"])
    worst = sorted(plain, key=plain.get, reverse=True)[:3]
    return {"plain": float(np.mean(list(plain.values()))), "mode": float(np.mean(list(dev.values()))),
            "worst": worst, "worst_plain": [plain[s] for s in worst], "worst_mode": [dev[s] for s in worst],
            "worst_better": all(dev[s] < plain[s] for s in worst), "refused": refused}


def leave_one_source_out(args, model, settings) -> dict:
    paths = _subset(list_images(args.calib), args.per_source)
    recs = photo_records(paths, model=model, settings=settings, cache=args.cache, desc="calib records")
    sources = np.array(recs.sources)
    names = sorted(set(recs.sources))
    quantiles = args.clip_quantile
    modes = ["plain", OWN] + [f"weighted q={q:g}" for q in quantiles]
    print(f"leave-one-source-out on {recs.n} photos of {len(names)} sources from {args.calib}; alphas {ALPHAS}, "
          f"per-image beta {args.beta}; {OWN}: each held-out photo weighted by its own likelihood ratio (what "
          "colorize serves the photos of `calibrate --target`; photos with no finite lambda get the band [0, 1]); "
          f"weighted q: w_test = the q quantile of the held-out source's own weights (any other photo), q in "
          f"{quantiles}")
    rows = {}
    for s in tqdm(names, desc="held-out sources", unit="source"):
        held = sources == s
        test = recs.select(held)
        base = recs.select(~held).calibration(model=model, settings=settings)
        # one classifier fit per source serves every clip quantile
        ratios = likelihood_ratios(ratio_features(base.features), ratio_features(test.features), seed=args.seed)
        cals = {"plain": base, OWN: reweight(base, test.features, description=s, ratios=ratios, warn=False,
                                             target_hashes=test.sha256)}
        for q, mode in zip(quantiles, modes[2:]):
            cals[mode] = reweight(base, test.features, description=s, clip_quantile=q, ratios=ratios, warn=False)
        row = {"n": test.n, "auc": ratios[2]["auc"], "alphas": {},
               "ess": {m: c.ess_own or c.ess for m, c in cals.items()}}
        for a in ALPHAS:
            row["alphas"][str(a)] = {m: _evaluate_on(test, c, a, args.beta) for m, c in cals.items()}
        rows[s] = row

    main_mode = modes[1]
    summary = {}
    for a in ALPHAS:
        key = str(a)
        print(f"\nalpha {a} (nominal {1 - a:.2f}): coverage R, G, B on the held-out source, dev = mean |coverage - "
              f"{1 - a:.2f}|, per-image = share of photos with >= {1 - args.beta:.0%} covered; weighted = {main_mode}")
        print(f"{'source':22s} {'n':>4s} {'ESS':>7s} {'AUC':>5s}  {'plain':>19s} {'dev':>6s}  {'weighted':>19s} "
              f"{'dev':>6s}  {'per-image plain':>19s}  {'per-image weighted':>19s}")
        for s, row in rows.items():
            e = row["alphas"][key]
            cells = []
            for mode in ("plain", main_mode):
                x = e[mode]["expected"]
                cells += ([f"{'refused':>19s}", f"{'':>6s}"] if "refused" in x else
                          [f"{_fmt(x['coverage']):>19s}", f"{x['dev']:6.3f}"])
            for mode in ("plain", main_mode):
                pi = e[mode]["per_image"]
                cells.append(f"{'refused' if 'refused' in pi else _fmt(pi['share'], 2):>19s}")
            print(f"{s:22s} {row['n']:4d} {row['ess'][main_mode]:7.1f} {row['auc']:5.2f}  " + " ".join(cells[:2])
                  + "  " + " ".join(cells[2:4]) + "  " + "  ".join(cells[4:]))
        full = {s: row["alphas"][key][OWN]["expected"].get("full_band", 0.0) for s, row in rows.items()}
        print(f"photos given the band [0, 1] ({OWN}): " + ", ".join(f"{s} {v:.2f}" for s, v in full.items()))
        summary[key] = {}
        for mode in modes[1:]:
            sm = _summary(rows, mode, a)
            summary[key][mode] = sm
            print(f"{mode:16s} mean dev {sm['mode']:.4f} vs plain {sm['plain']:.4f}; three worst under plain "
                  f"{sm['worst']}: plain " + ", ".join(f"{v:.3f}" for v in sm["worst_plain"]) + "; weighted "
                  + ", ".join(f"{v:.3f}" for v in sm["worst_mode"]) + f"; refused (counted as plain): "
                  f"{sm['refused'] or 'none'}")
        if a == 0.1:
            for mode in modes[1:]:
                sm = summary[key][mode]
                print(f"acceptance 1 (alpha 0.1, {mode}): mean dev <= plain + 0.005: "
                      f"{'yes' if sm['mode'] <= sm['plain'] + 0.005 else 'NO'}; better on the three worst: "
                      f"{'yes' if sm['worst_better'] else 'NO'}; goal half of plain ({sm['plain'] / 2:.4f}): "
                      f"{'yes' if sm['mode'] <= sm['plain'] / 2 else 'not reached'}")
    return {"sources": rows, "summary": summary}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bench", default=str(ROOT / "bench"))
    ap.add_argument("--calib", default=str(ROOT / "calib"))
    ap.add_argument("--calibration", default="default", help="benchmark mode: 'default' (shipped) or a .cal file")
    ap.add_argument("--leave-one-source-out", action="store_true", help="the leave-one-source-out study on --calib")
    ap.add_argument("--cache", default=str(CACHE),
                    help=f"per-photo records cache, shared with `colorcube calibrate --cache` (default {CACHE})")
    ap.add_argument("--per-source", type=int, help="use at most N photos of each source (quick runs)")
    ap.add_argument("--limit", type=int, default=None, help="benchmark mode: at most N photos of each folder")
    ap.add_argument("--beta", type=float, default=0.2, help="per-image tolerance")
    ap.add_argument("--clip-quantile", type=float, nargs="+", default=[0.95, 0.5, 1.0],
                    help="weighted: w_test = this quantile of the archive's weights (several: compared; the first "
                         "is tabulated)")
    ap.add_argument("--target-bench", action="store_true",
                    help="benchmark mode: also weight the calibration for the benchmark's gray images (no truth "
                         "used) and serve each photo its own weighted lambda")
    ap.add_argument("--hints", type=int, default=0, metavar="K",
                    help="benchmark mode: K random true-colour hint points per photo (and per calibration photo of "
                         "the constant band); give --calibration a file made with `colorcube calibrate --hints K`")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--weights", help="leave-one-source-out mode: another weights file than the shipped one "
                                      "(to set an old model's study beside the shipped one's)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    if args.weights and not args.leave_one_source_out:
        ap.error("--weights is for --leave-one-source-out (benchmark mode serves a calibration of its model)")
    model = load_weights(args.weights) if args.weights else load_model(device="cpu")
    if args.leave_one_source_out:  # the default settings, as `colorcube calibrate` uses them
        out = leave_one_source_out(args, model, PipelineSettings())
    else:
        cal = resolve_calibration(args.calibration, model)
        out = bench(args, model, cal, PipelineSettings.of(cal))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
