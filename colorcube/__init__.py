"""colorcube: colorize grayscale photographs with per-pixel conformal R, G, B bands."""

from importlib.metadata import PackageNotFoundError, version

from . import plot
from .archive import archive_index, colorize_archive, open_archive
from .conformal import Calibration
from .cube import build_cube, validate_cube
from .errors import CalibrationError, ColorcubeError, ImageReadError, SchemaError, WeightsError
from .io import read_gray, read_rgb
from .model import load_pretrained
from .pipeline import PipelineSettings, colorize
from .store import open_cube


def explore(obj, **kwargs):
    """Jupyter explorer of a cube, an archive or an image (see :func:`colorcube.widgets.explore`).

    ipywidgets is imported only when this is called.
    """
    from .widgets import explore as _explore

    return _explore(obj, **kwargs)


def __getattr__(name):
    """``colorcube.calibrate`` (a callable module: ``colorcube.calibrate(photos, target=...)``), imported on
    first use so that ``import colorcube`` does not load scikit-learn."""
    if name == "calibrate":
        import importlib

        return importlib.import_module(".calibrate", __name__)
    raise AttributeError(f"module 'colorcube' has no attribute {name!r}")


try:
    __version__ = version("colorcube")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "__version__",
    "archive_index",
    "colorize_archive",
    "explore",
    "open_archive",
    "Calibration",
    "CalibrationError",
    "ColorcubeError",
    "ImageReadError",
    "PipelineSettings",
    "SchemaError",
    "WeightsError",
    "build_cube",
    "colorize",
    "load_pretrained",
    "open_cube",
    "plot",
    "read_gray",
    "read_rgb",
    "validate_cube",
]
