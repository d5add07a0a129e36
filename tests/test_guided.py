import numpy as np
import pytest
from scipy import ndimage

from colorcube.errors import ColorcubeError
from colorcube.network.guided import guided_coefficients


def _reference(guide, maps, radius, eps):
    """He & Sun's guided-filter coefficients with scipy's box filter (edge replication), in float64."""
    box = lambda x: ndimage.uniform_filter(x, size=2 * radius + 1, mode="nearest")
    g = guide.astype(np.float64)
    mean_i, var = box(g), box(g * g) - box(g) ** 2
    out = []
    for p in maps.astype(np.float64):
        a = (box(g * p) - mean_i * box(p)) / (var + eps)
        out.append((box(a), box(box(p) - a * mean_i)))
    return np.stack([a for a, _ in out] + [b for _, b in out], axis=-1)


def _inputs(rng, h, w):
    guide = rng.random((h, w), dtype=np.float32)
    maps = np.concatenate([rng.normal(0, 30, (2, h, w)), rng.uniform(0, 0.2, (3, h, w))]).astype(np.float32)
    return guide, maps


@pytest.mark.parametrize("shape,radius", [((9, 13), 2), ((1, 1), 0), ((1, 7), 1), ((7, 1), 3), ((3, 4), 9)])
def test_matches_an_independent_box_filter(shape, radius):
    guide, maps = _inputs(np.random.default_rng(0), *shape)
    coef = guided_coefficients(guide, maps, radius=radius, eps=1e-3)
    assert coef.shape == (*shape, 10) and coef.dtype == np.float32
    np.testing.assert_allclose(coef, _reference(guide, maps, radius, 1e-3), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("bad", ["nan_map", "inf_guide", "empty", "maps_shape", "negative_radius", "zero_eps"])
def test_refuses_what_the_kernel_cannot_index_or_trust(bad):
    guide, maps = _inputs(np.random.default_rng(1), 6, 5)
    radius, eps = 1, 1e-3
    if bad == "nan_map":
        maps[3, 2, 2] = np.nan
    elif bad == "inf_guide":
        guide[0, 4] = np.inf
    elif bad == "empty":
        guide, maps = guide[:0], maps[:, :0]
    elif bad == "maps_shape":
        maps = maps[:4]  # the kernel writes maps c and c + 5 of the 10 coefficients
    elif bad == "negative_radius":
        radius = -1
    elif bad == "zero_eps":
        eps = 0.0
    with pytest.raises(ColorcubeError):
        guided_coefficients(guide, maps, radius=radius, eps=eps)


def _fuzz_kernel(seed: int, cases: int) -> None:
    """Random grids, including 1 x 1, 1 x N, N x 1 and radii past the grid, and NaN / inf fed to
    the compiled kernel past the Python-side checks; :func:`test_kernel_under_bounds_checking`
    runs it with ``NUMBA_BOUNDSCHECK=1``, where an index out of range raises."""
    from colorcube.network.guided import _channels

    try:  # control: a coefficient array with room for 6 maps, not 10, must be caught
        _channels(np.zeros((2, 2), np.float32), np.zeros((5, 2, 2), np.float32), 0, 1e-3,
                  np.empty((2, 2, 6), np.float32))
    except IndexError:
        pass
    else:
        raise AssertionError("bounds checking is off: run with NUMBA_BOUNDSCHECK=1 and a fresh NUMBA_CACHE_DIR")
    rng = np.random.default_rng(seed)
    shapes = [(1, 1), (1, 2), (2, 1), (1, 40), (40, 1), (2, 96)]
    shapes += [tuple(int(v) for v in rng.integers(1, 30, 2)) for _ in range(cases - len(shapes))]
    for h, w in shapes:
        guide, maps = _inputs(rng, h, w)
        radius = int(rng.integers(0, 2 * max(h, w) + 2))
        coef = guided_coefficients(guide, maps, radius=radius, eps=1e-3)
        np.testing.assert_allclose(coef, _reference(guide, maps, radius, 1e-3), rtol=1e-4, atol=1e-3)
        for value in (np.nan, np.inf, -np.inf):
            g, m = guide.copy(), maps.copy()
            g.flat[rng.integers(0, g.size)] = value
            m.flat[rng.integers(0, m.size)] = value
            _channels(g, m, radius, 1e-3, np.empty((h, w, 10), np.float32))


@pytest.mark.slow
def test_kernel_under_bounds_checking(run_bounds_checked):
    run_bounds_checked("tests.test_guided", "_fuzz_kernel")


def _box_box(p, radius):
    """Two (2r+1)^2 box means with edge replication, the guided filter's smoothing of a flat guide."""
    size = 2 * radius + 1
    return ndimage.uniform_filter(ndimage.uniform_filter(p.astype(np.float64), size=size, mode="nearest"),
                                  size=size, mode="nearest")


def test_a_constant_guide_gives_the_box_filtered_maps():
    rng = np.random.default_rng(2)
    _, maps = _inputs(rng, 12, 17)
    guide = np.full((12, 17), 0.37, np.float32)
    coef = guided_coefficients(guide, maps, radius=2, eps=1e-3)
    a, b = coef[..., :5], coef[..., 5:]
    assert np.abs(a).max() < 1e-3  # nothing to follow in a flat guide
    for c in range(5):
        q = a[..., c] * guide + b[..., c]
        np.testing.assert_allclose(q, _box_box(maps[c], 2), rtol=1e-4, atol=1e-3)
        assert q.std() < maps[c].std()  # smoothed, not passed through


def test_an_edge_in_the_guide_is_kept_where_a_box_filter_blurs_it():
    guide = np.full((16, 20), 0.2, np.float32)
    guide[:, 10:] = 0.8  # a vertical step edge
    slopes = np.array([100.0, -60.0, 0.5, 0.3, -0.2], np.float32)
    maps = (slopes[:, None, None] * (guide - 0.5)).astype(np.float32)  # maps that follow the guide
    coef = guided_coefficients(guide, maps, radius=3, eps=1e-4)
    for c in range(5):
        q = coef[..., c] * guide + coef[..., c + 5]
        step = abs(slopes[c]) * 0.6
        blurred = _box_box(maps[c], 3)
        assert np.abs(blurred - maps[c])[:, 8:12].max() > 0.25 * step  # a box filter smears the edge
        assert np.abs(q - maps[c]).max() < 0.02 * step  # the guided filter keeps it
        np.testing.assert_allclose(q[:, 10] - q[:, 9], maps[c][:, 10] - maps[c][:, 9], rtol=0.03)
