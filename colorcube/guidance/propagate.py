"""Edge-aware propagation of hint colours along lightness regions.

The network reads the hints through its input channels and spreads them as it
learned to; this module makes two things hold whatever the network does:

* **near a hint, its colour**: each working pixel takes the (a*, b*) of the
  geodesically nearest hint, with weight ``exp(-D / NEAR)``;
* **edges stop colour**: the change the hints make (network and the above)
  is faded by ``exp(-D / FAR)``, so far from every hint, and across strong
  lightness edges, the colour is the automatic one.

``D`` is the geodesic distance to the nearest hint on the working lightness,
in units of the working image's longer side (so the behaviour does not depend
on the image's size): each step between 8-neighbours costs
``sqrt(len**2 + (EDGE * max(|dL| - TEXTURE, 0))**2)`` with ``len`` the step's
length and ``dL`` the lightness difference (L* units): changes of up to TEXTURE
per pixel (texture, noise, soft shading) are free, and crossing a sharp 40-unit
edge costs about as much as walking ``40 * EDGE`` of the side. It is computed with raster-scan passes (a
chamfer transform, compiled) in O(pixels), whatever the number of hints.

The constants were chosen on the held-out 5 % of train/ with 10 random
true-colour points per photo (``python benchmarks/propagation.py``; its figures are in
the README). The free texture allowance lets colour cross texture and
soft shading; EDGE 0.1 rather than 0.03 stops colour at edges more firmly; NEAR is
not larger because a larger one spreads a single stroke further through its
region, which suits random points better than a user's strokes.
"""

from __future__ import annotations

import numba
import numpy as np

from ..errors import ColorcubeError

__all__ = ["EDGE", "FAR", "NEAR", "TEXTURE", "blend_hints", "geodesic"]

#: Length scale (share of the working image's longer side) over which a hint's own colour dominates.
NEAR = 0.3
#: Length scale (share of the longer side) over which the hints change the colour at all.
FAR = 1.0
#: Cost of one L* unit of lightness change, as a share of the longer side.
EDGE = 0.1
#: Lightness change between neighbouring working pixels (L* units) that costs nothing: texture and noise.
TEXTURE = 5.0
_SWEEPS = 3


@numba.njit(cache=True, nogil=True)
def _sweep(light, dist, label, unit, edge, texture, forward):
    """One raster pass (forward: top-left to bottom-right). ``light``, ``dist``, ``label`` are
    (h, w) with h, w >= 1; every neighbour index is bounds-tested before use."""
    h, w = light.shape
    d1 = unit * unit
    d2 = 2 * unit * unit
    di = 1 if forward else -1
    for n in range(h):
        i = n if forward else h - 1 - n
        for m in range(w):
            j = m if forward else w - 1 - m
            d = dist[i, j]
            lab = label[i, j]
            li = light[i, j]
            # the neighbours this pass has already visited: the pixel before, and three in the row before
            for k in range(4):
                if k == 0:
                    ii, jj, step2 = i, j - di, d1
                elif k == 1:
                    ii, jj, step2 = i - di, j - 1, d2
                elif k == 2:
                    ii, jj, step2 = i - di, j, d1
                else:
                    ii, jj, step2 = i - di, j + 1, d2
                if ii < 0 or ii >= h or jj < 0 or jj >= w:
                    continue
                dl = max(abs(light[ii, jj] - li) - texture, np.float32(0.0)) * edge
                c = dist[ii, jj] + np.sqrt(step2 + dl * dl)
                if c < d:
                    d = c
                    lab = label[ii, jj]
            dist[i, j] = d
            label[i, j] = lab


