import pytest
import torch

from colorcube.errors import WeightsError
from colorcube.network.decode import predict
from colorcube.network.model import ModelConfig, hint_channels
from colorcube.network.model_v3 import ColorNetV3, encoder_input
from colorcube.network.weights import build_network, fold_batchnorm, load_weights, save_weights


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    model = ColorNetV3(ModelConfig(arch="v3")).eval()
    # give the zero-initialised hint projections weights, as training does
    for proj in model.hints.out:
        torch.nn.init.normal_(proj.weight, std=0.5)
    return model


def test_outputs_are_at_a_quarter_of_any_multiple_of_16(net):
    light = torch.rand(2, 1, 48, 80) * 100  # not multiples of 32: padded inside, cropped after
    with torch.no_grad():
        logits, scale = net(light)
    assert logits.shape == (2, net.n_bins, 12, 20) and scale.shape == (2, 3, 12, 20)
    assert float(scale.min()) >= 0
    # the crop is the top-left of the padded run: the same pixels as a run on a 64 x 96 replicate-padded input
    padded = torch.nn.functional.pad(light, (0, 16, 0, 16), mode="replicate")
    with torch.no_grad():
        full, _ = net(padded)
    torch.testing.assert_close(logits, full[..., :12, :20])


def test_an_empty_hint_mask_changes_nothing_and_a_hint_changes_its_neighbourhood(net):
    light = torch.rand(1, 1, 64, 64) * 100
    with torch.no_grad():
        plain, _ = net(light)
        empty, _ = net(light, torch.zeros(1, 3, 64, 64))
        hinted, _ = net(light, _one_hint(64, 40, 40, 60.0, -40.0))
    assert torch.equal(plain, empty)
    moved = (hinted - plain).abs().amax(dim=1)[0]
    assert float(moved[10, 10]) > 0  # on the hint's cell
    # the branch itself is exactly zero for zero input: no bias anywhere in it
    assert all(m.bias is None for m in net.hints.modules() if isinstance(m, torch.nn.Conv2d))


def test_encoder_input_scale_matches_imagenet_normalisation():
    light = torch.tensor([0.0, 50.0, 100.0]).reshape(1, 1, 1, 3)
    expect = (light / 100 * 255 - 127) / 128
    torch.testing.assert_close(encoder_input(light), expect)


def test_weights_round_trip_folds_batchnorm_and_decodes(tmp_path, net):
    path = tmp_path / "v3.safetensors"
    save_weights(net, path, half=False)
    loaded = load_weights(path)
    assert isinstance(loaded, ColorNetV3) and loaded.config.arch == "v3"
    light = torch.rand(1, 1, 64, 96) * 100
    with torch.no_grad():
        a = predict(net, light)
        b = predict(loaded, light)
    torch.testing.assert_close(a[0], b[0], rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(a[1], b[1], rtol=1e-3, atol=1e-4)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fold_batchnorm(net).modules())


def test_unknown_architecture_is_refused():
    with pytest.raises(WeightsError, match="arch='v9'"):
        build_network(ModelConfig(arch="v9"))


def test_old_weight_files_without_arch_read_as_v2():
    assert ModelConfig.from_json('{"width": 8}').arch == "v2"


def _one_hint(size, y, x, a, b):
    ab, mask = torch.zeros(1, 2, size, size), torch.zeros(1, size, size)
    ab[0, :, y, x], mask[0, y, x] = torch.tensor([a, b]), 1.0
    return hint_channels(ab, mask)
