"""One gray image -> colour cube: the run's preparation, both stages, the cube.

1. *Working resolution* (:mod:`colorcube.working`): the network and the guided-filter
   coefficients ``(A, B)``, 10 small maps per image.
2. *Full resolution* (:mod:`colorcube.fullres`): every output pixel is ``A(x) * L(x) + B(x)``
   with ``A`` and ``B`` bilinearly sampled at the pixel's position and ``L`` the
   full-resolution lightness, then Lab -> RGB and the conformal interval, as storage
   codes (:mod:`colorcube.codes`). The stage is pointwise given (A, B), so tiles of any
   size reproduce the untiled result exactly; no halo is needed.

:func:`prepare_run` is the one preparation (alpha, model, calibration, settings, lambda,
attributes) behind :func:`colorize`, the archive, the command line, the explorer and
evaluation.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

import colorcube

from .calibration import Calibration
from .codes import check_compression, decode
from .conformal import check_alpha
from .errors import CalibrationError, ColorcubeError, OptionError
from .fullres import full_stage, stage_codes
from .guided import N_MAPS, Coefficients
from .hinting import calibration_hint_points, guarantee_note, pin
from .hints import as_hints
from .io import DEFAULT_MAX_PIXELS, array_to_gray, image_digest, read_gray
from .model import ColorNet
from .reference import reference_histogram
from .settings import PipelineSettings
from .weights import load_model, load_weights
from .working import WorkingInput, coefficients_of, working_stage, working_stages

__all__ = [
    "Colorized",
    "Run",
    "colorize",
    "colorize_codes",
    "cube_attrs",
    "cube_calibration",
    "default_calibration_path",
    "guided_attrs",
    "load_kernels",
    "photo_lambda",
    "predict_bands",
    "prepare_run",
    "resolve_calibration",
]

log = logging.getLogger(__name__)


def predict_bands(gray, model: ColorNet, settings: PipelineSettings | None = None, *,
                  hints=None, reference=None, reference_strength: float = 1.0, block_pixels: int = 1 << 22):
    """Full pipeline before calibration: numpy (rgb, lower, upper), each (y, x, 3) float32.

    ``rgb`` is in [0, 1]; the heuristic ``lower <= rgb <= upper`` may extend past it.
    ``hints``, ``reference``, ``reference_strength``: see :func:`working_stage`; at hint
    pixels the colour is pinned and the band widened (:func:`colorcube.hints.pin`).

    The full-resolution stage runs in row blocks of about ``block_pixels``
    pixels, which bounds the temporaries; results do not depend on the blocks.
    """
    gray = np.asarray(gray, dtype=np.float32)
    hints = as_hints(hints, gray.shape)
    coeffs = working_stage(gray, model, settings or PipelineSettings(), hints=hints, reference=reference,
                           reference_strength=reference_strength)
    h, w = gray.shape
    out = [np.empty((h, w, 3), np.float32) for _ in range(3)]
    rows = max(1, block_pixels // w)
    for y0 in range(0, h, rows):
        rgb, scale = full_stage(gray[y0 : y0 + rows], coeffs, y0=y0)
        out[0][y0 : y0 + rows] = rgb
        np.subtract(rgb, scale, out=out[1][y0 : y0 + rows])
        np.add(rgb, scale, out=out[2][y0 : y0 + rows])
    if hints is not None:
        pin(hints, gray, *out)
    return tuple(out)


def load_kernels() -> None:
    """Load the compiled kernels of both stages from numba's cache by running them once on a
    tiny image: numba's own start-up, paid once per process. The command line runs
    this in a thread while it loads the model and runs the network, which release the GIL."""
    coeffs = coefficients_of(np.zeros((N_MAPS, 2, 2), np.float32),
                             WorkingInput((8, 8), torch.zeros(8, 8), torch.zeros(1, 1, 8, 8)), PipelineSettings())
    stage_codes(np.zeros((8, 8), np.float32), coeffs, np.ones(3))


def default_calibration_path() -> Path:
    """Path of the calibration shipped with the default weights."""
    return Path(str(resources.files("colorcube") / "weights" / "default.cal"))


@functools.lru_cache(maxsize=4)
def _read_calibration(path: str, mtime_ns: int) -> Calibration:
    """A ``.cal`` file read and checksummed once per version of the file (``mtime_ns`` keys
    the cache, so a rewritten file is read again)."""
    return Calibration.from_file(path)


def resolve_calibration(calibration, model: ColorNet | None = None):
    """``"default"``, a path, a Calibration or None -> Calibration or None.

    Files are read once per process (and again when they change); a calibration made for
    another model than ``model`` is refused (CalibrationError).
    """
    if calibration is None or isinstance(calibration, Calibration):
        return calibration
    if isinstance(calibration, str) and calibration == "default":
        path = default_calibration_path()
    elif isinstance(calibration, (str, Path)):
        path = Path(calibration)
    else:
        raise OptionError(f"calibration={calibration!r}: give 'default', a .cal path, a Calibration or None")
    if not path.is_file():
        raise CalibrationError(f"{path}: calibration file not found")
    cal = _read_calibration(str(path.resolve()), path.stat().st_mtime_ns)
    if getattr(model, "weights_hash", None) is not None:
        cal.check_compatible(model_hash=model.weights_hash, where=str(path))
    return cal


#: the fields of a calibration's summary that identify it (later releases may add others)
_IDENTITY = ("model_hash", "date", "source", "n_images", "method", "weighted")


def cube_calibration(attrs: dict, calibration=None) -> Calibration:
    """The calibration that serves a cube's bands at other alphas (accessor and explorer alike).

    Parameters
    ----------
    attrs : the cube's attributes (``calibrated``, ``calibration``, ``model_hash``, ``settings``)
    calibration : None, ``"default"``, a ``.cal`` path or a Calibration
        None: the calibration the cube's ``calibration`` attribute names, found when it is
        the shipped one. Otherwise the one given. Either must be made for the cube's model
        and pipeline settings.

    Raises
    ------
    CalibrationError
        The cube is uncalibrated and none is given, it names a calibration other than the
        shipped one, or the calibration is for another model or other settings.
    """
    if calibration is None:
        if not int(attrs.get("calibrated", 0)):
            raise CalibrationError("calibration: the cube's bands are uncalibrated (attribute 'calibrated' is 0), "
                                   "so no calibration serves other alphas; pass calibration= (a .cal path or a "
                                   "Calibration made for this cube's model)")
        try:
            named = json.loads(attrs.get("calibration") or "")
        except (TypeError, ValueError) as exc:
            raise CalibrationError(f"calibration: the cube's 'calibration' attribute is not the JSON summary of "
                                   f"a calibration ({exc}); pass calibration=") from exc
        calibration = resolve_calibration("default")
        shipped = json.loads(json.dumps(calibration.summary()))
        if any(shipped.get(k) != named.get(k) for k in _IDENTITY):
            raise CalibrationError(
                f"calibration: the cube names a calibration of {named.get('n_images', '?')} images "
                f"({named.get('source') or 'unnamed source'}, {named.get('date') or 'undated'}, model "
                f"{str(named.get('model_hash', ''))[:12]}), which is not the shipped one; pass calibration= "
                "the .cal file the cube was made with")
    cal = resolve_calibration(calibration)  # model: checked below against the cube's own hash
    try:
        settings = json.loads(attrs.get("settings") or "{}")
    except (TypeError, ValueError):
        settings = {}
    cal.check_compatible(model_hash=str(attrs.get("model_hash", "")) or None, settings=settings, where="calibration")
    return cal


def _finite_or_str(x: float):
    return float(x) if math.isfinite(x) else "inf"


def cube_attrs(*, alpha: float, lam, calibration=None, model=None, settings=None, source: str = "<array>",
               source_hash: str = "") -> dict:
    """The cube's attributes (JSON-able): alpha, method, lambda, guarantee, provenance
    (:data:`colorcube.cube.REQUIRED_ATTRS` and more)."""
    lam = [float(v) for v in np.asarray(lam, dtype=np.float64).reshape(-1)]
    if calibration is None:
        method, guarantee = "uncalibrated", ("UNCALIBRATED heuristic bands (lambda = 1): no coverage guarantee; "
                                             "calibrate with `colorcube calibrate`.")
        summary = {}
    else:
        method, guarantee, summary = calibration.method, calibration.guarantee(alpha), calibration.summary()
    return {
        "alpha": float(alpha),
        "method": method,
        "lambda": [_finite_or_str(v) for v in lam],
        "calibrated": int(calibration is not None),
        "guarantee": guarantee,
        "calibration": json.dumps(summary),
        "model_name": getattr(model, "weights_name", "") if model is not None else "",
        "model_hash": getattr(model, "weights_hash", "") if model is not None else "",
        "settings": json.dumps(settings or {}),
        "source": str(source),
        "source_hash": source_hash,
        "colorcube_version": colorcube.__version__,
    }


@dataclasses.dataclass(frozen=True)
class Run:
    """What every image of one colorization run shares (:func:`prepare_run`).

    ``lam`` : (3,) float64 lambda per R, G, B (ones when uncalibrated); ``attrs`` : the
    cube attributes of the run (:func:`cube_attrs`), ``source`` still "<array>";
    ``photo_lambdas`` : {SHA-256: ((3,) lambda, weight)} for the target archive's photos of a
    weighted calibration that keeps their own ratios (see :func:`photo_lambda`), else empty.
    """

    model: ColorNet
    calibration: Calibration | None
    settings: PipelineSettings
    alpha: float
    lam: np.ndarray
    attrs: dict
    photo_lambdas: dict = dataclasses.field(default_factory=dict)


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

    The one preparation behind :func:`colorize`, :func:`colorcube.colorize_archive`, the
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
    return Run(model, cal, settings, alpha, np.asarray(lam, np.float64), attrs, own)


def _as_gray(image, max_pixels) -> tuple[np.ndarray, str]:
    if isinstance(image, (str, Path)):
        return read_gray(image, max_pixels=DEFAULT_MAX_PIXELS if max_pixels == "default" else max_pixels), str(image)
    return array_to_gray(image, name="image"), "<array>"


class Colorized(NamedTuple):
    """One image colorized, as storage codes (what :func:`colorize` wraps in a Dataset).

    ``codes`` : dict of ``gray`` (y, x) uint8/uint16, ``rgb`` (y, x, 3) uint8 and ``interval``
    (y, x, 3, 2) uint8 (:mod:`colorcube.codes`); ``attrs`` : the cube attributes;
    ``coefficients`` : ``(coef (gy, gx, 10) float32, extent)``; ``hints`` : (n, 5) int32 or None.
    """

    codes: dict
    attrs: dict
    coefficients: tuple
    hints: np.ndarray | None


def colorize_codes(image, run: Run, *, max_pixels="default", hints=None, reference=None,
                   reference_strength: float = 1.0, coeffs: Coefficients | None = None,
                   source_hash: str | None = None) -> Colorized:
    """Colorize one image as storage codes, without building a Dataset (nor importing xarray).

    Parameters are those of :func:`colorize`; ``run`` from :func:`prepare_run`; ``coeffs``:
    the image's working stage when already computed (:func:`working_stages`).
    """
    digest = (source_hash or image_digest(image)) if run.photo_lambdas else ""
    return _codes(*_as_gray(image, max_pixels), run, hints=hints, reference=reference,
                  reference_strength=reference_strength, coeffs=coeffs, digest=digest)


def _codes(gray: np.ndarray, source: str, run: Run, *, hints=None, reference=None, reference_strength: float = 1.0,
           coeffs: Coefficients | None = None, digest: str = "") -> Colorized:
    hints = as_hints(hints, gray.shape)
    # the reference is read (and refused if bad) before the network runs
    histogram = None if reference is None else reference_histogram(reference, run.model.bins)
    lam, own = photo_lambda(run.photo_lambdas, digest, run.lam)
    attrs = {**run.attrs, "source": source, **own}
    if hints is not None or reference is not None:
        hint_points = None if run.calibration is None else calibration_hint_points(run.calibration)
        attrs.update(guided_attrs(attrs, hint_points, hints=hints, reference=reference,
                                  strength=reference_strength))
    if coeffs is None:
        coeffs = working_stage(gray, run.model, run.settings, hints=hints, reference=histogram,
                               reference_strength=reference_strength)
    codes = stage_codes(gray, coeffs, lam, with_gray=True, hints=hints)
    return Colorized(codes, attrs, (coeffs.coef, coeffs.extent), None if hints is None else hints.to_array())


def colorize(image, *, alpha: float = 0.1, model: ColorNet | None = None, calibration="default",
             settings: PipelineSettings | None = None, device: str = "auto", max_pixels="default",
             out=None, chunk: int = 1024, compression: str = "none", hints=None, reference=None,
             reference_strength: float = 1.0, batch: int | None = None, source_hash: str | None = None):
    """Colorize one gray photograph (or a list of them) and attach conformal R, G, B bands.

    Parameters
    ----------
    image : path or (y, x) array (float in [0, 1] or integer), or a list of them: the
        network then runs batched over images of one input shape (``batch`` at a time,
        default :func:`default_batch`), each result equal to colorizing it alone
    alpha : float in (0, 1), miscoverage level of the bands
    hints : optional colour hints: points ``[(y, x, (r, g, b)), ...]`` (input-pixel row and
        column, 0-255 integers), an RGBA array of the input's size whose opaque pixels are
        strokes, or a ``.json`` / RGBA ``.png`` hint file (see :mod:`colorcube.hints`). The
        colour follows them within lightness regions; at each hint pixel it is the hint's
        colour as far as the gray allows and the band contains the hint's colour. They are
        stored in the cube (``hints`` variable). None (default): the automatic mode, unchanged.
    reference : optional colour photo (path or (y, x, 3) array): the predicted colours are
        reweighted toward its (a*, b*) histogram per lightness band (:mod:`colorcube.reference`)
    reference_strength : float >= 0, how far (0: not at all, 1: match the reference's
        histogram, default)
    model : ColorNet, optional; default the shipped model
    calibration : "default", a ``.cal`` path, a Calibration, or None
        ``"default"`` is the shipped calibration; None gives uncalibrated
        heuristic bands (lambda = 1), flagged so in the attributes. A calibration
        weighted for an archive (``calibrate(..., target=...)``) serves each of that
        archive's images (known by its file's SHA-256) its own lambda
        (:meth:`Calibration.lambda_for_photo`); the cube records it and the weight.
    source_hash : str, optional (one image only), the SHA-256 the image is known by for
        that (default: of the path's bytes or the array's data), e.g. an archived cube's
        ``source_hash`` when its stored gray is colorized again
    settings : PipelineSettings, optional; default those of the calibration
    device : "auto", "cpu" or "cuda" (used when the model is loaded here)
    max_pixels : int, None or "default", pixel ceiling for file inputs
    out : path or zarr store, optional (one image only)
        Write the cube there (zarr v3, storage codes, ``chunk`` x ``chunk``
        chunks) straight from the codes, and return it opened lazily.
    chunk : int, spatial chunk size when writing ``out``
    compression : "none" (fastest, default), "lz4" or "zstd" (smaller) for ``out``;
        see :func:`colorcube.store.zarr_compressors`

    Returns
    -------
    xarray.Dataset following the cube schema (see :mod:`colorcube.cube`), or a list of them:
    ``gray`` (y, x), ``rgb`` (y, x, channel), ``interval`` (y, x, channel, bound),
    float32 on the storage grid (``code / 255``), so the cube in memory and on
    disk are the same; ``coefficients`` (gy, gx, coefficient), see :func:`bands_at`.
    """
    many = isinstance(image, (list, tuple))
    if many and out is not None:
        raise ColorcubeError("out= writes one image; for many images use colorcube.colorize_archive")
    if out is not None:
        check_compression(compression)  # a bad name fails before any work
    if many and source_hash is not None:
        raise OptionError("source_hash= names one image; colorize the images of a list one by one to give each its own")
    run = prepare_run(alpha=alpha, model=model, device=device, calibration=calibration, settings=settings)
    if not many:
        done = colorize_codes(image, run, max_pixels=max_pixels, hints=hints, reference=reference,
                              reference_strength=reference_strength, source_hash=source_hash)
        return _cube(done, out=out, chunk=chunk, compression=compression)
    read = [_as_gray(im, max_pixels) for im in image]  # (gray, source) of each, read once
    if reference is not None:  # one histogram for every image
        reference = reference_histogram(reference, run.model.bins,
                                        name=str(reference) if isinstance(reference, (str, Path)) else "<array>")
    guided = hints is not None or reference is not None
    coeffs = [None] * len(read) if guided else working_stages([g for g, _ in read], run.model, run.settings,
                                                              batch=batch)
    digests = [image_digest(im) if run.photo_lambdas else "" for im in image]
    return [_cube(_codes(g, source, run, hints=hints, reference=reference, reference_strength=reference_strength,
                         coeffs=c, digest=d)) for (g, source), c, d in zip(read, coeffs, digests)]


def _cube(done: Colorized, *, out=None, chunk: int = 1024, compression: str = "none"):
    """The Dataset of a colorized image (xarray is imported here, through the package)."""
    if out is not None:
        ds = colorcube.cube.code_dataset(done.codes, done.attrs, done.coefficients, done.hints)
        arrays = colorcube.store.cube_to_zarr(ds, out, chunk=chunk, compression=compression)
        return colorcube.store.lazy_cube(arrays, done.attrs)
    v = {name: decode(code) for name, code in done.codes.items()}
    return colorcube.cube.validate_cube(colorcube.cube.cube_dataset(v["gray"], v["rgb"], v["interval"], done.attrs,
                                                                    done.coefficients, done.hints))


def guided_attrs(attrs: dict, hint_points: int | None, *, hints=None, reference=None, strength: float = 1.0) -> dict:
    """The cube attributes that record user guidance: ``hints`` (count), ``hint_source``,
    ``reference``, ``reference_strength``, and the ``guarantee`` with what it claims then
    (:func:`colorcube.hinting.guarantee_note`; ``hint_points``: the calibration's simulated hint
    points, :func:`colorcube.hinting.calibration_hint_points`, None when uncalibrated)."""
    new = {}
    ref_name = None
    if reference is not None:
        ref_name = getattr(reference, "source", None) or (str(reference) if isinstance(reference, (str, Path))
                                                           else "<array>")
        new.update(reference=ref_name, reference_strength=float(strength))
    if hints is not None:
        new.update(hints=len(hints), hint_source=hints.source)
    note = guarantee_note(hint_points=hint_points, n_hints=len(hints) if hints is not None else 0, reference=ref_name)
    if note:
        new["guarantee"] = f"{attrs['guarantee']} {note}"
    return new

