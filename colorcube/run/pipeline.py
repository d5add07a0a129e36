"""One gray image -> colour cube: the run's preparation, both stages, the cube.

1. *Working resolution* (:mod:`colorcube.network.working`): the network and the guided-filter
   coefficients ``(A, B)``, 10 small maps per image.
2. *Full resolution* (:mod:`colorcube.render.fullres`): every output pixel is ``A(x) * L(x) + B(x)``
   with ``A`` and ``B`` bilinearly sampled at the pixel's position and ``L`` the
   full-resolution lightness, then Lab -> RGB and the conformal interval, as storage
   codes (:mod:`colorcube.render.codes`). The stage is pointwise given (A, B), so tiles of any
   size reproduce the untiled result exactly; no halo is needed.

:func:`prepare_run` is the one preparation (alpha, model, calibration, settings, lambda,
attributes) behind :func:`colorcube.run.colorize.colorize`, the archive, the command line, the explorer and
evaluation.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from ..conformal.calibration import Calibration
from ..conformal.estimators import check_alpha
from ..conformal.lookup import calibration_hint_points, resolve_calibration
from ..cube.attrs import _finite_or_str, cube_attrs, guided_attrs
from ..guidance.hints import Hints, as_hints
from ..guidance.reference import reference_histogram
from ..inputs.images import DEFAULT_MAX_PIXELS, array_to_gray, image_digest, read_gray
from ..network.guided import N_MAPS, Coefficients
from ..network.model import ColorNet
from ..network.weights import load_model, load_weights
from ..network.working import WorkingInput, coefficients_of, working_stage
from ..render.fullres import stage_codes
from ..settings import PipelineSettings

__all__ = ["Colorized", "Photo", "Run", "colorize_codes", "colorize_gray", "load_kernels", "photo_lambda", "photo_step",
           "prepare_run", "read_input"]

log = logging.getLogger(__name__)


def load_kernels() -> None:
    """Load the compiled kernels of both stages from numba's cache by running them once on a
    tiny image: numba's own start-up, paid once per process. The command line runs
    this in a thread while it loads the model and runs the network, which release the GIL."""
    coeffs = coefficients_of(np.zeros((N_MAPS, 2, 2), np.float32),
                             WorkingInput((8, 8), torch.zeros(8, 8), torch.zeros(1, 1, 8, 8)), PipelineSettings())
    stage_codes(np.zeros((8, 8), np.float32), coeffs, np.ones(3))


@dataclasses.dataclass(frozen=True)
class Run:
    """What every image of one colorization run shares (:func:`prepare_run`).

    ``lam`` : (3,) float64 lambda per R, G, B (ones when uncalibrated); ``attrs`` : the
    cube attributes of the run (:func:`colorcube.cube.attrs.cube_attrs`), ``source`` still "<array>";
    ``photo_lambdas`` : {SHA-256: ((3,) lambda, weight)} for the target archive's photos of a
    weighted calibration that keeps their own ratios (see :func:`photo_lambda`), else empty;
    ``hint_points`` : the calibration's simulated hint points per photo (None: uncalibrated).
    ``model`` and ``calibration`` may be None in a copy sent to workers, which load the model
    themselves and need nothing else of the calibration.
    """

    model: ColorNet | None
    calibration: Calibration | None
    settings: PipelineSettings
    alpha: float
    lam: np.ndarray
    attrs: dict
    photo_lambdas: dict = dataclasses.field(default_factory=dict)
    hint_points: int | None = None


def photo_lambda(photo_lambdas: dict, digest: str, lam) -> tuple[np.ndarray, dict]:
    """The lambda one photo is served with, and the cube attributes that record it.

    Parameters
    ----------
    photo_lambdas : :attr:`Run.photo_lambdas`; digest : the photo's SHA-256 ("" if unknown)
    lam : (3,) the run's lambda, for any photo not in ``photo_lambdas``

    Returns
    -------
    lam : (3,) float64 (``inf`` where the photo's own weight allows no finite lambda:
        its band is [0, 1])
    attrs : {} or ``lambda``, ``calibration_weight`` (the photo's own likelihood ratio) and
        ``source_hash`` (what the bands at another alpha are looked up by)
    """
    own = photo_lambdas.get(digest) if digest else None
    if own is None:
        return np.asarray(lam, np.float64), {}
    own_lam, weight = own
    if not np.isfinite(own_lam).all():
        log.warning("photo %s… looks unlike every calibration photo (likelihood ratio %.3g): its weighted-conformal "
                    "band is the whole range [0, 1]", digest[:12], weight)
    return np.asarray(own_lam, np.float64), {"lambda": [_finite_or_str(float(v)) for v in own_lam],
                                             "calibration_weight": float(weight), "source_hash": digest}


def prepare_run(*, alpha: float = 0.1, model: ColorNet | None = None, weights=None, device="auto",
                calibration="default", settings: PipelineSettings | None = None, where: str | None = None) -> Run:
    """Check alpha, load the model and calibration, settle the settings, lambda and attributes.

    The one preparation behind :func:`colorcube.run.colorize.colorize`, :func:`colorcube.colorize_archive`, the
    command line, the explorer and :func:`colorcube.evaluate`.

    Parameters
    ----------
    alpha : float in (0, 1), miscoverage of the bands
    model : ColorNet, optional; else loaded from ``weights`` (a .safetensors path; default
        the shipped weights) on ``device`` ("auto", "cpu", "cuda")
    calibration : "default", a ``.cal`` path, a Calibration, or None (uncalibrated)
    settings : PipelineSettings, optional; default the calibration's. A calibration made
        with other settings or another model is refused (CalibrationError), naming ``where``
        (default: the calibration)

    Returns
    -------
    Run
    """
    alpha = check_alpha(alpha)
    if model is None:
        model = load_weights(weights, device=device) if weights else load_model(device=device)
    cal = resolve_calibration(calibration, model)
    settings = settings or PipelineSettings.of(cal)
    sdict = settings.as_dict(model)
    if cal is not None:
        options = {"where": where} if where else {}
        cal.check_compatible(model_hash=getattr(model, "weights_hash", None), settings=sdict, **options)
    lam = cal.lambda_for(alpha) if cal is not None else np.ones(3)
    attrs = cube_attrs(alpha=alpha, lam=lam, calibration=cal, model=model, settings=sdict)
    own = cal.photo_lambdas(alpha) if cal is not None else {}
    return Run(model, cal, settings, alpha, np.asarray(lam, np.float64), attrs, own,
               None if cal is None else calibration_hint_points(cal))


def read_input(image, max_pixels="default") -> tuple[np.ndarray, str]:
    """``(gray, source)`` of a photo given as a path (read, ``max_pixels`` its ceiling: "default",
    an int or None) or an array (:func:`colorcube.inputs.images.array_to_gray`): the one entry of
    every input photo."""
    if isinstance(image, (str, Path)):
        return read_gray(image, max_pixels=DEFAULT_MAX_PIXELS if max_pixels == "default" else max_pixels), str(image)
    return array_to_gray(image, name="image"), "<array>"


class Colorized(NamedTuple):
    """One image colorized, as storage codes (what :func:`colorcube.run.colorize.colorize` wraps in a Dataset).

    ``codes`` : dict of ``gray`` (y, x) uint8/uint16, ``rgb`` (y, x, 3) uint8 and ``interval``
    (y, x, 3, 2) uint8 (:mod:`colorcube.render.codes`); ``attrs`` : the cube attributes;
    ``coefficients`` : ``(coef (gy, gx, 10) float32, extent)``; ``hints`` : (n, 5) int32 or None.
    """

    codes: dict
    attrs: dict
    coefficients: tuple
    hints: np.ndarray | None


class Photo(NamedTuple):
    """One photo through :func:`photo_step`: ``coeffs`` its working-stage Coefficients, ``lam``
    (3,) float64 the lambda it is served with, ``attrs`` its cube attributes, ``hints`` its
    Hints (or None)."""

    coeffs: Coefficients
    lam: np.ndarray
    attrs: dict
    hints: Hints | None


def photo_step(gray: np.ndarray, run: Run, *, source: str = "<array>", digest: str = "", hints=None,
               reference=None, reference_strength: float = 1.0, coeffs: Coefficients | None = None) -> Photo:
    """The per-photo step every path shares (:func:`colorcube.run.colorize.colorize`, the archive, the explorer): the
    photo's hints checked, its lambda and cube attributes settled, and its working stage run
    (unless ``coeffs`` already holds it: the archive batches the network over photos).

    Parameters
    ----------
    gray : (y, x) float32 in [0, 1]
    run : Run (:func:`prepare_run`); its model is used only when ``coeffs`` is None
    source : what the photo is called in its attributes; digest : its SHA-256 ("" unknown),
        for a weighted calibration's own lambdas (:func:`photo_lambda`)
    hints, reference, reference_strength : as :func:`colorcube.colorize` (a reference may be
        given already read, :func:`colorcube.guidance.reference.reference_histogram`)
    coeffs : Coefficients of the photo when its working stage is already computed

    Returns
    -------
    Photo
    """
    hints = as_hints(hints, gray.shape)
    # the reference is read (and refused if bad) before the network runs
    histogram = None if reference is None else reference_histogram(reference, run.model.bins)
    lam, own = photo_lambda(run.photo_lambdas, digest, run.lam)
    attrs = {**run.attrs, "source": source, **own}
    if hints is not None or reference is not None:
        attrs.update(guided_attrs(attrs, run.hint_points, hints=hints, reference=reference,
                                  strength=reference_strength))
    if coeffs is None:
        coeffs = working_stage(gray, run.model, run.settings, hints=hints, reference=histogram,
                               reference_strength=reference_strength)
    return Photo(coeffs, lam, attrs, hints)


def colorize_gray(gray: np.ndarray, run: Run, *, source: str = "<array>", digest: str = "", hints=None,
                  reference=None, reference_strength: float = 1.0, coeffs: Coefficients | None = None,
                  threads: int | None = None) -> Colorized:
    """One gray photo as storage codes: :func:`photo_step`, then the full-resolution stage of the
    whole image (:func:`colorcube.render.fullres.stage_codes`, on ``threads`` threads)."""
    photo = photo_step(gray, run, source=source, digest=digest, hints=hints, reference=reference,
                       reference_strength=reference_strength, coeffs=coeffs)
    codes = stage_codes(gray, photo.coeffs, photo.lam, with_gray=True, hints=photo.hints, threads=threads)
    return Colorized(codes, photo.attrs, (photo.coeffs.coef, photo.coeffs.extent),
                     None if photo.hints is None else photo.hints.to_array())


def colorize_codes(image, run: Run, *, max_pixels="default", hints=None, reference=None,
                   reference_strength: float = 1.0, coeffs: Coefficients | None = None,
                   source_hash: str | None = None) -> Colorized:
    """Colorize one image (path or array) as storage codes, without building a Dataset (nor
    importing xarray).

    Parameters are those of :func:`colorcube.colorize`; ``run`` from :func:`prepare_run`;
    ``coeffs``: the image's working stage when already computed.
    """
    gray, source = read_input(image, max_pixels)
    digest = (source_hash or image_digest(image)) if run.photo_lambdas else ""
    return colorize_gray(gray, run, source=source, digest=digest, hints=hints, reference=reference,
                         reference_strength=reference_strength, coeffs=coeffs)
