"""Train the v3 colorizer (:class:`colorcube.network.model_v3.ColorNetV3`) on a folder of colour photos, on a CPU.

Three phases, each with its own wall-clock budget, resumable across interruptions:

1. **frozen** — the encoder starts from the ImageNet weights
   (:func:`colorcube.network.encoder.pretrained_state`) and stays fixed; its taps of a
   centre crop of every training photo are computed once (the feature cache),
   so each step trains only the decoder, hint branch and colour head.
2. **finetune** — the whole network end to end (the encoder at a lower
   learning rate, its BatchNorm statistics kept), on random scaled, flipped
   crops with brightness/contrast jitter; half of the gray inputs are degraded
   as archive scans (:func:`colorcube.inputs.degrade.degrade_batch`), the target
   staying the photo's colour.
3. **error** — the colour network frozen, the annealed-mean temperature chosen
   on the validation photos (:func:`colorcube.network.train.train_v2.choose_vividness`), the
   error head fitted with the pinball loss to the |error| on photos neither
   phase trained on (degraded inputs scored against the photo's colour at the
   degraded lightness, :func:`colorcube.inputs.degrade.reference_rgb`).

Colour loss (phases 1-2): cross-entropy of the bin logits against soft-encoded
truth (a, b), plus ``l1_weight`` x smooth-L1 of the distribution's mean (a, b)
/ 110 (the probe that motivated v3 found the regression term alone vivid). Random
true-colour hints (:func:`colorcube.network.train.trainset.random_hints`) in both phases. The
photos are split by source as :func:`colorcube.network.train.trainset.split_by_source` does.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from ...color import gray_to_lightness, luma, rgb_to_lab
from ...files import atomic_path
from ...inputs.degrade import degrade_batch, reference_rgb
from ..encoder import pretrained_state
from ..model import AB_NORM, OUT_STRIDE, ModelConfig
from ..model_v3 import ColorNetV3, encoder_input
from ..weights import init_from, save_weights, select_device
from .train_v2 import choose_vividness, evaluate_bank, point_estimate
from .trainset import (
    Bank,
    autocast,
    jitter,
    load_bank,
    lr_at,
    random_hints,
    sample_crops,
    training_split,
)

__all__ = ["PHASES", "V3Options", "colour_loss_v3", "train_v3"]

log = logging.getLogger(__name__)
PHASES = ("frozen", "finetune", "error", "done")


@dataclasses.dataclass
class V3Options:
    """Options of :func:`train_v3` (all have working defaults).

    Attributes
    ----------
    frozen_minutes, finetune_minutes, error_minutes : float, wall-clock budget of each phase
    frozen_batch, finetune_batch : int, photos per step
    lr : float, peak learning rate of the decoder (phase 1); ``finetune_lr`` in phase 2,
        where the encoder gets ``encoder_lr_factor`` x that
    l1_weight : float, weight of the smooth-L1 term of the colour loss
    degrade : float, share of phase-2 and phase-3 inputs degraded as archive scans
    init : path of v3 weights to start phase 1 from instead of the ImageNet encoder alone
    max_steps : int, steps per phase (tests); None: the budgets alone
    """

    frozen_minutes: float = 20.0
    finetune_minutes: float = 50.0
    error_minutes: float = 8.0
    frozen_batch: int = 32
    finetune_batch: int = 24
    crop: int = 128
    max_side: int = 256
    lr: float = 1e-3
    finetune_lr: float = 3e-4
    encoder_lr_factor: float = 0.3
    weight_decay: float = 0.01
    l1_weight: float = 10.0
    sigma: float = 5.0
    scale_range: tuple = (0.6, 1.3)
    brightness: float = 0.1
    contrast: float = 0.2
    degrade: float = 0.5
    hint_none: float = 0.5
    hint_p: float = 0.125
    val_fraction: float = 0.05
    error_split: float = 0.08
    seed: int = 0
    device: str = "auto"
    precision: str = "bfloat16"
    workers: int = 2
    init: str | None = None
    checkpoint_seconds: float = 120.0
    val_seconds: float = 360.0
    max_images: int | None = None
    max_steps: int | None = None


def colour_loss_v3(logits: torch.Tensor, ab: torch.Tensor, bins: torch.Tensor, *, sigma: float,
                   l1_weight: float) -> torch.Tensor:
    """Soft-encoded bin cross-entropy plus weighted smooth-L1 of the mean (a, b).

    Parameters
    ----------
    logits : (B, Q, h, w) bin logits at 1/4 resolution
    ab : (B, 2, 4h, 4w) truth CIE a*, b*
    bins : (Q, 2) bin centres
    """
    ab4 = F.avg_pool2d(ab, OUT_STRIDE).permute(0, 2, 3, 1).reshape(-1, 2)
    z = logits.float().permute(0, 2, 3, 1).reshape(-1, bins.shape[0])
    target = torch.softmax(-torch.cdist(ab4, bins) ** 2 / (2 * sigma**2), dim=1)
    logp = torch.log_softmax(z, dim=1)
    ce = -(target * logp).sum(dim=1).mean()
    mean = logp.exp() @ bins
    return ce + l1_weight * F.smooth_l1_loss(mean / AB_NORM, ab4 / AB_NORM, beta=0.05)


def _centre_crops(bank: Bank, idx: torch.Tensor, crop: int) -> torch.Tensor:
    """(n, 3, crop, crop) float32 centre crops, photos shorter than ``crop`` scaled up to it."""
    hw = bank.sizes[idx].float()
    side = bank.pixels.shape[-1]
    extent = torch.minimum(hw.min(dim=1).values, torch.full_like(hw[:, 0], float(crop)))
    theta = torch.zeros((len(idx), 2, 3), device=bank.pixels.device)
    theta[:, 0, 0] = extent / side
    theta[:, 1, 1] = extent / side
    theta[:, 0, 2] = hw[:, 1] / side - 1
    theta[:, 1, 2] = hw[:, 0] / side - 1
    grid = F.affine_grid(theta, (len(idx), 3, crop, crop), align_corners=False)
    return F.grid_sample(bank.pixels[idx].float() / 255.0, grid, mode="bilinear", align_corners=False).clamp(0, 1)


def _gray(rgb: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 1, H, W) 8-bit BT.601 gray in [0, 1], as inputs are made."""
    return (torch.round(luma(rgb) * 255.0) / 255.0)[:, None]


