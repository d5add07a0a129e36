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
import json
import math
import warnings
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.nn import functional as F

import colorcube

from .calibration import Calibration
from .codes import check_compression, decode
from .color import gray_to_lightness
from .conformal import check_alpha
from .errors import ColorcubeError, OptionError
from .fullres import full_stage, stage_codes
from .guided import N_MAPS, guided_coefficients
from .hinting import calibration_hint_points, guarantee_note, network_input, pin, pin_codes, working_hints
from .hints import as_hints
from .io import DEFAULT_MAX_PIXELS, read_gray
from .model import OUT_STRIDE, SCALES, STRIDE, ColorNet, predict
from .propagate import blend_hints
from .reference import reference_histogram, reweighter
from .weights import load_model, load_weights

__all__ = [
    "Coefficients",
    "PipelineSettings",
    "WorkingInput",
    "coefficients_of",
    "colorize",
    "default_batch",
    "guided_attrs",
    "load_kernels",
    "network_maps",
    "network_shape",
    "predict_bands",
    "resolve_calibration",
    "working_input",
    "working_stage",
    "working_stages",
]


_PRECISIONS = {"bfloat16": torch.bfloat16, "float32": torch.float32}
#: Pipeline revision: 3 = hint-conditioned network with a learned error scale (2: guided
#: filter on the network grid, fused kernel, 8-bit band codes). Calibrations record it; one
#: made by another revision is refused, not silently reused.
REVISION = 3


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
    radius : int, guided-filter box radius on the network's output grid (1/4 of the
        working size); 2 by default: on the held-out 5 % of train/ it gave the best
        PSNR and CIEDE2000 of radius 1 / 2 and eps 1e-3 / 1e-4 (+1.14 dB, 10.47;
        ``python benchmarks/validation.py``)
    eps : float, guided-filter regulariser (guide in [0, 1])
    precision : {"bfloat16", "float32"}, the network's arithmetic. bfloat16 (default)
        runs the network 3x faster on this project's AMX CPU (``benchmarks/throughput.py``
        prints both) and suits GPUs;
        bench PSNR and coverage after recalibration are in the model card. On a CPU
        without bf16 instructions it is correct but slow: calibrate with float32 there.
    scale : {"learned", "spread"}, the band scale: the network's error head
        (default) or the spread of its colour distribution (see :mod:`colorcube.model`)
    revision : int, the pipeline revision (:data:`REVISION`); recorded so that a
        calibration from another revision is refused instead of silently reused
    """

    working_size: int = 384
    vividness: float | None = None
    guided: bool = True
    radius: int = 2
    eps: float = 1e-3
    precision: str = "bfloat16"
    scale: str = "learned"
    revision: int = REVISION

    def __post_init__(self):
        if int(self.working_size) < 32:
            raise OptionError(f"working_size={self.working_size!r} is too small; use at least 32 (default 384)")
        if self.vividness is not None and not 0.0 < float(self.vividness) <= 2.0:
            raise OptionError(f"vividness={self.vividness!r} must be in (0, 2]; lower is more saturated")
        if self.revision != REVISION:
            raise ColorcubeError(f"these settings come from colorcube pipeline revision {self.revision}; this version "
                                 f"runs revision {REVISION}: recalibrate with `colorcube calibrate`")
        if self.precision not in _PRECISIONS:
            raise OptionError(f"precision={self.precision!r}: use one of {sorted(_PRECISIONS)}")
        if self.scale not in SCALES:
            raise OptionError(f"scale={self.scale!r}: use one of {SCALES}")

    @classmethod
    def of(cls, calibration) -> PipelineSettings:
        """The settings ``calibration`` was made with; the defaults when it is None."""
        if calibration is None:
            return cls()
        # calibrations from before the revision field are revision 1
        return cls(**{"revision": 1, **calibration.provenance["settings"]})

    def as_dict(self, model: ColorNet | None = None) -> dict:
        d = dataclasses.asdict(self)
        if model is not None and d["vividness"] is None:
            d["vividness"] = model.config.vividness
        return d


@dataclasses.dataclass
class Coefficients:
    """Guided-filter coefficients on the network's output grid, on the CPU.

    ``coef`` : (h, w, 10) float32 array, the ``A`` then the ``B`` maps of
    (a*, b*, R scale, G scale, B scale); ``shape`` is the full-resolution
    (y, x); ``extent`` the (y, x) size, in grid cells, that the image spans.
    """

    coef: np.ndarray
    shape: tuple
    extent: tuple


def _working_shape(h: int, w: int, working_size: int) -> tuple:
    scale = min(1.0, working_size / max(h, w))
    return max(1, round(h * scale)), max(1, round(w * scale))


def _grid(h: int, w: int, working_size: int) -> tuple:
    """(gy, gx, extent) of the coefficient grid for a (h, w) image: the network's output
    grid over the working image, and the size in grid cells that the image spans."""
    hw, ww = _working_shape(h, w, working_size)
    return -(-hw // OUT_STRIDE), -(-ww // OUT_STRIDE), (hw / OUT_STRIDE, ww / OUT_STRIDE)


def _working_gray(gray: torch.Tensor, working_size: int) -> torch.Tensor:
    h, w = gray.shape
    hw, ww = _working_shape(h, w, working_size)
    if (hw, ww) == (h, w):
        return gray
    return F.interpolate(gray[None, None], size=(hw, ww), mode="bilinear", antialias=True, align_corners=False)[0, 0]


def working_stage(gray: np.ndarray | torch.Tensor, model: ColorNet, settings: PipelineSettings = PipelineSettings(),
                  *, hints=None, reference=None, reference_strength: float = 1.0) -> Coefficients:
    """Network and guided-filter coefficients for one image.

    Uses torch's current intra-op thread count: results agree across thread
    counts to float rounding (tested), not always to the last bit.

    Parameters
    ----------
    gray : (y, x) float32 in [0, 1], the full-resolution input
    model : ColorNet (its device is used)
    settings : PipelineSettings
    hints : optional colour hints, any form :func:`colorcube.hints.as_hints` takes; the
        network runs once without and once with them, and :func:`colorcube.propagate.blend_hints`
        applies them edge-aware (None: the automatic mode, one network run)
    reference : optional colour photo (path, (y, x, 3) array or
        :class:`colorcube.reference.Reference`) whose (a*, b*) histogram the predicted colours
        are reweighted toward, with ``reference_strength`` (0: none, 1: match it)

    Returns
    -------
    Coefficients (on the CPU)
    """
    shape = tuple(np.shape(gray))
    hints = as_hints(hints, shape)
    reweight = None
    if reference is not None:
        reweight = reweighter(reference_histogram(reference, model.bins), reference_strength)
    with torch.inference_mode():
        return _working_stage(gray, model, settings, hints, reweight)


class WorkingInput(NamedTuple):
    """One image ready for the network: ``shape`` the full-resolution (y, x), ``lightness``
    (h, w) float32 L in [0, 100] at the working size, ``padded`` (1, 1, H, W) the network
    input (:func:`network_shape`), on the model's device."""

    shape: tuple
    lightness: torch.Tensor
    padded: torch.Tensor


