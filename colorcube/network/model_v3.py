"""The v3 colorizer network: an ImageNet-pretrained EfficientNet-Lite0 encoder and a U-Net decoder.

Same inputs and outputs as :class:`colorcube.network.model.ColorNet`, so the decoding,
the working stage and calibration serve both: lightness (B, 1, H, W) in
[0, 100] with H, W multiples of 16, optional hints (B, 3, H, W); out
``(logits, scale)`` at 1/4 resolution, (B, Q, H/4, W/4) (a, b)-bin logits and
(B, 3, H/4, W/4) the error head's R, G, B |error| quantile.

* Encoder: :class:`colorcube.network.encoder.LiteEncoder` on the gray input, taps at
  1/4, 1/8, 1/16, 1/32 and the pooled 1280-d scene vector.
* Decoder: from 1/32 up to 1/4, each level a 2x upsampling, the encoder tap of
  that level concatenated, two 3x3 conv + BN + ReLU; the pooled scene vector
  is projected and broadcast at 1/32.
* Hints: a bias-free convolution branch over (a, b, mask) adds into the decoder
  at 1/16, 1/8 and 1/4 through zero-initialised projections. Bias-free and
  ReLU only: an empty mask gives exactly zero, so a photo without hints is
  colorized as if the branch were absent (which :meth:`ColorNetV3.forward` skips).
* Error head: as in v2, from the last decoder level (gradients stopped) and the
  hint mask; fitted after the colour network on photos it did not train on.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .encoder import HEAD_CHANNELS, TAPS, LiteEncoder
from .model import HINT_CHANNELS, OUT_STRIDE, ColourNetwork, ModelConfig, ab_bins, bin_rgb_table, error_head

__all__ = ["DECODER", "ENCODER_STRIDE", "ColorNetV3", "encoder_input"]

ENCODER_STRIDE = 32
#: decoder channels at 1/32, 1/16, 1/8, 1/4
DECODER = (256, 128, 96, 64)
_HINT_WIDTH = (32, 64, 96)  # the hint branch at 1/4, 1/8, 1/16


def encoder_input(lightness: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) L in [0, 100] -> the encoder's ImageNet input scale, (v * 255 - 127) / 128 for v = L / 100."""
    return lightness.float() * (2.55 / 128.0) - 127.0 / 128.0


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class HintBranch(nn.Module):
    """(B, 3, H, W) hint maps -> additive features at 1/4, 1/8 and 1/16 (zero for an empty mask)."""

    def __init__(self, out_channels: tuple):
        super().__init__()
        c4, c8, c16 = _HINT_WIDTH
        self.to4 = nn.Sequential(nn.Conv2d(HINT_CHANNELS, c4, 4, stride=4, bias=False), nn.ReLU(inplace=True),
                                 nn.Conv2d(c4, c4, 3, padding=1, bias=False), nn.ReLU(inplace=True))
        self.to8 = nn.Sequential(nn.Conv2d(c4, c8, 3, stride=2, padding=1, bias=False), nn.ReLU(inplace=True))
        self.to16 = nn.Sequential(nn.Conv2d(c8, c16, 3, stride=2, padding=1, bias=False), nn.ReLU(inplace=True))
        self.out = nn.ModuleList(nn.Conv2d(c, o, 1, bias=False) for c, o in zip(_HINT_WIDTH, out_channels))
        for proj in self.out:
            nn.init.zeros_(proj.weight)

    def forward(self, hints: torch.Tensor) -> list:
        h4 = self.to4(hints)
        h8 = self.to8(h4)
        h16 = self.to16(h8)
        return [proj(h) for proj, h in zip(self.out, (h4, h8, h16))]