@torch.no_grad()
def _feature_cache(model: ColorNetV3, bank: Bank, opts: V3Options, amp, bar_on: bool) -> dict:
    """Encoder taps (bfloat16) and 8-bit truth of every photo's centre crop."""
    model.encoder.eval()
    feats: dict = {}
    rgb_all = []
    for start in tqdm(range(0, len(bank.names), 64), desc="feature cache", disable=not bar_on):
        idx = torch.arange(start, min(start + 64, len(bank.names)), device=bank.pixels.device)
        rgb = _centre_crops(bank, idx, opts.crop)
        with amp:
            taps = model.encoder(encoder_input(gray_to_lightness(_gray(rgb)[:, 0])[:, None]))
        for k, v in taps.items():
            feats.setdefault(k, []).append(v.to(torch.bfloat16).contiguous())
        rgb_all.append(torch.round(rgb * 255).to(torch.uint8))
    return {**{k: torch.cat(v) for k, v in feats.items()}, "rgb": torch.cat(rgb_all)}


def _frozen_loss(model: ColorNetV3, cache: dict, gen: torch.Generator, opts: V3Options):
    idx = torch.randint(len(cache["rgb"]), (opts.frozen_batch,), generator=gen)
    rgb = cache["rgb"][idx].float() / 255.0
    ab = rgb_to_lab(rgb)[:, 1:]
    hints = random_hints(ab, gen, none=opts.hint_none, p=opts.hint_p)
    hints = hints if bool(hints[:, -1].any()) else None
    taps = {k: v[idx] for k, v in cache.items() if k != "rgb"}
    y = model.decode(taps, hints)
    mask4 = F.max_pool2d(hints[:, -1:], OUT_STRIDE) if hints is not None else y.new_zeros((len(idx), 1, *y.shape[-2:]))
    logits, _ = model.heads(y, mask4)
    return colour_loss_v3(logits, ab, model.bins, sigma=opts.sigma, l1_weight=opts.l1_weight)


