"""The explorer's hint tools: click to pick a pixel or place a hint, undo, export, recolorize the
image on show with its hints (:func:`colorcube.run.pipeline.photo_step`, the gray already read is
reused), suggested hint positions and palettes, and the full cube with the hints.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..errors import ColorcubeError
from ..guidance.hints import Hints, as_hints
from ..network.weights import load_model
from ..render.fullres import bands_at
from ..render.pins import pin
from ..run.colorize import colorize
from ..run.pipeline import Run, photo_step
from ..settings import PipelineSettings
from .triage import palette, suggest_hints

__all__ = ["HintTools"]


class HintTools:
    """Hint methods of :class:`colorcube.apps.explorer.Explorer` (which holds the state they use:
    ``data``, ``images``, the widgets)."""

    # -- hints -----------------------------------------------------------
    def _on_click(self, event: dict) -> None:
        """ipyevents click on the image: pick that pixel (and place a hint when the box is ticked)."""
        x, y = event.get("dataX"), event.get("dataY")
        if x is None or y is None:
            return
        h, w = self.data["gray"].shape
        self.px.value = int(min(max(int(x), 0), w - 1))
        self.py.value = int(min(max(int(y), 0), h - 1))
        if self.click_places.value:
            self.place_hint()

    def hints(self, name: str | None = None) -> Hints | None:
        """The hints placed on image ``name`` (default: the one on show), in input pixels."""
        name = self.picker.value if name is None else name
        points = [pt for action in self._actions.get(name, []) for pt in action]
        return as_hints(points, self._shape(name), name=name) if points else None

    def _shape(self, name: str) -> tuple:
        if name == self.picker.value:
            return self.data["shape"]
        ds = self.images[name]()
        return ds.sizes["y"], ds.sizes["x"]

    def place_hint(self, y: int | None = None, x: int | None = None, colour: str | None = None) -> None:
        """Put ``colour`` ("#rrggbb"; default the picker's) at input pixel (y, x) (default: the
        picked display pixel) and recolorize."""
        d = self.data
        step, (h, w) = d["step"], d["shape"]
        y = min(self.py.value * step, h - 1) if y is None else int(y)
        x = min(self.px.value * step, w - 1) if x is None else int(x)
        colour = self.colour.value if colour is None else colour
        point = as_hints([(y, x, colour)], (h, w), name="hint").points()  # validated before it is kept
        self._actions.setdefault(self.picker.value, []).append(point)
        self._recolorize()

    def undo_hint(self) -> None:
        """Take the last placement back and recolorize."""
        actions = self._actions.get(self.picker.value, [])
        if actions:
            actions.pop()
            self._recolorize()

    def export_hints(self, path=None) -> Path | None:
        """Write the image's hints as a ``.json`` hint file (default: the "to file" box); None if there are none."""
        hints = self.hints()
        if hints is None:
            self.hint_status.value = "<small>no hints to export</small>"
            return None
        out = hints.save(self.export_path.value if path is None else path)
        self.hint_status.value = f"<small>wrote {len(hints)} hints to {out}</small>"
        return out

    def _recolorizer(self) -> Run:
        """The run that made the cube on show (its model, settings, alpha and lambda); ColorcubeError
        when its model cannot be had."""
        attrs = self.data["attrs"]
        if self.model is None:
            self.model = load_model(device="cpu")
        have = getattr(self.model, "weights_hash", "")
        if attrs.get("model_hash") and have != attrs["model_hash"]:
            raise ColorcubeError(f"recolorizing needs the model that made this cube ({attrs['model_hash'][:12]}), "
                                 f"not {have[:12]}: pass model= to explore()")
        settings = PipelineSettings(**json.loads(attrs.get("settings") or "{}"))
        lam = np.array([float(v) for v in attrs["lambda"]])
        return Run(self.model, None, settings, float(attrs["alpha"]), lam, attrs)

    def _recolorize(self) -> None:
        """Recompute the displayed colour and bands with the current hints (reusing the gray)."""
        name, t0 = self.picker.value, time.perf_counter()
        hints = self.hints(name)
        stored = self._stored
        if hints is None and stored["hints"] is None:
            self.data = dict(stored)  # back to the cube as loaded, exactly
        else:
            try:
                run = self._recolorizer()
            except ColorcubeError as exc:
                self._actions[name].pop()
                self.hint_status.value = f"<small style='color:#b00'>{exc}</small>"
                return
            if name not in self._gray:
                self._gray[name] = np.asarray(self.images[name]()["gray"].values, np.float32)
            gray = self._gray[name]
            coeffs = photo_step(gray, run, hints=hints).coeffs
            d = dict(stored)
            step = d["step"]
            f, s = bands_at(d["gray"], coeffs.coef, coeffs.extent, shape=d["shape"], step=step)
            if hints is not None:
                pin(hints, d["gray"], f, None, None, step=step)
            d.update(f=f, scale=s, hints=hints, rgb=(np.round(f * 255) / np.float32(255)).astype(np.float32))
            self.data = d
            lam = [float(v) for v in d["attrs"]["lambda"]]
            d["interval"] = self._bands_for(np.array(lam))
        self.seconds = time.perf_counter() - t0
        self._render()
        self._render_pixel()
        self._render_coverage()
        self._hint_status()

    def _hint_status(self) -> None:
        hints = self.hints()
        n = 0 if hints is None else len(hints)
        took = f"; recolorized in {self.seconds:.2f} s" if getattr(self, "seconds", None) is not None else ""
        self.hint_status.value = f"<small>{n} hint pixels{took}</small>"

    def suggest_positions(self, k: int | None = None) -> np.ndarray:
        """Mark and list the k (default the box's) suggested hint positions of the bands on show;
        returns them as (k, 2) (y, x) input pixels."""
        w = self._widgets
        self.suggested = suggest_hints(self.bands(), self.suggest_k.value if k is None else int(k),
                                       gray=np.asarray(self.data["gray"], np.float32))
        buttons = []
        for i, (y, x) in enumerate(self.suggested):
            b = w.Button(description=str(i + 1), tooltip=f"pick ({x}, {y}) and show its palette",
                         layout=w.Layout(width="40px"))
            b.add_class("colorcube-suggestion")
            b.on_click(lambda _, y=int(y), x=int(x): self._pick(y, x))
            buttons.append(b)
        self.suggestions.children = tuple(buttons)
        self._render()
        return self.suggested * self.data["step"]

    def _pick(self, y: int, x: int) -> None:
        self.py.value, self.px.value = y, x
        self.palette_at()

    def palette_at(self, k: int = 5) -> list:
        """Show the network's most probable distinct colours at the picked pixel, given the hints
        placed, as swatches (a click places one as a hint); returns them (see
        :func:`colorcube.apps.triage.palette`)."""
        w = self._widgets
        name, step, (h, wd) = self.picker.value, self.data["step"], self.data["shape"]
        y, x = min(self.py.value * step, h - 1), min(self.px.value * step, wd - 1)
        try:
            run = self._recolorizer()
            if name not in self._gray:
                self._gray[name] = np.asarray(self.images[name]()["gray"].values, np.float32)
            colours = palette(self._gray[name], [(y, x)], model=run.model, k=k, settings=run.settings,
                              hints=self.hints(name))[0]
        except ColorcubeError as exc:
            self.hint_status.value = f"<small style='color:#b00'>{exc}</small>"
            return []
        swatches = []
        for c in colours:
            hexa = "#" + "".join(f"{int(round(v * 255)):02x}" for v in np.clip(c["rgb"], 0, 1))
            b = w.Button(description=f"{c['probability']:.0%}", tooltip=f"place {hexa} at ({x}, {y})",
                         layout=w.Layout(width="56px"))
            b.style.button_color = hexa
            b.add_class("colorcube-swatch")
            b.on_click(lambda _, hexa=hexa, y=y, x=x: self.place_hint(y, x, hexa))
            swatches.append(b)
        self.swatches.children = tuple(swatches)
        return colours

    def cube(self, *, alpha: float | None = None):
        """The image on show colorized at full resolution with its hints (a cube Dataset).

        Bands come from the explorer's calibration when it matches the cube's model, else
        they are uncalibrated (lambda = 1).
        """
        run = self._recolorizer()
        name = self.picker.value
        gray = self._gray.get(name)
        if gray is None:
            gray = self._gray[name] = np.asarray(self.images[name]()["gray"].values, np.float32)
        return colorize(gray, alpha=self.alpha.value if alpha is None else alpha, model=run.model,
                        calibration=self.data["cal"], settings=run.settings, hints=self.hints(name),
                        source_hash=self.data["attrs"].get("source_hash") or None)  # its own lambda, if it has one
