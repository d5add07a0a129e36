"""The colorizer network and the decoding of its outputs (weight files: :mod:`colorcube.weights`).

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

import copy
import dataclasses
import functools
import json
import weakref

import torch
from torch import nn
from torch.nn import functional as F

from .color import lab_to_rgb

__all__ = [
    "AB_NORM",
    "HINT_CHANNELS",
    "OUT_STRIDE",
    "SCALES",
    "STRIDE",
    "ColorNet",
    "ColourNetwork",
    "ConvReLU",
    "ModelConfig",
    "ab_bins",
    "annealed_mean",
    "bin_rgb_table",
    "error_head",
    "decode_learned",
    "hint_maps",
    "predict",
]
#: band-scale kinds :func:`predict` can decode
SCALES = ("learned", "spread")
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
        :class:`colorcube.model_v3.ColorNetV3` (ImageNet-pretrained encoder).
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
    """A convolution whose ReLU is applied inside it (the layers :func:`colorcube.weights.fold_batchnorm`
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
    (B, C, h, w) output, mean-pooled, is the image embedding of :mod:`colorcube.shift`),
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
    of 16; ``hints`` (B, 3, H, W) float32 or None, see :func:`hint_maps`.
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


def hint_maps(shape: tuple, points=(), *, device="cpu") -> torch.Tensor:
    """Network hint input from (y, x, a, b) points on a (H, W) grid.

    Parameters
    ----------
    shape : (H, W) of the network input
    points : iterable of (y, x, a, b) with integer pixel positions and CIE a*, b*

    Returns
    -------
    hints : (1, 3, H, W) float32: a / 110, b / 110 and a 0/1 mask
    """
    out = torch.zeros((1, HINT_CHANNELS, *shape), device=device)
    for y, x, a, b in points:
        out[0, :, int(y), int(x)] = torch.tensor([a / AB_NORM, b / AB_NORM, 1.0])
    return out


def annealed_mean(logits: torch.Tensor, bins: torch.Tensor, vividness: float) -> torch.Tensor:
    """Annealed mean of the bin distribution: (B, Q, h, w) logits -> (B, 2, h, w) ab."""
    p = torch.softmax(logits.float() / vividness, dim=1)
    return torch.einsum("bqhw,qc->bchw", p, bins)


LUT_STEP = 2.5  # Lab L spacing of the bin -> sRGB lookup table


def bin_rgb_table(bins: torch.Tensor) -> torch.Tensor:
    """sRGB of every bin at L = 0, 2.5, ..., 100: (Q, n_levels * 3), columns level-major."""
    levels = torch.arange(0.0, 100.0 + LUT_STEP / 2, LUT_STEP)
    lab = torch.stack([levels[:, None].expand(-1, len(bins)),
                       bins[None, :, 0].expand(len(levels), -1), bins[None, :, 1].expand(len(levels), -1)])
    rgb = lab_to_rgb(lab)  # (3, n_levels, Q)
    return rgb.permute(2, 1, 0).reshape(len(bins), -1).contiguous()


