"""Training photos in memory and the augmented samples drawn from them.

Colour photos are decoded by worker processes, shrunk to a longest side and
padded into one uint8 tensor (a :class:`Bank`, on the training device). Each
sample is then made on the device: a random scaled, flipped crop
(:func:`sample_crops`), a brightness and contrast jitter of the photo
(:func:`jitter`), the network's gray input made as PIL's ``convert("L")`` makes
it (:func:`gray_lightness`) and random true-colour hints (:func:`random_hints`,
Zhang et al. 2017). :func:`bin_prior` measures how often each (a, b) bin occurs,
for the class rebalancing of :mod:`colorcube.train`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import multiprocessing
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from .color import gray_to_lightness, luma, rgb_to_lab
from .errors import ColorcubeError
from .model import AB_NORM, HINT_CHANNELS

__all__ = ["Bank", "bin_prior", "gray_lightness", "jitter", "load_bank", "random_hints", "sample_crops"]

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Bank:
    """Images padded into one uint8 tensor: pixels (N, 3, S, S), sizes (N, 2) = (h, w)."""

    pixels: torch.Tensor
    sizes: torch.Tensor
    names: list


def _decode(args):
    path, max_side = args
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            scale = max_side / max(im.size)
            if scale < 1:
                im = im.resize((max(16, round(im.width * scale)), max(16, round(im.height * scale))),
                               Image.Resampling.LANCZOS)
            return np.array(im), None
    except OSError as exc:
        return None, f"{path}: {exc}"


def load_bank(paths, *, max_side: int, device, workers: int = 0) -> Bank:
    """Read colour photos (in ``workers`` processes), shrink to ``max_side``, pad into one uint8 bank."""
    jobs = [(str(p), max_side) for p in paths]
    if workers > 1 and len(jobs) > 64:
        with multiprocessing.get_context().Pool(workers) as pool:
            decoded = pool.map(_decode, jobs, chunksize=64)
    else:
        decoded = [_decode(j) for j in jobs]
    arrays, names = [], []
    for (arr, problem), p in zip(decoded, paths):
        if problem:
            log.warning("skipping %s", problem)
        else:
            arrays.append(arr)
            names.append(Path(p).name)
    if not arrays:
        raise ColorcubeError("no readable colour images to train on")
    side = max(max(a.shape[:2]) for a in arrays)
    pixels = torch.zeros((len(arrays), 3, side, side), dtype=torch.uint8)
    sizes = torch.zeros((len(arrays), 2), dtype=torch.long)
    for i, a in enumerate(arrays):
        pixels[i, :, : a.shape[0], : a.shape[1]] = torch.from_numpy(a).permute(2, 0, 1)
        sizes[i] = torch.tensor(a.shape[:2])
    return Bank(pixels.to(device), sizes.to(device), names)


def sample_crops(bank: Bank, n: int, crop: int, scale_range, gen: torch.Generator) -> torch.Tensor:
    """Random scaled, flipped crops: (n, 3, crop, crop) float32 in [0, 1]."""
    dev = bank.pixels.device
    idx = torch.randint(len(bank.names), (n,), generator=gen, device="cpu").to(dev)
    hw = bank.sizes[idx].float()
    side = bank.pixels.shape[-1]
    u = torch.rand((n, 4), generator=gen).to(dev)
    lo, hi = scale_range
    smin = torch.clamp(crop / hw.min(dim=1).values, min=lo)
    scale = smin + (torch.clamp(torch.full_like(smin, hi), min=smin) - smin) * u[:, 0]
    extent = crop / scale  # source pixels covered by the crop
    y0 = (hw[:, 0] - extent) * u[:, 1]
    x0 = (hw[:, 1] - extent) * u[:, 2]
    flip = torch.where(u[:, 3] < 0.5, -1.0, 1.0)
    # affine_grid works in [-1, 1] coordinates of the padded canvas
    theta = torch.zeros((n, 2, 3), device=dev)
    theta[:, 0, 0] = extent / side * flip
    theta[:, 1, 1] = extent / side
    theta[:, 0, 2] = (2 * x0 + extent) / side - 1
    theta[:, 1, 2] = (2 * y0 + extent) / side - 1
    grid = F.affine_grid(theta, (n, 3, crop, crop), align_corners=False)
    src = bank.pixels[idx].float() / 255.0
    return F.grid_sample(src, grid, mode="bilinear", align_corners=False).clamp(0, 1)


def jitter(rgb: torch.Tensor, gen: torch.Generator, *, brightness: float, contrast: float) -> torch.Tensor:
    """Per-photo brightness and contrast jitter of (B, 3, H, W) in [0, 1] (a new photo, not an input noise)."""
    u = torch.rand((rgb.shape[0], 2, 1, 1, 1), generator=gen).to(rgb.device) * 2 - 1
    c, b = 1 + contrast * u[:, 0], brightness * u[:, 1]
    mean = rgb.mean(dim=(1, 2, 3), keepdim=True)
    return ((rgb - mean) * c + mean + b).clamp(0, 1)


def gray_lightness(rgb: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) truth -> (B, 1, H, W) L of its 8-bit BT.601 gray, as inputs are made."""
    gray = torch.round(luma(rgb) * 255.0) / 255.0
    return gray_to_lightness(gray)[:, None]


def random_hints(ab: torch.Tensor, gen: torch.Generator, *, none: float = 0.5, p: float = 0.125,
                 max_patch: int = 9) -> torch.Tensor:
    """Random true-colour hints for a batch (Zhang et al. 2017).

    Parameters
    ----------
    ab : (B, 2, H, W) float32, the truth's CIE a*, b*
    none : float, probability that a sample gets no hint at all
    p : float, each other sample gets a Geometric(p) number (>= 1) of hints
    max_patch : int, hint patches are squares of 1 to ``max_patch`` pixels a side,
        each holding the truth's mean (a, b) over the patch

    Returns
    -------
    hints : (B, 3, H, W) float32, see :func:`colorcube.model.hint_maps`
    """
    b, _, h, w = ab.shape
    out = torch.zeros((b, HINT_CHANNELS, h, w), device=ab.device)
    for i in range(b):
        if float(torch.rand((), generator=gen)) < none:
            continue
        u = max(float(torch.rand((), generator=gen)), 1e-12)
        count = 1 if p >= 1 else 1 + int(math.log(u) // math.log(1 - p))
        for _ in range(count):
            k = int(torch.randint(1, max_patch + 1, (), generator=gen))
            y = int(torch.randint(0, max(1, h - k + 1), (), generator=gen))
            x = int(torch.randint(0, max(1, w - k + 1), (), generator=gen))
            mean = ab[i, :, y : y + k, x : x + k].mean(dim=(1, 2))
            out[i, :2, y : y + k, x : x + k] = (mean / AB_NORM)[:, None, None]
            out[i, 2, y : y + k, x : x + k] = 1.0
    return out


def bin_prior(bank: Bank, bins: torch.Tensor, gen: torch.Generator, *, n: int = 256, crop: int = 128):
    """Empirical frequency of each (a, b) bin over random crops, (Q,) summing to 1."""
    counts = torch.zeros(len(bins), device=bins.device)
    for _ in range(4):
        rgb = sample_crops(bank, n // 4, crop, (1.0, 1.0), gen)
        ab = rgb_to_lab(rgb)[:, 1:].permute(0, 2, 3, 1).reshape(-1, 2)
        counts += torch.bincount(torch.cdist(ab, bins).argmin(dim=1), minlength=len(bins)).float()
    return counts / counts.sum()
