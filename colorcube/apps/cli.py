"""The ``colorcube`` command line: demo, colorize, archive, export, calibrate, evaluate, train.

Every command prints a one-line ``colorcube: error: ...`` and exits non-zero on
bad input, never a traceback.
"""

from __future__ import annotations

import argparse
import faulthandler
import logging
import sys
import warnings

from ..errors import ColorcubeError
from ..render.codes import COMPRESSIONS
from .commands import cmd_archive, cmd_calibrate, cmd_colorize, cmd_demo, cmd_evaluate, cmd_export, cmd_train

__all__ = ["build_parser", "main"]


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
    p.set_defaults(func=cmd_colorize)

    p = sub.add_parser("demo", help="colorize the bundled sample photo and compare with its true colours")
    p.add_argument("-o", "--output", default="colorcube-demo", help="output folder")
    p.add_argument("--alpha", type=float, default=0.1)
    p.add_argument("--zarr", action="store_true", help="also write the cube as zarr")
    _add_output_args(p, max_pixels_help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_demo, hints=None, reference=None, reference_strength=1.0)

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
    p.set_defaults(func=cmd_archive)

    p = sub.add_parser("export", help="write each archived image as PNG plus its bands (npz or 16-bit TIFF)")
    p.add_argument("archive")
    p.add_argument("output", help="folder")
    p.add_argument("--format", choices=("png", "tiff"), default="png",
                   help="png: colour PNG + bands .npz; tiff: colour PNG + 16-bit 6-channel bands TIFF")
    p.set_defaults(func=cmd_export)

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
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("evaluate", help="coverage and quality on colour photos with truth")
    p.add_argument("folder")
    p.add_argument("--json", required=True, help="write the full results here")
    p.add_argument("--alpha", type=float, nargs="+", default=[0.05, 0.1, 0.2])
    p.add_argument("--beta", type=float,
                   help="per-image report: share of photos with >= 1 - BETA of pixels covered (default: the "
                        "calibration's own, else 0.2)")
    _add_model_args(p)
    p.set_defaults(func=cmd_evaluate)

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
    p.set_defaults(func=cmd_train)
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
