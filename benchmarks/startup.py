"""Wall time of ``python test.py`` on one 0.3-MP photo, and what its imports cost.

    python benchmarks/startup.py [--runs 3]

Makes a 640 x 480 gray photo from scikit-image's 'astronaut', runs ``test.py`` on it once
to fill numba's cache, then RUNS times, each a fresh interpreter as a user would start it,
and prints each wall time and the median. Then ``python -X importtime`` of the same run:
the total import time and the modules that cost most (cumulative), and whether xarray,
dask or zarr were imported at all (writing PNG and npz needs none of them).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image
from skimage import data

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        photo = Path(tmp) / "photo.png"
        Image.fromarray(data.astronaut()).convert("L").resize((640, 480), Image.Resampling.LANCZOS).save(photo)
        cmd = [sys.executable, str(ROOT / "test.py"), str(photo)]
        subprocess.run(cmd, cwd=tmp, check=True, capture_output=True)  # fills numba's cache
        walls = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            subprocess.run(cmd, cwd=tmp, check=True, capture_output=True)
            walls.append(time.perf_counter() - t0)
        print("python test.py on a 640 x 480 photo (0.31 MP): " + ", ".join(f"{w:.2f}" for w in walls)
              + f" s; median {statistics.median(walls):.2f} s")
        proc = subprocess.run([sys.executable, "-X", "importtime", *cmd[1:]], cwd=tmp, check=True,
                              capture_output=True, text=True)
    rows = []
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "cumulative" not in line:
            _, cumulative, field = line[len("import time:"):].split("|")
            # the name's indentation is its nesting: one space marks an import made at the top level
            depth = (len(field) - len(field.lstrip()) - 1) // 2
            rows.append((int(cumulative) / 1e6, field.strip(), depth))
    # the total counts each import once (the outermost ones); packages are listed wherever they were first
    # imported (numpy inside torch too), so their times overlap
    total = sum(s for s, _, depth in rows if depth == 0)
    packages = [(s, n) for s, n, _ in rows if "." not in n]
    print(f"imports (python -X importtime): {total:.2f} s in all; packages (cumulative, nested ones overlap): "
          + ", ".join(f"{n} {s:.2f} s" for s, n in sorted(packages, reverse=True)[:6]))
    loaded = {n for _, n, _ in rows}
    print("xarray / dask / zarr imported: " + ", ".join(f"{m} {'yes' if m in loaded else 'no'}"
                                                      for m in ("xarray", "dask", "zarr")))


if __name__ == "__main__":
    main()
