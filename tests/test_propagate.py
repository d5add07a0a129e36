"""Edge-aware hint propagation: geodesic distances, the blend, and no bleeding across a strong edge."""

import numpy as np
import pytest

import colorcube
from colorcube.errors import ColorcubeError
from colorcube.guidance.propagate import blend_hints, geodesic


def test_flat_image_gives_euclidean_distance():
    light = np.full((50, 80), 50.0, np.float32)
    seeds = np.zeros(light.shape, bool)
    seeds[10, 20] = True
    dist, label = geodesic(light, seeds)
    yy, xx = np.mgrid[:50, :80]
    euclid = np.hypot(yy - 10, xx - 20) / 80  # units of the longer side
    assert dist[10, 20] == 0 and (label == 10 * 80 + 20).all()
    assert np.abs(dist - euclid).max() <= 0.09 * euclid.max()  # chamfer error of 8-neighbour steps


def test_an_edge_costs_its_lightness_change_above_the_texture_allowance():
    light = np.full((40, 40), 30.0, np.float32)
    light[:, 20:] = 80.0
    seeds = np.zeros(light.shape, bool)
    seeds[20, 15] = True
    dist, _ = geodesic(light, seeds, edge=0.01, texture=2.0)
    across, mirror = dist[20, 25], dist[20, 5]  # both 10 px from the seed; only one crosses the edge
    step = 1 / 40  # the one step over the edge costs sqrt(step**2 + (edge * (dL - texture))**2) instead of step
    assert across - mirror == pytest.approx(np.hypot(step, 0.01 * (50 - 2)) - step, rel=1e-3)
    noisy = light + np.random.default_rng(0).uniform(-0.9, 0.9, light.shape).astype(np.float32)
    assert geodesic(noisy, seeds, edge=0.01, texture=2.0)[0][20, 5] == pytest.approx(mirror)  # texture is free


def test_nearest_seed_is_found_across_regions():
    light = np.full((30, 30), 20.0, np.float32)
    light[:, 15:] = 90.0
    seeds = np.zeros(light.shape, bool)
    seeds[15, 2] = seeds[15, 16] = True
    _, label = geodesic(light, seeds, edge=0.05)
    assert label[15, 14] == 15 * 30 + 2  # spatially nearer the right seed, but across the edge from it
    assert label[15, 20] == 15 * 30 + 16


def test_geodesic_refuses_bad_input():
    with pytest.raises(ColorcubeError, match="no seed"):
        geodesic(np.zeros((4, 4), np.float32), np.zeros((4, 4), bool))
    with pytest.raises(ColorcubeError, match="same"):
        geodesic(np.zeros((4, 4), np.float32), np.ones((4, 5), bool))


def test_blend_is_automatic_far_away_and_the_hint_at_it():
    light = np.full((64, 64), 50.0, np.float32)
    mask = np.zeros(light.shape, bool)
    mask[0, 0] = True
    hint_ab = np.zeros((2, 64, 64), np.float32)
    hint_ab[:, 0, 0] = (60.0, -40.0)
    auto = np.zeros((5, 16, 16), np.float32)
    hinted = np.ones((5, 16, 16), np.float32)
    out = blend_hints(light, hint_ab, mask, auto, hinted, factor=4, near=0.1, far=0.2)
    assert np.abs(out[:, -1, -1]).max() < 0.1  # ~1.4 sides from the hint: (nearly) the automatic maps
    assert out[0, 0, 0] > 30 and out[1, 0, 0] < -20  # at the hint: pulled toward its (a*, b*)
    assert 0.5 < out[2, 0, 0] <= 1.0  # the scale maps follow the network's hinted ones near the hint


def test_a_stroke_does_not_bleed_across_a_strong_edge():
    """A red stroke 8 px left of a dark | light edge: the colour 12 px beyond the stroke's end (same
    region) changes a lot, 12 px across the edge it hardly changes."""
    gray = np.full((192, 192), 0.3, np.float32)
    gray[:, 96:] = 0.8
    stroke = np.zeros((192, 192, 4), np.uint8)
    stroke[70:122, 84:88] = (200, 30, 30, 255)
    auto = colorcube.colorize(gray).rgb.values * 255
    hinted = colorcube.colorize(gray, hints=stroke).rgb.values * 255
    change = np.linalg.norm(hinted - auto, axis=-1)
    along, across = change[58, 86], change[96, 99]  # 12 px above the stroke; 12 px to its right
    assert along > 20, f"the stroke's colour does not reach its own region ({along:.1f})"
    assert across < 0.25 * along, f"colour bleeds across the edge: change {across:.1f} across, {along:.1f} along"
    assert change[:, 100:].mean() < 0.1 * change[:, :96].mean()
