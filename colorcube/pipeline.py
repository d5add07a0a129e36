"""One gray image -> colour cube.

Two stages (DESIGN section 3):

1. *Working resolution*: the network runs on the lightness downsampled to
   ``working_size`` (longer side); its chroma and R, G, B spread maps are
   turned into fast-guided-filter coefficients ``(A, b)`` against the working
   lightness (He & Sun 2015). This is small: 10 maps at working resolution.
2. *Full resolution*: every output pixel is ``A(x) * L(x) + b(x)`` with ``A``
   and ``b`` bilinearly sampled at the pixel's position and ``L`` the
   full-resolution lightness, then Lab -> RGB and the conformal interval.
   The stage is pointwise given (A, b), so tiles of any size reproduce the
   untiled result exactly; no halo is needed.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from .color import gray_to_lightness, lab_to_rgb
from . import fullres
from .conformal import EPS
from .errors import ColorcubeError
from .model import OUT_STRIDE, STRIDE, ColorNet, predict

__all__ = [
    "PipelineSettings",
    "Coefficients",
    "working_stage",
    "full_stage",
    "stage_codes",
    "predict_bands",
    "resolve_calibration",
    "colorize",
]


_PRECISIONS = {"bfloat16": torch.bfloat16, "float32": torch.float32}


@dataclasses.dataclass(frozen=True)
class PipelineSettings:
    """Resolution and upsampling policy; calibration is valid only for the same settings.

    Attributes
    ----------
    working_size : int, longer side of the network input in pixels (>= 32); 384 by
        default: on 120 benchmark photos it gave PSNR within 0.05 dB and CIEDE2000
        within 0.5 % of 512 at 0.56x the network FLOPs (benchmarks/quality.py)
    vividness : float or None, annealed-mean temperature (None: the model's default)
    guided : bool, edge-aware guided upsampling (False: plain bilinear)
    radius : int, guided-filter box radius at working resolution
    eps : float, guided-filter regulariser (guide in [0, 1])
    precision : {"bfloat16", "float32"}, the network's arithmetic. bfloat16 (default)
        runs the convolutions 3x faster on CPUs with AMX / AVX512-BF16 and on GPUs;
        bench PSNR and coverage after recalibration are in the model card. On a CPU
        without bf16 instructions it is correct but slow: calibrate with float32 there.
    """

    working_size: int = 384
    vividness: float | None = None
    guided: bool = True
    radius: int = 4
    eps: float = 1e-3
    precision: str = "bfloat16"

    def __post_init__(self):
        if int(self.working_size) < 32:
            raise ColorcubeError(f"working_size={self.working_size!r} is too small; use at least 32 (default 384)")
        if self.vividness is not None and not 0.0 < float(self.vividness) <= 2.0:
            raise ColorcubeError(f"vividness={self.vividness!r} must be in (0, 2]; lower is more saturated")
        if self.precision not in _PRECISIONS:
            raise ColorcubeError(f"precision={self.precision!r}: use one of {sorted(_PRECISIONS)}")

    @classmethod
    def of(cls, calibration) -> "PipelineSettings":
        """The settings ``calibration`` was made with; the defaults when it is None."""
        if calibration is None:
            return cls()
        # calibrations made before the precision setting existed ran in float32
        return cls(**{"precision": "float32", **calibration.provenance["settings"]})

    def as_dict(self, model: ColorNet | None = None) -> dict:
        d = dataclasses.asdict(self)
        if model is not None and d["vividness"] is None:
            d["vividness"] = model.config.vividness
        return d


@dataclasses.dataclass
class Coefficients:
    """Guided-filter coefficients at working resolution, on the CPU.

    ``coef`` : (h, w, 10) float32 array, the ``A`` then the ``B`` maps of
    (a*, b*, R spread, G spread, B spread); ``shape`` is the full-resolution (y, x).
    """

    coef: np.ndarray
    shape: tuple


def _box(x: torch.Tensor, r: int) -> torch.Tensor:
    """Mean over a (2r+1)^2 window with edge replication; x (C, H, W).

    Running sums (cumsum differences) in float64: O(1) per pixel whatever the
    radius, and float64 keeps the variance terms of the guided filter from
    cancelling (3x faster than avg_pool2d here)."""
    k = 2 * r + 1
    c = F.pad(x[None], (r + 1, r, r + 1, r), mode="replicate")[0].double()
    c = c.cumsum(1)
    c = c[:, k:] - c[:, :-k]
    c = c.cumsum(2)
    c = c[:, :, k:] - c[:, :, :-k]
    return (c / (k * k)).to(x.dtype)


def _working_gray(gray: torch.Tensor, working_size: int) -> torch.Tensor:
    h, w = gray.shape
    scale = min(1.0, working_size / max(h, w))
    hw, ww = max(1, round(h * scale)), max(1, round(w * scale))
    if (hw, ww) == (h, w):
        return gray
    return F.interpolate(gray[None, None], size=(hw, ww), mode="bilinear", antialias=True, align_corners=False)[0, 0]


def working_stage(gray: np.ndarray | torch.Tensor, model: ColorNet, settings: PipelineSettings = PipelineSettings()
                  ) -> Coefficients:
    """Network and guided-filter coefficients for one image.

    Uses torch's current intra-op thread count: results agree across thread
    counts to float rounding (tested), not always to the last bit.

    Parameters
    ----------
    gray : (y, x) float32 in [0, 1], the full-resolution input
    model : ColorNet (its device is used)
    settings : PipelineSettings

    Returns
    -------
    Coefficients (on the CPU)
    """
    with torch.inference_mode():
        return _working_stage(gray, model, settings)


def _working_stage(gray, model: ColorNet, settings: PipelineSettings) -> Coefficients:
    device = next(model.parameters()).device
    g = torch.as_tensor(np.asarray(gray, dtype=np.float32) if not torch.is_tensor(gray) else gray).to(device)
    full_shape = tuple(g.shape)
    gw = _working_gray(g, int(settings.working_size))
    lw = gray_to_lightness(gw)
    hw, ww = lw.shape
    ph, pw = (-hw) % STRIDE, (-ww) % STRIDE
    # Replicate-pad tiny images up to one stride and odd sizes to a multiple of it.
    lin = F.pad(lw[None, None], (0, pw, 0, ph), mode="replicate").contiguous(memory_format=torch.channels_last)
    ab, spread = predict(model, lin, vividness=settings.vividness, dtype=_PRECISIONS[settings.precision])
    maps = torch.cat([ab, spread], dim=1).float()  # (1, 5, H/4, W/4)
    maps = F.interpolate(maps, scale_factor=OUT_STRIDE, mode="bilinear", align_corners=False)[0, :, :hw, :ww]
    guide = (lw / 100.0)[None]
    if not settings.guided:
        coef = torch.cat([torch.zeros_like(maps), maps])
    else:
        r = max(0, min(int(settings.radius), (min(hw, ww) - 1) // 2))
        means = _box(torch.cat([guide, guide * guide, maps, guide * maps]), r)
        mean_i, mean_ii, mean_p, mean_ip = means[:1], means[1:2], means[2:7], means[7:]
        a = (mean_ip - mean_i * mean_p) / (mean_ii - mean_i * mean_i + settings.eps)
        b = mean_p - a * mean_i
        coef = _box(torch.cat([a, b]), r)
    return Coefficients(coef.permute(1, 2, 0).float().cpu().numpy().copy(), full_shape)


def _bilinear_axis(n_out: int, n_in: int, start: int, stop: int):
    """Source indices and weights of output rows start..stop (align_corners=False)."""
    pos = (np.arange(start, stop, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    pos = pos.clip(0, n_in - 1)
    i0 = np.floor(pos).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (pos - i0).astype(np.float32)


def _tile_axes(coeffs: Coefficients, y0: int, ty: int, x0: int, tx: int):
    h, w, _ = coeffs.coef.shape
    return (_bilinear_axis(coeffs.shape[0], h, y0, y0 + ty), _bilinear_axis(coeffs.shape[1], w, x0, x0 + tx))


def _threads(threads: int | None) -> int:
    return max(1, torch.get_num_threads() if threads is None else int(threads))


def full_stage(gray_tile, coeffs: Coefficients, *, y0: int = 0, x0: int = 0, threads: int | None = None):
    """Colour and heuristic spread of a full-resolution tile.

    Pointwise given ``coeffs`` (bilinear samples at each pixel's global
    position), so any tiling reproduces the untiled result exactly.

    Parameters
    ----------
    gray_tile : (ty, tx) float32 in [0, 1], the tile of the input at [y0:, x0:]
    coeffs : Coefficients of the whole image
    y0, x0 : int, the tile's offset in the full image
    threads : int, optional; default torch's intra-op thread count

    Returns
    -------
    rgb : (ty, tx, 3) float32 array in [0, 1], the colour estimate
    spread : (ty, tx, 3) float32 array >= 0, the heuristic band half-width
    """
    g = np.ascontiguousarray(gray_tile, dtype=np.float32)
    rows, cols = _tile_axes(coeffs, y0, g.shape[0], x0, g.shape[1])
    return fullres.bands(g, coeffs.coef, rows, cols, threads=_threads(threads))


def stage_codes(gray_tile, coeffs: Coefficients, lam, *, y0: int = 0, x0: int = 0, threads: int | None = None):
    """Storage codes of a tile's cube, straight from the coefficients (see :mod:`colorcube.fullres`).

    Parameters
    ----------
    gray_tile, coeffs, y0, x0, threads : as :func:`full_stage`
    lam : (3,) float, conformal lambda per channel (``inf`` allowed)

    Returns
    -------
    dict of ``rgb`` (ty, tx, 3) uint8, ``interval`` (ty, tx, 3, 2) uint8 rounded
    outward, ``scale`` (ty, tx, 3) uint8
    """
    g = np.ascontiguousarray(gray_tile, dtype=np.float32)
    rows, cols = _tile_axes(coeffs, y0, g.shape[0], x0, g.shape[1])
    out = fullres.codes(g, coeffs.coef, rows, cols, np.asarray(lam, np.float64).reshape(3), EPS,
                        threads=_threads(threads))
    return dict(zip(("rgb", "interval", "scale"), out))


def predict_bands(gray, model: ColorNet, settings: PipelineSettings = PipelineSettings(), *,
                  block_pixels: int = 1 << 22):
    """Full pipeline before calibration: numpy (rgb, lower, upper), each (y, x, 3) float32.

    ``rgb`` is in [0, 1]; the heuristic ``lower <= rgb <= upper`` may extend past it.

    The full-resolution stage runs in row blocks of about ``block_pixels``
    pixels, which bounds the temporaries; results do not depend on the blocks.
    """
    gray = np.asarray(gray, dtype=np.float32)
    coeffs = working_stage(gray, model, settings)
    h, w = gray.shape
    out = [np.empty((h, w, 3), np.float32) for _ in range(3)]
    rows = max(1, block_pixels // w)
    for y0 in range(0, h, rows):
        rgb, spread = full_stage(gray[y0 : y0 + rows], coeffs, y0=y0)
        out[0][y0 : y0 + rows] = rgb
        np.subtract(rgb, spread, out=out[1][y0 : y0 + rows])
        np.add(rgb, spread, out=out[2][y0 : y0 + rows])
    return tuple(out)


def default_calibration_path() -> Path:
    """Path of the calibration shipped with the default weights."""
    from importlib import resources

    return Path(str(resources.files("colorcube") / "weights" / "default.cal"))


def resolve_calibration(calibration, model: ColorNet):
    """``"default"``, a path, a Calibration or None -> Calibration or None."""
    from .conformal import Calibration

    if calibration is None or isinstance(calibration, Calibration):
        return calibration
    if isinstance(calibration, str) and calibration == "default":
        return Calibration.from_file(default_calibration_path(), model_hash=getattr(model, "weights_hash", None))
    if isinstance(calibration, (str, Path)):
        return Calibration.from_file(calibration, model_hash=getattr(model, "weights_hash", None))
    raise ColorcubeError(f"calibration={calibration!r}: give 'default', a .cal path, a Calibration or None")


def _as_gray(image, max_pixels) -> tuple[np.ndarray, str]:
    from .io import DEFAULT_MAX_PIXELS, read_gray

    if isinstance(image, (str, Path)):
        return read_gray(image, max_pixels=DEFAULT_MAX_PIXELS if max_pixels == "default" else max_pixels), str(image)
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[-1] == 3:
        warnings.warn("colour array converted to gray (BT.601 luma) before colorizing", stacklevel=3)
        arr = arr.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    if arr.ndim != 2 or arr.size == 0:
        raise ColorcubeError(f"image: expected a path or a (y, x) gray array, got shape {arr.shape}")
    if np.issubdtype(arr.dtype, np.integer):
        arr = arr.astype(np.float32) / np.iinfo(arr.dtype).max
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise ColorcubeError("image: array holds NaN or infinite values")
    if arr.min() < 0 or arr.max() > 1:
        raise ColorcubeError(f"image: float values must be in [0, 1], got [{arr.min():.3g}, {arr.max():.3g}]")
    return arr, "<array>"


def colorize(image, *, alpha: float = 0.1, model: ColorNet | None = None, calibration="default",
             settings: PipelineSettings | None = None, device: str = "auto", max_pixels="default",
             out=None, chunk: int = 1024):
    """Colorize one gray photograph and attach conformal R, G, B bands.

    Parameters
    ----------
    image : path or (y, x) array (float in [0, 1] or integer)
    alpha : float in (0, 1), miscoverage level of the bands
    model : ColorNet, optional; default the shipped model
    calibration : "default", a ``.cal`` path, a Calibration, or None
        ``"default"`` is the shipped calibration; None gives uncalibrated
        heuristic bands (lambda = 1), flagged so in the attributes.
    settings : PipelineSettings, optional; default those of the calibration
    device : "auto", "cpu" or "cuda" (used when the model is loaded here)
    max_pixels : int, None or "default", pixel ceiling for file inputs
    out : path or zarr store, optional
        Write the cube there (zarr v3, storage codes, ``chunk`` x ``chunk``
        chunks) straight from the codes, and return it opened lazily.
    chunk : int, spatial chunk size when writing ``out``

    Returns
    -------
    xarray.Dataset following the cube schema (see :mod:`colorcube.cube`):
    ``gray`` (y, x), ``rgb`` (y, x, channel), ``interval`` (y, x, channel, bound),
    ``scale`` (y, x, channel), float32; values are on the storage grid
    (``code / 255``), so the cube in memory and on disk are the same.
    """
    from .conformal import _check_alpha
    from .cube import code_dataset, cube_attrs, cube_dataset, cube_to_zarr, decode_codes, open_cube, validate_cube
    from .model import load_pretrained

    alpha = _check_alpha(alpha)
    gray, source = _as_gray(image, max_pixels)
    model = load_pretrained(device=device) if model is None else model
    cal = resolve_calibration(calibration, model)
    settings = settings or PipelineSettings.of(cal)
    if cal is not None:
        cal.check_compatible(model_hash=getattr(model, "weights_hash", None), settings=settings.as_dict(model))
    lam = cal.lambda_for(alpha) if cal is not None else np.ones(3)
    codes = stage_codes(gray, working_stage(gray, model, settings), lam)
    codes["gray"] = fullres.encode_gray(gray)
    attrs = cube_attrs(alpha=alpha, lam=lam, calibration=cal, model=model, settings=settings.as_dict(model),
                       source=source)
    if out is not None:
        cube_to_zarr(code_dataset(codes, attrs), out, chunk=chunk)
        return open_cube(out)
    v = decode_codes(codes)
    return validate_cube(cube_dataset(v["gray"], v["rgb"], v["interval"], attrs, scale=v["scale"]))
