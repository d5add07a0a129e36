"""User colour hints: the canonical :class:`Hints` of one image, parsed and validated from any form.

A user says what colour some pixels are, in one of four forms, all turned into
one canonical :class:`Hints` (pixel rows, columns and 8-bit sRGB colours, in
input-pixel coordinates):

* points ``[(y, x, (r, g, b)), ...]`` (``r, g, b`` 0-255 integers or ``"#rrggbb"``);
* an RGBA array of the input's size whose opaque pixels (alpha >= 128) are
  colour strokes (a scribble);
* a ``.json`` file ``[{"x": col, "y": row, "rgb": [r, g, b]}, ...]``;
* an RGBA ``.png`` scribble file.

:func:`as_hints` takes any of them, :func:`read_hints` reads a file,
:func:`find_hint_file` finds an image's file in a folder of hint files and
:meth:`Hints.save` writes one. How hints then change the colours and bands,
and what the bands claim with them: :mod:`colorcube.guidance.placement`.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..color import rgb_to_lab
from ..errors import HintError

__all__ = ["OPAQUE", "SUFFIXES", "Hints", "as_hints", "find_hint_file", "read_hints"]

#: Alpha (0-255) from which a scribble pixel counts as a stroke.
OPAQUE = 128
#: Hint file suffixes (a folder of per-image hint files is searched for ``<stem><suffix>``).
SUFFIXES = (".json", ".png")
_HEX = re.compile(r"^#?([0-9a-fA-F]{6})$")


@dataclasses.dataclass(frozen=True, eq=False)
class Hints:
    """The canonical form of one image's colour hints.

    Attributes
    ----------
    y, x : (n,) int64 arrays, pixel rows and columns in the input image, each
        pixel at most once (a later hint on the same pixel replaces an earlier one)
    rgb : (n, 3) uint8 array, the sRGB colour of each hint
    shape : (H, W), the input image's size the positions refer to
    source : str, where the hints came from (a file name, ``"hints"``...), for messages
    """

    y: np.ndarray
    x: np.ndarray
    rgb: np.ndarray
    shape: tuple
    source: str = "hints"

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def ab(self) -> np.ndarray:
        """CIE a*, b* (D65) of the hint colours: (n, 2) float32."""
        rgb = torch.from_numpy(self.rgb.astype(np.float32) / 255.0).T[:, :, None]  # (3, n, 1)
        return rgb_to_lab(rgb)[1:, :, 0].T.contiguous().numpy().astype(np.float32)

    def records(self) -> list:
        """The hints as ``[{"x": col, "y": row, "rgb": [r, g, b]}, ...]`` (the JSON file format)."""
        return [{"x": int(x), "y": int(y), "rgb": [int(v) for v in c]} for y, x, c in zip(self.y, self.x, self.rgb)]

    def points(self) -> list:
        """The hints as API points ``[(y, x, (r, g, b)), ...]``."""
        return [(int(y), int(x), tuple(int(v) for v in c)) for y, x, c in zip(self.y, self.x, self.rgb)]

    def to_json(self) -> str:
        """The JSON hint file's text."""
        return json.dumps(self.records())

    def save(self, path) -> Path:
        """Write the hints as a ``.json`` hint file; returns the path."""
        p = Path(path)
        p.write_text(self.to_json() + "\n", encoding="utf-8")
        return p

    def to_array(self) -> np.ndarray:
        """(n, 5) int32 array of (y, x, r, g, b), the cube's ``hints`` variable."""
        return np.concatenate([self.y[:, None], self.x[:, None], self.rgb], axis=1).astype(np.int32)

    @classmethod
    def from_array(cls, arr, shape, *, source: str = "cube") -> Hints | None:
        """Inverse of :meth:`to_array` (validated against ``shape``); None when empty."""
        arr = np.asarray(arr)
        if arr.ndim != 2 or arr.shape[1] != 5:
            raise HintError(f"{source}: stored hints must be an (n, 5) array of y, x, r, g, b; got {arr.shape}")
        return _make(arr[:, 0], arr[:, 1], arr[:, 2:], shape, source)

    def inside(self, y0: int, y1: int, x0: int, x1: int, step: int = 1):
        """Indices of the hints in rows y0:y1 and columns x0:x1 that lie on every ``step``-th pixel."""
        sel = (self.y >= y0) & (self.y < y1) & (self.x >= x0) & (self.x < x1)
        if step > 1:
            sel &= ((self.y - y0) % step == 0) & ((self.x - x0) % step == 0)
        return np.flatnonzero(sel)


