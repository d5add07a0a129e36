"""The ``.cal`` file: a zip of ``.npy`` arrays and JSON metadata under a SHA-256 checksum (no pickle)."""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np

from ..errors import CalibrationError
from ..files import write_atomic

__all__ = ["read_cal", "today", "write_cal"]

_ARRAYS = ("curves", "joint_curves", "grid", "features", "weights", "ratios", "target_ratios")


def write_cal(path: Path, arrays: dict, meta: dict) -> None:
    """Write ``arrays`` (name -> ndarray) and ``meta`` (JSON-able) with their checksum, atomically."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8),
                        sha256=np.frombuffer(_digest(arrays, meta).encode(), np.uint8))
    write_atomic(path, buf.getvalue())


def read_cal(path: Path, *, readable: tuple) -> tuple[dict, dict]:
    """``(arrays, meta)`` of a ``.cal`` file; CalibrationError if it is unreadable, in a format not
    in ``readable`` (a newer one: checked before the checksum, which a newer format may compute
    otherwise), or its checksum does not match (the file was modified or corrupted)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in _ARRAYS if k in z.files}
            meta_bytes, stored = z["meta"].tobytes(), z["sha256"].tobytes().decode()
        meta = json.loads(meta_bytes)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError, UnicodeDecodeError) as exc:
        raise CalibrationError(f"{path}: not a readable colorcube calibration file ({exc})") from exc
    if meta.get("format") not in readable:
        raise CalibrationError(f"{path}: unknown calibration format {meta.get('format')!r}")
    if _digest(arrays, meta) != stored:
        raise CalibrationError(f"{path}: checksum mismatch, the file was modified or corrupted; recalibrate")
    return arrays, meta


def _digest(arrays: dict, meta: dict) -> str:
    h = hashlib.sha256(json.dumps(meta, sort_keys=True).encode())
    for key in sorted(arrays):
        h.update(key.encode())
        h.update(np.ascontiguousarray(arrays[key]).tobytes())
    return h.hexdigest()


def today() -> str:
    """ISO date stamp for provenance."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
