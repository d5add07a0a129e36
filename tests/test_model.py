import pytest
import torch

from colorcube.color import lab_to_rgb
from colorcube.errors import ColorcubeError, WeightsError
from colorcube.network.decode import predict
from colorcube.network.model import ColorNet, ModelConfig, ab_bins, hint_channels
from colorcube.network.weights import init_from, load_model, load_weights, save_weights, select_device


def test_bins_are_in_gamut_and_cover_neutral():
    bins = ab_bins(10.0)
    assert bins.shape[1] == 2 and 150 < bins.shape[0] < 400
    assert (bins == 0).all(dim=1).any()  # gray is a bin
    assert bins.abs().max() <= 110
    # every bin is reproducible in sRGB at some lightness
    lightness = torch.linspace(5, 95, 46)
    lab = torch.stack([lightness[:, None].expand(-1, len(bins)), bins[None, :, 0].expand(46, -1),
                       bins[None, :, 1].expand(46, -1)])
    rgb = lab_to_rgb(lab, clip=False)  # (3, levels, bins)
    assert ((rgb >= -0.02) & (rgb <= 1.02)).all(dim=0).any(dim=0).all()


def test_forward_shapes_and_ranges(tiny_model):
    lightness = torch.rand(2, 1, 64, 96) * 100
    with torch.no_grad():
        logits, err = tiny_model(lightness)
        ab, spread = predict(tiny_model, lightness, vividness=0.4, scale="spread")
        _, learned = predict(tiny_model, lightness, vividness=0.4)
    assert logits.shape == (2, tiny_model.n_bins, 16, 24) and err.shape == (2, 3, 16, 24)
    assert ab.shape == (2, 2, 16, 24) and spread.shape == (2, 3, 16, 24)
    assert float(spread.min()) >= 0 and float(spread.max()) <= 0.5  # std of values in [0, 1]
    assert float(ab.abs().max()) <= 110
    torch.testing.assert_close(learned, err)
    assert float(err.min()) >= 0
    with pytest.raises(ValueError, match="scale"):
        predict(tiny_model, lightness, scale="nonsense")


def test_empty_hints_equal_no_hints_and_hints_change_the_output(tiny_model):
    lightness = torch.rand(1, 1, 64, 64, generator=torch.Generator().manual_seed(3)) * 100
    ab, mask = torch.zeros(1, 2, 64, 64), torch.zeros(1, 64, 64)
    empty = hint_channels(ab, mask)
    for y, x, a, b in [(10, 12, 60.0, 40.0), (40, 50, -30.0, 20.0)]:
        ab[0, :, y, x], mask[0, y, x] = torch.tensor([a, b]), 1.0
    ab[0, :, 30, 30] = 99.0  # a colour where the mask is 0 is no hint
    hinted = hint_channels(ab, mask)
    assert hinted.shape == (1, 3, 64, 64) and float(hinted[0, 2].sum()) == 2
    torch.testing.assert_close(hinted[0, :2, 10, 12], torch.tensor([60.0, 40.0]) / 110)
    with torch.no_grad():
        none, zero, some = (tiny_model(lightness, h)[0] for h in (None, empty, hinted))
    torch.testing.assert_close(none, zero, rtol=0, atol=0)
    # exact equality above, so any change is the hints' (the tiny random network's effect is small)
    assert float((none - some).abs().max()) > 1e-6


def test_warm_start_from_an_older_layout_computes_the_same_colours(tmp_path):
    """A network without hint inputs, attention or error head (with 6 extra head rows) warm-starts
    the current one: with no hints its logits are the old network's."""
    torch.manual_seed(0)
    old = ColorNet(ModelConfig(width=8, attention_heads=0)).eval()
    with torch.no_grad():
        for m in old.modules():  # non-trivial BatchNorm statistics
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    state = {k: v for k, v in old.state_dict().items() if not k.startswith("error.")}
    state["stem.0.0.weight"] = state["stem.0.0.weight"][:, :1].clone()  # lightness only
    state["head.weight"] = torch.cat([state["head.weight"], torch.randn(6, 8, 1, 1)])
    state["head.bias"] = torch.cat([state["head.bias"], torch.randn(6)])
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "old.safetensors"))
    new = ColorNet(ModelConfig(width=8)).eval()
    fresh = init_from(new, tmp_path / "old.safetensors")
    assert any(n.startswith("attention.") for n in fresh) and any(n.startswith("error.") for n in fresh)
    assert not any(n.startswith(("stem.", "head.", "down")) for n in fresh)
    lightness = torch.rand(1, 1, 64, 64) * 100
    with torch.no_grad():
        old_in = old.stem[0][0].weight.clone()
        old.stem[0][0].weight.zero_()
        old.stem[0][0].weight[:, :1] = state["stem.0.0.weight"]  # the old net never saw hint channels
        expected = old(lightness)[0]
        old.stem[0][0].weight.copy_(old_in)
        torch.testing.assert_close(new(lightness)[0], expected, rtol=1e-5, atol=1e-5)


