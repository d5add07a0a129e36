"""sRGB <-> CIE Lab (D65) in torch: batched, differentiable, on any device.

The conversions themselves are kornia's; this module fixes the conventions the
rest of colorcube relies on (channel-first layout, value ranges, how a gray
value becomes a lightness) in one place.
"""

from __future__ import annotations

import torch
from kornia.color import lab_to_rgb as _kornia_lab_to_rgb
from kornia.color import rgb_to_lab as _kornia_rgb_to_lab

__all__ = ["gray_to_lightness", "lab_to_rgb", "luma", "rgb_to_lab"]

# ITU-R BT.601 luma weights: what PIL's ``Image.convert("L")`` uses, so a gray
# derived here matches how archives and the benchmarks make gray inputs.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """Convert sRGB to CIE Lab.

    Parameters
    ----------
    rgb : (..., 3, H, W) float tensor in [0, 1]

    Returns
    -------
    lab : (..., 3, H, W) float tensor; L in [0, 100], a and b roughly in [-128, 127]
    """
    return _kornia_rgb_to_lab(rgb)


def lab_to_rgb(lab: torch.Tensor, *, clip: bool = True) -> torch.Tensor:
    """Convert CIE Lab to sRGB.

    Parameters
    ----------
    lab : (..., 3, H, W) float tensor, L in [0, 100]
    clip : bool
        Clip the result to [0, 1] (out-of-gamut colours are clipped per channel).

    Returns
    -------
    rgb : (..., 3, H, W) float tensor, in [0, 1] when ``clip``
    """
    return _kornia_lab_to_rgb(lab, clip=clip)


def gray_to_lightness(gray: torch.Tensor) -> torch.Tensor:
    """Lightness L of a gray image, each value taken as the sRGB gray (g, g, g).

    Parameters
    ----------
    gray : (..., H, W) float tensor in [0, 1]

    Returns
    -------
    L : (..., H, W) float tensor in [0, 100]
    """
    # For a neutral sRGB colour, Lab reduces to a function of the linear value
    # alone: Y = lin(g) since the D65 white has Y = 1.
    g = gray.clamp(0.0, 1.0)
    lin = torch.where(g > 0.04045, ((g + 0.055) / 1.055) ** 2.4, g / 12.92)
    f = torch.where(lin > 0.008856, lin.clamp_min(1e-12) ** (1.0 / 3.0), 7.787 * lin + 4.0 / 29.0)
    return 116.0 * f - 16.0


def luma(rgb: torch.Tensor) -> torch.Tensor:
    """BT.601 luma of sRGB values, the gray PIL's ``convert("L")`` produces.

    Parameters
    ----------
    rgb : (..., 3, H, W) float tensor in [0, 1]

    Returns
    -------
    gray : (..., H, W) float tensor in [0, 1]
    """
    w = torch.tensor(LUMA_WEIGHTS, dtype=rgb.dtype, device=rgb.device)
    return torch.einsum("...chw,c->...hw", rgb, w)
