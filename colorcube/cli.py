"""The ``colorcube`` command line: demo, colorize, archive, export, calibrate, evaluate, train.

Every command prints a one-line ``colorcube: error: ...`` and exits non-zero on
bad input, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .errors import ColorcubeError

__all__ = ["main"]


def _settings(args):
    """PipelineSettings from --working-size/--vividness/--no-guided/--precision; None when none is given."""
    from .pipeline import PipelineSettings

    given = {"working_size": args.working_size, "vividness": args.vividness, "guided": False if args.no_guided else None,
             "precision": args.precision}
    given = {k: v for k, v in given.items() if v is not None}
    return PipelineSettings(**given) if given else None


def _model(args):
    from .model import load_pretrained, load_weights

    return load_weights(args.weights, device=args.device) if args.weights else load_pretrained(device=args.device)


def _load(args):
    from .pipeline import resolve_calibration

    model = _model(args)
    if args.uncalibrated:
        return model, None
    return model, resolve_calibration(args.calibration or "default", model)


def _unique_stems(paths) -> list[str]:
    seen, stems = {}, []
    for p in paths:
        stem = Path(p).stem
        seen[stem] = seen.get(stem, 0) + 1
        stems.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return stems


def _cmd_colorize(args) -> int:
    from tqdm.auto import tqdm

    from .conformal import _check_alpha
    from .io import write_intervals_npz, write_png
    from .pipeline import colorize
    from .store import cube_to_zarr

    _check_alpha(args.alpha)
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise ColorcubeError(f"{out}: output exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    model, cal = _load(args)
    settings = _settings(args)
    if cal is not None and settings is not None:  # refuse a mismatch once, before any work
        cal.check_compatible(settings=settings.as_dict(model), where=args.calibration or "shipped calibration")
    failures = 0
    for path, stem in zip(tqdm(args.images, desc="colorize", unit="img", disable=len(args.images) < 2),
                          _unique_stems(args.images)):
        try:
            ds = colorize(path, alpha=args.alpha, model=model, calibration=cal, settings=settings,
                          max_pixels=args.max_pixels)
        except ColorcubeError as exc:
            print(f"colorcube: error: {exc}", file=sys.stderr)
            failures += 1
            continue
        write_png(out / f"{stem}_color.png", ds["rgb"].values)
        write_intervals_npz(out / f"{stem}_intervals.npz", ds["interval"].values, alpha=args.alpha,
                            attrs={"lambda": [float(v) for v in ds.attrs["lambda"]],
                                   "calibrated": bool(ds.attrs["calibrated"]),
                                   "method": ds.attrs["method"], "guarantee": ds.attrs["guarantee"]})
        if args.zarr:
            cube_to_zarr(ds, out / f"{stem}.zarr", compression=args.compression)
        print(f"{path}: wrote {out / (stem + '_color.png')} and {out / (stem + '_intervals.npz')}"
              f" ({ds.attrs['method']}, alpha={args.alpha})")
    if failures:
        print(f"colorcube: {failures} of {len(args.images)} images failed", file=sys.stderr)
        return 1
    return 0


def _cmd_calibrate(args) -> int:
    from .calibrate import calibrate, list_images
    from .pipeline import PipelineSettings

    model = _model(args)
    cal = calibrate(list_images(args.folder), model=model, settings=_settings(args) or PipelineSettings(),
                    method=args.method, delta=args.delta, joint=args.joint, source=args.source or str(args.folder))
    cal.to_file(args.output)
    lam = cal.lambda_for(0.1)
    print(f"calibrated on {cal.n} images -> {args.output}; lambda(alpha=0.1) R,G,B = "
          + ", ".join(f"{v:.3f}" for v in lam))
    return 0


def _cmd_evaluate(args) -> int:
    import json

    from .calibrate import list_images
    from .evaluate import evaluate

    model, cal = _load(args)
    if cal is None:
        raise ColorcubeError("evaluate needs a calibration; drop --uncalibrated")
    res = evaluate(list_images(args.folder), model=model, calibration=cal, alphas=args.alpha,
                   settings=_settings(args))
    res.pop("test_curves")
    Path(args.json).write_text(json.dumps(res, indent=1))
    q = res["quality"]
    for a, r in res["alphas"].items():
        print(f"alpha={a}: coverage R,G,B = " + ", ".join(f"{v:.3f}" for v in r["coverage"])
              + f"; joint {r['joint_coverage']:.3f}; mean width " + ", ".join(f"{v:.1f}" for v in r["mean_width_255"]))
    print(f"PSNR {q['psnr']:.2f} dB (gray {q['psnr_gray']:.2f}); CIEDE2000 {q['ciede2000']:.2f} "
          f"(gray {q['ciede2000_gray']:.2f}); colourfulness ratio {q['colorfulness_ratio']:.2f}")
    return 0


def _cmd_demo(args) -> int:
    import numpy as np
    from PIL import Image
    from skimage import data

    from .metrics import coverage, psnr

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    truth8 = data.chelsea()  # a colour photo that ships with scikit-image
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
    from .archive import colorize_archive

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
        res = colorize_archive(args.source, args.output, alpha=args.alpha, chunk=args.chunk, device=args.device,
                               calibration=None if args.uncalibrated else (args.calibration or "default"),
                               weights=args.weights, settings=_settings(args), client=client,
                               max_pixels=args.max_pixels, compression=args.compression)
    finally:
        if client is not None:
            client.close()
    for source, reason in res.failures.items():
        print(f"failed: {reason}", file=sys.stderr)
    print(f"archive {args.output}: {res.summary()}")
    return 1 if res.failed else 0


def _cmd_export(args) -> int:
    import numpy as np

    from .archive import open_archive
    from .io import write_intervals_npz, write_png

    tree = open_archive(args.archive)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    for name, node in tree.children.items():
        ds = node.to_dataset()
        write_png(out / f"{name}_color.png", ds["rgb"].values)
        if args.format == "tiff":
            import tifffile

            bands = np.round(ds["interval"].values.reshape(ds.sizes["y"], ds.sizes["x"], 6) * 65535).astype(np.uint16)
            tifffile.imwrite(out / f"{name}_bands.tif", bands, photometric="minisblack", planarconfig="contig",
                             metadata={"axes": "YXS", "channels": "R_lower,R_upper,G_lower,G_upper,B_lower,B_upper"})
        else:
            write_intervals_npz(out / f"{name}_intervals.npz", ds["interval"].values, alpha=ds.attrs["alpha"])
    print(f"exported {len(tree.children)} images from {args.archive} to {out}")
    return 0


def _add_output_args(p, *, max_pixels_help="refuse larger images (bomb guard)"):
    """Options of the commands that colorize: zarr compression, pixel ceiling, model and calibration."""
    from .store import COMPRESSIONS

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
    from .train import TrainOptions, train

    opts = TrainOptions(minutes=args.minutes, batch=args.batch, crop=args.crop, lr=args.lr, seed=args.seed,
                        rebalance=args.rebalance, width=args.width, device=args.device,
                        max_side=args.max_side, val_every=args.val_every)
    history = train(args.folder, args.output, options=opts, resume=args.resume)
    last = history[-1] if history else {}
    print(f"trained {last.get('step', 0)} steps; weights in {Path(args.output) / 'best.safetensors'}")
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
    _add_output_args(p)
    p.set_defaults(func=_cmd_colorize)

    p = sub.add_parser("demo", help="colorize the bundled sample photo and compare with its true colours")
    p.add_argument("-o", "--output", default="colorcube-demo", help="output folder")
    p.add_argument("--alpha", type=float, default=0.1)
    p.add_argument("--zarr", action="store_true", help="also write the cube as zarr")
    _add_output_args(p, max_pixels_help=argparse.SUPPRESS)
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("archive", help="colorize a folder/glob/list/zarr of images into one zarr archive")
    p.add_argument("source", help="folder (recursive), glob, text file of paths, or zarr of gray images")
    p.add_argument("output", help="zarr store path or fsspec URL (e.g. out.zarr, file:///data/out.zarr)")
    p.add_argument("--alpha", type=float, default=0.1)
    p.add_argument("--chunk", type=int, default=1024, help="spatial chunk side (pixels)")
    p.add_argument("--scheduler", help="dask.distributed scheduler address (default: local threads)")
    _add_output_args(p)
    p.set_defaults(func=_cmd_archive)

    p = sub.add_parser("export", help="write each archived image as PNG plus its bands (npz or 16-bit TIFF)")
    p.add_argument("archive")
    p.add_argument("output", help="folder")
    p.add_argument("--format", choices=("png", "tiff"), default="png",
                   help="png: colour PNG + bands .npz; tiff: colour PNG + 16-bit 6-channel bands TIFF")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("calibrate", help="conformal calibration on a folder of colour photos")
    p.add_argument("folder")
    p.add_argument("-o", "--output", required=True, help="calibration file to write (.cal)")
    p.add_argument("--method", choices=("crc", "rcps"), default="crc")
    p.add_argument("--delta", type=float, default=0.1, help="RCPS: failure probability over calibration sets")
    p.add_argument("--joint", action="store_true", help="joint R, G, B coverage")
    p.add_argument("--source", help="description of the photos, kept in the provenance")
    _add_model_args(p, calibration=False)
    p.set_defaults(func=_cmd_calibrate)

    p = sub.add_parser("evaluate", help="coverage and quality on colour photos with truth")
    p.add_argument("folder")
    p.add_argument("--json", required=True, help="write the full results here")
    p.add_argument("--alpha", type=float, nargs="+", default=[0.05, 0.1, 0.2])
    _add_model_args(p)
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("train", help="train the colorizer on a folder of colour photos")
    p.add_argument("folder", help="folder of colour photos (searched recursively)")
    p.add_argument("-o", "--output", required=True, help="run folder: checkpoints, weights, history")
    p.add_argument("--minutes", type=float, default=60.0, help="wall-clock training budget")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--crop", type=int, default=128, help="crop side in pixels (multiple of 16)")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rebalance", type=float, default=0.0, help="class-rebalancing strength in [0, 1]")
    p.add_argument("--width", type=int, default=64, help="network width")
    p.add_argument("--max-side", type=int, default=320, help="shrink training photos to this longer side")
    p.add_argument("--val-every", type=int, default=1, help="validate every N epochs")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT/checkpoint.pt")
    p.set_defaults(func=_cmd_train)
    return parser


def main(argv=None) -> int:
    """Entry point of the ``colorcube`` command; returns the exit status."""
    import warnings

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
