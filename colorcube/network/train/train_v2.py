"""Train the colorizer on a folder of colour photographs.

Recipe (the model card records the exact command of the shipped weights):

* Photos are split by source (:func:`colorcube.inputs.images.source_of`: the folder's
  ``INDEX.tsv``, else the file-name prefix before ``__``, else the folder), deterministically by
  a hash of the name: a validation split (checkpoint and vividness choice), an error split (the error head's
  training photos, unseen by the colour network) and the rest for training.
* Colour phase (samples: :mod:`colorcube.network.train.trainset`): random scaled crops and
  flips from a padded uint8 bank (decoded by worker processes), brightness and
  contrast jitter of the photo before L and (a, b) are derived, gray input made
  as PIL's ``convert("L")`` does, random true-colour hints (none in about half of the samples, else a
  geometric number of 1-9 px patches; Zhang et al. 2017), cross-entropy on
  soft-encoded (a, b) bins with optional class rebalancing against sepia;
  AdamW with a cosine schedule over a wall-clock budget; bf16 autocast on CPU
  (AMX) or GPU, channels-last; the best validation checkpoint is kept.
* Vividness: the annealed-mean temperature is chosen on the validation split
  (:func:`choose_vividness`, at the end of the colour phase).
* Error phase: the colour network is frozen and the error head is fitted, with
  a pinball loss at ``ModelConfig.error_quantile``, to the |error| of the
  point estimate on the error split.

Checkpoints every ``checkpoint_seconds`` make ``resume`` lose at most that much.
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

from ...color import lab_to_rgb, luma, rgb_to_lab
from ...errors import ColorcubeError
from ...metrics import colorfulness, psnr
from ..decode import annealed_mean
from ..model import OUT_STRIDE, ColorNet, ModelConfig
from ..weights import init_from, save_weights, select_device
from .trainset import (
    Bank,
    autocast,
    bin_prior,
    gray_lightness,
    jitter,
    load_bank,
    lr_at,
    random_hints,
    rebalance_weights,
    sample_crops,
    training_split,
)

__all__ = [
    "TrainOptions",
    "choose_vividness",
    "colour_loss",
    "error_loss",
    "evaluate_bank",
    "point_estimate",
    "train",
]

log = logging.getLogger(__name__)


@dataclasses.dataclass
class TrainOptions:
    """Options of :func:`train` (all have working defaults).

    Attributes
    ----------
    minutes : float, wall-clock budget of both phases
    error_fraction : float in [0, 1), share of the budget (and of ``max_steps``)
        spent fitting the error head
    val_fraction, error_split : float, shares of each source held out for
        validation and for the error head
    init : path of weights to warm-start from (:func:`colorcube.network.weights.init_from`)
    precision : {"bfloat16", "float32"}, autocast dtype of the forward pass
    hint_none : float, probability that a sample gets no hints
    hint_p : float, parameter of the geometric number of hint points
    brightness, contrast : float, half-ranges of the photo jitter
    workers : int, processes decoding the photos
    """

    # budget and optimiser
    minutes: float = 60.0
    batch: int = 16
    lr: float = 2e-3
    weight_decay: float = 0.01
    seed: int = 0
    # splits of the photos (per source) and of the time
    val_fraction: float = 0.05
    error_split: float = 0.08
    error_fraction: float = 0.12
    # samples: size, class rebalancing, augmentation, simulated hints
    crop: int = 128
    max_side: int = 256
    rebalance: float = 0.5
    sigma: float = 5.0
    scale_range: tuple = (0.8, 1.6)
    brightness: float = 0.1
    contrast: float = 0.2
    hint_none: float = 0.5
    hint_p: float = 0.125
    # the network and where it runs
    width: int = 64
    device: str = "auto"
    precision: str = "bfloat16"
    init: str | None = None
    workers: int = 2
    # bookkeeping and limits (tests)
    checkpoint_seconds: float = 120.0
    val_every: int = 1
    max_images: int | None = None
    max_steps: int | None = None


def _batch(bank: Bank, gen: torch.Generator, opts: TrainOptions):
    """One augmented batch: (truth rgb, input L, hints)."""
    rgb = sample_crops(bank, opts.batch, opts.crop, opts.scale_range, gen)
    rgb = jitter(rgb, gen, brightness=opts.brightness, contrast=opts.contrast)
    ab = rgb_to_lab(rgb)[:, 1:]
    hints = random_hints(ab, gen, none=opts.hint_none, p=opts.hint_p)
    return rgb, ab, gray_lightness(rgb), hints


def colour_loss(model: ColorNet, ab: torch.Tensor, lightness, hints, class_w: torch.Tensor, sigma: float):
    """Rebalanced cross-entropy of the bin logits against soft-encoded truth (a, b)."""
    logits, _ = model(lightness, hints)
    ab4 = F.avg_pool2d(ab, OUT_STRIDE).permute(0, 2, 3, 1).reshape(-1, 2)
    d2 = torch.cdist(ab4, model.bins) ** 2
    target = torch.softmax(-d2 / (2 * sigma**2), dim=1)
    logp = torch.log_softmax(logits.float().permute(0, 2, 3, 1).reshape(-1, model.n_bins), dim=1)
    return (-(target * logp).sum(dim=1) * class_w[d2.argmin(dim=1)]).mean()


def point_estimate(logits: torch.Tensor, lightness: torch.Tensor, bins: torch.Tensor, vividness: float):
    """(B, 3, H, W) sRGB of the annealed mean, chroma upsampled bilinearly to ``lightness``'s grid."""
    ab = annealed_mean(logits, bins, vividness)
    ab = F.interpolate(ab, size=lightness.shape[-2:], mode="bilinear", align_corners=False)
    return lab_to_rgb(torch.cat([lightness.float(), ab], dim=1))


