"""Pins at hints (render.pins): the band and colour at a hint pixel hold the hint's colour, in codes and floats."""

import numpy as np

from colorcube.guidance.hints import as_hints
from colorcube.render.pins import pin, pin_codes

SHAPE = (40, 60)
POINTS = [(3, 5, (255, 0, 0)), (39, 59, (0, 128, 255)), (20, 30, (10, 200, 30))]


def test_pin_puts_the_hint_inside_the_band():
    h = as_hints(POINTS, SHAPE)
    gray = np.full(SHAPE, 0.5, np.float32)
    codes = {"rgb": np.full((*SHAPE, 3), 128, np.uint8), "interval": np.full((*SHAPE, 3, 2), 128, np.uint8)}
    pin_codes(h, gray, codes)
    iv = codes["interval"][h.y, h.x]
    assert (iv[..., 0] <= h.rgb).all() and (h.rgb <= iv[..., 1]).all()
    assert (iv[..., 0] <= codes["rgb"][h.y, h.x]).all() and (codes["rgb"][h.y, h.x] <= iv[..., 1]).all()
    assert (codes["rgb"][h.y, h.x] != 128).any(axis=1).all()
    untouched = np.ones(SHAPE, bool)
    untouched[h.y, h.x] = False
    assert (codes["interval"][untouched] == 128).all()
    # the float version on every 2nd pixel of a tile: only the hints on that grid
    rgb, lo, hi = (np.full((20, 30, 3), 0.5, np.float32) for _ in range(3))
    pin(h, gray[::2, ::2], rgb, lo, hi, step=2)
    assert (rgb != 0.5).any(axis=2).sum() == 1  # only (20, 30) lies on the even grid
