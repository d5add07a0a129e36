"""Where to hint and which colours (a photo's band uncertainty itself, which the archive's index
keeps so thousands of photos sort without opening a cube, is
:func:`colorcube.cube.index.band_summary`).

* :func:`suggest_hints`: k pixel positions, spread over the photo, where a true colour
  would shrink the bands most: the widest bands, weighted by the area around them
  (a box mean) and kept apart from each other (each choice suppresses a disc);
* :func:`palette`: at a pixel, the few most probable distinct colours of the network's
  predicted (a, b) distribution (Zhang et al. 2017 offered such a palette), each at the
  pixel's own lightness, ready to be given as a hint.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import ndimage

from ..color import gray_to_lightness, lab_to_rgb
from ..errors import ColorcubeError, OptionError
from ..guidance.hints import as_hints
from ..guidance.placement import working_hints
from ..network.decode import _in_dtype
from ..network.model import OUT_STRIDE
from ..network.weights import load_model
from ..network.working import network_input, working_input
from ..settings import PRECISIONS, PipelineSettings

__all__ = ["palette", "suggest_hints"]

_SUGGEST_SIDE = 512  # suggestions are computed on a grid of at most this many pixels a side
_LIGHT_BANDS = 8  # lightness bands a hint is taken to reach within


def _interval_array(interval) -> np.ndarray:
    """(y, x, 3, 2) band in [0, 1] as float32, from uint8 storage codes, floats, or a cube's DataArray."""
    arr = np.asarray(interval.values if hasattr(interval, "dims") else interval)
    if arr.ndim != 4 or arr.shape[2:] != (3, 2):
        raise ColorcubeError(f"interval: expected (y, x, channel=3, bound=2), got shape {arr.shape}")
    return arr.astype(np.float32) / np.float32(255) if arr.dtype == np.uint8 else arr.astype(np.float32)