def error_loss(model: ColorNet, rgb, lightness, hints) -> torch.Tensor:
    """Pinball loss of the error head against the point estimate's per-channel |error|."""
    logits, err = model(lightness, hints)
    with torch.no_grad():
        target = (point_estimate(logits.float(), lightness, model.bins, model.config.vividness) - rgb).abs()
    pred = F.interpolate(err.float(), size=rgb.shape[-2:], mode="bilinear", align_corners=False)
    r = target - pred
    q = model.config.error_quantile
    return torch.maximum(q * r, (q - 1) * r).mean()


@torch.no_grad()
def evaluate_bank(model: ColorNet, bank: Bank, *, vividness_grid=(None,), hints: int = 0) -> dict:
    """PSNR and colourfulness on whole validation images, and the error head's coverage.

    Returns a dict keyed by vividness (None: the model's own) with mean PSNR, the
    gray baseline's PSNR, colourfulness ratio (prediction / truth) and the share
    of channel values whose |error| is within the error head's scale.
    """
    was_training = model.training
    model.eval()
    rows = {t: {"psnr": [], "cf_pred": [], "cover": []} for t in vividness_grid}
    gray_psnr, cf_truth = [], []
    gen = torch.Generator().manual_seed(1)
    for i in range(len(bank.names)):
        h, w = (int(v) for v in bank.sizes[i])
        rgb = bank.pixels[i : i + 1, :, :h, :w].float() / 255.0
        lightness = gray_lightness(rgb)
        ph, pw = (-h) % 16, (-w) % 16
        lin = F.pad(lightness, (0, pw, 0, ph), mode="replicate")
        hint = random_hints(F.pad(rgb_to_lab(rgb)[:, 1:], (0, pw, 0, ph)), gen, none=0.0, p=1.0,
                            max_patch=1) if hints else None
        logits, err = model(lin, hint)
        truth = rgb[0].permute(1, 2, 0).cpu().numpy()
        gray_psnr.append(psnr(np.repeat(luma(rgb)[0, ..., None].cpu().numpy(), 3, axis=2), truth))
        cf_truth.append(colorfulness(truth))
        scale = F.interpolate(err.float(), size=lin.shape[-2:], mode="bilinear")[..., :h, :w]
        for t in vividness_grid:
            pred = point_estimate(logits.float(), lin, model.bins, model.config.vividness if t is None else t)
            pred = pred[..., :h, :w]
            rows[t]["cover"].append(float(((pred - rgb).abs() <= scale).float().mean()))
            pred = pred[0].permute(1, 2, 0).cpu().numpy()
            rows[t]["psnr"].append(psnr(pred, truth))
            rows[t]["cf_pred"].append(colorfulness(pred))
    out = {}
    for t, r in rows.items():
        out[t] = {
            "psnr": float(np.mean(r["psnr"])),
            "psnr_gray": float(np.mean(gray_psnr)),
            "colorfulness_ratio": float(np.mean(r["cf_pred"]) / max(np.mean(cf_truth), 1e-9)),
            "error_head_coverage": float(np.mean(r["cover"])),
        }
    model.train(was_training)
    return out


