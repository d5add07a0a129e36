"""A colorized photo as plain files: an 8-bit RGB PNG, the R, G, B bands as ``.npz``, and PNG bytes
for display."""

from __future__ import annotations

import zipfile
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import ColorcubeError
from ..files import atomic_path

__all__ = ["png_bytes", "write_intervals_npz", "write_png"]


def png_bytes(rgb: np.ndarray) -> bytes:
    """An image as PNG bytes (for display): ``rgb`` (y, x, 3) or (y, x) float in [0, 1],
    rounded to 8 bits, or uint8 codes as they are."""
    rgb = np.asarray(rgb)
    data = rgb if rgb.dtype == np.uint8 else np.round(np.clip(rgb, 0, 1) * 255.0).astype(np.uint8)
    buf = BytesIO()
    Image.fromarray(data).save(buf, format="PNG")
    return buf.getvalue()


def write_png(path, rgb: np.ndarray) -> Path:
    """Write ``rgb`` : (y, x, 3) float in [0, 1], or uint8 codes as they are, as an 8-bit RGB PNG."""
    p = Path(path)
    rgb = np.asarray(rgb)
    data = rgb if rgb.dtype == np.uint8 else np.round(np.clip(rgb, 0, 1) * 255.0).astype(np.uint8)
    try:
        # zlib level 1: far quicker than the default level, for slightly larger files
        Image.fromarray(data, mode="RGB").save(p, compress_level=1)
    except OSError as exc:
        raise ColorcubeError(f"{p}: cannot write ({exc.strerror or exc})") from exc
    return p


def write_intervals_npz(path, interval: np.ndarray, *, alpha: float, attrs: dict | None = None) -> Path:
    """Write the R, G, B bands as ``R``, ``G``, ``B`` : (m, n, 2) float32 plus ``alpha``.

    Parameters
    ----------
    path : output ``.npz`` path (written atomically)
    interval : (y, x, 3, 2) float32 in [0, 1], last axis (lower, upper)
    alpha : float, the miscoverage level the bands were built for
    attrs : dict, optional; each entry stored as a 0-d array (e.g. ``lambda``)
    """
    p = Path(path)
    arrays = {name: np.ascontiguousarray(interval[:, :, i, :], dtype=np.float32) for i, name in enumerate("RGB")}
    arrays["alpha"] = np.float32(alpha)
    for key, value in (attrs or {}).items():
        arrays[key] = np.asarray(value)
    try:
        # an npz is a zip of .npy files; deflate level 1 writes it much faster than numpy's
        # savez_compressed (level 6), and the 1/255-grid bands compress nearly as well
        with atomic_path(p) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED,
                                                   compresslevel=1) as zf:
            for key, value in arrays.items():
                with zf.open(f"{key}.npy", "w", force_zip64=True) as fh:
                    np.lib.format.write_array(fh, np.asanyarray(value), allow_pickle=False)
    except OSError as exc:
        raise ColorcubeError(f"{p}: cannot write ({exc.strerror or exc})") from exc
    return p
