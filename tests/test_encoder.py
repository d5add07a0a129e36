import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from colorcube.errors import ColorcubeError
from colorcube.network.encoder import LiteEncoder, SameConv, pretrained_state, pretrained_weights_path


def _imagenet_input(gray: np.ndarray) -> torch.Tensor:
    """(224, 224) gray in [0, 1] -> the package's input scale, (v * 255 - 127) / 128."""
    return torch.from_numpy((gray.astype(np.float32) * 255 - 127) / 128)[None, None]


@pytest.fixture(scope="module")
def package_model():
    efficientnet = pytest.importorskip("efficientnet_lite_pytorch")  # in the test extra: never skipped in CI
    # image_size=None: "same" padding from each input's own size (the default fixes it for 224 x 224)
    return efficientnet.EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(pretrained_weights_path()),
                                                     image_size=None).eval()


def test_encoder_reproduces_the_packages_imagenet_logits(package_model):
    enc = LiteEncoder(in_channels=3, classes=1000).eval()
    enc.load_state_dict(pretrained_state(in_channels=3, classifier=True))
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = enc.classify(x), package_model(x)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
    # an odd size exercises the asymmetric "same" padding at every stride-2 layer
    x = torch.randn(1, 3, 97, 131, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(enc.classify(x), package_model(x), rtol=1e-4, atol=1e-4)


def test_gray_stem_computes_the_rgb_network_on_a_gray_photo_and_sees_a_cat(package_model):
    gray = np.asarray(Image.fromarray(data.chelsea()).convert("L").resize((224, 224)), np.float32) / 255
    x = _imagenet_input(gray)
    enc = LiteEncoder(in_channels=1, classes=1000).eval()
    enc.load_state_dict(pretrained_state(in_channels=1, classifier=True))
    with torch.no_grad():
        logits = enc.classify(x)
        torch.testing.assert_close(logits, package_model(x.expand(1, 3, -1, -1)), rtol=1e-4, atol=1e-4)
    assert int(logits.argmax()) in range(281, 286)  # ImageNet's domestic cat classes


def test_taps_have_the_documented_shapes():
    enc = LiteEncoder(in_channels=1).eval()
    with torch.no_grad():
        taps = enc(torch.zeros(2, 1, 64, 96))
    assert {k: tuple(v.shape) for k, v in taps.items()} == {
        "f4": (2, 24, 16, 24), "f8": (2, 40, 8, 12), "f16": (2, 112, 4, 6), "f32": (2, 320, 2, 3), "pooled": (2, 1280)}
    with pytest.raises(ColorcubeError, match="classes=0"):
        enc.classify(torch.zeros(1, 1, 32, 32))


def test_same_padding_at_stride_two_pads_right_and_bottom_more():
    conv = SameConv(1, 1, 3, stride=2)
    torch.nn.init.ones_(conv.weight)
    out = conv(torch.ones(1, 1, 4, 4))
    # TensorFlow "same": 1 pixel of padding, all of it after -> the last row and column see zeros
    torch.testing.assert_close(out[0, 0], torch.tensor([[9.0, 6.0], [6.0, 4.0]]))


def test_missing_weights_file_is_named(tmp_path):
    with pytest.raises(ColorcubeError, match="nothing.pth"):
        pretrained_state(path=tmp_path / "nothing.pth")
