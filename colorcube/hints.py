"""User colour hints: parse, validate, rasterise, and pin the output at the hint pixels.

A user says what colour some pixels are, in one of four forms, all turned into
one canonical :class:`Hints` (pixel rows, columns and 8-bit sRGB colours, in
input-pixel coordinates):

* points ``[(y, x, (r, g, b)), ...]`` (``r, g, b`` 0-255 integers or ``"#rrggbb"``);
* an RGBA array of the input's size whose opaque pixels (alpha >= 128) are
  colour strokes (a scribble);
* a ``.json`` file ``[{"x": col, "y": row, "rgb": [r, g, b]}, ...]``;
* an RGBA ``.png`` scribble file.

Where hints enter the pipeline (:func:`colorcube.pipeline.working_stage`):

1. :func:`working_hints` averages the hints' CIE (a*, b*) over each pixel of
   the network's working resolution; :func:`network_input` makes the
   network's hint channels from it (a / 110, b / 110, mask);
2. :func:`colorcube.propagate.blend_hints` spreads the hint colours along
   regions of similar lightness (geodesic distance), so a stroke's colour
   stops at strong lightness edges;
3. at full resolution, :func:`pin_codes` (and :func:`pin` for float arrays)
   sets each hint pixel to :func:`target_colours`, the hint's colour as far as
   the pixel's gray allows (the hint shifted by a neutral amount until its
   BT.601 luma equals the gray, then clipped), and widens the band to contain
   both that colour and the hint's own colour.

What the bands claim with hints (:func:`guarantee_note`): a calibration made
with ``k`` simulated random true-colour points per photo (:func:`random_points`;
``k`` kept in its provenance under :data:`CALIBRATION_KEY`) carries its coverage
statement for photos hinted that way; with no hints nothing changes; at each
hint pixel the stored band contains the hint's colour, whatever the calibration.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import torch

from .color import LUMA_WEIGHTS, rgb_to_lab
from .errors import HintError
from .model import AB_NORM, HINT_CHANNELS

__all__ = ["CALIBRATION_KEY", "Hints", "as_hints", "calibration_hint_points", "find_hint_file", "guarantee_note",
           "network_input", "pin", "pin_codes", "random_points", "read_hints", "target_colours", "working_hints"]

#: The key of a calibration's provenance that holds its number of simulated hint points per photo.
CALIBRATION_KEY = "hint_points"
#: Alpha (0-255) from which a scribble pixel counts as a stroke.
OPAQUE = 128
#: Hint file suffixes (a folder of per-image hint files is searched for ``<stem><suffix>``).
SUFFIXES = (".json", ".png")
_HEX = re.compile(r"^#?([0-9a-fA-F]{6})$")
_LUMA = np.asarray(LUMA_WEIGHTS, np.float64)


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
    def from_array(cls, arr, shape, *, source: str = "cube") -> "Hints | None":
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


def _make(y, x, rgb, shape, source) -> "Hints | None":
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


def _from_points(points, shape, source: str) -> "Hints | None":
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


def _from_rgba(arr, shape, source: str) -> "Hints | None":
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


def read_hints(path, shape) -> "Hints | None":
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
        from PIL import Image, UnidentifiedImageError

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


def as_hints(hints, shape, *, name: str = "hints") -> "Hints | None":
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


def find_hint_file(folder, stem: str) -> "Path | None":
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


# -- working resolution -----------------------------------------------------
def working_hints(hints: Hints, working_shape) -> tuple:
    """The hints' mean (a*, b*) on each pixel of the working grid.

    Parameters
    ----------
    hints : Hints for an (H, W) image
    working_shape : (hw, ww), the network input's size before padding

    Returns
    -------
    ab : (2, hw, ww) float32, mean CIE a*, b* of the hints on each working pixel (0 elsewhere)
    mask : (hw, ww) bool, working pixels that hold a hint
    """
    h, w = hints.shape
    hw, ww = (int(v) for v in working_shape)
    # the working pixel whose area holds the full-resolution pixel's centre
    yw = np.minimum(((hints.y + 0.5) * (hw / h)).astype(np.int64), hw - 1)
    xw = np.minimum(((hints.x + 0.5) * (ww / w)).astype(np.int64), ww - 1)
    flat = yw * ww + xw
    count = np.bincount(flat, minlength=hw * ww)
    ab = hints.ab().astype(np.float64)
    out = np.stack([np.bincount(flat, weights=ab[:, c], minlength=hw * ww) for c in range(2)])
    mask = count > 0
    out[:, mask] /= count[mask]
    return out.reshape(2, hw, ww).astype(np.float32), mask.reshape(hw, ww)


def network_input(ab: np.ndarray, mask: np.ndarray, padded_shape, *, device="cpu") -> torch.Tensor:
    """The network's hint channels (see :func:`colorcube.model.hint_maps`) from :func:`working_hints`.

    Returns
    -------
    (1, 3, Hp, Wp) float32: a / 110, b / 110 and the 0/1 mask, zero in the padding
    """
    hw, ww = mask.shape
    out = torch.zeros((1, HINT_CHANNELS, *padded_shape), dtype=torch.float32)
    out[0, :2, :hw, :ww] = torch.from_numpy(ab * mask) / AB_NORM
    out[0, 2, :hw, :ww] = torch.from_numpy(mask.astype(np.float32))
    return out.to(device)


# -- full resolution ----------------------------------------------------------
def target_colours(rgb: np.ndarray, gray: np.ndarray) -> np.ndarray:
    """The hint colours as far as each pixel's gray allows.

    The colour whose BT.601 luma (PIL's ``convert("L")``) equals the pixel's
    gray, reached by adding the same amount to R, G and B (which keeps the
    hint's chroma differences) and clipping to [0, 1]; where a channel clips, the
    rest of the shift goes to the channels that can still move. For a hint that
    is the pixel's true colour this gives back that colour (to the 8-bit rounding
    of the gray).

    Parameters
    ----------
    rgb : (n, 3) hint colours, uint8 or float in [0, 1]
    gray : (n,) float in [0, 1], the input's gray at the hint pixels

    Returns
    -------
    (n, 3) float32 in [0, 1]
    """
    c = np.asarray(rgb, np.float64)
    if np.asarray(rgb).dtype == np.uint8:
        c = c / 255.0
    g = np.asarray(gray, np.float64).reshape(-1)
    for _ in range(4):  # each round either lands on the gray or pins one more channel at 0 or 1
        d = g - c @ _LUMA
        free = ((d[:, None] > 0) & (c < 1)) | ((d[:, None] < 0) & (c > 0))
        wf = (free * _LUMA).sum(axis=1)
        shift = np.divide(d, wf, out=np.zeros_like(d), where=wf > 0)
        c = np.clip(c + free * shift[:, None], 0.0, 1.0)
    return c.astype(np.float32)


def pin(hints: Hints, gray, rgb, lower, upper, *, y0: int = 0, x0: int = 0, step: int = 1) -> None:
    """Set the hint pixels of float arrays in place: colour := :func:`target_colours`, and the
    band [lower, upper] widened to contain that colour and the hint's own colour.

    Parameters
    ----------
    gray : (ty, tx) float in [0, 1], the tile's gray; rgb, lower, upper : (ty, tx, 3) float arrays
        (lower / upper may be None to set the colour only)
    y0, x0 : the tile's offset in the image; step : the tile holds every ``step``-th pixel
    """
    ty, tx = np.shape(gray)[:2]
    idx = hints.inside(y0, y0 + ty * step, x0, x0 + tx * step, step)
    if idx.size == 0:
        return
    iy, ix = (hints.y[idx] - y0) // step, (hints.x[idx] - x0) // step
    t = target_colours(hints.rgb[idx], np.asarray(gray)[iy, ix])
    given = hints.rgb[idx].astype(np.float32) / np.float32(255)
    rgb[iy, ix] = t
    if lower is not None:
        lower[iy, ix] = np.minimum(np.minimum(lower[iy, ix], t), given)
        upper[iy, ix] = np.maximum(np.maximum(upper[iy, ix], t), given)


def pin_codes(hints: Hints, gray, codes: dict, *, y0: int = 0, x0: int = 0) -> dict:
    """:func:`pin` on a tile's storage codes (``rgb`` (ty, tx, 3) and ``interval`` (ty, tx, 3, 2)
    uint8), in place: the stored band then contains the stored colour and the hint's colour."""
    ty, tx = np.shape(gray)[:2]
    idx = hints.inside(y0, y0 + ty, x0, x0 + tx)
    if idx.size == 0:
        return codes
    iy, ix = hints.y[idx] - y0, hints.x[idx] - x0
    t = np.rint(target_colours(hints.rgb[idx], np.asarray(gray)[iy, ix]) * 255).astype(np.uint8)
    given = hints.rgb[idx]
    codes["rgb"][iy, ix] = t
    iv = codes["interval"]
    iv[iy, ix, :, 0] = np.minimum(np.minimum(iv[iy, ix, :, 0], t), given)
    iv[iy, ix, :, 1] = np.maximum(np.maximum(iv[iy, ix, :, 1], t), given)
    return codes


