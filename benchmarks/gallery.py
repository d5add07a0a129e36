"""How fast the gallery shows its first page over a large archive, and how much it reads.

    python benchmarks/gallery.py [--photos 2000] [--side 64] [--page-size 24] [--out DIR]

Builds an archive of ``--photos`` small random cubes
(``colorcube.testing.synthetic_archive``: each marked complete with its band uncertainty,
a twentieth marked failed), then times in this process: the index
(``colorcube.archive_index``: every group's attributes) and the gallery widget up to its
first page (index, order, the page's thumbnails from the stored colour codes). Prints
both, the thumbnails read (the page size: nothing else is opened) and the peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import colorcube
from colorcube.cube.index import UNCERTAINTY_COLUMNS
from colorcube.testing import synthetic_archive


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=2000)
    ap.add_argument("--side", type=int, default=64, help="photo height in pixels (width 1.5x)")
    ap.add_argument("--page-size", type=int, default=24)
    ap.add_argument("--out", help="archive folder (default: a temporary one)")
    args = ap.parse_args()
    out = Path(args.out or tempfile.mkdtemp()) / "gallery.zarr"
    if not out.exists():
        synthetic_archive(out, args.photos, side=args.side, progress=True)
    t0 = time.perf_counter()
    index = colorcube.archive_index(out)
    t_index = time.perf_counter() - t0
    t0 = time.perf_counter()
    view = colorcube.gallery(out, page_size=args.page_size, calibration=None)
    t_page = time.perf_counter() - t0
    g = view.gallery
    assert set(UNCERTAINTY_COLUMNS) <= set(index.columns)
    print(f"{len(index)} photos ({(index.status == 'failed').sum()} failed) in {out}")
    print(f"archive_index: {t_index:.2f} s; gallery to its first page: {t_page:.2f} s "
          f"({g.reads} thumbnails read, page size {args.page_size}); "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
