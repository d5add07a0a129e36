"""Train the colorizer on a folder of colour photographs.

Recipe: random scaled crops and flips (GPU-side, from a padded uint8 bank),
gray input made as PIL's ``convert("L")`` does, cross-entropy on soft-encoded
(a, b) bins (optionally class-rebalanced against sepia) plus pinball losses for
the R, G, B quantile heads; AdamW with a cosine schedule over a wall-clock
budget; a held-out validation split scored every epoch; periodic checkpoints
and ``resume``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from .color import gray_to_lightness, lab_to_rgb, luma, rgb_to_lab
from .errors import ColorcubeError
from .io import IMAGE_SUFFIXES
from .model import OUT_STRIDE, ColorNet, ModelConfig, annealed_mean, save_weights, select_device

__all__ = ["TrainOptions", "train", "load_bank", "choose_vividness"]

log = logging.getLogger(__name__)


@dataclasses.dataclass
class TrainOptions:
    """Options of :func:`train` (all have working defaults)."""

    minutes: float = 60.0
    batch: int = 16
    crop: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.01
    seed: int = 0
    val_fraction: float = 0.05
    max_side: int = 320
    rebalance: float = 0.0
    sigma: float = 5.0
    quantile_weight: float = 20.0
    scale_range: tuple = (0.8, 1.6)
    checkpoint_seconds: float = 120.0
    width: int = 64
    device: str = "auto"
    max_images: int | None = None
    max_steps: int | None = None
    val_every: int = 1


@dataclasses.dataclass
class Bank:
    """Images padded into one uint8 tensor: pixels (N, 3, S, S), sizes (N, 2) = (h, w)."""

    pixels: torch.Tensor
    sizes: torch.Tensor
    names: list


def _is_val(name: str, fraction: float, seed: int) -> bool:
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def load_bank(paths, *, max_side: int, device) -> Bank:
    """Read colour photos, shrink to ``max_side``, pad into one uint8 bank."""
    from PIL import Image

    arrays, names = [], []
    for p in paths:
        try:
            with Image.open(p) as im:
                im = im.convert("RGB")
                scale = max_side / max(im.size)
                if scale < 1:
                    im = im.resize((max(16, round(im.width * scale)), max(16, round(im.height * scale))),
                                   Image.Resampling.LANCZOS)
                arrays.append(np.array(im))
                names.append(Path(p).name)
        except OSError as exc:
            log.warning("skipping %s: %s", p, exc)
    if not arrays:
        raise ColorcubeError("no readable colour images to train on")
    side = max(max(a.shape[:2]) for a in arrays)
    pixels = torch.zeros((len(arrays), 3, side, side), dtype=torch.uint8)
    sizes = torch.zeros((len(arrays), 2), dtype=torch.long)
    for i, a in enumerate(arrays):
        pixels[i, :, : a.shape[0], : a.shape[1]] = torch.from_numpy(a).permute(2, 0, 1)
        sizes[i] = torch.tensor(a.shape[:2])
    return Bank(pixels.to(device), sizes.to(device), names)


def sample_crops(bank: Bank, n: int, crop: int, scale_range, gen: torch.Generator) -> torch.Tensor:
    """Random scaled, flipped crops: (n, 3, crop, crop) float32 in [0, 1]."""
    dev = bank.pixels.device
    idx = torch.randint(len(bank.names), (n,), generator=gen, device="cpu").to(dev)
    hw = bank.sizes[idx].float()
    side = bank.pixels.shape[-1]
    u = torch.rand((n, 4), generator=gen).to(dev)
    lo, hi = scale_range
    smin = torch.clamp(crop / hw.min(dim=1).values, min=lo)
    scale = smin + (torch.clamp(torch.full_like(smin, hi), min=smin) - smin) * u[:, 0]
    extent = crop / scale  # source pixels covered by the crop
    y0 = (hw[:, 0] - extent) * u[:, 1]
    x0 = (hw[:, 1] - extent) * u[:, 2]
    flip = torch.where(u[:, 3] < 0.5, -1.0, 1.0)
    # affine_grid works in [-1, 1] coordinates of the padded canvas
    theta = torch.zeros((n, 2, 3), device=dev)
    theta[:, 0, 0] = extent / side * flip
    theta[:, 1, 1] = extent / side
    theta[:, 0, 2] = (2 * x0 + extent) / side - 1
    theta[:, 1, 2] = (2 * y0 + extent) / side - 1
    grid = F.affine_grid(theta, (n, 3, crop, crop), align_corners=False)
    src = bank.pixels[idx].float() / 255.0
    return F.grid_sample(src, grid, mode="bilinear", align_corners=False).clamp(0, 1)


def gray_lightness(rgb: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) truth -> (B, 1, H, W) L of its 8-bit BT.601 gray, as inputs are made."""
    gray = torch.round(luma(rgb) * 255.0) / 255.0
    return gray_to_lightness(gray)[:, None]


