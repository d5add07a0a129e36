import dataclasses

import numpy as np
import torch

from colorcube.color import gray_to_lightness, rgb_to_lab
from colorcube.inputs.degrade import ARCHIVE_SCAN, ScanDamage, archive_scan, degrade_batch, reference_rgb


def _photo(photos):
    rgb = photos["astronaut"][::4, ::4].astype(np.float32) / 255
    return rgb, np.round(rgb @ np.array([0.299, 0.587, 0.114], np.float32) * 255) / np.float32(255)


def test_archive_scan_is_reproducible_8bit_and_damages(photos):
    _, gray = _photo(photos)
    a, b = archive_scan(gray, seed=3), archive_scan(gray, seed=3)
    assert np.array_equal(a, b) and a.shape == gray.shape and a.dtype == np.float32
    assert np.array_equal(np.round(a * 255) / 255, a) and a.min() >= 0 and a.max() <= 1
    assert not np.array_equal(archive_scan(gray, seed=4), a)  # the seed moves the grain and dust
    assert np.abs(a - gray).mean() > 0.02


def test_each_damage_does_what_it_says(photos):
    _, gray = _photo(photos)
    off = ScanDamage()
    assert np.abs(archive_scan(gray, damage=off) - gray).max() == 0  # all off: 8-bit only
    faded = archive_scan(gray, damage=dataclasses.replace(off, contrast=0.5, lift=0.1))
    assert faded.std() < 0.55 * gray.std() and faded.min() >= 0.09

    def roughness(g):
        return np.abs(np.diff(g, axis=1)).mean()

    assert roughness(archive_scan(gray, damage=dataclasses.replace(off, blur=1.5))) < 0.7 * roughness(gray)
    assert roughness(archive_scan(gray, damage=dataclasses.replace(off, grain=0.05))) > 1.3 * roughness(gray)
    dust = archive_scan(gray, damage=dataclasses.replace(off, dust=0.01))
    specks = (dust != gray).mean()
    # Binomial(n, 0.01) share of pixels replaced by 0 or 1 (a few already were 0 or 1)
    n = gray.size
    assert abs(specks - 0.01) < 5 * np.sqrt(0.01 * 0.99 / n)
    assert set(np.unique(dust[dust != gray])) <= {0.0, 1.0}
    jpeg = archive_scan(gray, damage=dataclasses.replace(off, jpeg=10))
    assert 0 < np.abs(jpeg - gray).mean() < 0.05


def test_degrade_batch_leaves_about_1_minus_p_untouched():
    gen = torch.Generator().manual_seed(0)
    gray = torch.rand(200, 1, 16, 16)
    gray = torch.round(gray * 255) / 255
    out = degrade_batch(gray, gen, p=0.5)
    changed = (out != gray).flatten(1).any(dim=1).float().mean()
    # a photo can be drawn but get every damage off ((1/2)^7): P(changed) = 0.5 (1 - 2^-7); 5 sd of Binomial(200, .5)
    assert abs(float(changed) - 0.5 * (1 - 2**-7)) < 5 * np.sqrt(0.25 / 200)
    assert float(out.min()) >= 0 and float(out.max()) <= 1


def test_reference_keeps_the_truths_chroma_at_the_degraded_lightness(photos):
    rgb, _ = _photo(photos)
    t = torch.from_numpy(rgb).permute(2, 0, 1)[None]
    dark = torch.full((1, 1, *t.shape[-2:]), 0.4)
    ref = reference_rgb(t, dark)
    lab = rgb_to_lab(ref)
    inside = ((ref > 0.02) & (ref < 0.98)).all(dim=1)  # unclipped pixels keep L, a, b exactly
    torch.testing.assert_close(lab[:, 0][inside], gray_to_lightness(dark[:, 0])[inside], atol=0.05, rtol=0)
    torch.testing.assert_close(lab[:, 1:][inside[:, None].expand(-1, 2, -1, -1)],
                               rgb_to_lab(t)[:, 1:][inside[:, None].expand(-1, 2, -1, -1)], atol=0.05, rtol=0)
    assert ARCHIVE_SCAN.jpeg == 40
