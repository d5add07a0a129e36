"""Read images of any common kind as gray, write colorcube's outputs, and hash files' bytes.

Every failure to read becomes an :class:`~colorcube.errors.ImageReadError`
naming the file and the reason, never a bare PIL or numpy traceback.

Damage that a decoder lets through is looked for before decoding
(:func:`colorcube.inputs.damage.find_damage`): a PNG chunk whose CRC does not match, a PNG without its
IEND chunk, a chunk that runs past the end of the file. Such a file is refused
unless ``allow_damaged=True`` (``--allow-damaged``), which reads it with a warning.
"""

from __future__ import annotations

import hashlib
import io
import mmap
import threading
import warnings
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, ImageOps, UnidentifiedImageError

from ..color import LUMA_WEIGHTS
from ..errors import ColorcubeError, ImageReadError
from .damage import find_damage

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "array_to_gray",
    "file_hash",
    "image_digest",
    "list_images",
    "read_gray",
    "read_gray_checked",
    "read_rgb",
    "read_truth",
    "source_of",
    "unit_array",
]

_LUMA = np.asarray(LUMA_WEIGHTS, np.float32)

#: Default pixel-count ceiling: 200 MP (0.8 GB as float32). Larger genuine
#: scans pass with ``max_pixels=None`` or ``--max-pixels``; the ceiling stops
#: decompression bombs (a few KB of PNG that inflate to gigabytes).
DEFAULT_MAX_PIXELS = 200_000_000
#: File suffixes taken as images when a folder is listed.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp", ".gif"})
_PIL_LIMIT_LOCK = threading.Lock()


def file_hash(path) -> str:
    """SHA-256 hex digest of a file's bytes, read in blocks (weights, hint files, calibration photos)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def image_digest(image) -> str:
    """SHA-256 an image is known by (per-photo calibration weights, archive resume): a file's
    bytes (path, or the bytes themselves) or an array's data (C order), as given, before any conversion."""
    if isinstance(image, (bytes, mmap.mmap)):  # a file's content, read once (inputs.sources.source_data)
        return hashlib.sha256(image).hexdigest()
    if isinstance(image, (str, Path)):
        try:
            return file_hash(image)
        except OSError as exc:
            raise ImageReadError(f"{image}: cannot be read ({exc.strerror or exc})") from exc
    return hashlib.sha256(np.ascontiguousarray(np.asarray(image)).tobytes()).hexdigest()


def _check_path(path) -> Path:
    p = Path(path)
    if not p.exists():
        if p.is_symlink():
            raise ImageReadError(f"{p}: broken symbolic link or link loop")
        raise ImageReadError(f"{p}: file not found")
    if p.is_dir():
        raise ImageReadError(f"{p}: is a directory, not an image file")
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise ImageReadError(f"{p}: cannot be read ({exc.strerror or exc})") from exc
    if size == 0:
        raise ImageReadError(f"{p}: file is empty (0 bytes)")
    return p


def _check_pixels(p: Path, width: int, height: int, max_pixels) -> None:
    if width < 1 or height < 1:
        raise ImageReadError(f"{p}: image has no pixels ({width} x {height})")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageReadError(
            f"{p}: {width} x {height} = {width * height / 1e6:.0f} MP exceeds the {max_pixels / 1e6:.0f} MP "
            "ceiling (possible decompression bomb); raise max_pixels / --max-pixels for a genuine scan"
        )


def _scale_to_unit(arr: np.ndarray, p: Path) -> np.ndarray:
    """Integer or float samples -> float32 in [0, 1]."""
    if arr.dtype == np.bool_:
        return arr.astype(np.float32)
    if np.issubdtype(arr.dtype, np.integer):
        return (arr.astype(np.float32) / np.float32(np.iinfo(arr.dtype).max)).clip(0, 1)
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise ImageReadError(f"{p}: float image holds NaN or infinite values")
    hi = float(arr.max()) if arr.size else 0.0
    if hi > 1.0:  # float scans stored on a 0-255 or 0-65535 scale
        arr = arr / (255.0 if hi <= 255.0 else max(65535.0, hi))
    return arr.clip(0, 1)