def test_save_load_round_trip(tmp_path, tiny_model):
    save_weights(tiny_model, tmp_path / "w.safetensors", half=False)
    back = load_weights(tmp_path / "w.safetensors")
    x = torch.rand(1, 1, 32, 32) * 100
    with torch.no_grad():
        for a, b in zip(tiny_model(x), back(x)):  # loading folds BatchNorm: equal to rounding
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in back.modules())
    assert len(back.weights_hash) == 64 and back.config.width == 8


def test_tampered_and_truncated_weights_refused(tmp_path, tiny_model):
    path = tmp_path / "w.safetensors"
    save_weights(tiny_model, path)
    (tmp_path / "t.safetensors").write_bytes(path.read_bytes()[:1000])
    with pytest.raises(WeightsError, match="t.safetensors"):
        load_weights(tmp_path / "t.safetensors")
    (tmp_path / "p.safetensors").write_bytes(b"\x80\x04\x95 a pickle, not safetensors")
    with pytest.raises(WeightsError, match="p.safetensors"):
        load_weights(tmp_path / "p.safetensors")
    with pytest.raises(WeightsError, match="not found"):
        load_weights(tmp_path / "missing.safetensors")


def test_shipped_weights_load_offline():
    model = load_model(device="cpu")
    assert not model.training
    n_params = sum(p.numel() for p in model.parameters())
    assert 1e6 < n_params < 10e6
    assert 0 < model.config.vividness <= 1
    with torch.no_grad():
        ab, spread = predict(model, torch.full((1, 1, 64, 64), 50.0))
    assert torch.isfinite(ab).all() and torch.isfinite(spread).all() and float(spread.min()) >= 0


def test_select_device():
    assert select_device("cpu").type == "cpu"
    assert select_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ColorcubeError, match="device"):
        select_device("nonsense")
    if not torch.cuda.is_available():
        with pytest.raises(ColorcubeError, match="no CUDA"):
            select_device("cuda")


def test_config_json_round_trip():
    cfg = ModelConfig(width=16, vividness=0.42)
    assert ModelConfig.from_json(cfg.to_json()) == cfg
    # keys of older layouts (the quantile heads' levels) are ignored, not an error
    old = cfg.to_json()[:-1] + ', "quantiles": [0.05, 0.95]}'
    assert ModelConfig.from_json(old) == cfg


@pytest.mark.parametrize("fused", [True, False])
def test_conv_relu_equals_the_convolution_then_relu(monkeypatch, fused):
    """The folded model's ConvReLU layers compute exactly conv then ReLU, fused (oneDNN post-op, bf16 CPU
    inference); without bf16 kernels (fused operator unavailable) they fall back and still run."""
    import torch.nn.functional as F

    from colorcube.network import model as model_module
    from colorcube.network.model import ConvReLU

    if not fused:
        monkeypatch.setattr(model_module, "_fused_bf16_conv", lambda: None)
    elif model_module._fused_bf16_conv() is None:
        pytest.skip("this CPU has no oneDNN bfloat16 convolution kernels")
    g = torch.Generator().manual_seed(5)
    conv = torch.nn.Conv2d(16, 24, 3, stride=2, padding=2, dilation=2)
    layer = ConvReLU(16, 24, 3, stride=2, padding=2, dilation=2)
    layer.load_state_dict(conv.state_dict())
    layer, conv = layer.to(torch.bfloat16), conv.to(torch.bfloat16)
    x = torch.randn(3, 16, 20, 28, generator=g).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        got, expect = layer(x), F.relu(conv(x))
    assert torch.equal(got, expect) and (got >= 0).all() and (got > 0).any()
    with torch.enable_grad():  # training: the plain path, gradients flow
        y = layer.float()(x.float().requires_grad_())
        y.sum().backward()
    assert layer.weight.grad is not None
