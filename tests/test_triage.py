import numpy as np
import pytest
import torch

import colorcube
from colorcube.apps.triage import palette, suggest_hints
from colorcube.color import gray_to_lightness, rgb_to_lab
from colorcube.errors import OptionError
from colorcube.network.model import ColorNet, ModelConfig


def _band(width: np.ndarray) -> np.ndarray:
    """(y, x) widths -> a (y, x, 3, 2) float band centred at 0.5 with that width in every channel."""
    w = np.repeat(width[..., None], 3, axis=2).astype(np.float32)
    return np.stack([0.5 - w / 2, 0.5 + w / 2], axis=-1)


def test_suggestions_go_to_wide_regions_largest_first_and_keep_apart():
    width = np.full((120, 160), 0.05)
    width[20:50, 20:60] = 0.6  # a large wide region
    width[80:100, 120:140] = 0.5  # a smaller, less wide one
    width[60, 80] = 1.0  # one very wide pixel: no area
    pts = suggest_hints(_band(width), 2)
    assert pts.shape == (2, 2) and pts.dtype == np.int64
    (y0, x0), (y1, x1) = pts
    assert 20 <= y0 < 50 and 20 <= x0 < 60  # the large region first
    assert 80 <= y1 < 100 and 120 <= x1 < 140
    many = suggest_hints(_band(width), 12)
    d = np.sqrt(((many[:, None] - many[None]) ** 2).sum(-1)) + np.eye(len(many)) * 1e9
    assert d.min() > 0.25 * np.sqrt(120 * 160 / 12) - 1  # no two within the suppression radius
    assert len(suggest_hints(_band(np.ones((2, 2))), 10)) <= 4
    with pytest.raises(OptionError, match="k=0"):
        suggest_hints(_band(width), 0)


def test_a_hint_is_taken_to_reach_only_its_own_lightness():
    """A wide region split by a lightness edge: one hint per side, each away from the edge
    (a hint on the edge would reach neither side well); without the gray, the edge is unseen."""
    width = np.full((120, 160), 0.02)
    width[20:100, 20:100] = 0.6
    gray = np.full((120, 160), 0.2, np.float32)
    gray[:, 60:] = 0.8
    pts = suggest_hints(_band(width), 2, gray=gray)
    sides = sorted(int(x >= 60) for _, x in pts)
    assert sides == [0, 1], f"both hints on one side of the edge: {pts.tolist()}"
    assert all(abs(int(x) - 60) >= 10 for _, x in pts), pts.tolist()
    blind = suggest_hints(_band(width), 1)
    assert abs(int(blind[0, 1]) - 60) < 10  # the region's middle, on the edge
    with pytest.raises(colorcube.ColorcubeError, match="gray"):
        suggest_hints(_band(width), 2, gray=gray[:10])


def test_suggest_hints_reads_a_cube(photos, tiny_model):
    gray = photos["chelsea"][::4, ::4].mean(axis=2).astype(np.float32) / 255
    ds = colorcube.colorize(gray, model=tiny_model, calibration=None)
    pts = colorcube.suggest_hints(ds, 5)
    assert pts.shape == (5, 2) and (pts[:, 0] < ds.sizes["y"]).all() and (pts[:, 1] < ds.sizes["x"]).all()


class _TwoColours(torch.nn.Module):
    """A stand-in network whose every pixel predicts two (a, b) bins: 0.7 and 0.3 of the mass."""

    def __init__(self, first: int, second: int):
        super().__init__()
        base = ColorNet(ModelConfig(width=8))
        self.register_buffer("bins", base.bins)
        self.config = base.config
        self.first, self.second = first, second
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, lightness, hints=None):
        b, _, h, w = lightness.shape
        logits = torch.full((b, len(self.bins), h // 4, w // 4), -1e4)
        # given any hint (mask channel set), the network changes its mind: 0.3 and 0.7
        p = 0.3 if hints is not None and bool(hints[:, 2].any()) else 0.7
        logits[:, self.first] = np.log(p)
        logits[:, self.second] = np.log(1 - p)
        return logits, torch.zeros(b, 3, h // 4, w // 4)


def test_palette_returns_the_modes_at_the_pixels_lightness():
    bins = ColorNet(ModelConfig(width=8)).bins
    first = int(torch.cdist(torch.tensor([[40.0, 30.0]]), bins).argmin())
    second = int(torch.cdist(torch.tensor([[-30.0, -40.0]]), bins).argmin())
    model = _TwoColours(first, second)
    gray = np.linspace(0.2, 0.8, 64 * 48, dtype=np.float32).reshape(48, 64)
    pal = palette(gray, [(5, 7), (40, 60)], model=model, k=5, settings=colorcube.PipelineSettings(precision="float32"))
    assert len(pal) == 2
    for (y, x), colours in zip([(5, 7), (40, 60)], pal):
        assert len(colours) == 2  # nothing else has mass
        assert colours[0]["probability"] == pytest.approx(0.7, abs=1e-4)
        assert colours[1]["probability"] == pytest.approx(0.3, abs=1e-4)
        np.testing.assert_allclose(colours[0]["ab"], bins[first].numpy(), atol=1e-3)
        np.testing.assert_allclose(colours[1]["ab"], bins[second].numpy(), atol=1e-3)
        rgb = torch.from_numpy(colours[0]["rgb"])[:, None, None]
        inside = bool(((rgb > 0.01) & (rgb < 0.99)).all())
        if inside:  # an in-gamut colour keeps the pixel's own lightness
            L = float(rgb_to_lab(rgb)[0, 0, 0])
            assert L == pytest.approx(float(gray_to_lightness(torch.tensor(gray[y, x]))), abs=0.1)
    with pytest.raises(OptionError, match="inside"):
        palette(gray, [(48, 0)], model=model)


def test_palette_is_the_networks_given_the_hints_placed():
    bins = ColorNet(ModelConfig(width=8)).bins
    first = int(torch.cdist(torch.tensor([[40.0, 30.0]]), bins).argmin())
    second = int(torch.cdist(torch.tensor([[-30.0, -40.0]]), bins).argmin())
    gray = np.full((48, 64), 0.5, np.float32)
    settings = colorcube.PipelineSettings(precision="float32")
    hinted = palette(gray, [(5, 7)], model=_TwoColours(first, second), settings=settings,
                     hints=[(30, 30, (0, 90, 200))])[0]
    assert hinted[0]["probability"] == pytest.approx(0.7, abs=1e-4)
    np.testing.assert_allclose(hinted[0]["ab"], bins[second].numpy(), atol=1e-3)
    unhinted = palette(gray, [(5, 7)], model=_TwoColours(first, second), settings=settings, hints=[])[0]
    np.testing.assert_allclose(unhinted[0]["ab"], bins[first].numpy(), atol=1e-3)
