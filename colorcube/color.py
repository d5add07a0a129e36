"""sRGB <-> CIE Lab (D65, 2 degree observer) in torch: batched, differentiable, on any device.

The formulas and constants are the CIE / sRGB ones with the same constants and
order of operations as kornia (tested bit for bit on the CPU against kornia): the
model's chroma bins and every trained weight depend on them. Written here so that
``test.py`` does not pay kornia's import (``python benchmarks/startup.py``). This module also
fixes the conventions the rest of colorcube relies on (channel-first layout,
value ranges, how a gray value becomes a lightness) in one place.
"""

from __future__ import annotations

import torch

__all__ = ["LUMA_WEIGHTS", "gray_to_lightness", "lab_to_rgb", "luma", "rgb_to_lab"]

_WHITE = (0.95047, 1.0, 1.08883)  # D65 reference white, XYZ
_RGB_TO_XYZ = ((0.412453, 0.357580, 0.180423), (0.212671, 0.715160, 0.072169), (0.019334, 0.119193, 0.950227))
_XYZ_TO_RGB = ((3.2404813432005266, -1.5371515162713185, -0.4985363261688878),
               (-0.9692549499965682, 1.8759900014898907, 0.0415559265582928),
               (0.0556466391351772, -0.2040413383665112, 1.0573110696453443))


def _in_float32(fn):
    """Half-precision inputs are converted in float32 and rounded back, outside any autocast."""
    def wrapper(image: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if image.ndim < 3 or image.shape[-3] != 3:
            raise ValueError(f"expected a (..., 3, H, W) tensor, got shape {tuple(image.shape)}")
        if image.dtype in (torch.float16, torch.bfloat16):
            with torch.autocast(image.device.type, enabled=False):
                return fn(image.float(), *args, **kwargs).to(image.dtype)
        return fn(image, *args, **kwargs)

    wrapper.__doc__, wrapper.__name__ = fn.__doc__, fn.__name__
    return wrapper


def _matrix(image: torch.Tensor, rows) -> torch.Tensor:
    """The 3x3 matrix ``rows`` applied along the channel axis (-3)."""
    dtype = image.dtype if image.is_floating_point() else torch.float32
    kernel = torch.tensor(rows, device=image.device, dtype=dtype)
    return torch.einsum("oi, ...ihw -> ...ohw", kernel, image).contiguous()


def _white(like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(_WHITE, device=like.device, dtype=like.dtype)[..., :, None, None]


@_in_float32
def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """Convert sRGB to CIE Lab.

    Parameters
    ----------
    rgb : (..., 3, H, W) float tensor in [0, 1]

    Returns
    -------
    lab : (..., 3, H, W) float tensor; L in [0, 100], a and b roughly in [-128, 127]
    """
    lin = torch.where(rgb > 0.04045, torch.pow(((rgb + 0.055).clamp(min=0.0) / 1.055), 2.4), rgb / 12.92)
    xyz = torch.div(_matrix(lin, _RGB_TO_XYZ), _white(lin))
    f = torch.where(xyz > 0.008856, torch.pow(xyz.clamp(min=0.008856), 1 / 3.0), 7.787 * xyz + 4.0 / 29.0)
    x, y, z = f[..., 0, :, :], f[..., 1, :, :], f[..., 2, :, :]
    return torch.stack([(116.0 * y) - 16.0, 500.0 * (x - y), 200.0 * (y - z)], dim=-3)


@_in_float32
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
    fy = (lab[..., 0, :, :] + 16.0) / 116.0
    fx = (lab[..., 1, :, :] / 500.0) + fy
    fz = (fy - (lab[..., 2, :, :] / 200.0)).clamp(min=0.0)  # Z < 0 out of range
    f = torch.stack([fx, fy, fz], dim=-3)
    xyz = torch.where(f > 0.2068966, torch.pow(f, 3.0), (f - 4.0 / 29.0) / 7.787) * _white(f)
    lin = _matrix(xyz, _XYZ_TO_RGB)
    rgb = torch.where(lin > 0.0031308, 1.055 * torch.pow(lin.clamp(min=0.0031308), 1 / 2.4) - 0.055, 12.92 * lin)
    return torch.clamp(rgb, min=0.0, max=1.0) if clip else rgb


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
    """BT.601 luma of sRGB values, the gray PIL's ``convert("L")`` produces:
    ``rgb`` (..., 3, H, W) float in [0, 1] -> (..., H, W) float in [0, 1]."""
    w = torch.tensor(LUMA_WEIGHTS, dtype=rgb.dtype, device=rgb.device)
    return torch.einsum("...chw,c->...hw", rgb, w)


#: ITU-R BT.601 luma weights: what PIL's ``Image.convert("L")`` uses, so a gray derived
#: anywhere in colorcube matches how archives and the benchmarks make gray inputs.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