def _make(y, x, rgb, shape, source) -> Hints | None:
    """Validated Hints from arrays; duplicates keep the last; None when there are none."""
    h, w = (int(v) for v in shape)
    y, x = np.asarray(y, np.int64).reshape(-1), np.asarray(x, np.int64).reshape(-1)
    rgb = np.asarray(rgb).reshape(-1, 3)
    if y.size == 0:
        return None
    bad = np.flatnonzero((y < 0) | (y >= h) | (x < 0) | (x >= w))
    if bad.size:
        i = int(bad[0])
        raise HintError(f"{source}: hint {i} at x={int(x[i])}, y={int(y[i])} is outside the {w} x {h} image "
                        f"(x must be in 0..{w - 1}, y in 0..{h - 1})")
    if rgb.dtype != np.uint8:
        if (rgb < 0).any() or (rgb > 255).any():
            raise HintError(f"{source}: hint colours must be 0-255 integers")
        rgb = rgb.astype(np.uint8)
    # the last hint on a pixel wins: unique over the reversed order
    flat = y * w + x
    _, first = np.unique(flat[::-1], return_index=True)
    keep = np.sort(len(flat) - 1 - first)
    return Hints(y[keep], x[keep], np.ascontiguousarray(rgb[keep]), (h, w), source)


def _colour(value, where: str) -> tuple:
    """(r, g, b) 0-255 integers or '#rrggbb' -> a tuple of 3 ints."""
    if isinstance(value, str):
        m = _HEX.match(value.strip())
        if not m:
            raise HintError(f"{where}: colour {value!r} is not '#rrggbb'")
        v = m.group(1)
        return int(v[0:2], 16), int(v[2:4], 16), int(v[4:6], 16)
    try:
        items = list(value)
    except TypeError:
        raise HintError(f"{where}: colour {value!r} must be [r, g, b] (0-255 integers) or '#rrggbb'") from None
    if len(items) != 3:
        raise HintError(f"{where}: colour {value!r} must have 3 values r, g, b (0-255 integers)")
    out = []
    for v in items:
        if not _is_int(v) or not 0 <= int(v) <= 255:
            raise HintError(f"{where}: colour {value!r} must hold 0-255 integers")
        out.append(int(v))
    return tuple(out)


def _is_int(v) -> bool:
    if isinstance(v, (bool, np.bool_)):
        return False
    if isinstance(v, (int, np.integer)):
        return True
    return isinstance(v, (float, np.floating)) and float(v).is_integer()


def _from_points(points, shape, source: str) -> Hints | None:
    ys, xs, cols = [], [], []
    for i, p in enumerate(points):
        where = f"{source}[{i}]"
        if isinstance(p, dict):  # the JSON form
            missing = [k for k in ("x", "y", "rgb") if k not in p]
            if missing:
                raise HintError(f"{where}: missing {', '.join(missing)}; each hint is "
                                '{"x": col, "y": row, "rgb": [r, g, b]}')
            y, x, c = p["y"], p["x"], p["rgb"]
        else:
            try:
                y, x, c = p
            except (TypeError, ValueError):
                raise HintError(f"{where}: {p!r} is not a point (y, x, (r, g, b))") from None
        if not (_is_int(y) and _is_int(x)):
            raise HintError(f"{where}: pixel position x={x!r}, y={y!r} must be integers")
        ys.append(int(y))
        xs.append(int(x))
        cols.append(_colour(c, where))
    return _make(ys, xs, np.asarray(cols, np.int64).reshape(-1, 3), shape, source)


def _from_rgba(arr, shape, source: str) -> Hints | None:
    arr = np.asarray(arr)
    if arr.ndim != 3 or arr.shape[2] != 4:
        raise HintError(f"{source}: a hint image must be RGBA (y, x, 4); got shape {arr.shape}")
    if arr.shape[:2] != tuple(shape):
        raise HintError(f"{source}: hint image is {arr.shape[1]} x {arr.shape[0]} but the photo is "
                        f"{shape[1]} x {shape[0]}; draw the strokes on an image of the photo's size")
    if arr.dtype == np.uint8:
        a8 = arr
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
            raise HintError(f"{source}: a float RGBA hint image must hold values in [0, 1]")
        a8 = np.rint(arr * 255).astype(np.uint8)
    else:
        raise HintError(f"{source}: a hint image must be uint8 or float in [0, 1]; got {arr.dtype}")
    y, x = np.nonzero(a8[..., 3] >= OPAQUE)
    return _make(y, x, a8[y, x, :3], shape, source)


