"""Quality and coverage metrics on numpy arrays.

Images are ``(y, x, channel)`` float arrays in [0, 1]; intervals are
``(y, x, channel, bound)`` with bound 0 = lower, 1 = upper.
"""

from __future__ import annotations

import numpy as np

import colorcube

__all__ = [
    "chroma_edges",
    "ciede2000",
    "colorfulness",
    "coverage",
    "edge_error",
    "mean_width",
    "psnr",
]


def psnr(pred: np.ndarray, truth: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two (y, x, 3) images in [0, 1]."""
    mse = float(np.mean((np.asarray(pred, np.float64) - np.asarray(truth, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)


def colorfulness(rgb: np.ndarray) -> float:
    """Hasler & Suesstrunk (2003) colourfulness of a (y, x, 3) image in [0, 1].

    Computed on the 0-255 scale as in the paper; 0 for a gray image.
    """
    x = np.asarray(rgb, np.float64) * 255.0
    rg = x[..., 0] - x[..., 1]
    yb = 0.5 * (x[..., 0] + x[..., 1]) - x[..., 2]
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def ciede2000(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per-pixel CIEDE2000 colour difference, (y, x) float64, of two sRGB images."""
    # deferred: the command line's colorize imports this module (for demo) and must start fast
    skcolor = colorcube._deferred("skimage.color")
    return skcolor.deltaE_ciede2000(skcolor.rgb2lab(np.clip(truth, 0, 1)), skcolor.rgb2lab(np.clip(pred, 0, 1)))


def chroma_edges(truth: np.ndarray, *, radius: int = 3, threshold: float = 2.5) -> np.ndarray:
    """Boolean (y, x) mask of pixels within ``radius`` px of the truth's chroma edges.

    A chroma edge is where the Sobel gradient of a or b (CIE Lab) exceeds
    ``threshold`` Lab units per pixel; this is where colour bleeding shows.
    """
    ndimage = colorcube._deferred("scipy.ndimage")
    lab = colorcube._deferred("skimage.color").rgb2lab(np.clip(truth, 0, 1))
    mag = np.zeros(lab.shape[:2])
    for c in (1, 2):
        # The Sobel kernel's weights sum to 8 over a 2-px central difference.
        mag = np.maximum(mag, np.hypot(ndimage.sobel(lab[..., c], 0), ndimage.sobel(lab[..., c], 1)) / 8.0)
    edges = mag > threshold
    if radius > 0:
        edges = ndimage.binary_dilation(edges, iterations=radius)
    return edges


def edge_error(pred: np.ndarray, truth: np.ndarray, *, radius: int = 3) -> float:
    """Mean CIEDE2000 within ``radius`` px of the truth's chroma edges (NaN if none)."""
    mask = chroma_edges(truth, radius=radius)
    if not mask.any():
        return float("nan")
    return float(ciede2000(pred, truth)[mask].mean())


def coverage(interval: np.ndarray, truth: np.ndarray, *, joint: bool = False) -> np.ndarray:
    """Fraction of pixels whose truth lies inside the interval.

    Parameters
    ----------
    interval : (y, x, channel, 2) array in [0, 1]
    truth : (y, x, channel) array in [0, 1]
    joint : bool
        If True a pixel counts as covered only when every channel is.

    Returns
    -------
    per-channel coverage, shape (channel,), or a 0-d array when ``joint``
    """
    inside = (truth >= interval[..., 0]) & (truth <= interval[..., 1])
    if joint:
        return np.asarray(inside.all(axis=-1).mean())
    return inside.reshape(-1, inside.shape[-1]).mean(axis=0)


def mean_width(interval: np.ndarray) -> np.ndarray:
    """Mean interval width per channel in 0-255 units, shape (channel,)."""
    w = (interval[..., 1] - interval[..., 0]) * 255.0
    return w.reshape(-1, w.shape[-1]).mean(axis=0)