def _read_tiff(p: Path, max_pixels, data: bytes | None = None) -> np.ndarray | None:
    """High-bit-depth and float TIFFs that PIL cannot decode; None -> let PIL try."""
    try:
        with tifffile.TiffFile(p if data is None else _stream(data)) as tif:
            page = tif.pages[0]
            shape = page.shape
            h, w = (shape[0], shape[1]) if page.samplesperpixel == 1 or len(shape) == 3 else shape[-2:]
            _check_pixels(p, int(w), int(h), max_pixels)
            arr = page.asarray()
    except ImageReadError:
        raise
    except Exception:  # noqa: BLE001 - any tifffile failure: PIL gets its chance and reports
        return None
    if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[-1] not in (3, 4):
        arr = np.moveaxis(arr, 0, -1)
    return arr


def _stream(data):
    """A file's content (bytes or a read-only mmap) as a file object at its start."""
    if isinstance(data, mmap.mmap):
        data.seek(0)
        return data
    return io.BytesIO(data)


def _read_pil(p: Path, max_pixels, data: bytes | None = None) -> np.ndarray:
    def open_and_load():
        with Image.open(p if data is None else _stream(data)) as im:
            _check_pixels(p, im.width, im.height, max_pixels)
            im = ImageOps.exif_transpose(im)
            im.load()
            return _pil_to_array(im)

    try:
        raise_limit = max_pixels is None or max_pixels > 2 * (Image.MAX_IMAGE_PIXELS or 0)
        if raise_limit:
            # PIL's own bomb check would refuse a scan the caller explicitly allowed.
            with _PIL_LIMIT_LOCK:
                old, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
                try:
                    return open_and_load()
                finally:
                    Image.MAX_IMAGE_PIXELS = old
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return open_and_load()
    except ImageReadError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageReadError(f"{p}: not a recognised image format (PNG, JPEG, TIFF, BMP, WebP...)") from exc
    except Image.DecompressionBombError as exc:
        raise ImageReadError(f"{p}: refused as a possible decompression bomb ({exc})") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        reason = str(exc) or type(exc).__name__
        if "truncated" in reason.lower() or isinstance(exc, EOFError):
            reason = f"file is truncated or corrupt ({reason})"
        raise ImageReadError(f"{p}: cannot decode image: {reason}") from exc
    except MemoryError as exc:
        raise ImageReadError(f"{p}: image too large for memory") from exc


def _pil_to_array(im) -> np.ndarray:
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif im.mode in ("CMYK", "YCbCr", "LAB", "HSV", "1"):
        im = im.convert("RGB" if im.mode != "1" else "L")
    elif im.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(im, dtype=np.uint16)
    elif im.mode == "I":
        arr = np.asarray(im, dtype=np.int64)
        return arr.clip(0, 65535).astype(np.uint16)
    return np.asarray(im)


def _to_gray(arr: np.ndarray, p: Path, *, warn: bool) -> np.ndarray:
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 3 and arr.shape[-1] in (2, 4):  # gray+alpha or RGBA: composite on white
        alpha = _scale_to_unit(arr[..., -1], p)[..., None]
        color = _scale_to_unit(arr[..., :-1], p)
        arr = color * alpha + (1.0 - alpha)
        if arr.shape[-1] == 1:
            arr = arr[..., 0]
    else:
        arr = _scale_to_unit(arr, p)
    if arr.ndim == 2:
        return np.ascontiguousarray(arr, dtype=np.float32)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ImageReadError(f"{p}: unsupported image layout with shape {arr.shape}")
    if warn and float(np.abs(arr - arr.mean(axis=-1, keepdims=True)).max()) > 2.0 / 255.0:
        warnings.warn(f"{p}: colour image converted to gray (BT.601 luma) before colorizing", stacklevel=3)
    gray = arr @ _LUMA
    return np.ascontiguousarray(gray.clip(0, 1), dtype=np.float32)


