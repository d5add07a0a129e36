"""Matplotlib figures: coverage curve, per-image coverage histogram, band-width map, one pixel's bands,
one image's coverage per channel (the last two are the explorer's charts).

Every function takes ``ax=None`` (a new figure is made) and returns the Axes.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from .evaluate import coverage_at

__all__ = ["channel_coverage", "coverage_curve", "coverage_histogram", "pixel_bands", "width_map"]

_COLORS = {"R": "tab:red", "G": "tab:green", "B": "tab:blue"}


def _axes(ax):
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4))
    return ax


def coverage_curve(calibration, test_curves: np.ndarray, *, alphas=None, ax=None, source_hash: str = ""):
    """Nominal vs empirical coverage over an alpha grid, per channel.

    Parameters
    ----------
    calibration : Calibration
    test_curves : (n_test, 3, grid) loss curves of test photos
        (``evaluate(...)["test_curves"]``)
    alphas : 1-D array of miscoverage levels (default 0.02 ... 0.4)
    ax : matplotlib Axes, optional
    source_hash : str, the test photo's SHA-256 when it is one photo of the archive a weighted
        calibration keeps per-photo ratios for: its own lambdas are plotted
        (:meth:`colorcube.conformal.calibration.Calibration.lambda_for_photo`)

    The shaded band is where CRC puts the expected coverage:
    ``[1 - alpha, 1 - alpha + 2 / (n + 1)]`` for n calibration images.
    """
    ax = _axes(ax)
    alphas = np.linspace(0.02, 0.4, 20) if alphas is None else np.asarray(alphas)
    alphas = alphas[alphas >= calibration.min_alpha()]
    nominal = 1 - alphas
    ax.fill_between(nominal, nominal, np.minimum(1, nominal + 2 / (calibration.n + 1)), color="0.85",
                    label=f"CRC band (n={calibration.n})")
    ax.plot([nominal.min(), 1], [nominal.min(), 1], color="0.4", lw=1, ls="--", label="nominal")
    covered = np.array([coverage_at(test_curves, calibration.lambda_for_photo(a, source_hash)[0]).mean(axis=0)
                        for a in alphas])
    for c, name in enumerate("RGB"):
        ax.plot(nominal, covered[:, c], marker="o", ms=3, color=_COLORS[name], label=name)
    ax.set_xlabel("nominal coverage 1 - alpha")
    ax.set_ylabel(f"empirical coverage ({test_curves.shape[0]} test photos)")
    ax.set_title("Coverage of the R, G, B bands")
    ax.legend(loc="lower right", fontsize=8)
    return ax


def coverage_histogram(per_image_coverage, *, alpha: float, ax=None, bins: int = 20):
    """Histogram of per-image coverage (n, 3) with the nominal 1 - alpha marked."""
    ax = _axes(ax)
    cov = np.asarray(per_image_coverage)
    for c, name in enumerate("RGB"):
        ax.hist(cov[:, c], bins=bins, range=(max(0.0, cov.min() - 0.01), 1.0), histtype="step",
                color=_COLORS[name], label=f"{name} (mean {cov[:, c].mean():.3f})")
    ax.axvline(1 - alpha, color="k", ls="--", lw=1, label=f"nominal {1 - alpha:.2f}")
    ax.set_xlabel("fraction of an image's pixels covered")
    ax.set_ylabel("images")
    ax.set_title("Per-image coverage")
    ax.legend(fontsize=8)
    return ax


def width_map(ds, *, channel: str = "R", ax=None, max_side: int = 1024):
    """Band width (upper - lower, 0-255 units) of one channel of a cube, as an image."""
    ax = _axes(ax)
    step = max(1, int(np.ceil(max(ds.sizes["y"], ds.sizes["x"]) / max_side)))
    iv = ds["interval"].sel(channel=channel).isel(y=slice(None, None, step), x=slice(None, None, step))
    width = np.asarray((iv.sel(bound="upper") - iv.sel(bound="lower")).values) * 255.0
    im = ax.imshow(width, cmap="magma", vmin=0, vmax=max(1.0, float(np.nanpercentile(width, 99))))
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="width (0-255)")
    ax.set_title(f"{channel} band width, alpha={ds.attrs.get('alpha')}")
    ax.set_axis_off()
    return ax


def pixel_bands(bands, estimate, truth=None, *, ax=None, title: str | None = None):
    """One pixel's R, G, B bands as bars, with its colour estimate and, when known, its true colour.

    Parameters
    ----------
    bands : (3, 2) lower and upper bound per channel, in [0, 1]
    estimate : (3,) colour estimate in [0, 1]; truth : (3,) in [0, 1], optional
    title : str, optional
    """
    ax = _axes(ax)
    for c, name in enumerate("RGB"):
        col = _COLORS[name]
        ax.plot([c, c], np.asarray(bands[c]) * 255, color=col, lw=6, alpha=0.5, solid_capstyle="butt")
        ax.plot(c, estimate[c] * 255, "o", color=col, label="estimate" if c == 0 else None)
        if truth is not None:
            ax.plot(c, truth[c] * 255, "kx", label="truth" if c == 0 else None)
    ax.set_xticks(range(3), list("RGB"))
    ax.set_ylim(0, 255)
    if title:
        ax.set_title(title, fontsize=8)
    ax.legend(fontsize=6, loc="upper right")
    return ax


def channel_coverage(inside, *, alpha: float, ax=None):
    """Share of one image's pixels inside each channel's band, (3,) R, G, B, against the nominal 1 - alpha."""
    ax = _axes(ax)
    ax.bar(list("RGB"), inside, color=[_COLORS[name] for name in "RGB"])
    ax.axhline(1 - alpha, color="k", ls="--", lw=1)
    ax.set_ylim(0, 1)
    ax.set_title(f"this image at alpha {alpha:.2f}", fontsize=9)
    return ax
