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
from .conformal import nested_interval
from .errors import ColorcubeError
from .model import OUT_STRIDE, STRIDE, ColorNet, predict

__all__ = [
    "PipelineSettings",
    "Coefficients",
    "working_stage",
    "full_stage",
    "predict_bands",
    "resolve_calibration",
    "colorize",
]


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
    """

    working_size: int = 384
    vividness: float | None = None
    guided: bool = True
    radius: int = 4
    eps: float = 1e-3

    def __post_init__(self):
        if int(self.working_size) < 32:
            raise ColorcubeError(f"working_size={self.working_size!r} is too small; use at least 32 (default 384)")
        if self.vividness is not None and not 0.0 < float(self.vividness) <= 2.0:
            raise ColorcubeError(f"vividness={self.vividness!r} must be in (0, 2]; lower is more saturated")

    @classmethod
    def of(cls, calibration) -> "PipelineSettings":
        """The settings ``calibration`` was made with; the defaults when it is None."""
        return cls() if calibration is None else cls(**calibration.provenance["settings"])

    def as_dict(self, model: ColorNet | None = None) -> dict:
        d = dataclasses.asdict(self)
        if model is not None and d["vividness"] is None:
            d["vividness"] = model.config.vividness
        return d


@dataclasses.dataclass
class Coefficients:
    """Guided-filter coefficients at working resolution.

    ``a``, ``b`` : (5, h, w) float32 tensors for the channels
    (a*, b*, R spread, G spread, B spread); ``shape`` is the full-resolution (y, x).
    """

    a: torch.Tensor
    b: torch.Tensor
    shape: tuple


def _box(x: torch.Tensor, r: int) -> torch.Tensor:
    """Mean over a (2r+1)^2 window with edge replication; x (C, H, W)."""
    k = 2 * r + 1
    return F.avg_pool2d(F.pad(x[None], (r, r, r, r), mode="replicate"), k, stride=1)[0]


def _working_gray(gray: torch.Tensor, working_size: int) -> torch.Tensor:
    h, w = gray.shape
    scale = min(1.0, working_size / max(h, w))
    hw, ww = max(1, round(h * scale)), max(1, round(w * scale))
    if (hw, ww) == (h, w):
        return gray
    return F.interpolate(gray[None, None], size=(hw, ww), mode="bilinear", antialias=True, align_corners=False)[0, 0]


class _one_torch_thread:
    """Run a block with one torch intra-op thread, then restore the previous count.

    The working stage's float sums (network, box filters, antialiased
    resampling) depend on how many threads split them: logits moved by 2e-6
    between one and two threads, bands by up to 2e-6. At one thread colorize,
    calibrate, a local archive and every dask worker get the same coefficients,
    so their cubes agree to the last bit or two. Costs about 0.1 s per 1-MP
    photo on two cores (benchmarks/throughput.py); archives get their
    parallelism from images and chunks instead.
    """

    def __enter__(self):
        self.previous = torch.get_num_threads()
        if self.previous != 1:
            torch.set_num_threads(1)

    def __exit__(self, *exc):
        if self.previous != 1:
            torch.set_num_threads(self.previous)


def working_stage(gray: np.ndarray | torch.Tensor, model: ColorNet, settings: PipelineSettings = PipelineSettings()
                  ) -> Coefficients:
    """Network and guided-filter coefficients for one image.

    Parameters
    ----------
    gray : (y, x) float32 in [0, 1], the full-resolution input
    model : ColorNet (its device is used)
    settings : PipelineSettings

    Returns
    -------
    Coefficients on the model's device
    """
    with _one_torch_thread(), torch.inference_mode():
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
    lin = F.pad(lw[None, None], (0, pw, 0, ph), mode="replicate")
    ab, spread = predict(model, lin, vividness=settings.vividness)
    maps = torch.cat([ab, spread], dim=1)  # (1, 5, H/4, W/4)
    maps = F.interpolate(maps, scale_factor=OUT_STRIDE, mode="bilinear", align_corners=False)[0, :, :hw, :ww]
    guide = (lw / 100.0)[None]
    if not settings.guided:
        return Coefficients(torch.zeros_like(maps), maps.contiguous(), full_shape)
    r = max(0, min(int(settings.radius), (min(hw, ww) - 1) // 2))
    mean_i = _box(guide, r)
    mean_p = _box(maps, r)
    cov_ip = _box(guide * maps, r) - mean_i * mean_p
    var_i = _box(guide * guide, r) - mean_i * mean_i
    a = cov_ip / (var_i + settings.eps)
    b = mean_p - a * mean_i
    return Coefficients(_box(a, r).contiguous(), _box(b, r).contiguous(), full_shape)


def _bilinear_axis(n_out: int, n_in: int, start: int, stop: int, device):
    """Source indices and weights of output rows start..stop (align_corners=False)."""
    pos = (torch.arange(start, stop, device=device, dtype=torch.float64) + 0.5) * (n_in / n_out) - 0.5
    pos = pos.clamp(0, n_in - 1)
    i0 = pos.floor().long()
    i1 = (i0 + 1).clamp(max=n_in - 1)
    w = (pos - i0).float()
    return i0, i1, w


def _sample(maps: torch.Tensor, full_shape, y0: int, y1: int, x0: int, x1: int) -> torch.Tensor:
    """Bilinear samples of (C, h, w) maps at full-resolution pixels [y0:y1, x0:x1]."""
    _, h, w = maps.shape
    i0, i1, wy = _bilinear_axis(full_shape[0], h, y0, y1, maps.device)
    j0, j1, wx = _bilinear_axis(full_shape[1], w, x0, x1, maps.device)
    rows = maps[:, i0] * (1 - wy)[None, :, None] + maps[:, i1] * wy[None, :, None]
    return rows[:, :, j0] * (1 - wx)[None, None, :] + rows[:, :, j1] * wx[None, None, :]


@torch.inference_mode()
def full_stage(gray_tile, coeffs: Coefficients, *, y0: int = 0, x0: int = 0):
    """Colour, lower and upper heuristic bands of a full-resolution tile.

    Parameters
    ----------
    gray_tile : (ty, tx) float32 in [0, 1], the tile of the input at [y0:, x0:]
    coeffs : Coefficients of the whole image
    y0, x0 : int, the tile's offset in the full image

    Returns
    -------
    rgb : (ty, tx, 3) float32 tensor in [0, 1], the colour estimate
    lower, upper : (ty, tx, 3) float32 tensors, heuristic bounds rgb -/+ spread
        (lower <= rgb <= upper; not clipped to [0, 1])
    """
    device = coeffs.a.device
    g = torch.as_tensor(np.asarray(gray_tile, dtype=np.float32)).to(device)
    ty, tx = g.shape
    lightness = gray_to_lightness(g)
    a = _sample(coeffs.a, coeffs.shape, y0, y0 + ty, x0, x0 + tx)
    b = _sample(coeffs.b, coeffs.shape, y0, y0 + ty, x0, x0 + tx)
    q = a * (lightness / 100.0)[None] + b
    rgb = lab_to_rgb(torch.cat([lightness[None], q[:2]], dim=0))
    spread = q[2:5].clamp_min(0)
    # Heuristic bounds f -/+ spread, deliberately not clipped to [0, 1]: the
    # conformal interval scales them by lambda and clips only at the end.
    return rgb.permute(1, 2, 0), (rgb - spread).permute(1, 2, 0), (rgb + spread).permute(1, 2, 0)


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
        parts = full_stage(gray[y0 : y0 + rows], coeffs, y0=y0)
        for dst, part in zip(out, parts):
            dst[y0 : y0 + rows] = part.cpu().numpy()
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
             settings: PipelineSettings | None = None, device: str = "auto", max_pixels="default"):
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

    Returns
    -------
    xarray.Dataset following the cube schema (see :mod:`colorcube.cube`):
    ``gray`` (y, x), ``rgb`` (y, x, channel), ``interval`` (y, x, channel, bound)
    """
    from .conformal import _check_alpha
    from .cube import build_cube
    from .model import load_pretrained

    alpha = _check_alpha(alpha)
    gray, source = _as_gray(image, max_pixels)
    model = load_pretrained(device=device) if model is None else model
    cal = resolve_calibration(calibration, model)
    settings = settings or PipelineSettings.of(cal)
    if cal is not None:
        cal.check_compatible(model_hash=getattr(model, "weights_hash", None), settings=settings.as_dict(model))
    rgb, lower, upper = predict_bands(gray, model, settings)
    lam = cal.lambda_for(alpha) if cal is not None else np.ones(3)
    lo, hi = nested_interval(rgb, lower, upper, lam)
    interval = np.stack([lo, hi], axis=-1).astype(np.float32)
    return build_cube(gray, rgb, interval, alpha=alpha, lam=lam, calibration=cal, model=model,
                      settings=settings.as_dict(model), source=source, scale=upper - rgb)