def working_input(gray, settings: PipelineSettings, *, device="cpu") -> WorkingInput:
    """The network input of a (y, x) float32 gray image in [0, 1] (see :class:`WorkingInput`)."""
    with torch.inference_mode():
        g = torch.as_tensor(np.asarray(gray, dtype=np.float32) if not torch.is_tensor(gray) else gray).to(device)
        lw = gray_to_lightness(_working_gray(g, int(settings.working_size)))
        ny, nx = network_shape(tuple(g.shape), settings)
        pad = (0, nx - lw.shape[1], 0, ny - lw.shape[0])
        lin = F.pad(lw[None, None], pad, mode="replicate").contiguous(memory_format=torch.channels_last)
    return WorkingInput(tuple(g.shape), lw, lin)


def network_shape(shape: tuple, settings: PipelineSettings) -> tuple:
    """(H, W) of the network input for a (y, x) image: the working size, replicate-padded.

    Odd sizes are padded to a multiple of the stride and every side to at least two
    strides: at one stride the 1/8-resolution features are 2 wide, and oneDNN's bfloat16
    stride-2 convolution (down16) then reads memory it never wrote (torch 2.13,
    AVX-512/AMX CPUs), giving wrong and at times NaN colours for any image whose working
    side is <= 16 px (a 2000 x 5 scan). Images of equal network shape share a batch.
    """
    hw, ww = _working_shape(*shape, int(settings.working_size))
    return hw + max((-hw) % STRIDE, 2 * STRIDE - hw), ww + max((-ww) % STRIDE, 2 * STRIDE - ww)


