"""Training photos in memory and the augmented samples drawn from them.

Colour photos are decoded by worker processes, shrunk to a longest side and
padded into one uint8 tensor (a :class:`Bank`, on the training device). Each
sample is then made on the device: a random scaled, flipped crop
(:func:`sample_crops`), a brightness and contrast jitter of the photo
(:func:`jitter`), the network's gray input made as PIL's ``convert("L")`` makes
it (:func:`gray_lightness`) and random true-colour hints (:func:`random_hints`,
Zhang et al. 2017). :func:`bin_prior` measures how often each (a, b) bin occurs,
for the class rebalancing of :mod:`colorcube.network.train.train_v2`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import multiprocessing
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from ...color import gray_to_lightness, luma, rgb_to_lab
from ...errors import ColorcubeError, OptionError
from ...inputs.images import IMAGE_SUFFIXES, source_of
from ..model import hint_channels

__all__ = [
    "training_split",
    "autocast",
    "lr_at",
    "Bank",
    "bin_prior",
    "gray_lightness",
    "jitter",
    "load_bank",
    "random_hints",
    "rebalance_weights",
    "sample_crops",
    "split_by_source",
]

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
    hints : (B, 3, H, W) float32, see :func:`colorcube.network.model.hint_channels`
    """
    b, _, h, w = ab.shape
    patch_ab = torch.zeros((b, 2, h, w), device=ab.device)
    mask = torch.zeros((b, h, w), device=ab.device)
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
            patch_ab[i, :, y : y + k, x : x + k] = mean[:, None, None]
            mask[i, y : y + k, x : x + k] = 1.0
    return hint_channels(patch_ab, mask)


def bin_prior(bank: Bank, bins: torch.Tensor, gen: torch.Generator, *, n: int = 256, crop: int = 128):
    """Empirical frequency of each (a, b) bin over random crops, (Q,) summing to 1."""
    counts = torch.zeros(len(bins), device=bins.device)
    for _ in range(4):
        rgb = sample_crops(bank, n // 4, crop, (1.0, 1.0), gen)
        ab = rgb_to_lab(rgb)[:, 1:].permute(0, 2, 3, 1).reshape(-1, 2)
        counts += torch.bincount(torch.cdist(ab, bins).argmin(dim=1), minlength=len(bins)).float()
    return counts / counts.sum()


def _hash01(name: str, seed: int) -> float:
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_by_source(paths, *, val_fraction: float, error_split: float, seed: int):
    """Deterministic (train, val, error) split of ``paths``, stratified by source.

    Within each source the photos are ordered by a hash of their name; the first
    ``round(val_fraction * n)`` (at least one) validate, the next
    ``round(error_split * n)`` train the error head, the rest train the colour
    network. The split of a photo does not depend on which other sources exist.
    """
    by_source: dict = {}
    for p in paths:
        by_source.setdefault(source_of(p), []).append(p)
    train, val, err = [], [], []
    for group in by_source.values():
        group = sorted(group, key=lambda p: _hash01(Path(p).name, seed))
        n_val = max(1, round(val_fraction * len(group)))
        n_err = round(error_split * len(group))
        val += group[:n_val]
        err += group[n_val : n_val + n_err]
        train += group[n_val + n_err :]
    return sorted(train), sorted(val), sorted(err)


def rebalance_weights(prior: torch.Tensor, bins: torch.Tensor, *, strength: float, sigma: float) -> torch.Tensor:
    """Zhang et al. (2016) class weights ((1-l) p~ + l/Q)^-1 with l = 0.5, raised to ``strength``."""
    kernel = torch.exp(-torch.cdist(bins, bins) ** 2 / (2 * sigma**2))
    smooth = kernel @ prior / kernel.sum(dim=1)
    smooth = smooth / smooth.sum()
    w = (0.5 * smooth + 0.5 / len(bins)) ** -1
    w = w / (prior * w).sum()
    return w**strength


def lr_at(frac: float, base: float) -> float:
    warm = min(1.0, frac / 0.03)
    return base * warm * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))


def autocast(device: torch.device, precision: str):
    if precision not in ("bfloat16", "float32"):
        raise OptionError(f"precision={precision!r}: use 'bfloat16' or 'float32'")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bfloat16")


def training_split(folder: Path, out_dir: Path, *, max_images, val_fraction: float, error_split: float, seed: int,
                   resume: bool) -> tuple:
    """The photos of a training run split by source, checked, and the split written to
    ``out_dir/split.json``: ``(train, val, error)`` lists of paths (the checkpoint to resume from
    must exist when ``resume``)."""
    if not folder.is_dir():
        raise ColorcubeError(f"{folder}: training folder not found; pass a folder of colour photos")
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[:max_images]
    if len(paths) < 3:
        raise ColorcubeError(f"{folder}: need at least 3 images (got {len(paths)}) for a train/validation split")
    train_paths, val_paths, err_paths = split_by_source(paths, val_fraction=val_fraction, error_split=error_split,
                                                        seed=seed)
    if not train_paths:
        raise ColorcubeError(f"{folder}: every photo went to the held-out splits; give more photos")
    if resume and not (out_dir / "checkpoint.pt").is_file():
        raise ColorcubeError(f"{out_dir / 'checkpoint.pt'}: no checkpoint to resume from; run without --resume")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "split.json").write_text(json.dumps(
        {"train": [p.name for p in train_paths], "val": [p.name for p in val_paths],
         "error": [p.name for p in err_paths]}, indent=0))
    return train_paths, val_paths, err_paths
