"""Running the network and decoding its outputs: the colour as the annealed mean of the chroma
distribution (temperature ``vividness``) and the band scale, learned (the error head) or the
distribution's spread in R, G, B at each pixel's lightness."""

from __future__ import annotations

import copy
import weakref

import torch
from torch.nn import functional as F

from ..settings import SCALES
from .model import LUT_STEP, OUT_STRIDE, ColorNet

__all__ = ["annealed_mean", "decode_learned", "predict"]


def annealed_mean(logits: torch.Tensor, bins: torch.Tensor, vividness: float) -> torch.Tensor:
    """Annealed mean of the bin distribution: (B, Q, h, w) logits -> (B, 2, h, w) ab."""
    p = torch.softmax(logits.float() / vividness, dim=1)
    return torch.einsum("bqhw,qc->bchw", p, bins)


def _softmax_(z: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dim, in place (z is overwritten and returned)."""
    z.sub_(z.amax(dim=-1, keepdim=True)).exp_()
    return z.div_(z.sum(dim=-1, keepdim=True))


_LEVEL_BLOCK = 8


def _moments_at_lightness(p: torch.Tensor, table: torch.Tensor, lightness: torch.Tensor):
    """First and second sRGB moments of bin distributions at each pixel's lightness.

    Parameters
    ----------
    p : (N, Q) float32, bin probabilities of N pixels
    table : (Q, n_levels * 3) float32, :func:`colorcube.network.model.bin_rgb_table`
    lightness : (N,) float32 in [0, 100]

    Returns
    -------
    m1, m2 : (N, 3) float32, linearly interpolated in L between the two table levels
        around each pixel. Pixels are grouped in blocks of 8 levels, so each group
        multiplies by only its 9 levels' columns (and their squares): 1/4 of the
        FLOPs of projecting every pixel on all 41 levels, in 6 matrix products.
    """
    n_levels = table.shape[1] // 3
    pos = (lightness / LUT_STEP).clamp(0, n_levels - 1)
    i0 = pos.floor().long().clamp(max=n_levels - 2)
    t = (pos - i0)[:, None]
    m1 = torch.empty(p.shape[0], 3, dtype=p.dtype, device=p.device)
    m2 = torch.empty_like(m1)
    levels = table.reshape(table.shape[0], n_levels, 3)
    block = i0 // _LEVEL_BLOCK
    order = torch.argsort(block)
    start = 0
    for b, count in enumerate(torch.bincount(block).tolist()):
        if count == 0:
            continue
        idx = order[start : start + count]
        start += count
        lo = b * _LEVEL_BLOCK
        cols = levels[:, lo : lo + _LEVEL_BLOCK + 1]  # the block's levels and the next one
        n = cols.shape[1]
        r = (p[idx] @ torch.cat([cols, cols * cols], dim=1).reshape(len(cols), -1)).reshape(count, 2, n, 3)
        k = (i0[idx] - lo)[:, None, None, None].expand(-1, 2, 1, 3)
        below, above = r.gather(2, k)[:, :, 0], r.gather(2, k + 1)[:, :, 0]  # (count, 2, 3)
        both = below * (1 - t[idx, None]) + above * t[idx, None]
        m1[idx], m2[idx] = both[:, 0], both[:, 1]
    return m1, m2


def predict(model: ColorNet, lightness: torch.Tensor, hints: torch.Tensor | None = None, *,
            vividness: float | None = None, dtype: torch.dtype = torch.float32, scale: str = "learned",
            reweight=None):
    """Run the network and decode its outputs.

    Parameters
    ----------
    model : ColorNet
    lightness : (B, 1, H, W) float32 in [0, 100], H and W multiples of 16
    hints : (B, 3, H, W) float32 or None, see :func:`colorcube.network.model.hint_channels`; None = no hints
    vividness : float in (0, 2], optional
        Annealed-mean temperature; defaults to the model's own.
    dtype : torch.float32 or torch.bfloat16, the network's arithmetic (a cached
        copy of the model in that dtype; fp32 accumulation inside each convolution);
        the decoding after it is always float32
    scale : {"learned", "spread"}, the band scale to return (module docstring)
    reweight : callable, optional; ``reweight(probs, light)`` with ``probs`` (N, Q) the bin
        probabilities of the N = B * H/4 * W/4 output pixels (bins last) and ``light`` (N,)
        their mean L, returns (N, Q) float32 offsets added to the bin logits before
        decoding (e.g. :func:`colorcube.guidance.reference.reweighter`); None: no change

    Returns
    -------
    ab : (B, 2, H/4, W/4) float32 chroma point estimate
    scale : (B, 3, H/4, W/4) float32 >= 0, per-channel R, G, B band scale in [0, 1] units
    """
    if scale not in SCALES:
        raise ValueError(f"scale={scale!r}: use one of {SCALES}")
    t = model.config.vividness if vividness is None else float(vividness)
    device = lightness.device.type
    logits, err = _in_dtype(model, dtype)(lightness, hints)
    with torch.autocast(device, enabled=False):
        # bins last and contiguous: the softmaxes and bin sums become row reductions and GEMMs
        b, q, h, w = logits.shape
        if scale == "learned" and reweight is None:
            return decode_learned(model, logits, err, vividness=t)
        z = logits.float().permute(0, 2, 3, 1).reshape(-1, q)
        light4 = F.avg_pool2d(lightness.float(), OUT_STRIDE).reshape(-1)
        if reweight is not None:
            z = z + reweight(torch.softmax(z, dim=1), light4).float()
        # softmaxes in place: fresh multi-MB temporaries cost more in page faults than the arithmetic;
        # with the learned scale z is the reweighted copy no one reads again, so it is scaled in place
        ab = _softmax_(z.mul_(1.0 / t) if scale == "learned" else z * (1.0 / t)) @ model.bins
        if scale == "learned":
            return ab.reshape(b, h, w, 2).permute(0, 3, 1, 2), err.float()
        m1, m2 = _moments_at_lightness(_softmax_(z), model.rgb_table, light4)
        spread = (m2 - m1 * m1).clamp_min(0).sqrt()
    return ab.reshape(b, h, w, 2).permute(0, 3, 1, 2), spread.reshape(b, h, w, 3).permute(0, 3, 1, 2)


def decode_learned(model: ColorNet, logits: torch.Tensor, err: torch.Tensor, *, vividness: float | None = None):
    """:func:`predict`'s decoding with the learned scale and no reweighting, from the network's outputs.

    Image by image, so an image decodes as it does alone whatever batch it ran in; the
    archive runs it apart from the network (in its finishing threads).

    Parameters
    ----------
    logits : (B, Q, h, w) bin logits (any float dtype); err : (B, 3, h, w) error scale
    vividness : annealed-mean temperature, default the model's own

    Returns
    -------
    ab : (B, 2, h, w) float32; scale : (B, 3, h, w) float32 (``err`` as float32)
    """
    t = model.config.vividness if vividness is None else float(vividness)
    b, q, h, w = logits.shape
    with torch.autocast(logits.device.type, enabled=False):
        rows = logits.permute(0, 2, 3, 1).reshape(b, -1, q)
        ab = torch.stack([_annealed_rows(rows[i], model.bins, t) for i in range(b)])
        return ab.reshape(b, h, w, 2).permute(0, 3, 1, 2), err.float()


_DECODE_ROWS = 2048  # 2048 pixels x 229 bins x 4 bytes: each pass stays in a 2-MB cache


def _annealed_rows(logits: torch.Tensor, bins: torch.Tensor, t: float) -> torch.Tensor:
    """Annealed mean of (N, Q) logits (any float dtype) -> (N, 2) float32, in row blocks.

    The same arithmetic as ``softmax(logits.float() / t) @ bins`` row for row (bit for bit,
    tested), a third faster on the CPU for a batch of eight photos: the five passes of the
    softmax over each block stay in cache. :func:`predict` calls it image by image, so that
    the blocks of an image in a batch are the blocks it has alone.
    """
    out = torch.empty(logits.shape[0], bins.shape[1], device=logits.device)
    for start in range(0, logits.shape[0], _DECODE_ROWS):
        z = logits[start : start + _DECODE_ROWS].float()
        if z.data_ptr() == logits.data_ptr() + start * logits.stride(0) * logits.element_size():
            z = z.clone()  # float32 logits: .float() gave a view, and the softmax works in place
        torch.matmul(_softmax_(z.mul_(1.0 / t)), bins, out=out[start : start + _DECODE_ROWS])
    return out


def _in_dtype(model: ColorNet, dtype: torch.dtype) -> ColorNet:
    """``model`` itself for float32, else a copy with weights in ``dtype``, made once per model.

    Converting once instead of autocasting saves casting every weight on every
    call. The copy is not refreshed if ``model``'s weights change in place afterwards.
    """
    if dtype == torch.float32:
        return model
    low = _LOW_PRECISION.get(model)
    if low is None or getattr(low, "colorcube_dtype", None) != dtype:
        low = copy.deepcopy(model).to(dtype)
        low.colorcube_dtype = dtype
        _LOW_PRECISION[model] = low
    return low


_LOW_PRECISION: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
