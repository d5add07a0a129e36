"""colorcube: colorize grayscale photographs with per-pixel conformal R, G, B bands."""

from importlib.metadata import PackageNotFoundError, version

from .archive import archive_index, colorize_archive, open_archive
from .conformal import Calibration
from .cube import build_cube, open_cube, validate_cube
from .errors import CalibrationError, ColorcubeError, ImageReadError, SchemaError, WeightsError
from .io import read_gray, read_rgb
from .model import load_pretrained
from .pipeline import PipelineSettings, colorize

try:
    __version__ = version("colorcube")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "__version__",
    "archive_index",
    "colorize_archive",
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
    "read_gray",
    "read_rgb",
    "validate_cube",
]
