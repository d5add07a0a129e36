"""Peak memory colorizing one huge scan into an archive.

    python benchmarks/memory.py [--side 10000] [--chunk 1024]

Makes a gray scan of SIDE x SIDE pixels from a real photo (scikit-image's
'astronaut', upscaled with Lanczos), then runs ``colorcube archive`` on it in a
child process and prints that process's peak resident memory (RSS) and time.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from throughput import run_child


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", type=int, default=10000)
    ap.add_argument("--chunk", type=int, default=1024)
    args = ap.parse_args()
    from PIL import Image
    from skimage import data

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "scans"
        src.mkdir()
        scan = src / f"astronaut_{args.side}.png"
        big = Image.fromarray(data.astronaut()).convert("L").resize((args.side, args.side), Image.Resampling.LANCZOS)
        big.save(scan, compress_level=1)
        del big
        out = Path(tmp) / "out.zarr"
        cmd = [sys.executable, "-m", "colorcube.apps.cli", "archive", str(src), str(out), "--chunk", str(args.chunk),
               "--max-pixels", str(args.side * args.side + 1)]
        code, stdout, stderr, seconds, peak_mb = run_child(cmd)
        size_mb = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 2**20
    if code:
        sys.exit(f"colorcube archive failed:\n{stderr}")
    mp = args.side * args.side / 1e6
    print(f"scan {args.side} x {args.side} ({mp:.0f} MP), chunk {args.chunk}: peak RSS {peak_mb:.0f} MiB, "
          f"{seconds:.1f} s ({mp / seconds:.2f} MP/s), archive {size_mb:.0f} MiB on disk")
    print(stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
