"""The command line's commands, one function each (``args`` from :func:`colorcube.apps.cli.build_parser`
-> exit status); every refusal is a ColorcubeError that :func:`colorcube.apps.cli.main` prints on one line.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image
from skimage import data as skimage_data
from tqdm.auto import tqdm

import colorcube

from ..conformal.estimators import check_alpha
from ..cube.export import write_intervals_npz, write_png
from ..errors import ColorcubeError, HintError
from ..guidance.hints import find_hint_file
from ..guidance.reference import reference_histogram
from ..inputs.images import list_images
from ..metrics import coverage, psnr
from ..network.train.train_v2 import TrainOptions, train
from ..network.train.train_v3 import V3Options, train_v3
from ..render.codes import decode
from ..run.pipeline import colorize_codes, load_kernels, prepare_run
from ..settings import PipelineSettings

__all__ = ["cmd_archive", "cmd_calibrate", "cmd_colorize", "cmd_demo", "cmd_evaluate", "cmd_export", "cmd_train"]


def _settings(args):
    """PipelineSettings from --working-size/--vividness/--no-guided/--precision; None when none is given."""
    given = {"working_size": args.working_size, "vividness": args.vividness, "guided": False if args.no_guided else None,
             "precision": args.precision}
    given = {k: v for k, v in given.items() if v is not None}
    return PipelineSettings(**given) if given else None


def _run(args, *, alpha: float = 0.1):
    """The run of a colorizing command (:func:`colorcube.run.pipeline.prepare_run`) from its options."""
    calibration = None if getattr(args, "uncalibrated", False) else (getattr(args, "calibration", None) or "default")
    return prepare_run(alpha=alpha, weights=args.weights, device=args.device, calibration=calibration,
                       settings=_settings(args), where=getattr(args, "calibration", None) or "shipped calibration")


def _unique_stems(paths) -> list[str]:
    seen, stems = {}, []
    for p in paths:
        stem = Path(p).stem
        seen[stem] = seen.get(stem, 0) + 1
        stems.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return stems


def cmd_colorize(args) -> int:
    """PNG and npz from the storage codes; xarray and zarr are loaded only for --zarr."""
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise ColorcubeError(f"{out}: output exists and is not a folder")
    check_alpha(args.alpha)  # a bad alpha fails before the output folder is made
    out.mkdir(parents=True, exist_ok=True)
    hint_dir = _hint_folder(args.hints, len(args.images))
    # the kernels load from numba's cache beside the model (see load_kernels); the thread is joined
    # before returning, so a run that stops early (every input refused) never exits under it
    kernels = threading.Thread(target=_load_kernels_quietly, name="colorcube-kernels", daemon=True)
    kernels.start()
    try:
        return _colorize_all(args, out, hint_dir)
    finally:
        kernels.join()


def _load_kernels_quietly() -> None:
    """:func:`colorcube.run.pipeline.load_kernels` for the background thread: a failure there is the main thread's to
    report (it runs the same kernels), never a second traceback from a thread."""
    try:
        load_kernels()
    except Exception:  # noqa: BLE001 (reported by the main thread's own use of the kernels)
        logging.getLogger(__name__).debug("background kernel load failed", exc_info=True)


def _colorize_all(args, out: Path, hint_dir) -> int:
    run = _run(args, alpha=args.alpha)
    # the reference is read once, for every image
    reference = None if not args.reference else reference_histogram(args.reference, run.model.bins)
    failures = 0
    for path, stem in zip(tqdm(args.images, desc="colorize", unit="img", disable=len(args.images) < 2),
                          _unique_stems(args.images)):
        try:
            hints = args.hints if hint_dir is None else find_hint_file(hint_dir, Path(path).stem)
            done = colorize_codes(path, run, max_pixels=args.max_pixels, hints=hints, reference=reference,
                                  reference_strength=args.reference_strength)
        except ColorcubeError as exc:
            print(f"colorcube: error: {exc}", file=sys.stderr)
            failures += 1
            continue
        attrs = done.attrs
        write_png(out / f"{stem}_color.png", done.codes["rgb"])  # the storage codes are the 8-bit colours
        write_intervals_npz(out / f"{stem}_intervals.npz", decode(done.codes["interval"]), alpha=args.alpha,
                            attrs={"lambda": [float(v) for v in attrs["lambda"]], "calibrated": bool(attrs["calibrated"]),
                                   "method": attrs["method"], "guarantee": attrs["guarantee"]})
        if args.zarr:
            # through the package's lazy attribute: xarray, dask and zarr load only for --zarr
            colorcube.write_colorized(done, out / f"{stem}.zarr", compression=args.compression)
        guided = "".join([f", {attrs['hints']} hint pixels" if "hints" in attrs else "",
                          f", reference {attrs['reference']}" if "reference" in attrs else ""])
        print(f"{path}: wrote {out / (stem + '_color.png')} and {out / (stem + '_intervals.npz')}"
              f" ({attrs['method']}, alpha={args.alpha}{guided})")
    if failures:
        print(f"colorcube: {failures} of {len(args.images)} images failed", file=sys.stderr)
        return 1
    return 0


def _hint_folder(hints, n_images: int):
    """``--hints``: the folder of per-image hint files, or None for one hint file (one image only)."""
    if not hints:
        return None
    p = Path(hints)
    if p.is_dir():
        return p
    if not p.is_file():
        raise HintError(f"{p}: hint file not found (give a .json or RGBA .png file, or a folder of them)")
    if n_images > 1:
        raise HintError(f"{p}: one hint file is for one image; for {n_images} images give a folder of "
                        "<image stem>.json / <image stem>.png hint files")
    return None


def cmd_calibrate(args) -> int:
    model = prepare_run(alpha=args.alpha, weights=args.weights, device=args.device, calibration=None).model
    cal = colorcube.calibrate(args.folder, model=model, settings=_settings(args) or PipelineSettings(), method=args.method,
                    delta=args.delta, joint=args.joint, per_image=args.per_image, target=args.target,
                    target_description=args.target_name or "", source=args.source or str(args.folder),
                    cache=args.cache, seed=args.seed, clip_quantile=args.clip_quantile, hints=args.hints)
    lam = cal.lambda_for(args.alpha)  # refuses (no file written) when this calibration cannot serve the alpha
    cal.to_file(args.output)
    counts = cal.provenance.get("source_counts", {})
    print(f"calibrated on {cal.n} images ({len(counts)} sources: "
          + ", ".join(f"{k} {v}" for k, v in counts.items()) + f") -> {args.output}")
    if cal.weighted:
        t = cal.provenance["target"]
        print(f"archive-weighted for {t['n_images']} target images: effective sample size {cal.ess:.1f} of {cal.n} "
              f"(classifier AUC {t['auc']:.2f}; w_test = {t['clip_quantile']:g} quantile of the archive's weights)")
        if cal.target_ratios is not None:
            full = sum(np.isinf(lam).all() for lam, _ in cal.photo_lambdas(args.alpha).values())
            print(f"each of the {len(t['sha256'])} archive images is served with its own weight (effective sample "
                  f"size of the unclipped weights {cal.ess_own:.1f}); at alpha={args.alpha}, {full} of them look "
                  "unlike every calibration photo and get the band [0, 1]")
    print(f"lambda(alpha={args.alpha}) R,G,B = " + ", ".join(f"{v:.3f}" for v in lam)
          + f"; smallest alpha served: {cal.min_alpha():.4f}")
    print(f"guarantee at alpha={args.alpha}: {cal.guarantee(args.alpha)}")
    if cal.hint_points:
        print(f"note: calibrated with {cal.hint_points} random hint points per photo; use it for hinted photos only")
    return 0


def cmd_evaluate(args) -> int:
    if args.uncalibrated:
        raise ColorcubeError("evaluate needs a calibration; drop --uncalibrated")
    run = _run(args)
    res = colorcube.evaluate(list_images(args.folder), model=run.model, calibration=run.calibration,
                             alphas=args.alpha, settings=run.settings, beta=args.beta)
    res.pop("test_curves")
    Path(args.json).write_text(json.dumps(res, indent=1))
    q = res["quality"]

    def fmt(v):
        return ", ".join(f"{x:.3f}" for x in v)

    for a, r in res["alphas"].items():
        print(f"alpha={a}: coverage R,G,B = {fmt(r['coverage'])}; joint of these per-channel bands "
              f"{r['joint_coverage_of_per_channel_bands']:.3f}; joint-calibrated bands {r['joint_coverage']:.3f}; "
              "mean width " + ", ".join(f"{v:.1f}" for v in r["mean_width_255"]))
        pi = r["per_image"]
        if "share" in pi:
            ci = "; ".join(f"{lo:.2f}-{hi:.2f}" for lo, hi in pi["ci"])
            print(f"  per-image (beta {pi['beta']:g}, its own lambda): share of images with >= {1 - pi['beta']:.0%} of "
                  f"pixels covered R,G,B = {fmt(pi['share'])} (95% CI {ci}), nominal {1 - float(a):.2f}")
        if float(a) != min(args.alpha, key=lambda v: abs(v - 0.1)):
            continue  # the breakdowns for the alpha nearest 0.1 (all alphas are in the JSON)
        for key, groups in r["groups"].items():
            print(f"  by {key} at alpha={a} (R, G, B, joint; 95% CI over images):")
            for g, v in groups.items():
                ci = "" if v["ci"] is None else " [" + "; ".join(
                    f"{lo:.2f}-{hi:.2f}" for lo, hi in zip(v["ci"][0][:3], v["ci"][1][:3])) + "]"
                print(f"    {g:24s} n={v['n']:4d}  {fmt(v['coverage'])}{ci}")
    print(f"guarantee at alpha={args.alpha[0]}: {res['guarantee'][str(args.alpha[0])]}")
    print(f"PSNR {q['psnr']:.2f} dB (gray {q['psnr_gray']:.2f}); CIEDE2000 {q['ciede2000']:.2f} "
          f"(gray {q['ciede2000_gray']:.2f}); colourfulness ratio {q['colorfulness_ratio']:.2f}")
    return 0


def cmd_demo(args) -> int:
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    truth8 = skimage_data.chelsea()  # a colour photo that ships with scikit-image
    gray_path = out / "chelsea_gray.png"
    Image.fromarray(truth8).convert("L").save(gray_path)
    print(f"bundled sample: scikit-image's 'chelsea' made gray -> {gray_path}")
    args.images = [str(gray_path)]
    rc = cmd_colorize(args)
    if rc:
        return rc
    truth = truth8.astype(np.float32) / 255.0
    color = np.asarray(Image.open(out / "chelsea_gray_color.png"), dtype=np.float32) / 255.0
    with np.load(out / "chelsea_gray_intervals.npz") as z:
        interval = np.stack([z["R"], z["G"], z["B"]], axis=2)
    gray = np.asarray(Image.open(gray_path), dtype=np.float32) / 255.0
    cov = coverage(interval, truth)
    print(f"against the true colours: PSNR {psnr(color, truth):.2f} dB (gray input {psnr(np.dstack([gray] * 3), truth):.2f});"
          f" pixels inside their R, G, B bands: " + ", ".join(f"{v:.3f}" for v in cov)
          + f" (nominal {1 - args.alpha:.2f}; one photo, so expect scatter)")
    return 0


def cmd_archive(args) -> int:
    client = None
    if args.scheduler:
        distributed = colorcube._deferred("distributed", extra="distributed", needed_for="--scheduler")
        try:
            client = distributed.Client(args.scheduler, timeout="20s")
        except OSError as exc:
            raise ColorcubeError(f"--scheduler {args.scheduler}: cannot connect ({exc})") from exc
    try:
        res = colorcube.colorize_archive(args.source, args.output, alpha=args.alpha, chunk=args.chunk, device=args.device,
                               calibration=None if args.uncalibrated else (args.calibration or "default"),
                               weights=args.weights, settings=_settings(args), client=client,
                               max_pixels=args.max_pixels, compression=args.compression, workers=args.workers,
                               allow_damaged=args.allow_damaged, hints=args.hints, batch=args.batch)
    finally:
        if client is not None:
            client.close()
    for source, reason in res.damaged.items():
        print(f"colorcube: warning: {source}: damaged file ({reason}); colorized anyway", file=sys.stderr)
    for source, reason in res.failures.items():
        print(f"failed: {reason}", file=sys.stderr)
    print(f"archive {args.output}: {res.summary()}")
    if args.verbose and res.stage_times.seconds:
        print(f"stages: {res.stage_times.summary()}")
    return 1 if res.failed else 0


def cmd_export(args) -> int:
    tree = colorcube.open_archive(args.archive)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    for name, node in tree.children.items():
        ds = node.to_dataset()
        write_png(out / f"{name}_color.png", ds["rgb"].values)
        if args.format == "tiff":
            bands = np.round(ds["interval"].values.reshape(ds.sizes["y"], ds.sizes["x"], 6) * 65535).astype(np.uint16)
            tifffile.imwrite(out / f"{name}_bands.tif", bands, photometric="minisblack", planarconfig="contig",
                             metadata={"axes": "YXS", "channels": "R_lower,R_upper,G_lower,G_upper,B_lower,B_upper"})
        else:
            write_intervals_npz(out / f"{name}_intervals.npz", ds["interval"].values, alpha=ds.attrs["alpha"])
    print(f"exported {len(tree.children)} images from {args.archive} to {out}")
    return 0


def cmd_train(args) -> int:
    if args.arch == "v3":
        frozen, finetune, error = args.phase_minutes
        opts3 = V3Options(frozen_minutes=frozen, finetune_minutes=finetune, error_minutes=error,
                                             seed=args.seed, device=args.device, init=args.init,
                                             max_side=args.max_side, precision=args.precision, workers=args.workers)
        train_v3(args.folder, args.output, options=opts3, resume=args.resume)
        print(f"trained; weights in {Path(args.output) / 'final.safetensors'}")
        return 0
    opts = TrainOptions(minutes=args.minutes, batch=args.batch, crop=args.crop, lr=args.lr, seed=args.seed,
                        rebalance=args.rebalance, width=args.width, device=args.device, init=args.init,
                        max_side=args.max_side, val_every=args.val_every, precision=args.precision,
                        workers=args.workers, error_fraction=args.error_fraction)
    history = train(args.folder, args.output, options=opts, resume=args.resume)
    last = history[-1] if history else {}
    print(f"trained {last.get('step', 0)} steps; weights in {Path(args.output) / 'final.safetensors'}")
    return 0
