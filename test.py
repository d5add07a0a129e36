"""Colorize one photograph: ``python test.py /full/path/to/image.png``.

Writes into the current folder ``<stem>_color.png`` (8-bit RGB, the input's
size) and ``<stem>_intervals.npz`` with arrays ``R``, ``G``, ``B`` of shape
(m, n, 2) (lower, upper) in [0, 1] and ``alpha``. Options: ``--alpha A``,
``--zarr`` (also ``<stem>.zarr``), ``--calibration FILE``, ``--hints FILE``
(``.json`` points or an RGBA ``.png`` scribble), ``--reference PHOTO``
(``--reference-strength S``).
"""

import argparse
import os
import sys

from colorcube.apps.cli import main


def run(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", help="path of the image to colorize")
    parser.add_argument("--alpha", default="0.1", help="miscoverage of the bands (default 0.1)")
    parser.add_argument("--zarr", action="store_true", help="also write <stem>.zarr")
    parser.add_argument("--calibration", help="a .cal file (default: the shipped one)")
    parser.add_argument("--hints", help='colour hints: .json [{"x": col, "y": row, "rgb": [r, g, b]}, ...] '
                                        "or an RGBA .png scribble of the image's size")
    parser.add_argument("--reference", help="a colour photo to steer the colours toward")
    parser.add_argument("--reference-strength", help="0: ignore the reference, 1: match its colours (default)")
    args = parser.parse_args(argv)
    forwarded = ["colorize", args.image, "-o", ".", "--alpha", args.alpha]
    if args.zarr:
        forwarded.append("--zarr")
    for option in ("calibration", "hints", "reference", "reference_strength"):
        if getattr(args, option):
            forwarded += ["--" + option.replace("_", "-"), getattr(args, option)]
    return main(forwarded)


if __name__ == "__main__":
    status = run()
    # Everything is written and closed; skip the interpreter's teardown of torch and numba,
    # which took 0.6 s of a 3-second run on this project's CPU (timed around os._exit).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
