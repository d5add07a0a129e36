"""Jupyter explorer: colour, bands, band width, misses, per-pixel intervals, coverage, hints.

``import colorcube`` loads none of this module's widgets nor matplotlib: it is imported when an
explorer is first made (:func:`colorcube.explore`, ``ds.colorcube.explore()``). The charts are
:mod:`colorcube.apps.plot` figures. Only the image on show is
read, strided down to ``max_side`` pixels, so archives larger than memory open
instantly.

Hints: a click on the image picks a pixel (ipyevents); "place hint" puts the
colour picker's colour there and recolorizes: the gray already read is reused
and only the working stage (the network, with and without the hints) and the
full-resolution stage on the displayed pixels run again. "undo" takes the last
hint back, "export hints" writes them as a ``.json`` hint file
(``colorcube colorize --hints FILE``), and :meth:`Explorer.cube` colorizes the
whole image with them.

Where and what to hint: "suggest where to hint" marks the k positions where a true
colour would shrink the bands most (:func:`colorcube.apps.triage.suggest_hints` on the bands
on show) and lists them as buttons; a click on one (or "palette here") picks that pixel
and shows the few most probable distinct colours the network hesitates between
(:func:`colorcube.apps.triage.palette`) as swatches; a click on a swatch places it as a hint.
"""

from __future__ import annotations

import io
from pathlib import Path

import ipywidgets as w
import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from ipyevents import Event

from ..conformal.estimators import lambda_star, loss_curve
from ..conformal.lookup import cube_calibration, resolve_calibration
from ..cube.export import png_bytes
from ..cube.index import archive_index, open_image
from ..cube.store import open_cube
from ..errors import CalibrationError, ColorcubeError
from ..guidance.hints import Hints
from ..inputs.images import read_rgb
from ..render.codes import CODE_MAX
from ..render.fullres import bands_at
from ..render.pins import pin, pinned_band
from ..run.colorize import colorize
from .explorer_hints import HintTools
from .plot import channel_coverage, coverage_curve, pixel_bands

__all__ = ["Explorer", "explore"]

VIEWS = ("colour", "gray", "lower", "upper", "band width", "miss map")


def _figure_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _magma(x: np.ndarray) -> np.ndarray:
    return plt.get_cmap("magma")(np.clip(x, 0, 1))[..., :3]


