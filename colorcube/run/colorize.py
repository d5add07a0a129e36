"""``colorize``: one photo (or a list) -> its cube as an xarray Dataset, in memory or on zarr.

The steps are those of :mod:`colorcube.run.pipeline` (:func:`~colorcube.run.pipeline.prepare_run`,
:func:`~colorcube.run.pipeline.colorize_gray`); this module adds the Dataset (:mod:`colorcube.cube`),
which is why it, and not the pipeline, imports xarray, dask and zarr.
"""

from __future__ import annotations

from pathlib import Path

from ..cube.schema import code_dataset, cube_dataset, validate_cube
from ..cube.store import cube_to_zarr, lazy_cube
from ..errors import ColorcubeError, OptionError
from ..guidance.reference import reference_histogram
from ..inputs.images import image_digest
from ..network.model import ColorNet
from ..network.working import working_stages
from ..render.codes import check_compression, decode
from ..settings import PipelineSettings
from .pipeline import Colorized, colorize_codes, colorize_gray, prepare_run, read_input

__all__ = ["colorize", "write_colorized"]


def colorize(image, *, alpha: float = 0.1, model: ColorNet | None = None, calibration="default",
             settings: PipelineSettings | None = None, device: str = "auto", max_pixels="default",
             out=None, chunk: int = 1024, compression: str = "none", hints=None, reference=None,
             reference_strength: float = 1.0, batch: int | None = None, source_hash: str | None = None):
    """Colorize one gray photograph (or a list of them) and attach conformal R, G, B bands.

    Parameters
    ----------
    image : path or (y, x) array (float in [0, 1] or integer), or a list of them: the
        network then runs batched over images of one input shape (``batch`` at a time,
        default :func:`colorcube.network.working.default_batch`), each result equal to colorizing it alone
    alpha : float in (0, 1), miscoverage level of the bands
    hints : optional colour hints: points ``[(y, x, (r, g, b)), ...]`` (input-pixel row and
        column, 0-255 integers), an RGBA array of the input's size whose opaque pixels are
        strokes, or a ``.json`` / RGBA ``.png`` hint file (see :mod:`colorcube.guidance.hints`). The
        colour follows them within lightness regions; at each hint pixel it is the hint's
        colour as far as the gray allows and the band contains the hint's colour. They are
        stored in the cube (``hints`` variable). None (default): the automatic mode, unchanged.
    reference : optional colour photo (path or (y, x, 3) array): the predicted colours are
        reweighted toward its (a*, b*) histogram per lightness band (:mod:`colorcube.guidance.reference`)
    reference_strength : float >= 0, how far (0: not at all, 1: match the reference's
        histogram, default)
    model : ColorNet, optional; default the shipped model
    calibration : "default", a ``.cal`` path, a Calibration, or None
        ``"default"`` is the shipped calibration; None gives uncalibrated
        heuristic bands (lambda = 1), flagged so in the attributes. A calibration
        weighted for an archive (``calibrate(..., target=...)``) serves each of that
        archive's images (known by its file's SHA-256) its own lambda
        (:meth:`colorcube.conformal.calibration.Calibration.lambda_for_photo`); the cube records it and the weight.
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
        see :func:`colorcube.cube.store.zarr_compressors`

    Returns
    -------
    xarray.Dataset following the cube schema (see :mod:`colorcube.cube`), or a list of them:
    ``gray`` (y, x), ``rgb`` (y, x, channel), ``interval`` (y, x, channel, bound),
    float32 on the storage grid (``code / 255``), so the cube in memory and on
    disk are the same; ``coefficients`` (gy, gx, coefficient), see :func:`colorcube.render.fullres.bands_at`.
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
        return write_colorized(done, out, chunk=chunk, compression=compression) if out is not None else _cube(done)
    read = [read_input(im, max_pixels) for im in image]  # (gray, source) of each, read once
    if reference is not None:  # one histogram for every image
        reference = reference_histogram(reference, run.model.bins,
                                        name=str(reference) if isinstance(reference, (str, Path)) else "<array>")
    guided = hints is not None or reference is not None
    coeffs = [None] * len(read) if guided else working_stages([g for g, _ in read], run.model, run.settings,
                                                              batch=batch)
    digests = [image_digest(im) if run.photo_lambdas else "" for im in image]
    return [_cube(colorize_gray(g, run, source=source, digest=d, hints=hints, reference=reference,
                                reference_strength=reference_strength, coeffs=c))
            for (g, source), c, d in zip(read, coeffs, digests)]


def write_colorized(done: Colorized, out, *, chunk: int = 1024, compression: str = "none"):
    """Write a photo colorized as codes (:func:`colorcube.run.pipeline.colorize_codes`) as a zarr cube at
    ``out`` (path or zarr store; ``chunk`` x ``chunk`` chunks, ``compression`` as
    :func:`colorcube.cube.store.zarr_compressors`) and return it opened lazily."""
    ds = code_dataset(done.codes, done.attrs, done.coefficients, done.hints)
    return lazy_cube(cube_to_zarr(ds, out, chunk=chunk, compression=compression), done.attrs)


def _cube(done: Colorized):
    v = {name: decode(code) for name, code in done.codes.items()}
    return validate_cube(cube_dataset(v["gray"], v["rgb"], v["interval"], done.attrs, done.coefficients, done.hints))