def geodesic(light: np.ndarray, seeds: np.ndarray, *, edge: float = EDGE, texture: float = TEXTURE,
             sweeps: int = _SWEEPS):
    """Geodesic distance to the nearest seed, in units of the longer side, and which seed it is.

    Parameters
    ----------
    light : (h, w) float32, lightness L* in [0, 100]
    seeds : (h, w) bool, the seed (hint) pixels; at least one
    edge : float >= 0, cost of one L* unit (see the module notes)
    texture : float >= 0, L* change between neighbours that costs nothing (texture, noise)
    sweeps : int, forward + backward pass pairs (3 reach paths that turn twice)

    Returns
    -------
    dist : (h, w) float32 >= 0 (0 at the seeds), in units of ``max(h, w)``
    label : (h, w) int64, flat index ``y * w + x`` of the nearest seed
    """
    light = np.ascontiguousarray(light, np.float32)
    seeds = np.asarray(seeds, bool)
    if light.ndim != 2 or light.shape != seeds.shape or light.size == 0:
        raise ColorcubeError(f"geodesic: lightness {light.shape} and seeds {seeds.shape} must be the same (h, w)")
    if not seeds.any():
        raise ColorcubeError("geodesic: no seed pixel")
    if not np.isfinite(light).all():
        raise ColorcubeError("geodesic: lightness holds NaN or infinite values")
    if not (np.isfinite(edge) and edge >= 0):
        raise ColorcubeError(f"geodesic: edge={edge!r} must be finite and >= 0")
    dist = np.where(seeds, np.float32(0), np.float32(np.inf)).astype(np.float32)
    label = np.where(seeds, np.arange(light.size).reshape(light.shape), -1).astype(np.int64)
    unit = np.float32(1.0 / max(light.shape))
    for _ in range(int(sweeps)):
        _sweep(light, dist, label, unit, np.float32(edge), np.float32(texture), True)
        _sweep(light, dist, label, unit, np.float32(edge), np.float32(texture), False)
    return dist, label


def _pool(x: np.ndarray, grid: tuple, factor: int) -> np.ndarray:
    """Mean over ``factor`` x ``factor`` blocks of (..., h, w), edge-replicated up to ``grid`` blocks."""
    gh, gw = grid
    h, w = x.shape[-2:]
    pad = [(0, 0)] * (x.ndim - 2) + [(0, gh * factor - h), (0, gw * factor - w)]
    x = np.pad(x, pad, mode="edge")
    return x.reshape(*x.shape[:-2], gh, factor, gw, factor).mean(axis=(-3, -1))


def blend_hints(light, hint_ab, hint_mask, auto, hinted, *, factor: int, near: float = NEAR, far: float = FAR,
                edge: float = EDGE, texture: float = TEXTURE) -> np.ndarray:
    """The output-grid maps with the hints applied edge-aware.

    Parameters
    ----------
    light : (hw, ww) float32, working lightness L*
    hint_ab, hint_mask : (2, hw, ww) float32 and (hw, ww) bool, :func:`colorcube.guidance.placement.working_hints`
    auto, hinted : (5, gh, gw) float32, the network's (a*, b*, R, G, B scale) maps on its output
        grid without and with the hints (gh = ceil(hw / factor), gw = ceil(ww / factor))
    factor : int, working pixels per output-grid cell (the network's output stride)
    near, far, edge, texture : the length scales, edge cost and texture allowance of the module notes

    Returns
    -------
    (5, gh, gw) float32: ``auto + G * (mix - auto)`` with ``G`` the grid mean of
    ``exp(-D / far)`` and ``mix`` the hinted maps whose (a*, b*) is pulled toward the
    nearest hint's by ``exp(-D / near)`` (grid means of the working-pixel weights)
    """
    if far < near:
        raise ColorcubeError(f"far={far} must be >= near={near}: the hints' reach includes their own colour's")
    dist, label = geodesic(light, hint_mask, edge=edge, texture=texture)
    grid = auto.shape[-2:]
    w_near = np.exp(-dist / np.float32(near))
    nearest = hint_ab.reshape(2, -1)[:, label.reshape(-1)].reshape(hint_ab.shape)
    wn = _pool(w_near, grid, factor)
    wn_ab = _pool(w_near * nearest, grid, factor)
    gate = _pool(np.exp(-dist / np.float32(far)), grid, factor)
    mix = hinted.astype(np.float32).copy()
    mix[:2] = hinted[:2] * (1 - wn) + wn_ab
    return (auto + gate * (mix - auto)).astype(np.float32)
