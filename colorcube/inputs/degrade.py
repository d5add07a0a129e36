"""Archive-scan degradations of a gray photograph: fading, uneven exposure, blur, grain, dust, JPEG.

Historical scans are not clean photos. Training applies :func:`degrade_batch`
(random strengths) to the network's gray input only, the target staying the
photo's colour; :func:`archive_scan` is the one fixed recipe the benchmark
(``benchmarks/degraded.py``) applies, so its figures can be reproduced:

====================  ========================================================
step                  :data:`ARCHIVE_SCAN`
====================  ========================================================
faded contrast        ``g = lift + (1 - lift - dim) * (m + 0.7 (g - m))``, m the mean
uneven exposure       a linear ramp, x 0.85 at one corner to x 1.15 at the other
blur                  Gaussian, sigma 1.0 px
film grain            Gaussian noise, sigma 0.03, blurred by 0.5 px
dust and scratches    0.05 % of pixels set to black or white, one vertical scratch
JPEG                  quality 40 (Pillow), then 8-bit
====================  ========================================================

A colorizer keeps the input's lightness, so the best colour it can give a
degraded scan is the photo's (a, b) at the *degraded* lightness:
:func:`colorcube.inputs.degrade.reference_rgb`.
"""

from __future__ import annotations

import dataclasses
import io
import math

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from ..color import gray_to_lightness, lab_to_rgb, rgb_to_lab

__all__ = ["ARCHIVE_SCAN", "ScanDamage", "archive_scan", "degrade_batch", "reference_rgb"]


@dataclasses.dataclass(frozen=True)
class ScanDamage:
    """Strengths of each degradation (0 turns one off).

    Attributes
    ----------
    contrast : float in (0, 1], contrast kept around the mean
    lift, dim : float, black level raised to ``lift``, white level lowered by ``dim``
    exposure : float, half-range of the multiplicative exposure ramp
    blur : float, Gaussian sigma in pixels
    grain : float, noise standard deviation (gray in [0, 1])
    dust : float, share of pixels replaced by black or white specks
    scratches : int, vertical scratches
    jpeg : int, JPEG quality (0: none)
    """

    contrast: float = 1.0
    lift: float = 0.0
    dim: float = 0.0
    exposure: float = 0.0
    blur: float = 0.0
    grain: float = 0.0
    dust: float = 0.0
    scratches: int = 0
    jpeg: int = 0


#: the benchmark's archive scan (module docstring)
ARCHIVE_SCAN = ScanDamage(contrast=0.7, lift=0.08, dim=0.06, exposure=0.15, blur=1.0, grain=0.03, dust=5e-4,
                          scratches=1, jpeg=40)


