"""Files written whole or not at all: a reader sees the old file or the new one, never a part."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

__all__ = ["atomic_path", "write_atomic"]


@contextlib.contextmanager
def atomic_path(path):
    """A temporary path beside ``path`` to write into: when the block ends it replaces
    ``path`` (a reader sees the old file or the new one, never a part); when the block
    raises it is removed. One per process and thread; it keeps ``path``'s suffix (numpy
    and torch writers append theirs otherwise)."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.{threading.get_ident()}.part{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path, data: bytes) -> None:
    """Write ``data`` to ``path`` through :func:`atomic_path`."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
