"""Damage a file shows before it is decoded: a PNG whose chunks are cut short or fail their CRC,
a file shorter than its header promises. Found in one pass over the file's bytes."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

from ..errors import ImageReadError

__all__ = ["find_damage"]


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


_PNG_MAX_CHUNK = 2**31 - 1  # the PNG specification's limit on a chunk's length


def find_damage(path, *, data: bytes | None = None) -> str:
    """The first corruption of an image file that its decoder would let through, in words.

    PNG files (recognised by their signature, whatever the suffix) are walked
    chunk by chunk: every chunk's CRC-32 is checked, the first chunk must be
    IHDR, no chunk may run past the end of the file and the IEND chunk must be
    there. Bytes after IEND are ignored, as decoders do. Other formats are
    left to their decoders (which refuse truncated JPEG and TIFF files).

    Parameters
    ----------
    path : str or path-like, an existing file
    data : bytes, optional, the file's content when already read (the file is then not opened)

    Returns
    -------
    str, empty when no damage was found

    Raises
    ------
    ImageReadError
        The file cannot be read.
    """
    p = Path(path)
    if data is not None:  # bytes or a read-only mmap of the file
        if data[: len(_PNG_SIGNATURE)] != _PNG_SIGNATURE:
            return ""
        fh = io.BytesIO(data) if isinstance(data, bytes) else data
        fh.seek(len(_PNG_SIGNATURE))
        return _png_damage(fh, len(data))
    try:
        with open(p, "rb") as fh:
            if fh.read(len(_PNG_SIGNATURE)) != _PNG_SIGNATURE:
                return ""
            return _png_damage(fh, os.fstat(fh.fileno()).st_size)
    except OSError as exc:
        raise ImageReadError(f"{p}: cannot be read ({exc.strerror or exc})") from exc


def _png_damage(fh, size: int) -> str:
    pos = len(_PNG_SIGNATURE)
    while True:
        header = fh.read(8)
        if not header:
            return "PNG ends without its IEND chunk (truncated?)"
        if len(header) < 8:
            return f"PNG is cut off in a chunk header at byte {pos} (truncated)"
        length, kind = struct.unpack(">I4s", header)
        name = kind.decode("latin-1")
        if not kind.isalpha():
            return f"PNG chunk at byte {pos} has an invalid type {name!r}"
        if length > _PNG_MAX_CHUNK or pos + 12 + length > size:
            return f"PNG chunk {name} at byte {pos} runs past the end of the file (truncated)"
        if pos == len(_PNG_SIGNATURE) and kind != b"IHDR":
            return f"PNG starts with chunk {name} instead of IHDR"
        crc, left = zlib.crc32(kind), length
        while left:
            block = fh.read(min(left, 1 << 20))
            if not block:
                return f"PNG chunk {name} at byte {pos} runs past the end of the file (truncated)"
            crc, left = zlib.crc32(block, crc), left - len(block)
        stored = fh.read(4)
        if len(stored) < 4 or struct.unpack(">I", stored)[0] != crc:
            return f"PNG chunk {name} at byte {pos} fails its CRC check"
        if kind == b"IEND":
            return ""
        pos += 12 + length