def _read_array(path, max_pixels, *, allow_damaged: bool = False, data: bytes | None = None) -> tuple:
    """(path, decoded array, damage found or "") of an image file (``data``: its bytes, already read)."""
    p = _check_path(path)
    damage = find_damage(p, data=data)
    if damage and not allow_damaged:
        raise ImageReadError(f"{p}: damaged file: {damage}; use --allow-damaged (allow_damaged=True) "
                             "to colorize it anyway")
    arr = None
    if p.suffix.lower() in (".tif", ".tiff"):
        arr = _read_tiff(p, max_pixels, data)
    if arr is None:
        arr = _read_pil(p, max_pixels, data)
    if arr.size == 0:
        raise ImageReadError(f"{p}: image has no pixels")
    return p, arr, damage


def read_gray_checked(path, *, max_pixels: int | None = DEFAULT_MAX_PIXELS, warn_color: bool = True,
                      allow_damaged: bool = False, data: bytes | None = None) -> tuple[np.ndarray, str]:
    """:func:`read_gray` that returns the damage it found instead of warning about it; ``data``:
    the file's bytes when the caller has read them already (the file is then not opened again).

    Returns
    -------
    gray : (y, x) float32 in [0, 1]
    damage : str, what :func:`colorcube.inputs.damage.find_damage` found ("" for an intact file)
    """
    p, arr, damage = _read_array(path, max_pixels, allow_damaged=allow_damaged, data=data)
    return _to_gray(arr, p, warn=warn_color), damage


def read_gray(path, *, max_pixels: int | None = DEFAULT_MAX_PIXELS, warn_color: bool = True,
              allow_damaged: bool = False) -> np.ndarray:
    """Read an image file as gray.

    PNG, JPEG, TIFF (8/16-bit, float), BMP, WebP; gray, RGB, palette, CMYK and
    alpha images; the EXIF orientation is applied. Colour images are reduced to
    BT.601 luma (as PIL's ``convert("L")``) with a warning; alpha is composited
    on white.

    Parameters
    ----------
    path : str or path-like
    max_pixels : int or None
        Refuse images with more pixels than this (None: no ceiling).
    warn_color : bool
        Warn when a colour image is converted.
    allow_damaged : bool
        Read a file with detectable damage (:func:`colorcube.inputs.damage.find_damage`, e.g. a PNG chunk
        with a wrong CRC) with a warning instead of refusing it.

    Returns
    -------
    gray : (y, x) float32 in [0, 1]

    Raises
    ------
    ImageReadError
        Missing, empty, truncated, damaged, non-image, too large or unsupported file.
    """
    gray, damage = read_gray_checked(path, max_pixels=max_pixels, warn_color=warn_color, allow_damaged=allow_damaged)
    if damage:
        warnings.warn(f"{path}: damaged file ({damage}); colorized anyway", stacklevel=2)
    return gray


