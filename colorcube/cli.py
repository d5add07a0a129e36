"""The ``colorcube`` command line: demo, colorize, archive, export, calibrate, evaluate, train.

Every command prints a one-line ``colorcube: error: ...`` and exits non-zero on
bad input, never a traceback.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import logging
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image
from skimage import data as skimage_data
from tqdm.auto import tqdm

import colorcube

from .codes import COMPRESSIONS, decode
from .conformal import check_alpha
from .errors import ColorcubeError, HintError
from .hints import find_hint_file
from .io import list_images, write_intervals_npz, write_png
from .metrics import coverage, psnr
from .pipeline import colorize_codes, load_kernels, prepare_run
from .reference import reference_histogram
from .settings import PipelineSettings

__all__ = ["main"]


def _settings(args):
    """PipelineSettings from --working-size/--vividness/--no-guided/--precision; None when none is given."""
    given = {"working_size": args.working_size, "vividness": args.vividness, "guided": False if args.no_guided else None,
             "precision": args.precision}
    given = {k: v for k, v in given.items() if v is not None}
    return PipelineSettings(**given) if given else None


def _run(args, *, alpha: float = 0.1):
    """The run of a colorizing command (:func:`colorcube.pipeline.prepare_run`) from its options."""
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


def _cmd_colorize(args) -> int:
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
    """:func:`load_kernels` for the background thread: a failure there is the main thread's to
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
            ds = colorcube.cube.code_dataset(done.codes, attrs, done.coefficients, done.hints)
            colorcube.store.cube_to_zarr(ds, out / f"{stem}.zarr", compression=args.compression)
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


def _add_guidance_args(p, *, reference: bool = True):
    """--hints (and, with ``reference``, --reference and --reference-strength) of the commands that colorize;
    without ``reference`` (archive) --hints is a folder of per-image hint files only."""
    folder = "a folder of per-image hint files, <image stem>.json or <image stem>.png"
    p.add_argument("--hints", metavar="PATH",
                   help=(f'colour hints: a .json file [{{"x": col, "y": row, "rgb": [r, g, b]}}, ...] (0-255, input '
                         "pixels) or an RGBA .png scribble of the image's size (opaque pixels are strokes); "
                         f"or {folder}"
                         if reference else f"colour hints: {folder} (images without one: none)"))
    if reference:
        p.add_argument("--reference", metavar="PHOTO",
                       help="a colour photo whose colours (per lightness band) the result is steered toward")
        p.add_argument("--reference-strength", type=float, default=1.0,
                       help="how far toward the reference's colours (0: not at all, 1: match them; default 1)")


def _cmd_calibrate(args) -> int:
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


def _cmd_evaluate(args) -> int:
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


def _cmd_demo(args) -> int:
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    truth8 = skimage_data.chelsea()  # a colour photo that ships with scikit-image
    gray_path = out / "chelsea_gray.png"
    Image.fromarray(truth8).convert("L").save(gray_path)
    print(f"bundled sample: scikit-image's 'chelsea' made gray -> {gray_path}")
    args.images = [str(gray_path)]
    rc = _cmd_colorize(args)
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


def _cmd_archive(args) -> int:
    client = None
    if args.scheduler:
        try:
            from distributed import Client
        except ImportError as exc:
            raise ColorcubeError("--scheduler needs dask.distributed: pip install 'colorcube[distributed]'") from exc
        try:
            client = Client(args.scheduler, timeout="20s")
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


def _cmd_export(args) -> int:
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


def _add_output_args(p, *, max_pixels_help="refuse larger images (bomb guard)"):
    """Options of the commands that colorize: zarr compression, pixel ceiling, model and calibration."""
    p.add_argument("--compression", choices=COMPRESSIONS, default="none",
                   help="zarr compression: none is fastest, lz4/zstd write ~25-40%% fewer bytes")
    p.add_argument("--max-pixels", type=int, default=200_000_000, help=max_pixels_help)
    _add_model_args(p)


def _add_model_args(p, *, calibration=True):
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--weights", help="a .safetensors weights file (default: the shipped model)")
    p.add_argument("--working-size", type=int, help="longer side of the network input (default 384)")
    p.add_argument("--vividness", type=float, help="annealed-mean temperature (lower: more saturated)")
    p.add_argument("--no-guided", action="store_true", help="bilinear instead of guided upsampling")
    p.add_argument("--precision", choices=["bfloat16", "float32"],
                   help="network arithmetic (default bfloat16; float32 for CPUs without bf16 instructions)")
    if calibration:
        p.add_argument("--calibration", help="a .cal file (default: the shipped calibration)")
        p.add_argument("--uncalibrated", action="store_true", help="heuristic bands (lambda = 1), no guarantee")