def bin_prior(bank: Bank, bins: torch.Tensor, gen: torch.Generator, *, n: int = 256, crop: int = 128):
    """Empirical frequency of each (a, b) bin over random crops, (Q,) summing to 1."""
    counts = torch.zeros(len(bins), device=bins.device)
    for _ in range(4):
        rgb = sample_crops(bank, n // 4, crop, (1.0, 1.0), gen)
        ab = rgb_to_lab(rgb)[:, 1:].permute(0, 2, 3, 1).reshape(-1, 2)
        counts += torch.bincount(torch.cdist(ab, bins).argmin(dim=1), minlength=len(bins)).float()
    return counts / counts.sum()


def rebalance_weights(prior: torch.Tensor, bins: torch.Tensor, *, strength: float, sigma: float) -> torch.Tensor:
    """Zhang et al. (2016) class weights ((1-l) p~ + l/Q)^-1 with l = 0.5, raised to ``strength``."""
    kernel = torch.exp(-torch.cdist(bins, bins) ** 2 / (2 * sigma**2))
    smooth = kernel @ prior / kernel.sum(dim=1)
    smooth = smooth / smooth.sum()
    w = (0.5 * smooth + 0.5 / len(bins)) ** -1
    w = w / (prior * w).sum()
    return w**strength


def losses(model: ColorNet, rgb: torch.Tensor, class_w: torch.Tensor, opts: TrainOptions):
    """Chroma cross-entropy and quantile pinball loss of one batch of truth crops."""
    lightness = gray_lightness(rgb)
    logits, quant = model(lightness)
    ab = F.avg_pool2d(rgb_to_lab(rgb)[:, 1:], OUT_STRIDE)  # (B, 2, h, w)
    ab_flat = ab.permute(0, 2, 3, 1).reshape(-1, 2)
    d2 = torch.cdist(ab_flat, model.bins) ** 2
    target = torch.softmax(-d2 / (2 * opts.sigma**2), dim=1)
    logp = torch.log_softmax(logits.float().permute(0, 2, 3, 1).reshape(-1, model.n_bins), dim=1)
    pix_w = class_w[d2.argmin(dim=1)]
    ce = (-(target * logp).sum(dim=1) * pix_w).mean()
    q = torch.sigmoid(F.interpolate(quant.float(), size=rgb.shape[-2:], mode="bilinear", align_corners=False))
    qlo, qhi = model.config.quantiles
    r_lo, r_hi = rgb - q[:, :3], rgb - q[:, 3:]
    pinball = (torch.maximum(qlo * r_lo, (qlo - 1) * r_lo).mean() + torch.maximum(qhi * r_hi, (qhi - 1) * r_hi).mean())
    return ce, pinball


@torch.no_grad()
def evaluate_bank(model: ColorNet, bank: Bank, *, vividness_grid=(None,)) -> dict:
    """PSNR, colourfulness and quantile coverage on whole validation images.

    Returns a dict keyed by vividness with mean PSNR, PSNR of the gray baseline,
    colourfulness ratio (prediction / truth) and the heuristic band coverage.
    """
    from .metrics import colorfulness, psnr

    model.eval()
    rows = {t: {"psnr": [], "cf_pred": [], "cover": []} for t in vividness_grid}
    gray_psnr, cf_truth = [], []
    for i in range(len(bank.names)):
        h, w = (int(v) for v in bank.sizes[i])
        rgb = bank.pixels[i : i + 1, :, :h, :w].float() / 255.0
        lightness = gray_lightness(rgb)
        ph, pw = (-h) % 16, (-w) % 16
        logits, quant = model(F.pad(lightness, (0, pw, 0, ph), mode="replicate"))
        truth = rgb[0].permute(1, 2, 0).cpu().numpy()
        gray_psnr.append(psnr(np.repeat(luma(rgb)[0, ..., None].cpu().numpy(), 3, axis=2), truth))
        cf_truth.append(colorfulness(truth))
        q = F.interpolate(torch.sigmoid(quant.float()), scale_factor=OUT_STRIDE, mode="bilinear")[..., :h, :w]
        inside = ((rgb >= q[:, :3]) & (rgb <= q[:, 3:])).float().mean().item()
        for t in vividness_grid:
            ab = annealed_mean(logits, model.bins, model.config.vividness if t is None else t)
            ab = F.interpolate(ab, scale_factor=OUT_STRIDE, mode="bilinear")[..., :h, :w]
            pred = lab_to_rgb(torch.cat([lightness, ab], dim=1))[0].permute(1, 2, 0).cpu().numpy()
            rows[t]["psnr"].append(psnr(pred, truth))
            rows[t]["cf_pred"].append(colorfulness(pred))
            rows[t]["cover"].append(inside)
    out = {}
    for t, r in rows.items():
        out[t] = {
            "psnr": float(np.mean(r["psnr"])),
            "psnr_gray": float(np.mean(gray_psnr)),
            "colorfulness_ratio": float(np.mean(r["cf_pred"]) / max(np.mean(cf_truth), 1e-9)),
            "band_coverage": float(np.mean(r["cover"])),
        }
    model.train()
    return out


def choose_vividness(model: ColorNet, bank: Bank, *, grid=(0.3, 0.4, 0.5, 0.6, 0.7, 0.85, 1.0),
                     min_colorfulness: float = 0.65) -> tuple[float, dict]:
    """Pick the annealed-mean temperature on validation images.

    The highest-PSNR temperature whose colourfulness is at least
    ``min_colorfulness`` of the truth's; the most colourful one if none is.
    """
    table = evaluate_bank(model, bank, vividness_grid=grid)
    ok = [t for t in grid if table[t]["colorfulness_ratio"] >= min_colorfulness]
    best = max(ok, key=lambda t: table[t]["psnr"]) if ok else min(grid)
    return best, table


def _lr_at(frac: float, base: float) -> float:
    warm = min(1.0, frac / 0.03)
    return base * warm * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))