def suggest_hints(cube, k: int = 10, *, gray=None, radius: float | None = None) -> np.ndarray:
    """k positions where a true-colour hint would shrink the bands most.

    A hint's colour spreads over the pixels of similar lightness around it (the edge-aware
    propagation, :mod:`colorcube.guidance.propagate`), so a position is worth the band width (mean
    over R, G, B) it can reach: the width summed over a box around it, counting only the
    pixels in its own lightness band (one of 8); ties go to the widest 5 x 5 neighbourhood.
    The best position is taken, the width it
    reaches counted as covered (set to zero), a disc around it ruled out, and so on k times.
    Without the gray image the lightness test is skipped (every pixel counts).

    Parameters
    ----------
    cube : a colorcube Dataset (its ``interval``, and its ``gray`` unless ``gray`` is given)
        or a (y, x, 3, 2) band array (codes or floats in [0, 1])
    k : int >= 1, number of positions
    gray : (y, x) float in [0, 1], optional; the photo's gray (a Dataset's own by default)
    radius : float, optional; pixels ruled out around each choice (default
        ``0.25 * sqrt(y * x / k)``); the box is twice that on a side

    Returns
    -------
    (n, 2) int64 array of (y, x) full-resolution pixel positions, n = min(k, pixels),
    best first
    """
    if int(k) < 1:
        raise OptionError(f"k={k!r}: ask for at least one hint position")
    is_cube = hasattr(cube, "data_vars")
    arr = _interval_array(cube["interval"] if is_cube else cube)
    h, w = arr.shape[:2]
    if gray is None and is_cube and "gray" in cube:
        gray = cube["gray"].values
    if gray is not None:
        gray = np.asarray(gray, np.float32)
        if gray.shape != (h, w):
            raise ColorcubeError(f"gray: shape {gray.shape} is not the band's {h} x {w}")
    width = (arr[..., 1] - arr[..., 0]).mean(axis=2)
    step = max(1, math.ceil(max(h, w) / _SUGGEST_SIDE))
    width = _block_mean(width, step)  # the choice needs regions, not single pixels
    band = (np.zeros(width.shape, np.int64) if gray is None
            else np.clip((_block_mean(gray, step) * _LIGHT_BANDS).astype(np.int64), 0, _LIGHT_BANDS - 1))
    gh, gw = width.shape
    k = min(int(k), h * w)
    rad = max((0.25 * math.sqrt(h * w / k) if radius is None else float(radius)) / step, 0.5)
    size = 2 * int(round(rad)) + 1
    yy, xx = np.mgrid[0:gh, 0:gw]
    allowed = np.ones(width.shape, bool)
    width = width.astype(np.float64)
    out = []
    for _ in range(k):
        if not allowed.any():
            break
        reach = np.empty_like(width)
        for b in np.unique(band):
            own = band == b
            reach[own] = ndimage.uniform_filter(np.where(own, width, 0.0), size=size, mode="constant")[own]
        # among boxes that reach as much, the point goes where the bands are widest around it
        reach += 1e-3 * ndimage.uniform_filter(width, size=5, mode="nearest")
        reach[~allowed] = -np.inf
        i = int(np.argmax(reach))
        gy, gx = divmod(i, gw)
        out.append((min(h - 1, gy * step + step // 2), min(w - 1, gx * step + step // 2)))
        near = (np.abs(yy - gy) <= size // 2) & (np.abs(xx - gx) <= size // 2)
        width[near & (band == band[gy, gx])] = 0.0  # what this hint reaches is no longer unsure
        allowed &= (yy - gy) ** 2 + (xx - gx) ** 2 > rad**2
    return np.asarray(out, dtype=np.int64).reshape(-1, 2)


def _block_mean(a: np.ndarray, step: int) -> np.ndarray:
    if step == 1:
        return a
    h, w = a.shape
    hh, ww = -(-h // step) * step, -(-w // step) * step
    padded = np.pad(a, ((0, hh - h), (0, ww - w)), mode="edge")
    return padded.reshape(hh // step, step, ww // step, step).mean(axis=(1, 3))


def palette(gray, points, *, model=None, k: int = 5, settings: PipelineSettings | None = None,
            separation: float = 20.0, hints=None) -> list:
    """The most probable distinct colours of the network's prediction at pixels of a gray photo.

    The predicted (a, b)-bin distribution at each pixel's output cell is grouped around its
    modes: the most probable bin is taken, the probability within ``separation`` (Lab units)
    of it is its colour's weight and its weighted mean (a, b) the colour, those bins are
    removed, and so on. Each colour is returned at the pixel's own lightness.

    Parameters
    ----------
    gray : (y, x) float32 in [0, 1]
    points : (y, x) pair or sequence of pairs, full-resolution pixel positions
    model : the network (default the shipped one)
    k : int >= 1, colours per pixel
    settings : PipelineSettings (default: the default pipeline), for the working size and precision
    separation : float > 0, (a, b) distance that makes two colours distinct
    hints : hints already placed (anything :func:`colorcube.guidance.hints.as_hints` takes): the
        network's prediction given them, as the explorer shows after a hint

    Returns
    -------
    list (one per point) of lists of up to ``k`` dicts, most probable first (the k modes
    found first, ordered by their probability):
    ``rgb`` (3,) float32 sRGB in [0, 1], ``ab`` (2,) float32, ``probability`` float
    """
    if int(k) < 1:
        raise OptionError(f"k={k!r}: ask for at least one colour")
    if separation <= 0:
        raise OptionError(f"separation={separation!r} must be > 0 (Lab units)")
    g = np.asarray(gray, dtype=np.float32)
    if g.ndim != 2 or g.size == 0:
        raise ColorcubeError(f"palette: expected a (y, x) gray array, got shape {g.shape}")
    pts = np.asarray(points, dtype=np.int64).reshape(-1, 2)
    if len(pts) and (pts.min() < 0 or (pts[:, 0] >= g.shape[0]).any() or (pts[:, 1] >= g.shape[1]).any()):
        raise OptionError(f"points: every (y, x) must lie inside the {g.shape[0]} x {g.shape[1]} photo")
    model = load_model() if model is None else model
    settings = settings or PipelineSettings()
    device = next(model.parameters()).device
    inp = working_input(g, settings, device=device)
    channels, hints = None, as_hints(hints, g.shape)
    if hints is not None:
        hint_ab, hint_mask = working_hints(hints, tuple(inp.lightness.shape))
        channels = network_input(hint_ab, hint_mask, inp.padded.shape[-2:], device=device)
    with torch.inference_mode():
        logits, _ = _in_dtype(model, PRECISIONS[settings.precision])(inp.padded, channels)
    hw, ww = inp.lightness.shape
    ys = np.minimum(((pts[:, 0] + 0.5) * (hw / g.shape[0])).astype(np.int64), hw - 1) // OUT_STRIDE
    xs = np.minimum(((pts[:, 1] + 0.5) * (ww / g.shape[1])).astype(np.int64), ww - 1) // OUT_STRIDE
    cells = logits[0, :, torch.from_numpy(ys), torch.from_numpy(xs)]  # (Q, n)
    probs = torch.softmax(cells.float().T, dim=1).cpu().numpy()  # (n, Q)
    bins = model.bins.float().cpu().numpy()
    dist = np.sqrt(((bins[:, None] - bins[None]) ** 2).sum(-1)) <= separation  # (Q, Q) neighbourhoods
    light = gray_to_lightness(torch.from_numpy(g[pts[:, 0], pts[:, 1]])).numpy() if len(pts) else np.zeros(0)
    out = []
    for p, L in zip(probs, light):
        left, colours = p.copy(), []
        while len(colours) < k and left.sum() > 1e-6:
            near = dist[int(np.argmax(left))] & (left > 0)
            mass = float(left[near].sum())
            ab = (left[near, None] * bins[near]).sum(axis=0) / mass
            left[near] = 0
            lab = torch.tensor([L, ab[0], ab[1]], dtype=torch.float32)[:, None, None]
            colours.append({"rgb": lab_to_rgb(lab)[:, 0, 0].numpy().astype(np.float32),
                            "ab": ab.astype(np.float32), "probability": mass})
        out.append(sorted(colours, key=lambda c: -c["probability"]))
    return out
