"""The colorizer network and the decoding of its outputs (weight files: :mod:`colorcube.network.weights`).

The network sees lightness L at a working resolution, plus optional user
hints (an (a, b) map and a mask, Zhang et al. 2017), and predicts, at 1/4 of
that resolution, a distribution over quantized (a, b) chroma bins and a
per-pixel R, G, B error scale. Decoding gives

* the point estimate: the distribution's annealed mean (temperature =
  ``vividness``; lower is more saturated), and
* the band scale, one of two kinds (``scale=``):

  - ``"learned"``: the error head, trained (on photos the colour head did not
    train on) to predict the 90 % quantile of each channel's |error|;
  - ``"spread"``: the standard deviation of each of R, G, B under the
    distribution, each bin mapped to sRGB at the pixel's lightness.

  Conformal calibration turns either scale into guaranteed intervals.
"""

from __future__ import annotations

import dataclasses
import functools
import json

import torch
from torch import nn
from torch.nn import functional as F

from ..color import lab_to_rgb

__all__ = [
    "AB_NORM",
    "ColorNet",
    "ColourNetwork",
    "ConvReLU",
    "HINT_CHANNELS",
    "ModelConfig",
    "OUT_STRIDE",
    "STRIDE",
    "ab_bins",
    "bin_rgb_table",
    "error_head",
    "hint_channels",
]
HINT_CHANNELS = 3  # a/110, b/110, mask
AB_NORM = 110.0  # hint chroma is divided by this (the bins span |a|, |b| <= 110)
STRIDE = 16  # total downsampling of the trunk; inputs are padded to a multiple
OUT_STRIDE = 4  # the heads predict at 1/4 of the working resolution


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters that fix the network's shape and decoding.

    Attributes
    ----------
    width : int
        Channels at 1/4 resolution; deeper levels use 2x and 4x this.
    bin_step : float
        Spacing of the (a, b) chroma grid, in Lab units.
    vividness : float
        Default annealed-mean temperature in (0, 1]; 1 is the plain mean.
    error_quantile : float
        The quantile of |error| the error head is trained to predict.
    attention_heads : int
        Heads of the self-attention block at 1/16 resolution (0: none).
    arch : {"v2", "v3"}
        The network: "v2" :class:`ColorNet` (trained from scratch), "v3"
        :class:`colorcube.network.model_v3.ColorNetV3` (ImageNet-pretrained encoder).
        Files written before v3 carry no arch and read as "v2".
    """

    width: int = 64
    bin_step: float = 10.0
    vividness: float = 0.5
    error_quantile: float = 0.9
    attention_heads: int = 4
    arch: str = "v2"

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        data = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def ab_bins(step: float = 10.0) -> torch.Tensor:
    """Centres of the (a, b) bins that are inside the sRGB gamut at some L.

    Returns
    -------
    bins : (Q, 2) float32 tensor of (a, b) centres; Q = 262 for step 10
    """
    half = int(110 // step)
    axis = torch.arange(-half, half + 1, dtype=torch.float32) * step
    a, b = torch.meshgrid(axis, axis, indexing="ij")
    ab = torch.stack([a.reshape(-1), b.reshape(-1)], dim=1)  # (G, 2)
    lightness = torch.linspace(5.0, 95.0, 46)
    lab = torch.cat(
        [
            lightness[:, None, None].expand(-1, ab.shape[0], 1),
            ab[None].expand(lightness.shape[0], -1, -1),
        ],
        dim=2,
    )  # (nL, G, 3)
    rgb = lab_to_rgb(lab.permute(2, 0, 1), clip=False)  # (3, nL, G)
    inside = ((rgb >= -0.02) & (rgb <= 1.02)).all(dim=0).any(dim=0)
    return ab[inside].contiguous()


class ConvReLU(nn.Conv2d):
    """A convolution whose ReLU is applied inside it (the layers :func:`colorcube.network.weights.fold_batchnorm`
    leaves as convolution then ReLU).

    A bfloat16 CPU inference call runs as one oneDNN convolution with a ReLU post-op: the
    same numbers as the convolution then a ReLU (rounding to bfloat16 keeps signs and
    zero), without a pass over the feature map. Elsewhere (training, float32, GPU, oneDNN
    off or without bfloat16 kernels on this CPU, a torch without that operator) it is the
    convolution then ``relu``. The parameters keep their names, so a state dict reads the same.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.dtype == torch.bfloat16 and x.device.type == "cpu" and not torch.is_grad_enabled()
                and torch.backends.mkldnn.enabled and _fused_bf16_conv() is not None):
            return _fused_bf16_conv()(x, self.weight, self.bias, list(self.padding), list(self.stride),
                                      list(self.dilation), self.groups, "relu", [None], "")
        return F.relu(self._conv_forward(x, self.weight, self.bias))


