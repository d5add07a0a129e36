"""The working stage: the network at a working resolution, and the guided-filter coefficients.

The network runs on the lightness downsampled to ``working_size`` (longer side),
replicate-padded to its stride (:func:`network_shape`); its chroma and R, G, B scale
maps are turned into fast-guided-filter coefficients ``(A, B)`` against the working
lightness (He & Sun 2015), on the network's output grid (1/4 of the working size):
10 small maps per image (:class:`colorcube.network.guided.Coefficients`). The full-resolution
stage (:mod:`colorcube.render.fullres`) then applies them to every pixel. Many images of one
input shape share a network batch (:func:`network_maps`), each computed as it is alone.
:class:`colorcube.settings.PipelineSettings` choose its resolution, precision and filter.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch.nn import functional as F

from ..color import gray_to_lightness
from ..errors import OptionError
from ..guidance.hints import as_hints
from ..guidance.placement import working_hints
from ..guidance.propagate import blend_hints
from ..guidance.reference import reference_histogram, reweighter
from ..settings import PRECISIONS, PipelineSettings
from .decode import _in_dtype, decode_learned, predict
from .guided import Coefficients, guided_coefficients
from .model import OUT_STRIDE, STRIDE, ColorNet, hint_channels

__all__ = [
    "WorkingInput",
    "coefficients_of",
    "decoded_maps",
    "default_batch",
    "network_input",
    "network_maps",
    "network_shape",
    "working_gray",
    "working_input",
    "working_stage",
    "working_stages",
]


_DEFAULTS = PipelineSettings()  # frozen: one instance serves as every default


def _working_shape(h: int, w: int, working_size: int) -> tuple:
    scale = min(1.0, working_size / max(h, w))
    return max(1, round(h * scale)), max(1, round(w * scale))


def _grid(h: int, w: int, working_size: int) -> tuple:
    """(gy, gx, extent) of the coefficient grid for a (h, w) image: the network's output
    grid over the working image, and the size in grid cells that the image spans."""
    hw, ww = _working_shape(h, w, working_size)
    return -(-hw // OUT_STRIDE), -(-ww // OUT_STRIDE), (hw / OUT_STRIDE, ww / OUT_STRIDE)


def working_gray(gray: torch.Tensor, working_size: int) -> torch.Tensor:
    """(y, x) gray -> the gray at the working size (longer side ``working_size``; antialiased)."""
    h, w = gray.shape
    hw, ww = _working_shape(h, w, working_size)
    if (hw, ww) == (h, w):
        return gray
    return F.interpolate(gray[None, None], size=(hw, ww), mode="bilinear", antialias=True, align_corners=False)[0, 0]


def working_stage(gray: np.ndarray | torch.Tensor, model: ColorNet, settings: PipelineSettings = _DEFAULTS,
                  *, hints=None, reference=None, reference_strength: float = 1.0) -> Coefficients:
    """Network and guided-filter coefficients for one image.

    Uses torch's current intra-op thread count: results agree across thread
    counts to float rounding (tested), not always to the last bit.

    Parameters
    ----------
    gray : (y, x) float32 in [0, 1], the full-resolution input
    model : ColorNet (its device is used)
    settings : PipelineSettings
    hints : optional colour hints, any form :func:`colorcube.guidance.hints.as_hints` takes; the
        network runs once without and once with them, and :func:`colorcube.guidance.propagate.blend_hints`
        applies them edge-aware (None: the automatic mode, one network run)
    reference : optional colour photo (path, (y, x, 3) array or
        :class:`colorcube.guidance.reference.Reference`) whose (a*, b*) histogram the predicted colours
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
        lw = gray_to_lightness(working_gray(g, int(settings.working_size)))
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
    return {"vividness": settings.vividness, "dtype": PRECISIONS[settings.precision], "scale": settings.scale,
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
        # the network again with the hints, then (settings.propagate) the change they make applied edge-aware
        hint_ab, hint_mask = working_hints(hints, tuple(inp.lightness.shape))
        hinted = _maps(*predict(model, inp.padded, network_input(hint_ab, hint_mask, inp.padded.shape[-2:],
                                                                 device=device), **options), inp.shape, settings)
        maps = blend_hints(inp.lightness.float().cpu().numpy(), hint_ab, hint_mask, maps, hinted,
                           factor=OUT_STRIDE) if settings.propagate else hinted
    return coefficients_of(maps, inp, settings)


def default_batch(device) -> int:
    """Images per network batch: 8 on a CPU (the bf16 network's throughput levels off
    there, ``python benchmarks/archive.py``), 32 on a GPU."""
    return 32 if torch.device(device).type == "cuda" else 8


def network_maps(inputs: list, model: ColorNet, settings: PipelineSettings = _DEFAULTS, *,
                 batch: int | None = None, decode: bool = True) -> list:
    """The network's (5, gy, gx) float32 maps (a*, b*, R, G, B scale) of many images, batched
    over images of one network-input shape.

    On a CPU each image's maps equal those of running it alone bit for bit (tested): in
    bfloat16 oneDNN computes every image of a batch as it computes it alone, and the
    decoding runs image by image; in float32 it does not (its convolutions change
    algorithm with the batch size), so float32 runs one image per call, which costs little:
    the float32 network already runs near the CPU's float32 peak. On a GPU the batch is kept
    and results equal lone ones to float rounding (cuDNN also picks kernels by batch size).

    Parameters
    ----------
    inputs : list of :class:`WorkingInput` (:func:`working_input`)
    batch : int, optional, most images per network call (default :func:`default_batch`)
    decode : bool; False runs the network only, when ``settings.scale`` is "learned": each
        image's outputs then come undecoded, for :func:`decoded_maps` (the archive decodes
        in its finishing threads, beside the next batch's network)

    Returns
    -------
    list of (5, gy, gx) float32 arrays, in the order of ``inputs``; :func:`coefficients_of`
    turns each into the image's Coefficients (with ``decode=False``: each image's network
    outputs, ``(logits, err)`` of batch size 1, for :func:`decoded_maps`)
    """
    device = next(model.parameters()).device
    batch = int(batch or default_batch(device))
    if batch < 1:
        raise OptionError(f"batch={batch!r}: use at least 1")
    if settings.precision == "float32" and device.type == "cpu":
        batch = 1  # see above: float32 batches round differently from lone images
    out = [None] * len(inputs)
    groups: dict = {}
    for i, inp in enumerate(inputs):
        groups.setdefault(tuple(inp.padded.shape), []).append(i)
    options = _predict_options(settings)
    if not decode and settings.scale != "learned":
        raise OptionError(f"decode=False needs scale='learned', not {settings.scale!r}")
    with torch.inference_mode():
        for members in groups.values():
            for start in range(0, len(members), batch):
                part = members[start : start + batch]
                x = torch.cat([inputs[i].padded for i in part]).to(device)
                if not decode:
                    logits, err = _in_dtype(model, options["dtype"])(x)
                    for k, i in enumerate(part):
                        out[i] = (logits[k : k + 1], err[k : k + 1])
                    continue
                ab, scale = predict(model, x, **options)
                for k, i in enumerate(part):
                    out[i] = _maps(ab[k : k + 1], scale[k : k + 1], inputs[i].shape, settings)
    return out


def decoded_maps(outputs: tuple, inp: WorkingInput, model: ColorNet, settings: PipelineSettings = _DEFAULTS):
    """One image's (5, gy, gx) float32 maps from its undecoded network outputs
    (``network_maps(..., decode=False)``), equal bit for bit to what ``network_maps`` returns."""
    with torch.inference_mode():
        return _maps(*decode_learned(model, *outputs, vividness=settings.vividness), inp.shape, settings)


def working_stages(grays, model: ColorNet, settings: PipelineSettings = _DEFAULTS, *,
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


def network_input(ab: np.ndarray, mask: np.ndarray, padded_shape, *, device="cpu") -> torch.Tensor:
    """The network's hint channels (:func:`colorcube.network.model.hint_channels`) of
    :func:`colorcube.guidance.placement.working_hints`, padded to ``padded_shape``.

    Returns
    -------
    (1, 3, Hp, Wp) float32: a / 110, b / 110 and the 0/1 mask, zero in the padding
    """
    hw, ww = mask.shape
    hp, wp = padded_shape
    ab_pad = F.pad(torch.from_numpy(np.asarray(ab, np.float32))[None], (0, wp - ww, 0, hp - hw))
    mask_pad = F.pad(torch.from_numpy(np.asarray(mask, np.float32))[None], (0, wp - ww, 0, hp - hw))
    return hint_channels(ab_pad, mask_pad).to(device)
