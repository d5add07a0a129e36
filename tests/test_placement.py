"""Where hints act (guidance.placement): target colours, hints on the working grid, random true-colour points."""

import numpy as np
import pytest

from colorcube.color import LUMA_WEIGHTS
from colorcube.errors import HintError
from colorcube.guidance.hints import as_hints
from colorcube.guidance.placement import random_points, target_colours, working_hints
from colorcube.testing import gray_of

SHAPE = (40, 60)


def test_target_colours_keep_the_gray_and_give_back_the_truth():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (500, 3)).astype(np.uint8)
    gray = rng.random(500)
    t = target_colours(rgb, gray).astype(np.float64)
    luma = t @ np.asarray(LUMA_WEIGHTS)
    reachable = (t > 1e-6).any(axis=1) & (t < 1 - 1e-6).any(axis=1)  # not every channel pinned at one end
    assert np.abs(luma - gray)[reachable].max() < 1e-5
    # channel differences are kept where nothing clips
    inside = ((t > 1e-6) & (t < 1 - 1e-6)).all(axis=1)
    assert np.abs(np.diff(t[inside], axis=1) - np.diff(rgb[inside] / 255.0, axis=1)).max() < 1e-5
    # a true colour and the gray PIL makes of it: the colour back, within the gray's 8-bit rounding
    own = gray_of(rgb[None])[0]
    assert np.abs(target_colours(rgb, own) * 255 - rgb).max() <= 1.0


def test_working_hints_average_per_working_pixel():
    h = as_hints([(0, 0, (255, 0, 0)), (1, 1, (0, 0, 255)), (39, 59, (0, 255, 0))], SHAPE)
    ab, mask = working_hints(h, (20, 30))
    assert mask.sum() == 2 and mask[0, 0] and mask[19, 29]
    np.testing.assert_allclose(ab[:, 0, 0], h.ab()[:2].mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(ab[:, 19, 29], h.ab()[2], rtol=1e-5)


def test_random_points_are_true_colours(photos):
    truth = photos["chelsea"]
    pts = random_points(truth, 50, np.random.default_rng(1))
    assert len({(y, x) for y, x, _ in pts}) == 50
    assert all(tuple(truth[y, x]) == c for y, x, c in pts)
    assert random_points(truth / 255.0, 5, 3) == random_points(truth, 5, 3)  # floats round to the same 8 bits
    assert random_points(truth, 0, 0) == []
    with pytest.raises(HintError, match="k=-1"):
        random_points(truth, -1, 0)
