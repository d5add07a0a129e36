import numpy as np
import pytest
from scipy import ndimage

from colorcube.errors import ColorcubeError
from colorcube.guided import guided_coefficients


def _reference(guide, maps, radius, eps):
    """He & Sun's guided-filter coefficients with scipy's box filter (edge replication), in float64."""
    box = lambda x: ndimage.uniform_filter(x, size=2 * radius + 1, mode="nearest")  # noqa: E731
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
    from colorcube.guided import _channels

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
