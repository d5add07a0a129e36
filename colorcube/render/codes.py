"""Storage codes: how a cube's values are stored, one place for the grid and its rules.

======== ======================= ============================================
variable code                    value
======== ======================= ============================================
gray     uint8 or uint16         ``code / 255`` (8-bit sources), ``code / 65535``
rgb      uint8                   ``code / 255``, rounded to nearest
interval uint8, outward          lower ``floor(v * 255)``, upper ``ceil(v * 255)``
======== ======================= ============================================

The interval is rounded *outward*, so a stored band contains the computed one and the
coverage guarantee is kept; the rule is :func:`colorcube.render.bands.interval_codes`, which the
full-resolution kernel (:mod:`colorcube.render.fullres`) runs as it writes the codes and every
other path (the explorer's slider, the accessor, evaluation, the store) applies through
:mod:`colorcube.render.bands`. Decoding is ``code / n`` in float32, exactly the float32 value an
8-bit truth image reads as, so comparisons with truth at a band's edge are exact. Also here: the names of the cube's channels and bounds, the dims of
each variable, and the zarr compression choices. numpy only: writing PNG and npz
needs neither xarray nor zarr.
"""

from __future__ import annotations

import functools

import numpy as np

from ..errors import OptionError

__all__ = [
    "BOUNDS",
    "CHANNELS",
    "CODES",
    "CODE_MAX",
    "COMPRESSIONS",
    "DIMS",
    "GRAY_CODE_MAX",
    "check_compression",
    "decode",
    "encode_gray",
]

CHANNELS = ("R", "G", "B")
BOUNDS = ("lower", "upper")
CODE_MAX = 255
GRAY_CODE_MAX = 65535
#: storage code of each variable: (integer dtype, n) with value = code / n
CODES = {"gray": (np.uint16, GRAY_CODE_MAX), "rgb": (np.uint8, CODE_MAX), "interval": (np.uint8, CODE_MAX)}
#: dims of each variable of a cube
DIMS = {"gray": ("y", "x"), "rgb": ("y", "x", "channel"), "interval": ("y", "x", "channel", "bound"),
        "coefficients": ("gy", "gx", "coefficient"), "hints": ("hint", "hint_field")}
#: zarr compression choices; ``python benchmarks/throughput.py`` measures each on a 1-MP cube
COMPRESSIONS = ("none", "lz4", "zstd")
_F = np.float32


def check_compression(compression: str) -> str:
    """``compression`` if it is one of :data:`COMPRESSIONS`, else OptionError."""
    if compression not in COMPRESSIONS:
        raise OptionError(f"compression={compression!r}: use one of {', '.join(COMPRESSIONS)}")
    return compression


def encode_gray(gray, *, bits: int | None = None) -> np.ndarray:
    """(y, x) gray in [0, 1] -> its storage code.

    ``bits=None`` picks uint8 ``round(g * 255)`` when that is exact (an 8-bit
    source: half the bytes of uint16), else uint16 ``round(g * 65535)`` (exact
    for 16-bit sources); ``bits=8`` or ``16`` forces one (dask blocks need a
    fixed dtype). Either decodes to the same float32 value for 8-bit inputs.
    """
    gray = np.asarray(gray)
    rows = max(1, (1 << 22) // max(1, gray.shape[-1]))  # row blocks of ~4 MP bound the temporaries
    blocks = [slice(y, y + rows) for y in range(0, gray.shape[0], rows)]
    if bits != 16:
        c8 = np.empty(gray.shape, np.uint8)
        exact = True
        for b in blocks:
            g = np.clip(gray[b].astype(np.float32, copy=False), 0.0, 1.0)
            c8[b] = np.rint(g * _F(CODE_MAX))
            exact = exact and np.array_equal(_decode_table(CODE_MAX)[c8[b]], g)
        if bits == 8 or exact:
            return c8
    c16 = np.empty(gray.shape, np.uint16)
    for b in blocks:
        c16[b] = np.rint(np.clip(gray[b].astype(np.float64), 0.0, 1.0) * GRAY_CODE_MAX)
    return c16


@functools.cache
def _decode_table(n: int) -> np.ndarray:
    return (np.arange(n + 1, dtype=np.float32) / np.float32(n)).astype(np.float32)


def decode(code: np.ndarray) -> np.ndarray:
    """uint8 codes -> ``code / 255``, uint16 -> ``code / 65535``, float32 (exact division)."""
    code = np.asarray(code)
    n = GRAY_CODE_MAX if code.dtype == np.uint16 else CODE_MAX
    return _decode_table(n)[code]