def _cmd_train(args) -> int:
    if args.arch == "v3":
        frozen, finetune, error = args.phase_minutes
        opts3 = colorcube.train_v3.V3Options(frozen_minutes=frozen, finetune_minutes=finetune, error_minutes=error,
                                             seed=args.seed, device=args.device, init=args.init,
                                             max_side=args.max_side, precision=args.precision, workers=args.workers)
        colorcube.train_v3.train_v3(args.folder, args.output, options=opts3, resume=args.resume)
        print(f"trained; weights in {Path(args.output) / 'final.safetensors'}")
        return 0
    opts = colorcube.train.TrainOptions(minutes=args.minutes, batch=args.batch, crop=args.crop, lr=args.lr, seed=args.seed,
                        rebalance=args.rebalance, width=args.width, device=args.device, init=args.init,
                        max_side=args.max_side, val_every=args.val_every, precision=args.precision,
                        workers=args.workers, error_fraction=args.error_fraction)
    history = colorcube.train.train(args.folder, args.output, options=opts, resume=args.resume)
    last = history[-1] if history else {}
    print(f"trained {last.get('step', 0)} steps; weights in {Path(args.output) / 'final.safetensors'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="colorcube", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("colorize", help="colorize images: <stem>_color.png and <stem>_intervals.npz")
    p.add_argument("images", nargs="+", help="gray (or colour) image files")
    p.add_argument("-o", "--output", default=".", help="output folder (default: current folder)")
    p.add_argument("--alpha", type=float, default=0.1, help="miscoverage of the bands (default 0.1)")
    p.add_argument("--zarr", action="store_true", help="also write <stem>.zarr (the cube)")
    _add_guidance_args(p)
    _add_output_args(p)
    p.set_defaults(func=_cmd_colorize)

    p = sub.add_parser("demo", help="colorize the bundled sample photo and compare with its true colours")
    p.add_argument("-o", "--output", default="colorcube-demo", help="output folder")
    p.add_argument("--alpha", type=float, default=0.1)
    p.add_argument("--zarr", action="store_true", help="also write the cube as zarr")
    _add_output_args(p, max_pixels_help=argparse.SUPPRESS)
    p.set_defaults(func=_cmd_demo, hints=None, reference=None, reference_strength=1.0)

    p = sub.add_parser("archive", help="colorize a folder/glob/list/zarr of images into one zarr archive")
    p.add_argument("source", help="folder (recursive), glob, text file of paths, or zarr of gray images")
    p.add_argument("output", help="zarr store path or fsspec URL (e.g. out.zarr, file:///data/out.zarr)")
    p.add_argument("--alpha", type=float, default=0.1)
    p.add_argument("--chunk", type=int, default=1024, help="spatial chunk side (pixels)")
    p.add_argument("--scheduler", help="dask.distributed scheduler address (default: local threads)")
    p.add_argument("--workers", type=int, help="threads reading and writing images without --scheduler "
                                               "(default: CPU count)")
    p.add_argument("--batch", type=int, help="images per network call (default 8 on a CPU, 32 on a GPU)")
    p.add_argument("--allow-damaged", action="store_true",
                   help="colorize files with detectable damage (e.g. a PNG chunk with a wrong CRC) with a warning, "
                        "marked damaged in the index, instead of refusing them")
    _add_guidance_args(p, reference=False)
    _add_output_args(p)
    p.set_defaults(func=_cmd_archive)

    p = sub.add_parser("export", help="write each archived image as PNG plus its bands (npz or 16-bit TIFF)")
    p.add_argument("archive")
    p.add_argument("output", help="folder")
    p.add_argument("--format", choices=("png", "tiff"), default="png",
                   help="png: colour PNG + bands .npz; tiff: colour PNG + 16-bit 6-channel bands TIFF")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("calibrate", help="conformal calibration on colour photos (optionally weighted for an archive)")
    p.add_argument("folder", metavar="PHOTOS",
                   help="colour photos with their true colours: folder (recursive), glob or text file of paths")
    p.add_argument("-o", "--output", required=True, help="calibration file to write (.cal)")
    p.add_argument("--method", choices=("crc", "rcps"), default="crc")
    p.add_argument("--delta", type=float, default=0.1, help="RCPS: failure probability over calibration sets")
    p.add_argument("--joint", action="store_true", help="joint R, G, B coverage")
    p.add_argument("--per-image", type=float, metavar="BETA",
                   help="per-image guarantee: with probability >= 1 - alpha a new photo has >= 1 - BETA of its "
                        "pixels covered (e.g. 0.2)")
    p.add_argument("--target", metavar="GRAY",
                   help="your archive of gray images (folder, glob, list or zarr; no colours needed): weight the "
                        "calibration photos by how much they look like it (covariate shift)")
    p.add_argument("--target-name", help="name of the archive in the guarantee (default: the GRAY argument)")
    p.add_argument("--clip-quantile", type=float, default=0.95,
                   help="--target: the bound on a new archive photo's weight is this quantile of the archive's "
                        "weights (1: the largest; more conservative)")
    p.add_argument("--hints", type=int, default=0, metavar="K",
                   help="calibrate for hinted photos: K random true-colour hint points per photo (kept in the "
                        "calibration; its guarantee then holds for photos hinted that way, not without hints)")
    p.add_argument("--seed", type=int, default=0, help="seed of the --target cross-fitting folds and --hints points")
    p.add_argument("--alpha", type=float, default=0.1,
                   help="the alpha you will use: lambda is printed for it, and a calibration that cannot serve it "
                        "is refused (no file written)")
    p.add_argument("--cache", help="folder keeping each photo's loss curves and features (reused across runs)")
    p.add_argument("--source", help="description of the photos, kept in the provenance")
    _add_model_args(p, calibration=False)
    p.set_defaults(func=_cmd_calibrate)

    p = sub.add_parser("evaluate", help="coverage and quality on colour photos with truth")
    p.add_argument("folder")
    p.add_argument("--json", required=True, help="write the full results here")
    p.add_argument("--alpha", type=float, nargs="+", default=[0.05, 0.1, 0.2])
    p.add_argument("--beta", type=float,
                   help="per-image report: share of photos with >= 1 - BETA of pixels covered (default: the "
                        "calibration's own, else 0.2)")
    _add_model_args(p)
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("train", help="train the colorizer on a folder of colour photos")
    p.add_argument("folder", help="folder of colour photos (searched recursively)")
    p.add_argument("-o", "--output", required=True, help="run folder: checkpoints, weights, history")
    p.add_argument("--arch", choices=["v3", "v2"], default="v3",
                   help="v3: ImageNet-pretrained encoder (needs colorcube[train]); v2: from scratch")
    p.add_argument("--phase-minutes", type=float, nargs=3, default=(20.0, 50.0, 8.0),
                   metavar=("FROZEN", "FINETUNE", "ERROR"), help="v3: wall-clock budget of each phase")
    p.add_argument("--minutes", type=float, default=60.0, help="v2: wall-clock training budget")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--crop", type=int, default=128, help="crop side in pixels (multiple of 16)")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rebalance", type=float, default=0.5, help="class-rebalancing strength in [0, 1]")
    p.add_argument("--width", type=int, default=64, help="network width")
    p.add_argument("--max-side", type=int, default=256, help="shrink training photos to this longer side")
    p.add_argument("--val-every", type=int, default=1, help="validate every N epochs")
    p.add_argument("--error-fraction", type=float, default=0.12,
                   help="share of the budget spent fitting the error head (colour network frozen)")
    p.add_argument("--init", help="weights file to warm-start from (an older layout is widened)")
    p.add_argument("--precision", choices=["bfloat16", "float32"], default="bfloat16",
                   help="autocast dtype (bfloat16 uses AMX on CPUs that have it)")
    p.add_argument("--workers", type=int, default=2, help="processes decoding the photos")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT/checkpoint.pt")
    p.set_defaults(func=_cmd_train)
    return parser


def _enable_faulthandler() -> None:
    """Name the place of a hard crash (a segfault in compiled code) on stderr, with every thread's stack."""
    if faulthandler.is_enabled():  # e.g. under pytest, which has its own
        return
    try:
        faulthandler.enable(file=sys.stderr, all_threads=True)
    except (AttributeError, ValueError, OSError):  # a stderr without a file descriptor (captured, closed)
        pass


def main(argv=None) -> int:
    """Entry point of the ``colorcube`` command; returns the exit status."""
    _enable_faulthandler()
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    # one line per warning on the command line, not Python's source-line echo
    previous = warnings.showwarning
    warnings.showwarning = lambda message, category, *rest, **kw: print(
        f"colorcube: warning: {message}", file=sys.stderr)
    try:
        return args.func(args)
    except ColorcubeError as exc:
        print(f"colorcube: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("colorcube: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = previous


if __name__ == "__main__":
    sys.exit(main())