# -- simulation and what the bands claim ----------------------------------------
def random_points(truth_rgb, k: int, rng) -> list:
    """``k`` random true-colour hint points on a colour photo (the calibration's hint process).

    Parameters
    ----------
    truth_rgb : (H, W, 3) uint8, or float in [0, 1] (then rounded to 8 bits)
    k : int >= 0, number of points (at most H * W), at distinct pixels drawn uniformly
    rng : numpy.random.Generator or int seed

    Returns
    -------
    list of ``(y, x, (r, g, b))`` with the photo's own 8-bit colour at (y, x),
    the API's point format (``colorize(..., hints=points)``)
    """
    truth = np.asarray(truth_rgb)
    if truth.ndim != 3 or truth.shape[2] != 3:
        raise HintError(f"truth_rgb must be (H, W, 3); got shape {truth.shape}")
    h, w = truth.shape[:2]
    k = int(k)
    if not 0 <= k <= h * w:
        raise HintError(f"k={k} hint points: give 0 to {h * w} (the photo's pixel count)")
    rng = np.random.default_rng(rng)
    flat = rng.choice(h * w, size=k, replace=False) if k else np.zeros(0, np.int64)
    ys, xs = np.divmod(flat, w)
    cols = truth[ys, xs]
    if cols.dtype != np.uint8:
        cols = np.rint(np.clip(cols.astype(np.float64), 0, 1) * 255).astype(np.uint8)
    return [(int(y), int(x), tuple(int(v) for v in c)) for y, x, c in zip(ys, xs, cols)]