class ColorNetV3(ColourNetwork):
    """EfficientNet-Lite0 encoder + U-Net decoder over lightness and hints (module docstring)."""

    embedding_name = "dec32"  # the scene's first decoder level, 1/32
    embedding_stride = ENCODER_STRIDE
    embedding_dim = DECODER[0]

    def __init__(self, config: ModelConfig = ModelConfig(arch="v3")):
        super().__init__()
        self.config = config
        self.register_buffer("bins", ab_bins(config.bin_step), persistent=False)
        self.register_buffer("rgb_table", bin_rgb_table(self.bins), persistent=False)
        d32, d16, d8, d4 = DECODER
        self.encoder = LiteEncoder(in_channels=1)
        self.context = nn.Sequential(nn.Linear(HEAD_CHANNELS, d32), nn.ReLU(inplace=True))
        self.dec32 = _block(TAPS["f32"][1] + d32, d32)
        self.dec16 = _block(d32 + TAPS["f16"][1], d16)
        self.dec8 = _block(d16 + TAPS["f8"][1], d8)
        self.dec4 = _block(d8 + TAPS["f4"][1], d4)
        self.hints = HintBranch((d4, d8, d16))
        self.head = nn.Conv2d(d4, self.bins.shape[0], 1)
        self.error = error_head(d4)

    def decode(self, taps: dict, hint_maps: torch.Tensor | None = None) -> torch.Tensor:
        """Decoder features (B, 64, H/4, W/4) from the encoder's taps (and hints, padded like the input)."""
        f32 = taps["f32"]
        ctx = self.context(taps["pooled"].to(f32.dtype))[:, :, None, None].expand(-1, -1, *f32.shape[-2:])
        y = self.dec32(torch.cat([f32, ctx], dim=1))
        extra = self.hints(hint_maps.to(y.dtype)) if hint_maps is not None else (None, None, None)
        y = self.dec16(torch.cat([F.interpolate(y, scale_factor=2.0, mode="bilinear"), taps["f16"]], dim=1))
        y = y if extra[2] is None else y + extra[2]
        y = self.dec8(torch.cat([F.interpolate(y, scale_factor=2.0, mode="bilinear"), taps["f8"]], dim=1))
        y = y if extra[1] is None else y + extra[1]
        y = self.dec4(torch.cat([F.interpolate(y, scale_factor=2.0, mode="bilinear"), taps["f4"]], dim=1))
        return y if extra[0] is None else y + extra[0]

    def heads(self, y: torch.Tensor, mask4: torch.Tensor):
        """(logits, error scale) from decoder features ``y`` and the (B, 1, h, w) hint mask at 1/4."""
        err = self.error(torch.cat([y.detach(), mask4.to(y.dtype)], dim=1)).float()
        if self.training:
            return self.head(y), F.softplus(err)
        # image by image: softplus rounds the elements after the last full SIMD vector on a scalar path
        return self.head(y), torch.cat([F.softplus(e) for e in err.split(1)])

    def forward(self, lightness: torch.Tensor, hints: torch.Tensor | None = None):
        dtype = self.head.weight.dtype
        h, w = lightness.shape[-2:]
        # the encoder halves five times: pad (replicating the border) to a multiple of 32, crop after
        ph, pw = (-h) % ENCODER_STRIDE, (-w) % ENCODER_STRIDE
        x = encoder_input(lightness)
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
            hints = F.pad(hints, (0, pw, 0, ph)) if hints is not None else None
        x = x.to(dtype).contiguous(memory_format=torch.channels_last)
        if hints is not None and not bool(hints[:, -1].any()):
            hints = None  # an empty mask adds exactly zero: skip the branch
        y = self.decode(self.encoder(x), hints)
        if hints is None:
            mask4 = y.new_zeros((y.shape[0], 1, *y.shape[-2:]))
        else:
            mask4 = F.max_pool2d(hints[:, -1:].to(y.dtype), OUT_STRIDE)
        logits, err = self.heads(y, mask4)
        return logits[..., : h // OUT_STRIDE, : w // OUT_STRIDE], err[..., : h // OUT_STRIDE, : w // OUT_STRIDE]