def _predict_options(settings: PipelineSettings, reweight=None) -> dict:
    return {"vividness": settings.vividness, "dtype": _PRECISIONS[settings.precision], "scale": settings.scale,
                "reweight": reweight}


def _maps(ab: torch.Tensor, scale: torch.Tensor, full_shape: tuple, settings: PipelineSettings) -> np.ndarray:
    """One image's (5, gy, gx) float32 maps (a*, b*, R, G, B scale) on its coefficient grid."""
    h4, w4, _ = _grid(*full_shape, int(settings.working_size))
    return torch.cat([ab, scale], dim=1)[0, :, :h4, :w4].float().contiguous().cpu().numpy()


def coefficients_of(maps: np.ndarray, inp: WorkingInput, settings: PipelineSettings) -> Coefficients:
    """Guided-filter coefficients of an image's (5, gy, gx) maps (:func:`network_maps`) against
    its working lightness; the plain maps as ``B`` (``A`` = 0) when ``settings.guided`` is off."""
    h4, w4, extent = _grid(*inp.shape, int(settings.working_size))
    if not settings.guided:
        coef = np.concatenate([np.zeros_like(maps), maps]).transpose(1, 2, 0)
        return Coefficients(np.ascontiguousarray(coef, np.float32), inp.shape, extent)
    # The fast guided filter runs on the network's output grid (1/4 of the working
    # size) against the lightness averaged to that grid; full resolution then
    # applies A * L + B with the full-resolution L (He & Sun 2015).
    with torch.inference_mode():
        guide = (F.avg_pool2d(inp.padded.float(), OUT_STRIDE)[0, 0, :h4, :w4] / 100.0).contiguous().cpu().numpy()
    r = max(0, min(int(settings.radius), (min(h4, w4) - 1) // 2))
    return Coefficients(guided_coefficients(guide, maps, radius=r, eps=settings.eps), inp.shape, extent)


def _working_stage(gray, model: ColorNet, settings: PipelineSettings, hints=None, reweight=None) -> Coefficients:
    device = next(model.parameters()).device
    inp = working_input(gray, settings, device=device)
    options = _predict_options(settings, reweight)
    maps = _maps(*predict(model, inp.padded, **options), inp.shape, settings)
    if hints is not None:
        # the network again with the hints, then the change they make applied edge-aware
        hint_ab, hint_mask = working_hints(hints, tuple(inp.lightness.shape))
        hinted = _maps(*predict(model, inp.padded, network_input(hint_ab, hint_mask, inp.padded.shape[-2:],
                                                                 device=device), **options), inp.shape, settings)
        maps = blend_hints(inp.lightness.float().cpu().numpy(), hint_ab, hint_mask, maps, hinted, factor=OUT_STRIDE)
    return coefficients_of(maps, inp, settings)


def default_batch(device) -> int:
    """Images per network batch: 8 on a CPU (the bf16 network's throughput levels off
    there, ``python benchmarks/archive.py``), 32 on a GPU."""
    return 32 if torch.device(device).type == "cuda" else 8


def network_maps(inputs: list, model: ColorNet, settings: PipelineSettings = PipelineSettings(), *,
                 batch: int | None = None) -> list:
    """The network's (5, gy, gx) float32 maps (a*, b*, R, G, B scale) of many images, batched
    over images of one network-input shape.

    Each image's maps equal those of running it alone bit for bit (tested): the
    network computes every image of a batch as it computes it alone.

    Parameters
    ----------
    inputs : list of :class:`WorkingInput` (:func:`working_input`)
    batch : int, optional, most images per network call (default :func:`default_batch`)

    Returns
    -------
    list of (5, gy, gx) float32 arrays, in the order of ``inputs``; :func:`coefficients_of`
    turns each into the image's Coefficients
    """
    device = next(model.parameters()).device
    batch = int(batch or default_batch(device))
    if batch < 1:
        raise OptionError(f"batch={batch!r}: use at least 1")
    out = [None] * len(inputs)
    groups: dict = {}
    for i, inp in enumerate(inputs):
        groups.setdefault(tuple(inp.padded.shape), []).append(i)
    options = _predict_options(settings)
    with torch.inference_mode():
        for members in groups.values():
            for start in range(0, len(members), batch):
                part = members[start : start + batch]
                ab, scale = predict(model, torch.cat([inputs[i].padded for i in part]).to(device), **options)
                for k, i in enumerate(part):
                    out[i] = _maps(ab[k : k + 1], scale[k : k + 1], inputs[i].shape, settings)
    return out


def working_stages(grays, model: ColorNet, settings: PipelineSettings = PipelineSettings(), *,
                   batch: int | None = None) -> list:
    """:func:`working_stage` of many images, the network batched (:func:`network_maps`).

    Parameters
    ----------
    grays : sequence of (y, x) float32 arrays in [0, 1]
    batch : int, optional, most images per network call (default :func:`default_batch`)

    Returns
    -------
    list of Coefficients, in the order of ``grays``, each equal to ``working_stage``'s bit for bit
    """
    device = next(model.parameters()).device
    inputs = [working_input(g, settings, device=device) for g in grays]
    maps = network_maps(inputs, model, settings, batch=batch)
    return [coefficients_of(m, inp, settings) for m, inp in zip(maps, inputs)]


def predict_bands(gray, model: ColorNet, settings: PipelineSettings = PipelineSettings(), *,
                  hints=None, reference=None, reference_strength: float = 1.0, block_pixels: int = 1 << 22):
    """Full pipeline before calibration: numpy (rgb, lower, upper), each (y, x, 3) float32.

    ``rgb`` is in [0, 1]; the heuristic ``lower <= rgb <= upper`` may extend past it.
    ``hints``, ``reference``, ``reference_strength``: see :func:`working_stage`; at hint
    pixels the colour is pinned and the band widened (:func:`colorcube.hints.pin`).

    The full-resolution stage runs in row blocks of about ``block_pixels``
    pixels, which bounds the temporaries; results do not depend on the blocks.
    """
    gray = np.asarray(gray, dtype=np.float32)
    hints = as_hints(hints, gray.shape)
    coeffs = working_stage(gray, model, settings, hints=hints, reference=reference,
                           reference_strength=reference_strength)
    h, w = gray.shape
    out = [np.empty((h, w, 3), np.float32) for _ in range(3)]
    rows = max(1, block_pixels // w)
    for y0 in range(0, h, rows):
        rgb, spread = full_stage(gray[y0 : y0 + rows], coeffs, y0=y0)
        out[0][y0 : y0 + rows] = rgb
        np.subtract(rgb, spread, out=out[1][y0 : y0 + rows])
        np.add(rgb, spread, out=out[2][y0 : y0 + rows])
    if hints is not None:
        pin(hints, gray, *out)
    return tuple(out)


def load_kernels() -> None:
    """Load the compiled kernels of both stages from numba's cache by running them once on a
    tiny image: about 0.7 s of numba's own start-up, once per process. The command line runs
    this in a thread while it loads the model and runs the network, which release the GIL."""
    coeffs = coefficients_of(np.zeros((N_MAPS, 2, 2), np.float32),
                             WorkingInput((8, 8), torch.zeros(8, 8), torch.zeros(1, 1, 8, 8)), PipelineSettings())
    stage_codes(np.zeros((8, 8), np.float32), coeffs, np.ones(3))


def default_calibration_path() -> Path:
    """Path of the calibration shipped with the default weights."""
    return Path(str(resources.files("colorcube") / "weights" / "default.cal"))


def resolve_calibration(calibration, model: ColorNet):
    """``"default"``, a path, a Calibration or None -> Calibration or None."""
    if calibration is None or isinstance(calibration, Calibration):
        return calibration
    if isinstance(calibration, str) and calibration == "default":
        return Calibration.from_file(default_calibration_path(), model_hash=getattr(model, "weights_hash", None))
    if isinstance(calibration, (str, Path)):
        return Calibration.from_file(calibration, model_hash=getattr(model, "weights_hash", None))
    raise OptionError(f"calibration={calibration!r}: give 'default', a .cal path, a Calibration or None")


def _finite_or_str(x: float):
    return float(x) if math.isfinite(x) else "inf"


def cube_attrs(*, alpha: float, lam, calibration=None, model=None, settings=None, source: str = "<array>",
               source_hash: str = "") -> dict:
    """The cube's attributes (JSON-able): alpha, method, lambda, guarantee, provenance
    (:data:`colorcube.cube.REQUIRED_ATTRS` and more)."""
    lam = [float(v) for v in np.asarray(lam, dtype=np.float64).reshape(-1)]
    if calibration is None:
        method, guarantee = "uncalibrated", ("UNCALIBRATED heuristic bands (lambda = 1): no coverage guarantee; "
                                             "calibrate with `colorcube calibrate`.")
        summary = {}
    else:
        method, guarantee, summary = calibration.method, calibration.guarantee(alpha), calibration.summary()
    return {
        "alpha": float(alpha),
        "method": method,
        "lambda": [_finite_or_str(v) for v in lam],
        "calibrated": int(calibration is not None),
        "guarantee": guarantee,
        "calibration": json.dumps(summary),
        "model_name": getattr(model, "weights_name", "") if model is not None else "",
        "model_hash": getattr(model, "weights_hash", "") if model is not None else "",
        "settings": json.dumps(settings or {}),
        "source": str(source),
        "source_hash": source_hash,
        "colorcube_version": colorcube.__version__,
    }


@dataclasses.dataclass(frozen=True)
class Run:
    """What every image of one colorization run shares (:func:`prepare_run`).

    ``lam`` : (3,) float64 lambda per R, G, B (ones when uncalibrated); ``attrs`` : the
    cube attributes of the run (:func:`cube_attrs`), ``source`` still "<array>".
    """

    model: ColorNet
    calibration: Calibration | None
    settings: PipelineSettings
    alpha: float
    lam: np.ndarray
    attrs: dict


def prepare_run(*, alpha: float = 0.1, model: ColorNet | None = None, weights=None, device="auto",
                calibration="default", settings: PipelineSettings | None = None, where: str | None = None) -> Run:
    """Check alpha, load the model and calibration, settle the settings, lambda and attributes.

    The one preparation behind :func:`colorize`, :func:`colorcube.colorize_archive`, the
    command line, the explorer and :func:`colorcube.evaluate`.

    Parameters
    ----------
    alpha : float in (0, 1), miscoverage of the bands
    model : ColorNet, optional; else loaded from ``weights`` (a .safetensors path; default
        the shipped weights) on ``device`` ("auto", "cpu", "cuda")
    calibration : "default", a ``.cal`` path, a Calibration, or None (uncalibrated)
    settings : PipelineSettings, optional; default the calibration's. A calibration made
        with other settings or another model is refused (CalibrationError), naming ``where``
        (default: the calibration)

    Returns
    -------
    Run
    """
    alpha = check_alpha(alpha)
    if model is None:
        model = load_weights(weights, device=device) if weights else load_model(device=device)
    cal = resolve_calibration(calibration, model)
    settings = settings or PipelineSettings.of(cal)
    sdict = settings.as_dict(model)
    if cal is not None:
        options = {"where": where} if where else {}
        cal.check_compatible(model_hash=getattr(model, "weights_hash", None), settings=sdict, **options)
    lam = cal.lambda_for(alpha) if cal is not None else np.ones(3)
    attrs = cube_attrs(alpha=alpha, lam=lam, calibration=cal, model=model, settings=sdict)
    return Run(model, cal, settings, alpha, np.asarray(lam, np.float64), attrs)


def _as_gray(image, max_pixels) -> tuple[np.ndarray, str]:
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


class Colorized(NamedTuple):
    """One image colorized, as storage codes (what :func:`colorize` wraps in a Dataset).

    ``codes`` : dict of ``gray`` (y, x) uint8/uint16, ``rgb`` (y, x, 3) uint8 and ``interval``
    (y, x, 3, 2) uint8 (:mod:`colorcube.codes`); ``attrs`` : the cube attributes;
    ``coefficients`` : ``(coef (gy, gx, 10) float32, extent)``; ``hints`` : (n, 5) int32 or None.
    """

    codes: dict
    attrs: dict
    coefficients: tuple
    hints: np.ndarray | None


def colorize_codes(image, run: Run, *, max_pixels="default", hints=None, reference=None,
                   reference_strength: float = 1.0, coeffs: Coefficients | None = None) -> Colorized:
    """Colorize one image as storage codes, without building a Dataset (nor importing xarray).

    Parameters are those of :func:`colorize`; ``run`` from :func:`prepare_run`; ``coeffs``:
    the image's working stage when already computed (:func:`working_stages`).
    """
    gray, source = _as_gray(image, max_pixels)
    hints = as_hints(hints, gray.shape)
    ref = None if reference is None else reweighter(reference_histogram(reference, run.model.bins),
                                                     reference_strength)
    attrs = {**run.attrs, "source": source}
    if hints is not None or ref is not None:
        attrs.update(guided_attrs(attrs, run.calibration, hints=hints, reference=reference,
                                  strength=reference_strength))
    if coeffs is None:
        with torch.inference_mode():
            coeffs = _working_stage(gray, run.model, run.settings, hints, ref)
    codes = stage_codes(gray, coeffs, run.lam, with_gray=True)
    if hints is not None:
        pin_codes(hints, gray, codes)
    return Colorized(codes, attrs, (coeffs.coef, coeffs.extent), None if hints is None else hints.to_array())


def colorize(image, *, alpha: float = 0.1, model: ColorNet | None = None, calibration="default",
             settings: PipelineSettings | None = None, device: str = "auto", max_pixels="default",
             out=None, chunk: int = 1024, compression: str = "none", hints=None, reference=None,
             reference_strength: float = 1.0, batch: int | None = None):
    """Colorize one gray photograph (or a list of them) and attach conformal R, G, B bands.

    Parameters
    ----------
    image : path or (y, x) array (float in [0, 1] or integer), or a list of them: the
        network then runs batched over images of one input shape (``batch`` at a time,
        default :func:`default_batch`), each result equal to colorizing it alone
    alpha : float in (0, 1), miscoverage level of the bands
    hints : optional colour hints: points ``[(y, x, (r, g, b)), ...]`` (input-pixel row and
        column, 0-255 integers), an RGBA array of the input's size whose opaque pixels are
        strokes, or a ``.json`` / RGBA ``.png`` hint file (see :mod:`colorcube.hints`). The
        colour follows them within lightness regions; at each hint pixel it is the hint's
        colour as far as the gray allows and the band contains the hint's colour. They are
        stored in the cube (``hints`` variable). None (default): the automatic mode, unchanged.
    reference : optional colour photo (path or (y, x, 3) array): the predicted colours are
        reweighted toward its (a*, b*) histogram per lightness band (:mod:`colorcube.reference`)
    reference_strength : float >= 0, how far (0: not at all, 1: match the reference's
        histogram, default)
    model : ColorNet, optional; default the shipped model
    calibration : "default", a ``.cal`` path, a Calibration, or None
        ``"default"`` is the shipped calibration; None gives uncalibrated
        heuristic bands (lambda = 1), flagged so in the attributes.
    settings : PipelineSettings, optional; default those of the calibration
    device : "auto", "cpu" or "cuda" (used when the model is loaded here)
    max_pixels : int, None or "default", pixel ceiling for file inputs
    out : path or zarr store, optional (one image only)
        Write the cube there (zarr v3, storage codes, ``chunk`` x ``chunk``
        chunks) straight from the codes, and return it opened lazily.
    chunk : int, spatial chunk size when writing ``out``
    compression : "none" (fastest, default), "lz4" or "zstd" (smaller) for ``out``;
        see :func:`colorcube.store.zarr_compressors`

    Returns
    -------
    xarray.Dataset following the cube schema (see :mod:`colorcube.cube`), or a list of them:
    ``gray`` (y, x), ``rgb`` (y, x, channel), ``interval`` (y, x, channel, bound),
    float32 on the storage grid (``code / 255``), so the cube in memory and on
    disk are the same; ``coefficients`` (gy, gx, coefficient), see :func:`bands_at`.
    """
    many = isinstance(image, (list, tuple))
    if many and out is not None:
        raise ColorcubeError("out= writes one image; for many images use colorcube.colorize_archive")
    if out is not None:
        check_compression(compression)  # a bad name fails before any work
    run = prepare_run(alpha=alpha, model=model, device=device, calibration=calibration, settings=settings)
    if not many:
        done = colorize_codes(image, run, max_pixels=max_pixels, hints=hints, reference=reference,
                              reference_strength=reference_strength)
        return _cube(done, out=out, chunk=chunk, compression=compression)
    grays = [_as_gray(im, max_pixels)[0] for im in image]
    guided = hints is not None or reference is not None
    coeffs = [None] * len(grays) if guided else working_stages(grays, run.model, run.settings, batch=batch)
    return [_cube(colorize_codes(im if isinstance(im, (str, Path)) else g, run, max_pixels=max_pixels, hints=hints,
                                 reference=reference, reference_strength=reference_strength, coeffs=c))
            for im, g, c in zip(image, grays, coeffs)]


def _cube(done: Colorized, *, out=None, chunk: int = 1024, compression: str = "none"):
    """The Dataset of a colorized image (xarray is imported here, through the package)."""
    if out is not None:
        ds = colorcube.cube.code_dataset(done.codes, done.attrs, done.coefficients, done.hints)
        arrays = colorcube.store.cube_to_zarr(ds, out, chunk=chunk, compression=compression)
        return colorcube.store.lazy_cube(arrays, done.attrs)
    v = {name: decode(code) for name, code in done.codes.items()}
    return colorcube.cube.validate_cube(colorcube.cube.cube_dataset(v["gray"], v["rgb"], v["interval"], done.attrs,
                                                                    done.coefficients, done.hints))


def guided_attrs(attrs: dict, calibration, *, hints=None, reference=None, strength: float = 1.0) -> dict:
    """The cube attributes that record user guidance: ``hints`` (count), ``hint_source``,
    ``reference``, ``reference_strength``, and the ``guarantee`` with what it claims then
    (:func:`colorcube.hints.guarantee_note`)."""
    new = {}
    ref_name = None
    if reference is not None:
        ref_name = getattr(reference, "source", None) or (str(reference) if isinstance(reference, (str, Path))
                                                           else "<array>")
        new.update(reference=ref_name, reference_strength=float(strength))
    if hints is not None:
        new.update(hints=len(hints), hint_source=hints.source)
    note = guarantee_note(hint_points=None if calibration is None else calibration_hint_points(calibration),
                          n_hints=len(hints) if hints is not None else 0, reference=ref_name)
    if note:
        new["guarantee"] = f"{attrs['guarantee']} {note}"
    return new
