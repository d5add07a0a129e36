"""Weight files: the shipped weights, loading and saving safetensors, warm starts, the device.

A :class:`~colorcube.network.model.ColorNet` comes out of a file through
:func:`load_weights` (checked against the network's layout, BatchNorm folded
into the convolutions, hashed so calibrations can name the model they belong
to, moved to the device :func:`select_device` picks) and goes into one through
:func:`save_weights` (fp16 tensors and the config as metadata, no pickle).
:func:`load_model` loads the weights shipped in the package;
:func:`init_from` warm-starts training from an older layout's file.
"""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..errors import ColorcubeError, OptionError, WeightsError
from ..inputs.images import file_hash
from .model import ColorNet, ConvReLU, ModelConfig
from .model_v3 import ColorNetV3

__all__ = [
    "DEFAULT_WEIGHTS",
    "build_network",
    "default_weights_path",
    "fold_batchnorm",
    "init_from",
    "load_model",
    "load_weights",
    "save_weights",
    "select_device",
]

DEFAULT_WEIGHTS = "colorcube-v3.safetensors"


def select_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; otherwise the named device."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise OptionError(f"device={device!r} is not a torch device; use 'auto', 'cpu' or 'cuda'") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ColorcubeError("device='cuda' was asked for but no CUDA GPU is available; use device='cpu'")
    return dev


def build_network(config: ModelConfig) -> ColorNet | ColorNetV3:
    """A freshly initialised network of ``config.arch`` ("v2": :class:`colorcube.network.model.ColorNet`,
    "v3": :class:`colorcube.network.model_v3.ColorNetV3`)."""
    networks = {"v2": ColorNet, "v3": ColorNetV3}
    if config.arch not in networks:
        raise WeightsError(f"arch={config.arch!r}: this colorcube knows {sorted(networks)}; upgrade colorcube")
    return networks[config.arch](config)


def fold_batchnorm(model: ColorNet, *, inplace: bool = False) -> ColorNet:
    """Inference copy of ``model`` (``model`` itself with ``inplace``) with each BatchNorm
    folded into the convolution before it.

    Saves a pass over every feature map; outputs agree with the unfolded eval
    model to float rounding (about 1e-6 relative). A convolution followed by a ReLU
    becomes a :class:`~colorcube.network.model.ConvReLU` (the same numbers, one pass fewer).
    """
    folded = (model if inplace else copy.deepcopy(model)).eval()
    for module in folded.modules():
        if isinstance(module, nn.Sequential):
            for i in range(len(module) - 1):
                conv, bn = module[i], module[i + 1]
                if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                    module[i], module[i + 1] = fuse_conv_bn_eval(conv, bn), nn.Identity()
                    if i + 2 < len(module) and isinstance(module[i + 2], nn.ReLU):
                        module[i].__class__ = ConvReLU  # the ReLU inside the convolution
                        module[i + 2] = nn.Identity()
    return folded


def save_weights(model: ColorNet, path: str | Path, *, half: bool = True, extra: dict | None = None) -> None:
    """Write the model's weights and config as a safetensors file (no pickle)."""
    tensors = {k: (v.half() if half and v.is_floating_point() else v).contiguous().cpu()
               for k, v in model.state_dict().items()}
    meta = {"config": model.config.to_json(), **{k: str(v) for k, v in (extra or {}).items()}}
    save_file(tensors, str(path), metadata=meta)


def load_weights(path: str | Path, *, device: str | torch.device = "cpu") -> ColorNet:
    """Load a safetensors file written by :func:`save_weights` into an eval-mode model."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 (a safetensors file, not a dict)
        config = ModelConfig.from_json(meta["config"])
    except (SafetensorError, KeyError, ValueError, TypeError, OSError) as exc:
        raise WeightsError(f"{path}: not a valid colorcube weights file ({exc}); reinstall or retrain") from exc
    model = build_network(config)
    state = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise WeightsError(f"{path}: weights do not fit the network ({str(exc).splitlines()[0]})") from exc
    model = fold_batchnorm(model, inplace=True)  # a fresh model: no copy to pay for
    model.weights_hash = file_hash(path)
    model.weights_name = path.name
    # channels-last is the layout oneDNN's fast (AMX / AVX-512) convolutions want
    return model.to(select_device(device)).to(memory_format=torch.channels_last)


def init_from(model: ColorNet, path: str | Path) -> list:
    """Warm-start ``model`` from a weights file of an earlier, smaller layout.

    Tensors of equal shape are copied. The stem's first convolution copies the
    lightness channel and leaves the hint channels at zero, and a bin head
    with extra rows (an older layout's quantile outputs) copies its bin rows, so
    the warm-started network computes what the old one did until it trains.
    Layers the file lacks (attention, error head) keep their initialisation.

    Returns
    -------
    list of str, the names of the parameters that were not copied
    """
    try:
        with safe_open(str(path), framework="pt") as fh:
            old = {k: fh.get_tensor(k).float() for k in fh.keys()}  # noqa: SIM118 (a safetensors file)
    except (SafetensorError, OSError) as exc:
        raise WeightsError(f"{path}: cannot read weights to start from ({exc})") from exc
    state, fresh = model.state_dict(), []
    with torch.no_grad():
        for name, t in state.items():
            src = old.get(name)
            if src is not None and src.shape == t.shape:
                t.copy_(src)
            elif src is not None and name == "stem.0.0.weight" and src.shape[1] == 1:
                t.zero_()
                t[:, :1].copy_(src)
            elif src is not None and name.startswith("head.") and src.shape[0] > t.shape[0]:
                t.copy_(src[: t.shape[0]])
            else:
                fresh.append(name)
    return fresh


def default_weights_path() -> Path:
    """Path of the weights shipped inside the package."""
    return Path(str(resources.files("colorcube") / "weights" / DEFAULT_WEIGHTS))


def load_model(*, device: str | torch.device = "auto") -> ColorNet:
    """Load the shipped colorizer from package data (never from the network).

    Parameters
    ----------
    device : {"auto", "cpu", "cuda"} or torch.device

    Returns
    -------
    ColorNet in eval mode, with ``weights_hash`` (sha256) and ``weights_name``.
    """
    return load_weights(default_weights_path(), device=device)


