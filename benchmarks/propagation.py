"""Choice of the hint propagation's length scales and edge cost, on the held-out 5 % of train/.

    python benchmarks/propagation.py [--train-dir DIR] [--limit N] [--points K]

The split is the training code's own (:func:`colorcube.network.train.train_v2.split_by_source`,
seed 0), never calib/ or bench/. Each photo gets K random true-colour points
(:func:`colorcube.guidance.hints.random_points`, seed = photo index); the network runs
once without and once with them, then for each (near, far, edge) of a grid the
hinted maps are blended (:func:`colorcube.guidance.propagate.blend_hints`), upsampled as
the pipeline does, and scored: mean PSNR and CIEDE2000 change against the
automatic mode. ``far = 0`` rows use the network's hinted output alone, and
``net = off`` rows the propagation alone (the network's hinted output replaced
by its automatic one).
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from colorcube.color import gray_to_lightness
from colorcube.guidance.hints import as_hints
from colorcube.guidance.placement import random_points, working_hints
from colorcube.guidance.propagate import blend_hints
from colorcube.inputs.images import list_images, read_truth
from colorcube.metrics import ciede2000, psnr
from colorcube.network.decode import predict
from colorcube.network.guided import Coefficients, guided_coefficients
from colorcube.network.model import OUT_STRIDE, STRIDE
from colorcube.network.train.train_v2 import TrainOptions
from colorcube.network.train.trainset import split_by_source
from colorcube.network.weights import load_model, load_weights
from colorcube.network.working import _grid, network_input, working_gray
from colorcube.render.fullres import full_stage
from colorcube.settings import PRECISIONS, PipelineSettings

DEFAULT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "train"


def network_maps(gray, truth, model, settings, k, seed):
    """Everything the blend needs for one photo, the network run once without and once with hints."""
    g = torch.from_numpy(gray)
    lw = gray_to_lightness(working_gray(g, settings.working_size))
    hw, ww = lw.shape
    lin = F.pad(lw[None, None], (0, (-ww) % STRIDE, 0, (-hw) % STRIDE), mode="replicate")
    opts = dict(vividness=settings.vividness, dtype=PRECISIONS[settings.precision], scale=settings.scale)
    h4, w4, extent = _grid(*gray.shape, settings.working_size)
    hints = as_hints(random_points(truth, k, seed), gray.shape)
    hab, hmask = working_hints(hints, (hw, ww))
    with torch.inference_mode():
        auto = torch.cat(predict(model, lin, **opts), 1)[0, :, :h4, :w4].float().numpy()
        hinted = torch.cat(predict(model, lin, network_input(hab, hmask, lin.shape[-2:]), **opts), 1)
    hinted = hinted[0, :, :h4, :w4].float().numpy()
    guide = (F.avg_pool2d(lin.float(), OUT_STRIDE)[0, 0, :h4, :w4] / 100.0).numpy()
    return dict(lw=lw.numpy(), hab=hab, hmask=hmask, auto=auto, hinted=hinted, guide=guide, extent=extent)


def colour(gray, m, maps, settings):
    r = max(0, min(settings.radius, (min(maps.shape[1:]) - 1) // 2))
    coef = guided_coefficients(m["guide"], maps, radius=r, eps=settings.eps)
    rgb = full_stage(gray, Coefficients(coef, gray.shape, m["extent"]))[0]
    return (np.round(rgb * 255) / 255).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-dir", default=str(DEFAULT))
    ap.add_argument("--weights", help="a .safetensors file (default: the shipped weights)")
    ap.add_argument("--limit", type=int, default=60, help="first N validation photos")
    ap.add_argument("--points", type=int, default=10, help="random true-colour points per photo")
    ap.add_argument("--near", type=float, nargs="+", default=[0.1, 0.3, 1.0])
    ap.add_argument("--far", type=float, nargs="+", default=[0.0, 1.0, 3.0])
    ap.add_argument("--edge", type=float, nargs="+", default=[0.003, 0.01, 0.03])
    ap.add_argument("--texture", type=float, nargs="+", default=[0.0, 2.0, 5.0])
    ap.add_argument("--net-off", action="store_true", help="also score the propagation alone")
    args = ap.parse_args()
    model = load_weights(args.weights) if args.weights else load_model(device="cpu")
    opts = TrainOptions()
    val = split_by_source(list_images(args.train_dir), val_fraction=opts.val_fraction,
                          error_split=opts.error_split, seed=opts.seed)[1][: args.limit]
    settings = PipelineSettings()
    t0 = time.perf_counter()
    photos = []
    for i, p in enumerate(val):
        truth, gray = read_truth(p)
        m = network_maps(gray, truth, model, settings, args.points, i)
        base = colour(gray, m, m["auto"], settings)
        photos.append((truth, gray, m, psnr(base, truth), float(ciede2000(base, truth).mean())))
    print(f"{len(photos)} validation photos of {args.train_dir}, {args.points} points each; model "
          f"{model.weights_name} {model.weights_hash[:12]} ({time.perf_counter() - t0:.0f} s for the network)")
    print(f"{'near':>6s} {'far':>6s} {'edge':>6s} {'tex.':>5s} {'net':>4s} {'PSNR gain dB':>13s} "
          f"{'CIEDE2000 change':>17s}")
    configs = [(n, f, e, t, net) for n, f, e, t in itertools.product(args.near, args.far, args.edge, args.texture)
               if f == 0 or f >= n for net in (("on", "off") if args.net_off else ("on",))]
    configs = [c for c in configs if not (c[1] == 0 and (c[4] == "off" or c[2] != args.edge[0] or
                                                         c[3] != args.texture[0] or c[0] != args.near[0]))]
    for near, far, edge, texture, net in configs:
        gains, des = [], []
        for truth, gray, m, p0, d0 in photos:
            hinted = m["hinted"] if net == "on" else m["auto"]
            maps = hinted if far == 0 else blend_hints(m["lw"], m["hab"], m["hmask"], m["auto"], hinted,
                                                         factor=OUT_STRIDE, near=near, far=far, edge=edge,
                                                         texture=texture)
            rgb = colour(gray, m, maps, settings)
            gains.append(psnr(rgb, truth) - p0)
            des.append(float(ciede2000(rgb, truth).mean()) - d0)
        print(f"{near:6.3g} {far:6.3g} {edge:6.3g} {texture:5.3g} {net:>4s} {np.mean(gains):13.2f} "
              f"{np.mean(des):17.2f}", flush=True)


if __name__ == "__main__":
    main()