class Explorer(HintTools):
    """State and callbacks of the explorer; :func:`explore` returns ``Explorer(...).widget``.

    Parameters
    ----------
    images : dict name -> zero-argument callable returning a cube Dataset (lazy)
    calibration : Calibration or None, serves lambda for any alpha
    truth : dict name -> (y, x, 3) float array in [0, 1], optional
    max_side : int, longest displayed side in pixels
    model : ColorNet, optional, for recolorizing with hints (default: the shipped model,
        loaded on the first hint); it must be the model that made the cubes
    """

    def __init__(self, images: dict, *, calibration=None, truth=None, max_side: int = 512, model=None,
                 named: bool = False):
        self._widgets = w
        if not images:
            raise ColorcubeError("nothing to explore: no complete images")
        self.images, self.calibration, self.truth = images, calibration, truth or {}
        self.named = named  # the calibration (the shipped one) serves only cubes that name it
        self.max_side = max_side
        self.model = model
        self._cache = {}
        self._actions = {}  # image name -> list of hint lists, one per placement (undo pops one)
        self._gray = {}  # image name -> full-resolution gray, read on the first recolorize
        names = list(images)
        self.picker = w.Dropdown(options=names, value=names[0], description="image",
                                 layout=w.Layout(display="flex" if len(names) > 1 else "none"))
        self.view = w.ToggleButtons(options=list(VIEWS), value="colour", description="view")
        self.channel = w.ToggleButtons(options=["R", "G", "B"], value="R", description="channel")
        # the slider starts at the smallest alpha the calibration serves (1/(n+1) for CRC), on its 0.01 steps
        lo = 0.02 if calibration is None else min(0.5, max(0.02, float(np.ceil(calibration.min_alpha() * 100) / 100)))
        self.alpha = w.FloatSlider(value=max(0.1, lo), min=lo, max=0.5, step=0.01, description="alpha",
                                   continuous_update=True, readout_format=".2f")
        self.px = w.IntSlider(description="x", min=0, max=1)
        self.py = w.IntSlider(description="y", min=0, max=1)
        self.image = w.Image(format="png", layout=w.Layout(max_width=f"{max_side}px"))
        self.pixel_chart = w.Image(format="png")
        self.coverage_panel = w.Image(format="png")
        self.status = w.HTML()
        self.colour = w.ColorPicker(value="#c03020", description="hint colour", concise=False)
        self.place = w.Button(description="place hint", tooltip="put the colour at the picked pixel and recolorize")
        self.undo = w.Button(description="undo", tooltip="take the last hint back")
        self.export = w.Button(description="export hints", tooltip="write the hints as a .json hint file")
        self.export_path = w.Text(value="hints.json", description="to file")
        self.click_places = w.Checkbox(value=False, description="a click places a hint", indent=False)
        self.hint_status = w.HTML()
        self.suggest_k = w.BoundedIntText(value=5, min=1, max=50, description="k", layout=w.Layout(width="120px"))
        self.suggest = w.Button(description="suggest where to hint",
                                tooltip="mark the k positions where a true colour would shrink the bands most")
        self.suggestions = w.HBox()
        self.show_palette = w.Button(description="palette here", tooltip="the colours the network hesitates between")
        self.swatches = w.HBox()
        self.suggested = np.zeros((0, 2), np.int64)  # display coordinates of the marked suggestions
        self.suggest.on_click(lambda _: self.suggest_positions())
        self.show_palette.on_click(lambda _: self.palette_at())
        self.suggest.add_class("colorcube-suggest")
        self.place.on_click(lambda _: self.place_hint())
        self.undo.on_click(lambda _: self.undo_hint())
        self.export.on_click(lambda _: self.export_hints())
        self.place.add_class("colorcube-place")
        self.undo.add_class("colorcube-undo")
        self.colour.add_class("colorcube-colour")
        self._events = Event(source=self.image, watched_events=["click"])
        self._events.on_dom_event(self._on_click)
        self.picker.observe(lambda _: self._load(), "value")
        for control in (self.view, self.channel, self.alpha):
            control.observe(lambda _: self._render(), "value")
        for control in (self.px, self.py, self.alpha):
            control.observe(lambda _: self._render_pixel(), "value")
        self.alpha.observe(lambda _: self._render_coverage(), "value")
        controls = w.VBox([self.picker, self.view, self.channel, self.alpha, self.status])
        pixel = w.VBox([w.HTML("<b>pixel</b> (display coordinates; click the image)"), self.px, self.py,
                        self.pixel_chart])
        hints = w.VBox([w.HTML("<b>hints</b>"), self.colour, self.click_places,
                        w.HBox([self.place, self.undo]), w.HBox([self.export, self.export_path]), self.hint_status,
                        w.HBox([self.suggest, self.suggest_k]), self.suggestions,
                        self.show_palette, self.swatches])
        self.widget = w.VBox([controls, w.HBox([self.image, w.VBox([pixel, hints])]), self.coverage_panel])
        self.widget.add_class("colorcube-explorer")
        self._load()

    # -- data -------------------------------------------------------------
    def _load(self) -> None:
        name = self.picker.value
        ds = self.images[name]()
        step = max(1, int(np.ceil(max(ds.sizes["y"], ds.sizes["x"]) / self.max_side)))
        small = ds.isel(y=slice(None, None, step), x=slice(None, None, step))
        d = {"rgb": np.asarray(small["rgb"].values, np.float32), "gray": np.asarray(small["gray"].values),
             "interval": np.asarray(small["interval"].values, np.float32)}
        if "coefficients" in ds:  # the unrounded colour and band scale, exactly as colorize had them
            c = ds["coefficients"]
            d["f"], d["scale"] = bands_at(d["gray"], c.values, c.attrs["extent"],
                                          shape=(ds.sizes["y"], ds.sizes["x"]), step=step)
        else:  # recover from the stored band: exact wherever one side is not clipped
            d["f"] = d["rgb"]
            lam = np.array([float(v) for v in ds.attrs["lambda"]])
            half = np.maximum(d["rgb"] - d["interval"][..., 0], d["interval"][..., 1] - d["rgb"])
            d["scale"] = np.where(np.isfinite(lam) & (lam > 0), half / np.where(lam > 0, lam, 1), 0.0)
        d["shape"] = (ds.sizes["y"], ds.sizes["x"])
        d["hints"] = None
        if "hints" in ds:  # the cube's own hints: its colour and bands are pinned there
            d["hints"] = Hints.from_array(ds["hints"].values, d["shape"], source=name)
            if d["hints"] is not None and "coefficients" in ds:  # the coefficients do not know the pins
                pin(d["hints"], d["gray"], d["f"], None, None, step=step)
        if name not in self._actions:
            self._actions[name] = [d["hints"].points()] if d["hints"] is not None else []
        truth = self.truth.get(name)
        d["truth"] = None if truth is None else np.asarray(truth, np.float32)[::step, ::step]
        d["attrs"], d["step"] = dict(ds.attrs), step
        # the slider may only rescale bands with a calibration of the model and settings that made them
        d["cal"] = _compatible(self.calibration, d["attrs"], named=self.named)
        self.data = d
        self._stored = dict(d)  # the cube as loaded, restored when every hint is undone
        h, w = d["gray"].shape
        self.px.max, self.py.max = w - 1, h - 1
        self.px.value, self.py.value = w // 2, h // 2
        self.suggested = np.zeros((0, 2), np.int64)
        self.suggestions.children, self.swatches.children = (), ()
        self._hint_status()
        self.view.options = list(VIEWS) if d["truth"] is not None else list(VIEWS[:-1])
        if self._actions[name] != ([d["hints"].points()] if d["hints"] is not None else []):
            self._recolorize()  # back on an image whose hints were changed here: show them again
            return
        self._render()
        self._render_pixel()
        self._render_coverage()

    def bands(self, alpha: float | None = None) -> np.ndarray:
        """Displayed (y, x, 3, 2) bands for ``alpha`` from the calibration; no model call.

        At the cube's own alpha these are the stored bands; at another alpha they are
        rebuilt from the cube's gray and guided coefficients, as colorizing again at
        that alpha would store them (to float rounding).
        """
        d = self.data
        alpha = self.alpha.value if alpha is None else alpha
        if d["cal"] is None or np.isclose(alpha, float(d["attrs"]["alpha"])):
            return d["interval"]
        return self._kept("bands", alpha, lambda: self._bands_for(
            d["cal"].lambda_for_photo(alpha, str(d["attrs"].get("source_hash", "")))[0]))  # own weight, if any

    def _kept(self, kind: str, key, make):
        """The last ``make()`` of each kind, while the image data on show and ``key`` stay the same:
        one slider move redraws the image, the pixel chart and the coverage panel from one set of
        bands. The data dict itself is held, so a new one (another image, a recolorization) is
        never mistaken for it; one entry per kind bounds the memory."""
        memo = getattr(self, "_memo", None)
        if memo is None or memo[0] is not self.data:
            memo = self._memo = (self.data, {})
        have = memo[1].get(kind)
        if have is None or have[0] != key:
            have = memo[1][kind] = (key, make())
        return have[1]

    def _bands_for(self, lam) -> np.ndarray:
        """Bands at ``lam`` from the displayed colour and scale, rounded outward, widened at the hints."""
        d = self.data
        lo, hi = pinned_band(d["f"], d["scale"], lam, hints=d["hints"], gray=d["gray"], step=d["step"])
        return np.stack([lo, hi], axis=-1)

    # -- rendering -------------------------------------------------------
    def current_view(self) -> np.ndarray:
        """The (y, x, 3) float image now on show."""
        d, c = self.data, "RGB".index(self.channel.value)
        view = self.view.value
        if view == "colour":
            return _marked(d["rgb"], self.suggested)
        if view == "gray":
            return np.repeat(d["gray"][..., None], 3, axis=2)
        iv = self.bands()
        if view in ("lower", "upper"):
            out = d["rgb"].copy()
            out[..., c] = iv[..., c, 0 if view == "lower" else 1]
            return out
        if view == "band width":
            return _magma((iv[..., c, 1] - iv[..., c, 0]) / 0.5)  # widths of half the range and more saturate
        truth = d["truth"][..., c]
        miss = (truth < iv[..., c, 0]) | (truth > iv[..., c, 1])
        out = np.repeat(d["gray"][..., None], 3, axis=2) * 0.6
        out[miss] = [1.0, 0.1, 0.1]
        return out

    def _render(self) -> None:
        self.image.value = png_bytes(self.current_view())
        a = self.data["attrs"]
        cal = ("bands from the calibration at the slider's alpha" if self.data["cal"] is not None
               else f"stored bands only (alpha {a.get('alpha')}; no matching calibration)")
        self.status.value = (f"<small>{self.data['gray'].shape[1] * self.data['step']} x "
                             f"{self.data['gray'].shape[0] * self.data['step']} px, shown 1:{self.data['step']}; "
                             f"{cal}; model {str(a.get('model_hash', ''))[:12]}</small>")

    def _render_pixel(self) -> None:
        d = self.data
        y, x = self.py.value, self.px.value
        fig, ax = plt.subplots(figsize=(3, 2.2))
        pixel_bands(self.bands()[y, x], d["rgb"][y, x], None if d["truth"] is None else d["truth"][y, x], ax=ax,
                    title=f"pixel ({x}, {y}), alpha {self.alpha.value:.2f}")
        self.pixel_chart.value = _figure_png(fig)

    def _render_coverage(self) -> None:
        d = self.data
        if d["truth"] is None or d["cal"] is None:
            self.coverage_panel.layout.display = "none"
            return
        self.coverage_panel.layout.display = "flex"
        rgb, s, t = d["f"], d["scale"], d["truth"]
        curves = self._kept("curves", None, lambda: loss_curve(lambda_star(rgb, rgb - s, rgb + s, t,
                                                                      levels=CODE_MAX).reshape(-1, 3))[None])
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(8, 3))
        coverage_curve(d["cal"], curves, ax=a1, source_hash=str(d["attrs"].get("source_hash", "")))
        iv = self.bands()
        inside = ((t >= iv[..., 0]) & (t <= iv[..., 1])).reshape(-1, 3).mean(axis=0)
        channel_coverage(inside, alpha=self.alpha.value, ax=a2)
        self.coverage_panel.value = _figure_png(fig)