def _crops(bank: Bank, gen: torch.Generator, opts: V3Options):
    """A phase-2/3 batch: truth rgb, input L (degraded where drawn), hints, the truth at the input's L."""
    rgb = sample_crops(bank, opts.finetune_batch, opts.crop, opts.scale_range, gen)
    rgb = jitter(rgb, gen, brightness=opts.brightness, contrast=opts.contrast)
    gray = _gray(rgb)
    degraded = degrade_batch(gray, gen, p=opts.degrade)
    ab = rgb_to_lab(rgb)[:, 1:]
    hints = random_hints(ab, gen, none=opts.hint_none, p=opts.hint_p)
    changed = (degraded != gray).flatten(1).any(dim=1)[:, None, None, None]
    target = torch.where(changed, reference_rgb(rgb, degraded), rgb)
    return ab, gray_to_lightness(degraded[:, 0])[:, None], hints, target


def _set_lr(opt, frac: float, base: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr_at(frac, base) * group.get("factor", 1.0)


def train_v3(folder, out_dir, *, options: V3Options | None = None, resume: bool = False, progress: bool = True):
    """Train a :class:`colorcube.network.model_v3.ColorNetV3` on the colour photos under ``folder`` (module docstring).

    Parameters
    ----------
    folder : path of a folder of colour photos (searched recursively)
    out_dir : path; receives ``checkpoint.pt`` (every ``checkpoint_seconds`` and at each
        phase's end), ``features.pt`` (the phase-1 feature cache), ``best.safetensors``
        (best validation colour checkpoint), ``final.safetensors`` (that checkpoint with
        the chosen vividness and fitted error head: the weights to ship), ``split.json``
        and ``history.jsonl``
    options : V3Options, optional
    resume : continue from ``out_dir/checkpoint.pt`` (model, optimiser, phase, its clock, RNG)
    progress : show tqdm bars

    Returns
    -------
    history : list of dict, one per validation (phase, step, seconds, train loss, samples/s,
        validation PSNR, gray PSNR, colourfulness ratio)
    """
    opts = V3Options() if options is None else options
    folder, out_dir = Path(folder), Path(out_dir)
    train_paths, val_paths, err_paths = training_split(
        folder, out_dir, max_images=opts.max_images, val_fraction=opts.val_fraction, error_split=opts.error_split,
        seed=opts.seed, resume=resume)
    ckpt_path = out_dir / "checkpoint.pt"
    device = select_device(opts.device)
    amp = autocast(device, opts.precision)
    torch.manual_seed(opts.seed)
    gen = torch.Generator().manual_seed(opts.seed)

    model = ColorNetV3(ModelConfig(arch="v3")).to(device)
    if opts.init and not resume:
        init_from(model, opts.init)
    elif not resume:
        model.encoder.load_state_dict(pretrained_state(in_channels=1))
    model = model.to(memory_format=torch.channels_last)
    enc_params = list(model.encoder.parameters())
    dec_params = [p for n, p in model.named_parameters() if not n.startswith(("encoder.", "error."))]
    state = dict(phase="frozen", step=0, phase_elapsed=0.0, best=float("inf"), best_state=None, history=[])
    if resume:
        ck = torch.load(ckpt_path, map_location=device, weights_only=True)
        model.load_state_dict(ck["model"])
        model.config = ModelConfig.from_json(ck["config"])
        state.update(phase=ck["phase"], step=int(ck["step"]), phase_elapsed=float(ck["phase_elapsed"]),
                     best=float(ck["best"]), best_state=ck["best_state"], history=json.loads(ck["history"]))
        gen.set_state(ck["generator"])
    opt, groups_phase = _optimizer(model, state["phase"], opts, enc_params, dec_params)
    if resume and ck.get("optimizer") is not None and ck.get("optimizer_phase") == groups_phase:
        opt.load_state_dict(ck["optimizer"])

    bank = load_bank(train_paths, max_side=opts.max_side, device=device, workers=opts.workers)
    val_bank = load_bank(val_paths, max_side=opts.max_side, device=device, workers=opts.workers)
    err_bank = load_bank(err_paths, max_side=opts.max_side, device=device,
                         workers=opts.workers) if err_paths else val_bank
    log.info("v3: training on %d photos, validating on %d, error head on %d, device %s", len(train_paths),
             len(val_paths), len(err_paths), device)

    def save_checkpoint():
        with atomic_path(ckpt_path) as tmp:
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "optimizer_phase": state["phase"],
                        "config": model.config.to_json(), "phase": state["phase"], "step": state["step"],
                        "phase_elapsed": state["phase_elapsed"], "best": state["best"],
                        "best_state": state["best_state"], "generator": gen.get_state(),
                        "history": json.dumps(state["history"])}, tmp)

    def record(extra: dict) -> dict:
        rec = {"phase": state["phase"], "step": state["step"], "seconds": round(state["phase_elapsed"], 1), **extra}
        state["history"].append(rec)
        with open(out_dir / "history.jsonl", "a") as fh:
            fh.write(json.dumps(rec) + "\n")
        return rec

    def validate(running: list, samples: int, seconds: float) -> None:
        metrics = evaluate_bank(model, val_bank)[None]
        rec = record({"train_loss": float(np.mean(running)) if running else None,
                      "samples_per_s": round(samples / max(seconds, 1e-9), 2),
                      **{f"val_{k}": v for k, v in metrics.items()}})
        log.info("v3 %s", rec)
        score = -(metrics["psnr"] - metrics["psnr_gray"]) - metrics["colorfulness_ratio"]
        if score < state["best"]:
            state["best"] = score
            state["best_state"] = copy.deepcopy(model.state_dict())
            save_weights(model, out_dir / "best.safetensors")

    budgets = {"frozen": opts.frozen_minutes * 60, "finetune": opts.finetune_minutes * 60,
               "error": opts.error_minutes * 60}
    cache = None
    while state["phase"] != "done":
        phase = state["phase"]
        if phase == "frozen" and cache is None:
            cache_path = out_dir / "features.pt"
            if cache_path.is_file():
                cache = torch.load(cache_path, map_location=device, weights_only=True)
            else:
                cache = _feature_cache(model, bank, opts, amp, progress)
                with atomic_path(cache_path) as tmp:
                    torch.save(cache, tmp)
        if phase == "error" and state["phase_elapsed"] == 0.0:
            if state["best_state"] is not None:
                model.load_state_dict(state["best_state"])
            vividness, table = choose_vividness(model, val_bank, grid=(0.3, 0.4, 0.5, 0.6, 0.7, 0.85, 1.0))
            model.config = dataclasses.replace(model.config, vividness=vividness)
            record({"vividness": vividness, "vividness_table": {str(k): v for k, v in table.items()}})
        _run_phase(model, opt, phase, budgets[phase], state, opts, gen, amp, cache, bank, err_bank,
                   validate, save_checkpoint, progress)
        if phase == "frozen":
            cache = None
        if phase != "error":
            validate([], 0, 1.0)  # the phase's last state may be its best
        state["phase"] = PHASES[PHASES.index(phase) + 1]
        state["phase_elapsed"] = 0.0
        opt, _ = _optimizer(model, state["phase"], opts, enc_params, dec_params)
        save_checkpoint()
    save_weights(model, out_dir / "final.safetensors")
    return state["history"]