def read_rgb(path, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read a colour photo (for calibration and evaluation truth).

    Returns
    -------
    rgb : (y, x, 3) float32 in [0, 1]
    """
    p, arr, _ = _read_array(path, max_pixels)
    if arr.ndim == 3 and arr.shape[-1] in (2, 4):
        alpha = _scale_to_unit(arr[..., -1], p)[..., None]
        arr = _scale_to_unit(arr[..., :-1], p) * alpha + (1.0 - alpha)
    else:
        arr = _scale_to_unit(arr, p)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ImageReadError(f"{p}: unsupported image layout with shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def read_truth(path, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, np.ndarray]:
    """Read a colour photo as (truth, gray), gray made exactly as PIL's ``convert("L")``.

    Calibration and evaluation must see gray inputs made the way users make
    them, or the coverage guarantee would not carry over.

    Returns
    -------
    rgb : (y, x, 3) float32 in [0, 1]
    gray : (y, x) float32 in [0, 1]
    """
    rgb = read_rgb(path, max_pixels=max_pixels)
    rgb8 = np.round(rgb * 255.0).astype(np.uint8)
    if np.array_equal(rgb8.astype(np.float32) / np.float32(255.0), rgb):
        gray = np.asarray(Image.fromarray(rgb8, mode="RGB").convert("L"), dtype=np.float32) / np.float32(255.0)
    else:  # high bit depth: the same luma in float
        gray = (rgb @ _LUMA).clip(0, 1)
    return rgb, np.ascontiguousarray(gray, dtype=np.float32)


def unit_array(arr, *, name: str, error=ColorcubeError) -> np.ndarray:
    """An in-memory image as float32 in [0, 1]: integers scaled by their dtype's maximum,
    floats checked (finite, in [0, 1]). ``name`` names the argument in the ``error`` raised."""
    arr = np.asarray(arr)
    if arr.size == 0:
        raise error(f"{name}: the array is empty")
    if np.issubdtype(arr.dtype, np.integer):
        if arr.min() < 0:
            raise error(f"{name}: integer pixel values must not be negative, got {arr.min()}")
        return arr.astype(np.float32) / np.float32(np.iinfo(arr.dtype).max)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.floating):
        raise error(f"{name}: expected integer or float pixel values, got dtype {arr.dtype}")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise error(f"{name}: the array holds NaN or infinite values")
    if arr.min() < 0 or arr.max() > 1:
        raise error(f"{name}: float values must be in [0, 1], got [{arr.min():.3g}, {arr.max():.3g}]; "
                    "divide by 255 (8-bit) or 65535 (16-bit) first")
    return arr


def array_to_gray(arr, *, name: str = "image", warn: bool = True, error=ColorcubeError) -> np.ndarray:
    """An in-memory image as (y, x) float32 gray in [0, 1].

    Parameters
    ----------
    arr : (y, x) gray or (y, x, 3) RGB array, integers (scaled by the dtype's maximum) or
        floats in [0, 1]; colour becomes BT.601 luma (:data:`LUMA_WEIGHTS`),
        with a warning if ``warn``
    name : how error messages name the argument
    error : the :class:`~colorcube.errors.ColorcubeError` subclass raised for bad input
    """
    arr = np.asarray(arr)
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] == 3)) or arr.size == 0:
        raise error(f"{name}: expected a (y, x) gray or (y, x, 3) colour array, got shape {arr.shape}")
    arr = unit_array(arr, name=name, error=error)
    if arr.ndim == 3:
        if warn:
            warnings.warn(f"{name}: colour array converted to gray (BT.601 luma) before colorizing", stacklevel=3)
        arr = (arr @ _LUMA).clip(0, 1)
    return np.ascontiguousarray(arr, dtype=np.float32)


def list_images(folder) -> list[Path]:
    """Image files under ``folder`` (recursive, sorted); a clear error if there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ColorcubeError(f"{folder}: not a folder of photos")
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ColorcubeError(f"{folder}: no image files (.png, .jpg, .tif, ...) found")
    return paths


_INDEX_CACHE: dict = {}


def source_of(path) -> str:
    """The source a photo comes from: its ``INDEX.tsv`` row's ``source`` column when its folder
    has one, else the file-name prefix before ``__`` (``kodak24__kodim01.png`` -> ``kodak24``),
    else the folder's name."""
    p = Path(path)
    index = p.parent / "INDEX.tsv"
    if index not in _INDEX_CACHE:
        table = {}
        if index.is_file():
            lines = index.read_text(encoding="utf-8").splitlines()
            head = lines[0].split("\t") if lines else []
            if "file" in head and "source" in head:
                i, j = head.index("file"), head.index("source")
                table = {row[i]: row[j] for row in (ln.split("\t") for ln in lines[1:]) if len(row) > max(i, j)}
        _INDEX_CACHE[index] = table
    if p.name in _INDEX_CACHE[index]:
        return _INDEX_CACHE[index][p.name]
    return p.name.split("__")[0] if "__" in p.name else p.parent.name
