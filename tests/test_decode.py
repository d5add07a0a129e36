"""Decoding the network's outputs (network.decode): the annealed mean colour, its spread, and blocked decoding."""

import pytest
import torch

from colorcube.color import lab_to_rgb
from colorcube.network.decode import predict
from colorcube.network.model import ColorNet, ModelConfig


def test_spread_is_zero_for_a_certain_colour_and_large_for_two_modes():
    torch.manual_seed(0)
    model = ColorNet(ModelConfig(width=8)).eval()
    red = int(((model.bins - torch.tensor([60.0, 40.0])) ** 2).sum(1).argmin())
    blue = int(((model.bins - torch.tensor([20.0, -60.0])) ** 2).sum(1).argmin())
    lightness = torch.full((1, 1, 32, 32), 50.0)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.fill_(-30.0)
        model.head.bias[red] = 30.0
        _, certain = predict(model, lightness, scale="spread")
        model.head.bias[blue] = 30.0
        ab, bimodal = predict(model, lightness, vividness=1.0, scale="spread")
    assert float(certain.max()) < 1e-3
    # two equally likely colours: std of each channel = half the distance between them
    rgb = lab_to_rgb(torch.stack([torch.full((2,), 50.0), model.bins[[red, blue], 0], model.bins[[red, blue], 1]])[:, None])
    expected = (rgb[:, 0, 0] - rgb[:, 0, 1]).abs() / 2
    torch.testing.assert_close(bimodal[0, :, 0, 0], expected, atol=2e-3, rtol=0)
    torch.testing.assert_close(ab[0, :, 0, 0], model.bins[[red, blue]].mean(0), atol=1e-3, rtol=0)


def test_vividness_saturates():
    torch.manual_seed(0)
    model = ColorNet(ModelConfig(width=8)).eval()
    with torch.no_grad():
        model.head.bias[:] = torch.linspace(0, 3, model.n_bins)  # a skewed distribution
        lightness = torch.full((1, 1, 32, 32), 50.0)
        cold = predict(model, lightness, vividness=1.0)[0].norm(dim=1).mean()
        hot = predict(model, lightness, vividness=0.3)[0].norm(dim=1).mean()
    assert hot > cold


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_blocked_decoding_is_the_plain_softmax_mean_bit_for_bit(tiny_model, monkeypatch, dtype):
    import colorcube.network.decode

    monkeypatch.setattr(colorcube.network.decode, "_DECODE_ROWS", 100)  # several blocks and a ragged last one
    x = (torch.rand(2, 1, 48, 80, generator=torch.Generator().manual_seed(3)) * 100).contiguous(
        memory_format=torch.channels_last)
    with torch.inference_mode():
        logits, _ = colorcube.network.decode._in_dtype(tiny_model, dtype)(x)
        kept = logits.clone()
        ab, _ = predict(tiny_model, x, dtype=dtype, vividness=0.4)
        b, q, h, w = logits.shape
        z = logits.float().permute(0, 2, 3, 1).reshape(-1, q)
        whole = colorcube.network.decode._softmax_(z * (1.0 / 0.4)) @ tiny_model.bins  # all pixels at once
        plain = torch.softmax(z / 0.4, dim=1) @ tiny_model.bins
    assert torch.equal(logits, kept)  # decoding works on copies
    assert torch.equal(ab, whole.reshape(b, h, w, 2).permute(0, 3, 1, 2))
    torch.testing.assert_close(ab, plain.reshape(b, h, w, 2).permute(0, 3, 1, 2), rtol=0, atol=1e-5)