def _softmax_(z: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dim, in place (z is overwritten and returned)."""
    z.sub_(z.amax(dim=-1, keepdim=True)).exp_()
    return z.div_(z.sum(dim=-1, keepdim=True))


_LEVEL_BLOCK = 8


def _moments_at_lightness(p: torch.Tensor, table: torch.Tensor, lightness: torch.Tensor):
    """First and second sRGB moments of bin distributions at each pixel's lightness.

    Parameters
    ----------
    p : (N, Q) float32, bin probabilities of N pixels
    table : (Q, n_levels * 3) float32, :func:`bin_rgb_table`
    lightness : (N,) float32 in [0, 100]

    Returns
    -------
    m1, m2 : (N, 3) float32, linearly interpolated in L between the two table levels
        around each pixel. Pixels are grouped in blocks of 8 levels, so each group
        multiplies by only its 9 levels' columns (and their squares): 1/4 of the
        FLOPs of projecting every pixel on all 41 levels, in 6 matrix products.
    """
    n_levels = table.shape[1] // 3
    pos = (lightness / LUT_STEP).clamp(0, n_levels - 1)
    i0 = pos.floor().long().clamp(max=n_levels - 2)
    t = (pos - i0)[:, None]
    m1 = torch.empty(p.shape[0], 3, dtype=p.dtype, device=p.device)
    m2 = torch.empty_like(m1)
    levels = table.reshape(table.shape[0], n_levels, 3)
    block = i0 // _LEVEL_BLOCK
    order = torch.argsort(block)
    start = 0
    for b, count in enumerate(torch.bincount(block).tolist()):
        if count == 0:
            continue
        idx = order[start : start + count]
        start += count
        lo = b * _LEVEL_BLOCK
        cols = levels[:, lo : lo + _LEVEL_BLOCK + 1]  # the block's levels and the next one
        n = cols.shape[1]
        r = (p[idx] @ torch.cat([cols, cols * cols], dim=1).reshape(len(cols), -1)).reshape(count, 2, n, 3)
        k = (i0[idx] - lo)[:, None, None, None].expand(-1, 2, 1, 3)
        below, above = r.gather(2, k)[:, :, 0], r.gather(2, k + 1)[:, :, 0]  # (count, 2, 3)
        both = below * (1 - t[idx, None]) + above * t[idx, None]
        m1[idx], m2[idx] = both[:, 0], both[:, 1]
    return m1, m2


def predict(model: ColorNet, lightness: torch.Tensor, hints: torch.Tensor | None = None, *,
            vividness: float | None = None, dtype: torch.dtype = torch.float32, scale: str = "learned",
            reweight=None):
    """Run the network and decode its outputs.

    Parameters
    ----------
    model : ColorNet
    lightness : (B, 1, H, W) float32 in [0, 100], H and W multiples of 16
    hints : (B, 3, H, W) float32 or None, see :func:`hint_maps`; None = no hints
    vividness : float in (0, 2], optional
        Annealed-mean temperature; defaults to the model's own.
    dtype : torch.float32 or torch.bfloat16, the network's arithmetic (a cached
        copy of the model in that dtype; fp32 accumulation inside each convolution);
        the decoding after it is always float32
    scale : {"learned", "spread"}, the band scale to return (module docstring)
    reweight : callable, optional; ``reweight(probs, light)`` with ``probs`` (N, Q) the bin
        probabilities of the N = B * H/4 * W/4 output pixels (bins last) and ``light`` (N,)
        their mean L, returns (N, Q) float32 offsets added to the bin logits before
        decoding (e.g. :func:`colorcube.reference.reweighter`); None: no change

    Returns
    -------
    ab : (B, 2, H/4, W/4) float32 chroma point estimate
    scale : (B, 3, H/4, W/4) float32 >= 0, per-channel R, G, B band scale in [0, 1] units
    """
    if scale not in SCALES:
        raise ValueError(f"scale={scale!r}: use one of {SCALES}")
    t = model.config.vividness if vividness is None else float(vividness)
    device = lightness.device.type
    logits, err = _in_dtype(model, dtype)(lightness, hints)
    with torch.autocast(device, enabled=False):
        # bins last and contiguous: the softmaxes and bin sums become row reductions and GEMMs
        b, q, h, w = logits.shape
        if scale == "learned" and reweight is None:
            return decode_learned(model, logits, err, vividness=t)
        z = logits.float().permute(0, 2, 3, 1).reshape(-1, q)
        light4 = F.avg_pool2d(lightness.float(), OUT_STRIDE).reshape(-1)
        if reweight is not None:
            z = z + reweight(torch.softmax(z, dim=1), light4).float()
        # softmaxes in place: fresh multi-MB temporaries cost more in page faults than the arithmetic;
        # with the learned scale z is the reweighted copy no one reads again, so it is scaled in place
        ab = _softmax_(z.mul_(1.0 / t) if scale == "learned" else z * (1.0 / t)) @ model.bins
        if scale == "learned":
            return ab.reshape(b, h, w, 2).permute(0, 3, 1, 2), err.float()
        m1, m2 = _moments_at_lightness(_softmax_(z), model.rgb_table, light4)
        spread = (m2 - m1 * m1).clamp_min(0).sqrt()
    return ab.reshape(b, h, w, 2).permute(0, 3, 1, 2), spread.reshape(b, h, w, 3).permute(0, 3, 1, 2)


def decode_learned(model: ColorNet, logits: torch.Tensor, err: torch.Tensor, *, vividness: float | None = None):
    """:func:`predict`'s decoding with the learned scale and no reweighting, from the network's outputs.

    Image by image, so an image decodes as it does alone whatever batch it ran in; the
    archive runs it apart from the network (in its finishing threads).

    Parameters
    ----------
    logits : (B, Q, h, w) bin logits (any float dtype); err : (B, 3, h, w) error scale
    vividness : annealed-mean temperature, default the model's own

    Returns
    -------
    ab : (B, 2, h, w) float32; scale : (B, 3, h, w) float32 (``err`` as float32)
    """
    t = model.config.vividness if vividness is None else float(vividness)
    b, q, h, w = logits.shape
    with torch.autocast(logits.device.type, enabled=False):
        rows = logits.permute(0, 2, 3, 1).reshape(b, -1, q)
        ab = torch.stack([_annealed_rows(rows[i], model.bins, t) for i in range(b)])
        return ab.reshape(b, h, w, 2).permute(0, 3, 1, 2), err.float()


_DECODE_ROWS = 2048  # 2048 pixels x 229 bins x 4 bytes: each pass stays in a 2-MB cache


def _annealed_rows(logits: torch.Tensor, bins: torch.Tensor, t: float) -> torch.Tensor:
    """Annealed mean of (N, Q) logits (any float dtype) -> (N, 2) float32, in row blocks.

    The same arithmetic as ``softmax(logits.float() / t) @ bins`` row for row (bit for bit,
    tested), a third faster on the CPU for a batch of eight photos: the five passes of the
    softmax over each block stay in cache. :func:`predict` calls it image by image, so that
    the blocks of an image in a batch are the blocks it has alone.
    """
    out = torch.empty(logits.shape[0], bins.shape[1], device=logits.device)
    for start in range(0, logits.shape[0], _DECODE_ROWS):
        z = logits[start : start + _DECODE_ROWS].float()
        if z.data_ptr() == logits.data_ptr() + start * logits.stride(0) * logits.element_size():
            z = z.clone()  # float32 logits: .float() gave a view, and the softmax works in place
        torch.matmul(_softmax_(z.mul_(1.0 / t)), bins, out=out[start : start + _DECODE_ROWS])
    return out


_LOW_PRECISION: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _in_dtype(model: ColorNet, dtype: torch.dtype) -> ColorNet:
    """``model`` itself for float32, else a copy with weights in ``dtype``, made once per model.

    Converting once instead of autocasting saves casting every weight on every
    call. The copy is not refreshed if ``model``'s weights change in place afterwards.
    """
    if dtype == torch.float32:
        return model
    low = _LOW_PRECISION.get(model)
    if low is None or getattr(low, "colorcube_dtype", None) != dtype:
        low = copy.deepcopy(model).to(dtype)
        low.colorcube_dtype = dtype
        _LOW_PRECISION[model] = low
    return low