def read_hints(path, shape) -> Hints | None:
    """Read a ``.json`` or RGBA ``.png`` hint file for an image of ``shape`` (H, W).

    Returns
    -------
    Hints, or None when the file holds no hint (an empty list, a transparent image)

    Raises
    ------
    HintError
        Missing or unreadable file, malformed JSON, a hint outside the image, a
        scribble of the wrong size or without alpha; one line naming the file.
    """
    p = Path(path)
    if not p.is_file():
        raise HintError(f"{p}: hint file not found")
    suffix = p.suffix.lower()
    if suffix == ".json":
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise HintError(f"{p}: not a text (UTF-8) JSON file") from None
        except json.JSONDecodeError as exc:
            raise HintError(f"{p}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
        except OSError as exc:
            raise HintError(f"{p}: cannot be read ({exc.strerror or exc})") from None
        if not isinstance(data, list):
            raise HintError(f'{p}: a hint file holds a JSON list [{{"x": col, "y": row, "rgb": [r, g, b]}}, ...]; '
                            f"got a {type(data).__name__}")
        return _from_points(data, shape, str(p))
    if suffix == ".png":
        try:
            with Image.open(p) as im:
                if im.mode not in ("RGBA", "LA", "PA") and not (im.mode == "P" and "transparency" in im.info):
                    raise HintError(f"{p}: a hint image must be an RGBA PNG (opaque pixels are strokes); "
                                    f"this one is {im.mode} without alpha")
                arr = np.asarray(im.convert("RGBA"))
        except HintError:
            raise
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise HintError(f"{p}: cannot read the hint image ({exc})") from None
        return _from_rgba(arr, shape, str(p))
    raise HintError(f"{p}: hint files are .json ([{{\"x\", \"y\", \"rgb\"}}, ...]) or RGBA .png scribbles")


def as_hints(hints, shape, *, name: str = "hints") -> Hints | None:
    """Any accepted form of hints -> :class:`Hints` (validated) or None (no hints).

    Parameters
    ----------
    hints : None; a Hints; a path (str or Path) of a ``.json`` or RGBA ``.png`` file;
        an (H, W, 4) RGBA array (uint8, or float in [0, 1]) whose opaque pixels are
        strokes; or a sequence of points ``(y, x, (r, g, b))`` or of JSON-style
        ``{"x", "y", "rgb"}`` dicts, with integer input-pixel positions and 0-255
        integer colours (or ``"#rrggbb"``)
    shape : (H, W), the size of the image the hints are for
    name : str, how error messages name the argument

    Returns
    -------
    Hints or None (None also for an empty list or a fully transparent image,
    which are the automatic mode)
    """
    shape = tuple(int(v) for v in shape)
    if hints is None:
        return None
    if isinstance(hints, Hints):
        if tuple(hints.shape) != shape:
            raise HintError(f"{hints.source}: hints are for a {hints.shape[1]} x {hints.shape[0]} image, "
                            f"not this {shape[1]} x {shape[0]} one")
        return hints if len(hints) else None
    if isinstance(hints, (str, Path)):
        return read_hints(hints, shape)
    if isinstance(hints, np.ndarray) and hints.ndim == 3:
        return _from_rgba(hints, shape, name)
    if isinstance(hints, (list, tuple)) or (isinstance(hints, np.ndarray) and hints.ndim == 1):
        return _from_points(hints, shape, name)
    raise HintError(f"{name}: give points [(y, x, (r, g, b)), ...], an RGBA array of the image's size, "
                    f"or a .json / .png hint file; got {type(hints).__name__}")


def find_hint_file(folder, stem: str) -> Path | None:
    """The hint file ``<stem>.json`` or ``<stem>.png`` in ``folder``; None when there is none.

    Raises
    ------
    HintError
        ``folder`` is not a folder, or both files exist (which one was meant is unclear).
    """
    d = Path(folder)
    if not d.is_dir():
        raise HintError(f"{d}: not a folder of per-image hint files (<image stem>.json or .png)")
    found = [d / f"{stem}{s}" for s in SUFFIXES if (d / f"{stem}{s}").is_file()]
    if len(found) > 1:
        raise HintError(f"{d}: both {found[0].name} and {found[1].name} exist; keep one hint file per image")
    return found[0] if found else None
