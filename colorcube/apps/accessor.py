"""The ``colorcube`` accessor on xarray Datasets: ``ds.colorcube.bands(0.2)`` and friends.

Registered by :mod:`colorcube` as soon as xarray is imported (see the package docstring). It
works on any Dataset holding the cube's
variables (:mod:`colorcube.cube.schema`): a cube from :func:`colorcube.colorize`, one opened with
:func:`colorcube.open_cube`, or the same zarr store read by plain ``xarray.open_zarr``, whose
CF ``scale_factor`` decoding gives float64 values; those are cast to float32 first, which
gives exactly the float32 values ``open_cube`` reads (``code / 255``). Each method delegates
to a plain function: :func:`colorcube.render.fullres.bands_at` and
:func:`colorcube.render.bands.nested_interval` (the explorer's alpha slider),
:func:`colorcube.apps.explorer.explore`, :func:`colorcube.cube.export.write_png` and
:func:`colorcube.metrics.coverage`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

import colorcube

from ..conformal.calibration import Calibration
from ..conformal.estimators import check_alpha
from ..conformal.lookup import cube_calibration
from ..cube.export import write_png
from ..errors import ColorcubeError, SchemaError
from ..guidance.hints import Hints
from ..inputs.images import read_rgb
from ..metrics import coverage
from ..render.codes import BOUNDS, CHANNELS, DIMS
from ..render.fullres import bands_at
from ..render.pins import pinned_band

__all__ = ["CubeAccessor"]

class CubeAccessor:
    """``ds.colorcube``: bands at any alpha, the explorer, a PNG of the colour, coverage against truth.

    Parameters
    ----------
    ds : xarray.Dataset following the cube schema (:mod:`colorcube.cube.schema`), in memory or lazy
        (dask), float32 or float64 (plain ``xarray.open_zarr`` of a stored cube)
    """

    def __init__(self, ds: xr.Dataset):
        self._ds = ds

    # -- helpers -------------------------------------------------------------
    def _values(self, name: str) -> np.ndarray:
        """Variable ``name`` computed as a float32 numpy array (SchemaError when it is missing)."""
        ds = self._ds
        if name not in ds.data_vars:
            raise SchemaError(f"variable {name!r} is missing; a cube holds gray, rgb and interval")
        if ds[name].dims != DIMS[name]:
            raise SchemaError(f"variable {name!r} has dims {ds[name].dims}, expected {DIMS[name]}")
        return np.asarray(ds[name].values, np.float32)

    def _attr(self, key: str):
        if key not in self._ds.attrs:
            raise SchemaError(f"attribute {key!r} is missing; is this a colorcube cube?")
        return self._ds.attrs[key]

    def _interval(self, values: np.ndarray, alpha: float, lam) -> xr.DataArray:
        ds = self._ds
        return xr.DataArray(values, dims=DIMS["interval"],
                            coords={"channel": list(CHANNELS), "bound": list(BOUNDS)}, name="interval",
                            attrs={"alpha": float(alpha), "lambda": [float(v) for v in lam],
                                   "calibration": ds.attrs.get("calibration", "{}")})

    def calibration(self, calibration=None) -> Calibration:
        """The calibration that serves this cube's bands at other alphas.

        Parameters
        ----------
        calibration : None, ``"default"``, a ``.cal`` path or a Calibration, optional
            None (default): the calibration the cube's ``calibration`` attribute names,
            found when it is the shipped one. Otherwise the one given, which must be made
            for the cube's model and pipeline settings (attributes ``model_hash``,
            ``settings``).

        Returns
        -------
        Calibration

        Raises
        ------
        CalibrationError
            The cube is uncalibrated (attribute ``calibrated`` is 0) and none is given,
            the calibration it names is not the shipped one (pass ``calibration=``), or
            the given calibration is for another model or other settings.
        """
        if calibration is None:  # a cube without these attributes is not a colorcube cube
            self._attr("calibrated"), self._attr("calibration")
        return cube_calibration(self._ds.attrs, calibration)

    # -- the API -------------------------------------------------------------
    def bands(self, alpha: float, *, calibration=None) -> xr.DataArray:
        """The R, G, B bands at miscoverage ``alpha``, rebuilt without the model.

        At the cube's own alpha these are the stored bands. At another alpha they are
        rebuilt from the stored ``gray`` and guided ``coefficients`` with lambda from the
        calibration, rounded outward to the 8-bit grid and widened at the cube's hints, as
        colorizing again at that alpha would store them (to float rounding) and exactly as
        the explorer's alpha slider shows them. A photo of the archive a weighted calibration
        keeps per-photo ratios for (by the cube's ``source_hash``) gets its own lambda
        (:meth:`colorcube.conformal.calibration.Calibration.lambda_for_photo`; ``inf``, the band [0, 1], rather than a
        refusal when its weight allows no finite one). Computed in memory for the whole image.

        Parameters
        ----------
        alpha : float in (0, 1), at least what the calibration can serve
            (:meth:`colorcube.conformal.calibration.Calibration.min_alpha`)
        calibration : None, ``"default"``, a ``.cal`` path or a Calibration, optional
            see :meth:`calibration`; None: the one the cube names

        Returns
        -------
        xarray.DataArray ``interval``, dims (y, x, channel, bound), float32 in [0, 1] on the
        grid ``k / 255``, lower <= upper; attributes ``alpha``, ``lambda`` (per channel) and
        ``calibration`` (the summary of the calibration the cube was made with).

        Raises
        ------
        SchemaError
            The cube has no ``coefficients`` (made by a colorcube that did not store them,
            or built from arrays) or lacks ``gray`` or the attributes used.
        CalibrationError
            ``alpha`` outside (0, 1) or below what the calibration serves, or no calibration
            found (see :meth:`calibration`).
        """
        ds = self._ds
        alpha = check_alpha(alpha)
        if np.isclose(alpha, float(self._attr("alpha"))):
            return self._interval(self._values("interval"), alpha, [float(v) for v in self._attr("lambda")])
        if "coefficients" not in ds.data_vars:
            raise SchemaError("variable 'coefficients' is missing: bands at another alpha are rebuilt from the guided "
                              "coefficients colorize stores; colorize the image again at this alpha instead")
        cal = self.calibration(calibration)
        lam, _ = cal.lambda_for_photo(alpha, str(ds.attrs.get("source_hash", "")))  # own weight, if it has one
        gray = self._values("gray")
        coef = ds["coefficients"]
        f, s = bands_at(gray, np.asarray(coef.values, np.float32), coef.attrs["extent"])
        hints = Hints.from_array(ds["hints"].values, gray.shape) if "hints" in ds.data_vars else None
        lo, hi = pinned_band(f, s, lam, hints=hints, gray=gray)
        return self._interval(np.stack([lo, hi], axis=-1), alpha, lam)

    def explore(self, **kwargs):
        """The Jupyter explorer of this cube (:func:`colorcube.apps.explorer.explore`).

        Parameters
        ----------
        **kwargs : keyword options of :func:`colorcube.apps.explorer.explore` (``calibration``,
            ``truth``, ``max_side``, ``model``)

        Returns
        -------
        ipywidgets.VBox, not displayed; its ``explorer`` attribute is the
        :class:`colorcube.apps.explorer.Explorer`
        """
        return colorcube.explore(self._ds, **kwargs)  # the explorer's widgets load on this first use

    def to_png(self, path) -> Path:
        """Write the colour estimate ``rgb`` as an 8-bit RGB PNG (:func:`colorcube.cube.export.write_png`).

        Parameters
        ----------
        path : str or Path of the ``.png`` to write

        Returns
        -------
        Path, the file written; its pixels are ``round(rgb * 255)``, the cube's stored codes

        Raises
        ------
        SchemaError
            The cube has no ``rgb``.
        ColorcubeError
            The file cannot be written.
        """
        return write_png(path, self._values("rgb"))

    def coverage(self, truth, *, alpha: float | None = None, calibration=None) -> xr.DataArray:
        """Share of pixels whose true value lies inside the band, per channel.

        Parameters
        ----------
        truth : path of a colour photo (read by :func:`colorcube.inputs.images.read_rgb`) or (y, x, 3)
            array of the cube's size: float in [0, 1], or integers (divided by their dtype's
            maximum, as a photo file reads)
        alpha : float in (0, 1), optional; default the stored bands, else :meth:`bands` at alpha
        calibration : see :meth:`bands` (used only with ``alpha``)

        Returns
        -------
        xarray.DataArray ``coverage``, dims (channel,) R, G, B, float64 in [0, 1];
        attribute ``alpha``, the level the bands were made for.

        Raises
        ------
        ColorcubeError
            ``truth`` not (y, x, 3) of the cube's size, or outside [0, 1]; an unreadable
            photo raises :class:`~colorcube.errors.ImageReadError`.
        """
        iv = self.bands(alpha, calibration=calibration) if alpha is not None else None
        interval = iv.values if iv is not None else self._values("interval")
        a = float(alpha) if alpha is not None else float(self._attr("alpha"))
        t = read_rgb(truth) if isinstance(truth, (str, Path)) else np.asarray(truth)
        if t.shape != interval.shape[:3]:
            raise ColorcubeError(f"truth has shape {t.shape}; the cube's bands need {interval.shape[:3]} "
                                 "(y, x, R G B)")
        if np.issubdtype(t.dtype, np.integer):
            t = t.astype(np.float32) / np.float32(np.iinfo(t.dtype).max)
        t = t.astype(np.float32)
        if t.size and not (np.isfinite(t).all() and t.min() >= 0 and t.max() <= 1):
            raise ColorcubeError("truth: float values must be finite and in [0, 1] (or give integers)")
        return xr.DataArray(coverage(interval, t), dims=("channel",), coords={"channel": list(CHANNELS)},
                            name="coverage", attrs={"alpha": a})
