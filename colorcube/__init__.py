"""colorcube: colorize grayscale photographs with per-pixel conformal R, G, B bands.

The verbs: :func:`colorize` (one photo -> a cube), :func:`colorize_archive`,
:func:`open_archive` and :func:`archive_index` (many photos -> one zarr archive),
:func:`calibrate` (colour photos -> a :class:`Calibration`), :func:`evaluate` (coverage
and quality on photos with known colours), :func:`explore` (the Jupyter explorer) and
:func:`load_model` (the shipped network). Importing colorcube registers the
``ds.colorcube`` accessor on xarray Datasets (:class:`colorcube.accessor.CubeAccessor`).

``calibrate`` and ``evaluate`` are imported on first use, so that ``import colorcube``
does not load scikit-learn; they are functions even though submodules of the same names
exist (``from colorcube.calibrate import list_images`` reaches a module's other names).
"""

import importlib
import sys
import types
from importlib.metadata import PackageNotFoundError, version

from . import accessor, plot  # noqa: F401  (accessor: registers ds.colorcube)
from .archive import archive_index, colorize_archive, open_archive
from .calibration import Calibration
from .cube import validate_cube
from .errors import CalibrationError, ColorcubeError, ImageReadError, SchemaError, WeightsError
from .io import read_gray, read_rgb
from .pipeline import PipelineSettings, colorize
from .store import open_cube
from .weights import load_model
from .widgets import explore

#: functions served by :func:`__getattr__` on first use, and the submodule each comes from
_LAZY = {"calibrate": ".calibrate", "evaluate": ".evaluate"}


def __getattr__(name):
    """``colorcube.calibrate`` and ``colorcube.evaluate``, imported on first use (they load scikit-learn)."""
    if name in _LAZY:
        func = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = func
        return func
    raise AttributeError(f"module 'colorcube' has no attribute {name!r}")


class _Package(types.ModuleType):
    """The package module: importing the submodule ``colorcube.calibrate`` (or ``evaluate``)
    does not replace the function of the same name with the module, as Python's import
    system otherwise does."""

    def __setattr__(self, name, value):
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
for _name in _LAZY:  # a submodule imported above would have taken the function's name
    if isinstance(globals().get(_name), types.ModuleType):
        del globals()[_name]
del _name

try:
    __version__ = version("colorcube")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "Calibration",
    "CalibrationError",
    "ColorcubeError",
    "ImageReadError",
    "PipelineSettings",
    "SchemaError",
    "WeightsError",
    "__version__",
    "archive_index",
    "calibrate",
    "colorize",
    "colorize_archive",
    "evaluate",
    "explore",
    "load_model",
    "open_archive",
    "open_cube",
    "plot",
    "read_gray",
    "read_rgb",
    "validate_cube",
]
