"""Example-guided colour: reweight the predicted (a*, b*) distribution toward a reference photo's.

The network predicts, at every output-grid pixel x, a distribution p(q | x)
over the (a*, b*) bins q. A reference photo gives, for each lightness band b
(centres L* = 10, 30, 50, 70, 90, triangular weights that sum to one), the
histogram ``H_b(q)`` of its (a*, b*) (nearest bin, smoothed over the bins with a
Gaussian of 5 a*b* units, as the network's training targets are). The
prediction's own band marginal is ``P_b(q)``, the mean of p(q | x) over the
pixels in the band. The bin logits are then shifted by

    strength * sum_b tri_b(L(x)) * log(H_b(q) / P_b(q))

so at ``strength = 1`` the photo's colour marginal in each lightness band moves
onto the reference's (one step of iterative proportional fitting), at 0 nothing
changes, and in between (or beyond) it moves part of the way (or further).
Both histograms are mixed with 1 % of a uniform one, so no colour is ever
ruled out entirely; a band the reference has few pixels in borrows from its
whole-photo histogram.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from ..color import rgb_to_lab
from ..errors import HintError
from ..inputs.images import read_rgb, unit_array

__all__ = ["BAND_CENTRES", "Reference", "band_weights", "reference_histogram", "reweighter"]

#: Centres (L*) of the lightness bands; neighbours overlap with triangular weights.
BAND_CENTRES = (10.0, 30.0, 50.0, 70.0, 90.0)
_WIDTH = 20.0
_UNIFORM = 0.01  # share of a uniform histogram mixed into both histograms
_BORROW = 0.02  # pseudo-count (share of the reference's pixels) a band borrows from the whole photo
_SMOOTH = 5.0  # a*b* units, the bin smoothing of the reference histogram
_MAX_SIDE = 256  # the reference is read at this longer side at most (the histogram does not need more)


@dataclasses.dataclass(frozen=True, eq=False)
class Reference:
    """A reference photo's colour statistics.

    Attributes
    ----------
    hist : (n_bands, Q) float32, per-lightness-band (a*, b*) bin histograms, rows sum to 1
    source : str, where the photo came from (for the cube's attributes)
    """

    hist: np.ndarray
    source: str = "<array>"


def band_weights(light: torch.Tensor) -> torch.Tensor:
    """Triangular lightness-band weights: (N,) L* -> (N, n_bands), rows summing to 1."""
    centres = torch.tensor(BAND_CENTRES, dtype=torch.float32, device=light.device)
    lc = light.float().clamp(centres[0], centres[-1])
    return (1 - (lc[:, None] - centres[None]).abs() / _WIDTH).clamp_min(0)


def reference_histogram(image, bins: torch.Tensor, *, name: str = "reference") -> Reference:
    """Per-lightness-band (a*, b*) histograms of a colour photo.

    Parameters
    ----------
    image : path of a colour photo, or an (y, x, 3) array (uint8, or float in [0, 1])
    bins : (Q, 2) the model's (a*, b*) bin centres (``model.bins``)
    name : how messages and the cube's attributes name it (paths name themselves)

    Returns
    -------
    Reference

    Raises
    ------
    HintError
        Not a colour photo (a gray or non-image array), or too small to tell.
    """
    if isinstance(image, Reference):
        return image
    source = name
    if isinstance(image, (str, Path)):
        source = str(image)
        arr = read_rgb(image)
    else:
        arr = np.asarray(image)
        if arr.ndim != 3 or arr.shape[2] != 3 or arr.size == 0:
            raise HintError(f"{name}: a reference photo is a (y, x, 3) colour array; got shape {arr.shape}")
        arr = unit_array(arr, name=name, error=HintError)
    rgb = torch.from_numpy(np.ascontiguousarray(arr, np.float32)).permute(2, 0, 1)[None]
    h, w = rgb.shape[-2:]
    scale = min(1.0, _MAX_SIDE / max(h, w))
    if scale < 1:
        rgb = F.interpolate(rgb, size=(max(1, round(h * scale)), max(1, round(w * scale))), mode="bilinear",
                            antialias=True, align_corners=False).clamp(0, 1)
    lab = rgb_to_lab(rgb)[0].reshape(3, -1)
    if lab.shape[1] < 16:
        raise HintError(f"{source}: the reference photo is too small ({w} x {h}); give one of at least 4 x 4 pixels")
    if float(lab[1:].abs().max()) < 1.0:
        raise HintError(f"{source}: the reference photo has no colour (it is gray); give a colour photo")
    bins = bins.float().cpu()
    nearest = torch.cdist(lab[1:].T, bins).argmin(dim=1)  # (N,)
    wb = band_weights(lab[0])  # (N, n_bands)
    counts = torch.zeros(len(BAND_CENTRES), len(bins))
    counts.index_add_(1, nearest, wb.T)
    kernel = torch.exp(-torch.cdist(bins, bins) ** 2 / (2 * _SMOOTH**2))
    counts = counts @ (kernel / kernel.sum(dim=1, keepdim=True))  # smooth over the bins, mass kept
    whole = counts.sum(dim=0, keepdim=True)
    hist = counts + _BORROW * lab.shape[1] * whole / whole.sum()
    hist = hist / hist.sum(dim=1, keepdim=True)
    hist = (1 - _UNIFORM) * hist + _UNIFORM / len(bins)
    return Reference(hist.numpy().astype(np.float32), source)


def reweighter(reference: Reference, strength: float):
    """The logit offsets for :func:`colorcube.network.decode.predict`'s ``reweight`` argument.

    Returns
    -------
    callable ``(probs (N, Q), light (N,)) -> (N, Q) float32``: for bin
    probabilities ``probs`` of N output-grid pixels with lightness ``light``,
    the offsets of the module notes
    """
    strength = float(strength)
    if not np.isfinite(strength) or strength < 0:
        raise HintError(f"reference strength={strength!r} must be a finite number >= 0 (1: match the reference)")

    def offsets(probs: torch.Tensor, light: torch.Tensor) -> torch.Tensor:
        wb = band_weights(light)  # (N, n_bands)
        marginal = (wb.T @ probs) / wb.sum(dim=0).clamp_min(1e-6)[:, None]  # (n_bands, Q)
        marginal = marginal / marginal.sum(dim=1, keepdim=True).clamp_min(1e-12)
        marginal = (1 - _UNIFORM) * marginal + _UNIFORM / probs.shape[1]
        ref = torch.as_tensor(reference.hist, device=probs.device)
        if ref.shape[1] != probs.shape[1]:
            raise HintError(f"{reference.source}: reference histogram has {ref.shape[1]} bins, the model "
                            f"{probs.shape[1]}; make it with this model's bins")
        return strength * (wb @ torch.log(ref / marginal))

    return offsets