def _marked(rgb: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``rgb`` with a black-and-white ring around each (y, x) of ``points`` (suggested hint positions)."""
    if not len(points):
        return rgb
    out = rgb.copy()
    h, w = rgb.shape[:2]
    yy, xx = np.ogrid[-6:7, -6:7]
    r2 = yy**2 + xx**2
    for y, x in points:
        for lo, hi, colour in ((20, 42, 0.0), (9, 20, 1.0)):
            ring = (r2 >= lo) & (r2 < hi)
            ys, xs = (yy + y).repeat(13, axis=1)[ring], (xx + x).repeat(13, axis=0)[ring]
            keep = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
            out[ys[keep], xs[keep]] = colour
    return out


def _images_from(obj) -> dict:
    if isinstance(obj, xr.Dataset):
        return {"image": lambda: obj}
    if isinstance(obj, xr.DataTree):
        return {name: (lambda node=node: node.to_dataset()) for name, node in obj.children.items()}
    path = Path(str(obj))
    if (path / "images").is_dir() or "://" in str(obj):
        index = archive_index(obj)
        names = list(index[index.status == "complete"].name)
        return {n: (lambda n=n: open_image(obj, n)) for n in names}
    if path.suffix == ".zarr":
        return {path.stem: lambda: open_cube(path)}
    if path.is_file():
        return {path.stem: lambda: colorize(path)}
    raise ColorcubeError(f"{obj}: not a cube, an archive, a zarr store or an image file")


def _compatible(calibration, attrs: dict, *, named: bool = False):
    """The calibration that serves a cube's bands at other alphas by the accessor's rule
    (:func:`colorcube.conformal.lookup.cube_calibration`; ``named``: the one the cube names), else None."""
    if calibration is None:
        return None
    try:
        return cube_calibration(attrs, None if named else calibration)
    except CalibrationError:
        return None


def explore(obj, *, calibration="default", truth=None, max_side: int = 512, model=None):
    """Build the explorer for a cube, an archive (DataTree or path) or an image path.

    Parameters
    ----------
    obj : xarray.Dataset, xarray.DataTree, archive path/URL, cube ``.zarr`` or image path
    calibration : "default", a .cal path, a Calibration, or None
        "default": the shipped one, for the cubes that name it (as ``ds.colorcube.bands``);
        a path or Calibration: for the cubes of its model and settings; None: only the
        stored bands (the alpha slider then has no effect)
    truth : (y, x, 3) array or colour-photo path (one image), or dict name -> either;
        enables the miss map and the coverage panel
    max_side : int, longest displayed side
    model : ColorNet, optional, the model that made the cubes, for recolorizing with hints
        (default: the shipped model, loaded when the first hint is placed)

    Returns
    -------
    ipywidgets.VBox (not displayed); its ``explorer`` attribute is the Explorer
    """
    images = _images_from(obj)
    # the cubes name their model; each is checked against the calibration's when it is shown
    named = isinstance(calibration, str) and calibration == "default"
    calibration = resolve_calibration(calibration, model)
    if truth is not None and not isinstance(truth, dict):
        truth = {next(iter(images)): truth}
    truth = {k: (read_rgb(v) if isinstance(v, (str, Path)) else np.asarray(v)) for k, v in (truth or {}).items()}
    app = Explorer(images, calibration=calibration, truth=truth, max_side=max_side, model=model, named=named)
    app.widget.explorer = app
    return app.widget