def calibration_hint_points(calibration) -> int:
    """Simulated hint points per photo a calibration was made with (0: none, or no calibration)."""
    if calibration is None:
        return 0
    if hasattr(calibration, "hint_points"):
        return int(calibration.hint_points)
    prov = calibration.provenance
    value = prov.get(CALIBRATION_KEY, prov.get("hints", 0))
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def guarantee_note(*, hint_points: int | None, n_hints: int = 0, reference: str | None = None) -> str:
    """What the bands claim with ``n_hints`` user hints and/or a reference photo, in words
    (appended to the cube's ``guarantee``); "" when there are neither.

    ``hint_points`` : the calibration's simulated hint points per photo
    (:func:`calibration_hint_points`), None for uncalibrated bands.
    """
    notes = []
    if n_hints:
        if hint_points:
            notes.append(f"The statement covers hints placed by the calibration's process ({hint_points} random "
                         "true-colour points per photo), not hints chosen otherwise.")
        elif hint_points is not None:
            notes.append(f"The calibration used no hints, so with these {n_hints} hinted pixels the statement is "
                         "not guaranteed (the bands were calibrated for the automatic mode).")
        notes.append(f"At each of the {n_hints} hint pixels the band contains the hint's colour.")
    if reference is not None and hint_points is not None:
        notes.append(f"A reference photo ({reference}) reweighted the colours; the calibration used none, so the "
                     "statement is not guaranteed for these bands.")
    return " ".join(notes)