@functools.cache
def _fused_bf16_conv():
    """oneDNN's convolution with a post-op, where this torch and CPU run it in bfloat16 (else None:
    it raises on CPUs without AVX-512 BF16 / AVX-NE-CONVERT, where a plain convolution still runs)."""
    mkldnn = torch.ops.mkldnn
    if not (torch.backends.mkldnn.is_available() and hasattr(mkldnn, "_is_mkldnn_bf16_supported")
            and mkldnn._is_mkldnn_bf16_supported()):
        return None
    return getattr(mkldnn, "_convolution_pointwise", None)


def _conv(cin: int, cout: int, *, k: int = 3, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    pad = dilation * (k // 2)
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride=stride, padding=pad, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class _Residual(nn.Module):
    def __init__(self, ch: int, dilation: int = 1):
        super().__init__()
        self.a = _conv(ch, ch, dilation=dilation)
        self.b = nn.Sequential(
            nn.Conv2d(ch, ch, 3, padding=dilation, dilation=dilation, bias=False),
            nn.BatchNorm2d(ch),
        )

    def forward(self, x):
        return F.relu(x + self.b(self.a(x)))


class _Attention(nn.Module):
    """Pre-normalised multi-head self-attention over all positions, as a residual.

    The output projection starts at zero, so a new block is the identity and a
    network warm-started from one without it computes the same function.
    """

    def __init__(self, ch: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(1, ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x):
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).transpose(-1, -2)
        y = F.scaled_dot_product_attention(qkv[:, 0], qkv[:, 1], qkv[:, 2])  # (b, heads, hw, d)
        return x + self.proj(y.transpose(-1, -2).reshape(b, c, h, w))


def error_head(channels: int) -> nn.Sequential:
    """The error head over ``channels`` decoder features and the hint mask: R, G, B |error| before softplus.

    It reads the decoder's features without sending gradients into them (the networks
    detach them): it is fitted after the colour network, on photos that network did not see.
    """
    head = nn.Sequential(nn.Conv2d(channels + 1, channels // 2, 3, padding=1), nn.ReLU(inplace=True),
                         nn.Conv2d(channels // 2, 3, 1))
    nn.init.constant_(head[-1].bias, -2.25)  # softplus(-2.25) = 0.1, a typical |error|
    return head


class ColourNetwork(nn.Module):
    """What the decoding and the archive weighting read from any colorcube network.

    Subclasses register the ``bins`` buffer and set ``embedding_name`` (the module whose
    (B, C, h, w) output, mean-pooled, is the image embedding of :mod:`colorcube.conformal.weighting`),
    ``embedding_stride`` (its downsampling relative to the network input) and
    ``embedding_dim`` (its C).
    """

    embedding_name = ""
    embedding_stride = 16

    @property
    def n_bins(self) -> int:
        return self.bins.shape[0]

    @property
    def embedding_layer(self) -> nn.Module:
        return getattr(self, self.embedding_name)


class ColorNet(ColourNetwork):
    """Encoder-decoder over lightness and hints, with global scene context.

    Scene context comes from two places at 1/16 resolution: self-attention
    between all positions, and a pooled per-image vector (indoor/outdoor, sky,
    skin...) that modulates every position.

    Inputs: ``lightness`` (B, 1, H, W) float32 in [0, 100], H and W multiples
    of 16; ``hints`` (B, 3, H, W) float32 or None, see :func:`hint_channels`.
    Output ``(logits, scale)``: (B, Q, H/4, W/4) bin logits and (B, 3, H/4, W/4)
    the error head's R, G, B |error| quantile (>= 0, in [0, 1] units).
    """

    embedding_name = "attention"

    def __init__(self, config: ModelConfig = ModelConfig()):
        super().__init__()
        self.config = config
        w = config.width
        self.register_buffer("bins", ab_bins(config.bin_step), persistent=False)
        self.register_buffer("rgb_table", bin_rgb_table(self.bins), persistent=False)
        n_bins = self.bins.shape[0]
        self.stem = nn.Sequential(_conv(1 + HINT_CHANNELS, w // 2, stride=2), _conv(w // 2, w, stride=2),
                                  _conv(w, w))
        self.down8 = nn.Sequential(_conv(w, 2 * w, stride=2), _Residual(2 * w))
        self.down16 = nn.Sequential(
            _conv(2 * w, 4 * w, stride=2), _Residual(4 * w, 1), _Residual(4 * w, 2), _Residual(4 * w, 4)
        )
        self.attention = _Attention(4 * w, config.attention_heads) if config.attention_heads else nn.Identity()
        self.context = nn.Sequential(nn.Linear(4 * w, 4 * w), nn.ReLU(inplace=True), nn.Linear(4 * w, 8 * w))
        self.up8 = nn.Sequential(_conv(6 * w, 2 * w, k=1), _conv(2 * w, 2 * w))
        self.up4 = nn.Sequential(_conv(3 * w, w, k=1), _conv(w, w))
        self.head = nn.Conv2d(w, n_bins, 1)
        self.error = error_head(w)

    @property
    def embedding_dim(self) -> int:
        return 4 * self.config.width

    def forward(self, lightness: torch.Tensor, hints: torch.Tensor | None = None):
        # normalise in float32, then run in the weights' dtype (a bfloat16 copy runs in bf16)
        dtype = self.head.weight.dtype
        x = lightness.float() / 50.0 - 1.0
        if hints is None:  # zero hint channels, made in the network's dtype and layout (no concatenation)
            b, _, hh, ww = x.shape
            lightness_channel = x.to(dtype)
            x = torch.empty((b, hh, ww, 1 + HINT_CHANNELS), dtype=dtype, device=x.device).permute(0, 3, 1, 2)
            x.zero_()[:, :1] = lightness_channel
            mask4 = x.new_zeros((b, 1, hh // OUT_STRIDE, ww // OUT_STRIDE)).contiguous(memory_format=torch.channels_last)
        else:
            x = torch.cat([x, hints.float()], dim=1).to(dtype).contiguous(memory_format=torch.channels_last)
            mask4 = F.max_pool2d(x[:, -1:], OUT_STRIDE)
        f4 = self.stem(x)
        f8 = self.down8(f4)
        f16 = self.attention(self.down16(f8))
        scale, shift = self.context(f16.mean(dim=(2, 3))).chunk(2, dim=1)
        f16 = f16 * (1 + scale[:, :, None, None]) + shift[:, :, None, None]
        y = F.interpolate(f16, size=f8.shape[-2:], mode="bilinear", align_corners=False)
        y = self.up8(torch.cat([y, f8], dim=1))
        y = F.interpolate(y, size=f4.shape[-2:], mode="bilinear", align_corners=False)
        y = self.up4(torch.cat([y, f4], dim=1))
        err = self.error(torch.cat([y.detach(), mask4], dim=1)).float()
        if self.training:
            return self.head(y), F.softplus(err)
        # image by image: softplus takes a scalar path for the elements after the last full vector,
        # so in a batch an image's values would round as they do alone only by luck of position
        return self.head(y), torch.cat([F.softplus(e) for e in err.split(1)])


def hint_channels(ab: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The network's hint input: (B, 2, H, W) CIE a*, b* and (B, H, W) 0/1 (or bool) mask ->
    (B, 3, H, W) float32 ``a / 110``, ``b / 110`` and the mask, zero where there is no hint.
    The one encoding of hints for the network, in inference and in training."""
    m = mask.to(torch.float32)
    return torch.cat([ab.to(torch.float32) * m[:, None] / AB_NORM, m[:, None]], dim=1)


LUT_STEP = 2.5  # Lab L spacing of the bin -> sRGB lookup table


def bin_rgb_table(bins: torch.Tensor) -> torch.Tensor:
    """sRGB of every bin at L = 0, 2.5, ..., 100: (Q, n_levels * 3), columns level-major."""
    levels = torch.arange(0.0, 100.0 + LUT_STEP / 2, LUT_STEP)
    lab = torch.stack([levels[:, None].expand(-1, len(bins)),
                       bins[None, :, 0].expand(len(levels), -1), bins[None, :, 1].expand(len(levels), -1)])
    rgb = lab_to_rgb(lab)  # (3, n_levels, Q)
    return rgb.permute(2, 1, 0).reshape(len(bins), -1).contiguous()