def choose_vividness(model: ColorNet, bank: Bank, *, grid=(0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6),
                     min_colorfulness: float = 0.62) -> tuple[float, dict]:
    """Pick the annealed-mean temperature on validation images.

    The highest-PSNR temperature whose colourfulness is at least
    ``min_colorfulness`` of the truth's; the most colourful one if none is.
    """
    table = evaluate_bank(model, bank, vividness_grid=grid)
    ok = [t for t in grid if table[t]["colorfulness_ratio"] >= min_colorfulness]
    if ok:
        best = max(ok, key=lambda t: table[t]["psnr"])
    else:
        best = max(grid, key=lambda t: table[t]["colorfulness_ratio"])
    return best, table


def train(folder, out_dir, *, options: TrainOptions | None = None, resume: bool = False, progress: bool = True):
    """Train a :class:`colorcube.network.model.ColorNet` on the colour photos under ``folder``.

    Parameters
    ----------
    folder : path of a folder of colour photos (searched recursively)
    out_dir : path; receives ``checkpoint.pt``, ``best.safetensors`` (best
        validation colour checkpoint), ``final.safetensors`` (that checkpoint with
        the chosen vividness and the fitted error head: the weights to ship),
        ``split.json`` and ``history.jsonl``
    options : TrainOptions, optional (default: all defaults)
    resume : bool
        Continue from ``out_dir/checkpoint.pt`` (model, optimiser, phase, clock, RNG).
    progress : bool
        Show a tqdm bar.

    Returns
    -------
    history : list of dict, one per validation (step, phase, losses, samples/s,
        validation metrics)
    """
    options = TrainOptions() if options is None else options
    folder, out_dir = Path(folder), Path(out_dir)
    if not 0 <= options.error_fraction < 1:
        raise ColorcubeError(f"error_fraction={options.error_fraction!r} must be in [0, 1)")
    train_paths, val_paths, err_paths = training_split(
        folder, out_dir, max_images=options.max_images or None, val_fraction=options.val_fraction,
        error_split=options.error_split, seed=options.seed, resume=resume)
    ckpt_path = out_dir / "checkpoint.pt"
    device = select_device(options.device)
    torch.manual_seed(options.seed)
    gen = torch.Generator().manual_seed(options.seed)
    bank = load_bank(train_paths, max_side=options.max_side, device=device, workers=options.workers)
    val_bank = load_bank(val_paths, max_side=options.max_side, device=device, workers=options.workers)
    # without an error split (tiny folders) the error head is fitted on the validation photos
    err_bank = load_bank(err_paths, max_side=options.max_side, device=device,
                         workers=options.workers) if err_paths else val_bank
    log.info("training on %d images, validating on %d, error head on %d, device %s", len(train_paths),
             len(val_paths), len(err_paths), device)

    model = ColorNet(ModelConfig(width=options.width)).to(device).to(memory_format=torch.channels_last)
    if options.init and not resume:
        fresh = init_from(model, options.init)
        log.info("warm start from %s; new: %s", options.init, ", ".join(fresh))
    colour_params = [p for n, p in model.named_parameters() if not n.startswith("error.")]
    opt = torch.optim.AdamW(colour_params, lr=options.lr, weight_decay=options.weight_decay)
    err_opt = torch.optim.AdamW(model.error.parameters(), lr=1e-3, weight_decay=0.0)
    prior = bin_prior(bank, model.bins, gen)
    class_w = rebalance_weights(prior, model.bins, strength=options.rebalance, sigma=options.sigma)
    step, elapsed, history, best, phase, best_state = 0, 0.0, [], float("inf"), 1, None
    if resume:
        state = torch.load(ckpt_path, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        err_opt.load_state_dict(state["err_optimizer"])
        step, elapsed, best, phase = int(state["step"]), float(state["elapsed"]), float(state["best"]), state["phase"]
        best_state = state["best_state"]
        model.config = ModelConfig.from_json(state["config"])
        gen.set_state(state["generator"])
        history = json.loads(state["history"])

    budget = options.minutes * 60.0
    split_time = budget * (1 - options.error_fraction)
    split_step = round(options.max_steps * (1 - options.error_fraction)) if options.max_steps else None
    steps_per_epoch = max(1, len(train_paths) // options.batch)
    amp = autocast(device, options.precision)
    bar = tqdm(total=round(budget), initial=round(elapsed), unit="s", disable=not progress, desc="train")
    t0, last_ckpt, running, samples_t0, samples = time.monotonic() - elapsed, time.monotonic(), [], time.monotonic(), 0

    def save_checkpoint():
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "err_optimizer": err_opt.state_dict(),
                    "step": step, "elapsed": time.monotonic() - t0, "best": best, "phase": phase,
                    "best_state": best_state, "config": model.config.to_json(), "generator": gen.get_state(),
                    "history": json.dumps(history)}, ckpt_path)

    def record(extra):
        nonlocal running, samples, samples_t0
        now = time.monotonic()
        rec = {"step": step, "phase": phase, "seconds": round(now - t0, 1),
               "samples_per_s": round(samples / max(now - samples_t0, 1e-9), 2),
               "train_loss": float(np.mean(running)) if running else None, **extra}
        running, samples, samples_t0 = [], 0, now
        history.append(rec)
        with open(out_dir / "history.jsonl", "a") as fh:
            fh.write(json.dumps(rec) + "\n")
        return rec

    def freeze_colour():
        for p in colour_params:
            p.requires_grad_(False)

    def start_error_phase():
        nonlocal phase, best_state
        if best_state is not None:
            model.load_state_dict(best_state)
        vividness, table = choose_vividness(model, val_bank)
        model.config = dataclasses.replace(model.config, vividness=vividness)
        freeze_colour()
        record({"vividness": vividness, "vividness_table": {str(k): v for k, v in table.items()}})
        phase = 2

    if phase == 2:
        freeze_colour()
    model.train()
    while elapsed < budget and (options.max_steps is None or step < options.max_steps):
        if phase == 1 and (elapsed >= split_time or (split_step is not None and step >= split_step)):
            start_error_phase()
        if phase == 1:
            frac = max(elapsed / split_time, step / split_step if split_step else 0.0)
            for group in opt.param_groups:
                group["lr"] = lr_at(frac, options.lr)
            rgb, ab, lightness, hints = _batch(bank, gen, options)
            with amp:
                loss = colour_loss(model, ab, lightness, hints, class_w, options.sigma)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        else:
            model.eval()  # frozen batch statistics; only the error head learns
            rgb, ab, lightness, hints = _batch(err_bank, gen, options)
            with amp:
                loss = error_loss(model, rgb, lightness, hints)
            err_opt.zero_grad(set_to_none=True)
            loss.backward()
            err_opt.step()
        step += 1
        samples += options.batch
        running.append(loss.item())
        elapsed = time.monotonic() - t0
        bar.n = min(round(elapsed), bar.total)
        if step % (steps_per_epoch * options.val_every) == 0 or elapsed >= budget:
            metrics = evaluate_bank(model, val_bank)[None]
            rec = record({f"val_{k}": v for k, v in metrics.items()})
            bar.set_postfix(phase=phase, loss=f"{rec['train_loss']:.3f}", psnr=f"{metrics['psnr']:.2f}")
            score = -(metrics["psnr"] - metrics["psnr_gray"]) - metrics["colorfulness_ratio"]
            if phase == 1 and score < best:
                best = score
                best_state = copy.deepcopy(model.state_dict())
                save_weights(model, out_dir / "best.safetensors")
        if time.monotonic() - last_ckpt > options.checkpoint_seconds:
            save_checkpoint()
            last_ckpt = time.monotonic()
    bar.close()
    if phase == 1:  # a budget too small for the error phase still ships a chosen vividness
        start_error_phase()
    save_checkpoint()
    save_weights(model, out_dir / "final.safetensors")
    return history