def _gaussian(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, 1, H, W), reflecting at the border."""
    if sigma <= 0:
        return x
    r = max(1, math.ceil(3 * sigma))
    k = torch.exp(-torch.arange(-r, r + 1, dtype=torch.float32, device=x.device) ** 2 / (2 * sigma**2))
    k = (k / k.sum()).to(x.dtype)
    pad_y, pad_x = min(r, x.shape[-2] - 1), min(r, x.shape[-1] - 1)
    y = F.pad(x, (0, 0, pad_y, pad_y), mode="reflect") if pad_y else x
    y = F.conv2d(y, k[None, None, :, None][..., r - pad_y : r + pad_y + 1, :]) if pad_y else y
    y = F.pad(y, (pad_x, pad_x, 0, 0), mode="reflect") if pad_x else y
    return F.conv2d(y, k[None, None, None, r - pad_x : r + pad_x + 1]) if pad_x else y


def _jpeg(gray: torch.Tensor, quality: int) -> torch.Tensor:
    """(H, W) float in [0, 1] -> the same after an 8-bit JPEG round trip at ``quality``."""
    arr = np.clip(np.round(gray.cpu().numpy() * 255.0), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as im:
        out = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
    return torch.from_numpy(out).to(gray.device)


def _apply(gray: torch.Tensor, d: ScanDamage, gen: torch.Generator) -> torch.Tensor:
    """One photo: (1, 1, H, W) gray in [0, 1] -> degraded, 8-bit, in [0, 1]."""
    g = gray.float()
    h, w = g.shape[-2:]
    m = g.mean()
    g = d.lift + (1 - d.lift - d.dim) * (m + d.contrast * (g - m))
    if d.exposure:
        angle = float(torch.rand((), generator=gen)) * 2 * math.pi
        yy = torch.linspace(-1, 1, h, device=g.device)[:, None]
        xx = torch.linspace(-1, 1, w, device=g.device)[None, :]
        ramp = (math.cos(angle) * xx + math.sin(angle) * yy) / math.sqrt(2)
        g = g * (1 + d.exposure * ramp)
    g = _gaussian(g, d.blur)
    if d.grain:
        noise = torch.randn(g.shape, generator=gen).to(g.device) * d.grain
        g = g + _gaussian(noise, 0.5) * 1.6  # blurring the grain lowers its deviation; 1.6 restores it
    if d.dust:
        speck = torch.rand(g.shape, generator=gen).to(g.device)
        colour = (torch.rand(g.shape, generator=gen).to(g.device) < 0.5).to(g.dtype)
        g = torch.where(speck < d.dust, colour, g)
    for _ in range(int(d.scratches)):
        x = int(torch.randint(0, w, (), generator=gen))
        g[..., x] = g[..., x] * 0.5 + 0.5 * float(torch.rand((), generator=gen) < 0.5)
    g = g.clamp(0, 1)
    if d.jpeg:
        g = _jpeg(g[0, 0], d.jpeg)[None, None]
    return torch.round(g * 255.0) / 255.0


def archive_scan(gray: np.ndarray | torch.Tensor, *, seed: int = 0, damage: ScanDamage = ARCHIVE_SCAN) -> np.ndarray:
    """The benchmark's fixed archive-scan degradation of one gray photo.

    Parameters
    ----------
    gray : (y, x) float32 in [0, 1]
    seed : int, for the ramp's direction, the grain, dust and scratches
    damage : ScanDamage, default :data:`ARCHIVE_SCAN`

    Returns
    -------
    (y, x) float32 in [0, 1], on the 8-bit grid
    """
    gen = torch.Generator().manual_seed(int(seed))
    g = torch.as_tensor(np.asarray(gray, dtype=np.float32))[None, None]
    return _apply(g, damage, gen)[0, 0].numpy().astype(np.float32)


def degrade_batch(gray: torch.Tensor, gen: torch.Generator, *, p: float = 0.5) -> torch.Tensor:
    """Training augmentation: each photo of (B, 1, H, W) gray in [0, 1], with probability ``p``,
    gets a random mix of the degradations (each on with probability 1/2, random strength)."""
    out = gray.clone()
    for i in range(gray.shape[0]):
        if float(torch.rand((), generator=gen)) >= p:
            continue
        u = torch.rand(9, generator=gen).tolist()
        on = [v < 0.5 for v in torch.rand(7, generator=gen).tolist()]
        d = ScanDamage(contrast=1 - 0.5 * u[0] if on[0] else 1.0, lift=0.15 * u[1] if on[0] else 0.0,
                       dim=0.12 * u[2] if on[0] else 0.0, exposure=0.3 * u[3] if on[1] else 0.0,
                       blur=0.3 + 1.4 * u[4] if on[2] else 0.0, grain=0.01 + 0.05 * u[5] if on[3] else 0.0,
                       dust=1e-3 * u[6] if on[4] else 0.0, scratches=int(3 * u[7]) if on[5] else 0,
                       jpeg=int(20 + 70 * u[8]) if on[6] else 0)
        out[i : i + 1] = _apply(gray[i : i + 1], d, gen).to(gray.dtype)
    return out


def reference_rgb(rgb: torch.Tensor, degraded_gray: torch.Tensor) -> torch.Tensor:
    """The photo's colour at the degraded input's lightness: (B, 3, H, W) truth sRGB and (B, 1, H, W)
    degraded gray in [0, 1] -> (B, 3, H, W) sRGB of (L(degraded gray), a, b of the truth), in [0, 1]."""
    ab = rgb_to_lab(rgb)[:, 1:]
    return lab_to_rgb(torch.cat([gray_to_lightness(degraded_gray[:, 0])[:, None], ab], dim=1))
