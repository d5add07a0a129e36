import numpy as np
import pytest
import torch
from PIL import Image
from skimage import color as skcolor

from colorcube.color import gray_to_lightness, lab_to_rgb, luma, rgb_to_lab


def test_rgb_to_lab_matches_skimage(photos):
    rng = np.random.default_rng(1)
    samples = [rng.random((40, 50, 3)).astype(np.float32), photos["coffee"][::4, ::4].astype(np.float32) / 255]
    for rgb in samples:
        ours = rgb_to_lab(torch.from_numpy(rgb).permute(2, 0, 1)).permute(1, 2, 0).numpy()
        ref = skcolor.rgb2lab(rgb)
        np.testing.assert_allclose(ours, ref, atol=1e-3)


def test_lab_to_rgb_matches_skimage():
    rng = np.random.default_rng(2)
    rgb = rng.random((30, 30, 3))
    lab = skcolor.rgb2lab(rgb).astype(np.float32)
    ours = lab_to_rgb(torch.from_numpy(lab).permute(2, 0, 1)).permute(1, 2, 0).numpy()
    np.testing.assert_allclose(ours, skcolor.lab2rgb(lab), atol=1e-3)


def test_batched_shapes_and_clip():
    lab = torch.zeros(2, 4, 3, 5, 6)
    lab[:, :, 0] = 50
    lab[:, :, 1] = 120  # far out of gamut
    rgb = lab_to_rgb(lab)
    assert rgb.shape == (2, 4, 3, 5, 6)
    assert float(rgb.min()) >= 0 and float(rgb.max()) <= 1
    assert float(lab_to_rgb(lab, clip=False).max()) > 1


def test_gray_lightness_is_lab_of_neutral_gray():
    g = torch.linspace(0, 1, 257)
    ref = skcolor.rgb2lab(np.stack([g.numpy()] * 3, axis=-1)[None])[0, :, 0]
    np.testing.assert_allclose(gray_to_lightness(g).numpy(), ref, atol=1e-3)
    # neutral colour -> a = b = 0
    lab = rgb_to_lab(g.reshape(1, 1, -1).expand(3, 1, -1))
    assert float(lab[1:].abs().max()) < 1e-2


def test_luma_matches_pil_convert_L(photos):
    rgb8 = photos["astronaut"][::3, ::3]
    pil = np.asarray(Image.fromarray(rgb8).convert("L"), dtype=np.float32)
    ours = luma(torch.from_numpy(rgb8.astype(np.float32) / 255).permute(2, 0, 1)).numpy() * 255
    assert np.abs(ours - pil).max() <= 0.51  # PIL rounds to integers


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_conversions_equal_kornias_bit_for_bit(dtype):
    """The model's bins and trained weights were made with kornia's conversions; ours must not move them."""
    import kornia.color

    g = torch.Generator().manual_seed(0)
    rgb = torch.rand(2, 3, 31, 17, generator=g).to(dtype)
    rgb[..., 0, :3] = torch.tensor([0.0, 1.0, 0.04045], dtype=dtype)  # the ends and the gamma knee
    wild = (torch.randn(2, 3, 31, 17, generator=g) * torch.tensor([40.0, 90.0, 90.0]).reshape(3, 1, 1)
            + torch.tensor([50.0, 0.0, 0.0]).reshape(3, 1, 1)).to(dtype)
    assert torch.equal(rgb_to_lab(rgb), kornia.color.rgb_to_lab(rgb))
    for clip in (True, False):
        assert torch.equal(lab_to_rgb(wild, clip=clip), kornia.color.lab_to_rgb(wild, clip=clip))