def _optimizer(model: ColorNetV3, phase: str, opts: V3Options, enc_params, dec_params):
    """The phase's optimiser and which parameters learn (the rest frozen)."""
    for p in model.parameters():
        p.requires_grad_(False)
    if phase == "frozen":
        groups = [{"params": dec_params, "factor": 1.0}]
    elif phase == "finetune":
        groups = [{"params": dec_params, "factor": 1.0}, {"params": enc_params, "factor": opts.encoder_lr_factor}]
    else:
        groups = [{"params": list(model.error.parameters()), "factor": 1.0}]
    for g in groups:
        for p in g["params"]:
            p.requires_grad_(True)
    return torch.optim.AdamW(groups, lr=opts.lr, weight_decay=opts.weight_decay if phase != "error" else 0.0), phase


def _run_phase(model, opt, phase, budget, state, opts, gen, amp, cache, bank, err_bank, validate, save_checkpoint,
               progress):
    base = {"frozen": opts.lr, "finetune": opts.finetune_lr, "error": 1e-3}[phase]
    step0, t_start = state["step"], time.monotonic() - state["phase_elapsed"]
    last_ckpt = last_val = time.monotonic()
    running, samples, samples_t0 = [], 0, time.monotonic()
    bar = tqdm(total=round(budget), initial=round(state["phase_elapsed"]), unit="s", desc=phase, disable=not progress)
    phase_steps = 0
    while state["phase_elapsed"] < budget and (opts.max_steps is None or phase_steps < opts.max_steps):
        frac = state["phase_elapsed"] / max(budget, 1e-9)
        if opts.max_steps:
            frac = max(frac, phase_steps / opts.max_steps)
        _set_lr(opt, frac, base)
        model.train()
        model.encoder.eval()  # BatchNorm statistics stay ImageNet's (small batches, degraded inputs)
        if phase == "frozen":
            with amp:
                loss = _frozen_loss(model, cache, gen, opts)
            n = opts.frozen_batch
        elif phase == "finetune":
            ab, lightness, hints, _ = _crops(bank, gen, opts)
            with amp:
                logits, _ = model(lightness, hints)
                loss = colour_loss_v3(logits, ab, model.bins, sigma=opts.sigma, l1_weight=opts.l1_weight)
            n = opts.finetune_batch
        else:
            model.eval()  # frozen colour network; only the error head learns
            ab, lightness, hints, target = _crops(err_bank, gen, opts)
            with amp:
                logits, err = model(lightness, hints)
            with torch.no_grad():
                pred = point_estimate(logits.float(), lightness, model.bins, model.config.vividness)
            scale = F.interpolate(err.float(), size=target.shape[-2:], mode="bilinear", align_corners=False)
            r = (pred - target).abs() - scale
            q = model.config.error_quantile
            loss = torch.maximum(q * r, (q - 1) * r).mean()
            n = opts.finetune_batch
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        state["step"] += 1
        phase_steps += 1
        samples += n
        running.append(loss.item())
        state["phase_elapsed"] = time.monotonic() - t_start
        bar.n = min(round(state["phase_elapsed"]), bar.total)
        bar.set_postfix(loss=f"{np.mean(running[-50:]):.3f}", refresh=False)
        if phase != "error" and time.monotonic() - last_val >= opts.val_seconds:
            validate(running, samples, time.monotonic() - samples_t0)
            running, samples, samples_t0 = [], 0, time.monotonic()
            last_val = time.monotonic()
        if time.monotonic() - last_ckpt > opts.checkpoint_seconds:
            save_checkpoint()
            last_ckpt = time.monotonic()
    bar.close()
    if phase == "error" or running:
        log.info("v3 %s: %d steps, last loss %.4f", phase, state["step"] - step0, float(np.mean(running[-50:] or [0])))
