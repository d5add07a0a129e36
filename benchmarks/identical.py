"""Are the cubes of this checkout the cubes of an earlier commit, bit for bit?

    python benchmarks/identical.py [FOLDER] [--base fe37fb8] [--limit 40] [--weights W.safetensors]

Checks BASE out into a temporary git worktree, colorizes the first LIMIT photos of FOLDER
(default ../shared/data/bench, read as gray) in both trees (each in its own process), and
compares the stored codes of gray, rgb and interval. Each tree uses its own shipped model and
calibration, or with ``--weights`` both use that file, uncalibrated (for a BASE whose code
cannot load the shipped network: e.g. BASE's own weights, ``git show
fe37fb8:colorcube/weights/colorcube-v2.safetensors > v2.safetensors``). Prints the number of photos and pixels that differ; exit status 1 if any does.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / ".." / "shared" / "data" / "bench"
# run inside each tree: colorize every photo, save the codes of the cube (code = value * n)
_RUN = """
import importlib, sys, numpy as np, colorcube
weights, paths, out = sys.argv[1], sys.argv[2:-1], sys.argv[-1]
options = {}
if weights != "-":
    for where in ("colorcube.weights", "colorcube.model", "colorcube.network.weights"):  # each tree's home of it
        try:
            load_weights = importlib.import_module(where).load_weights
            break
        except (ImportError, AttributeError):
            continue
    options = {"model": load_weights(weights), "calibration": None}
arrays = {}
for i, p in enumerate(paths):
    ds = colorcube.colorize(p, **options)
    for name, n in (("gray", 65535), ("rgb", 255), ("interval", 255)):
        arrays[f"{i}_{name}"] = np.round(ds[name].values.astype(np.float64) * n).astype(np.int32)
np.savez(out, **arrays)
"""


def codes_of(tree: Path, paths: list, out: Path, weights: str) -> dict:
    env = {"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin", "HOME": str(Path.home())}
    proc = subprocess.run([sys.executable, "-c", _RUN, weights, *map(str, paths), str(out)], cwd=tree, env=env,
                          capture_output=True, text=True, check=False)
    if proc.returncode:
        sys.exit(f"colorizing in {tree} failed:\n{proc.stderr[-3000:]}")
    with np.load(out) as z:
        return {k: z[k] for k in z.files}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", nargs="?", default=str(DEFAULT))
    ap.add_argument("--base", default="fe37fb8", help="the earlier commit (default: before the issue-15 refactor)")
    ap.add_argument("--limit", type=int, default=40)
    ap.add_argument("--weights", help="one weights file for both trees, uncalibrated (default: each tree's shipped "
                                      "model and calibration)")
    args = ap.parse_args()
    weights = str(Path(args.weights).resolve()) if args.weights else "-"
    paths = sorted(p for p in Path(args.folder).iterdir() if p.suffix.lower() in (".png", ".jpg", ".tif"))
    paths = paths[: args.limit]
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base), args.base], check=True,
                       capture_output=True)
        try:
            old = codes_of(base, paths, Path(tmp) / "old.npz", weights)
            new = codes_of(ROOT, paths, Path(tmp) / "new.npz", weights)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], check=False)
    differ = {k for k in old if not np.array_equal(old[k], new[k])}
    pixels = sum(int((old[k] != new[k]).sum()) for k in differ)
    photos = {k.split("_")[0] for k in differ}
    print(f"{len(paths)} photos from {args.folder}, {args.base} against this checkout: {len(photos)} photos and "
          f"{pixels} stored values differ (gray, rgb and interval codes compared)")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