def train(folder, out_dir, *, options: TrainOptions = TrainOptions(), resume: bool = False, progress: bool = True):
    """Train a :class:`ColorNet` on the colour photos under ``folder``.

    Parameters
    ----------
    folder : path of a folder of colour photos (searched recursively)
    out_dir : path; receives ``checkpoint.pt``, ``best.safetensors``,
        ``last.safetensors`` and ``history.jsonl``
    options : TrainOptions
    resume : bool
        Continue from ``out_dir/checkpoint.pt`` (model, optimiser, clock, RNG).
    progress : bool
        Show a tqdm bar.

    Returns
    -------
    history : list of dict, one per epoch (step, train loss, validation metrics)
    """
    from tqdm.auto import tqdm

    folder, out_dir = Path(folder), Path(out_dir)
    if not folder.is_dir():
        raise ColorcubeError(f"{folder}: training folder not found; pass a folder of colour photos")
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if options.max_images:
        paths = paths[: options.max_images]
    if len(paths) < 3:
        raise ColorcubeError(f"{folder}: need at least 3 images (got {len(paths)}) for a train/validation split")
    val_paths = [p for p in paths if _is_val(p.name, options.val_fraction, options.seed)] or paths[-1:]
    train_paths = [p for p in paths if p not in set(val_paths)]
    ckpt_path = out_dir / "checkpoint.pt"
    if resume and not ckpt_path.is_file():
        raise ColorcubeError(f"{ckpt_path}: no checkpoint to resume from; run without resume")
    out_dir.mkdir(parents=True, exist_ok=True)
    device = select_device(options.device)
    torch.manual_seed(options.seed)
    gen = torch.Generator().manual_seed(options.seed)
    bank = load_bank(train_paths, max_side=options.max_side, device=device)
    val_bank = load_bank(val_paths, max_side=options.max_side, device=device)
    log.info("training on %d images, validating on %d, device %s", len(train_paths), len(val_paths), device)

    model = ColorNet(ModelConfig(width=options.width)).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=options.lr, weight_decay=options.weight_decay)
    prior = bin_prior(bank, model.bins, gen)
    class_w = rebalance_weights(prior, model.bins, strength=options.rebalance, sigma=options.sigma)
    step, elapsed, history, best = 0, 0.0, [], float("inf")
    if resume:
        state = torch.load(ckpt_path, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, elapsed, best = int(state["step"]), float(state["elapsed"]), float(state["best"])
        gen.set_state(state["generator"])
        history = json.loads(state["history"])

    budget = options.minutes * 60.0
    steps_per_epoch = max(1, len(train_paths) // options.batch)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    bar = tqdm(total=round(budget), initial=round(elapsed), unit="s", disable=not progress, desc="train")
    t0, last_ckpt, running = time.monotonic() - elapsed, time.monotonic(), []

    def save_checkpoint():
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                    "elapsed": time.monotonic() - t0, "best": best, "generator": gen.get_state(),
                    "history": json.dumps(history)}, ckpt_path)

    model.train()
    while elapsed < budget and (options.max_steps is None or step < options.max_steps):
        # the schedule follows whichever budget, time or steps, runs out first
        frac = max(elapsed / budget, step / options.max_steps if options.max_steps else 0.0)
        for group in opt.param_groups:
            group["lr"] = _lr_at(frac, options.lr)
        rgb = sample_crops(bank, options.batch, options.crop, options.scale_range, gen)
        if device.type == "cuda":
            rgb = rgb.contiguous(memory_format=torch.channels_last)
        with amp:
            ce, pinball = losses(model, rgb, class_w, options)
            loss = ce + options.quantile_weight * pinball
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        running.append((ce.item(), pinball.item()))
        elapsed = time.monotonic() - t0
        bar.n = min(round(elapsed), bar.total)
        if step % (steps_per_epoch * options.val_every) == 0 or elapsed >= budget:
            metrics = evaluate_bank(model, val_bank)[None]
            ce_m, pin_m = np.mean(running, axis=0)
            running = []
            record = {"step": step, "seconds": round(elapsed, 1), "train_ce": float(ce_m),
                      "train_pinball": float(pin_m), **{f"val_{k}": v for k, v in metrics.items()}}
            history.append(record)
            with open(out_dir / "history.jsonl", "a") as fh:
                fh.write(json.dumps(record) + "\n")
            bar.set_postfix(ce=f"{ce_m:.3f}", psnr=f"{metrics['psnr']:.2f}")
            score = -(metrics["psnr"] - metrics["psnr_gray"]) - metrics["colorfulness_ratio"]
            if score < best:
                best = score
                save_weights(model, out_dir / "best.safetensors")
        if time.monotonic() - last_ckpt > options.checkpoint_seconds:
            save_checkpoint()
            last_ckpt = time.monotonic()
    bar.close()
    save_checkpoint()
    save_weights(model, out_dir / "last.safetensors")
    return history
