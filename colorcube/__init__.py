"""colorcube: colorize grayscale photographs with per-pixel conformal R, G, B bands.

The verbs: :func:`colorize` (one photo -> a cube), :func:`colorize_archive`,
:func:`open_archive` and :func:`archive_index` (many photos -> one zarr archive),
:func:`calibrate` (colour photos -> a :class:`Calibration`), :func:`evaluate` (coverage
and quality on photos with known colours), :func:`explore` (the Jupyter explorer) and
:func:`load_model` (the shipped network). Cubes get the ``ds.colorcube`` accessor
(:class:`colorcube.apps.accessor.CubeAccessor`) as soon as xarray is imported, before or
after colorcube.

Every public name is imported on first use, here, in the package's ``__getattr__`` (the one
place colorcube defers imports; :func:`_deferred` is its counterpart for third-party modules
that are optional or slow to import): torch, dask.array, xarray, zarr and scikit-learn each take
a noticeable share of a start (``python benchmarks/startup.py`` lists them), and colorizing one
photo to PNG and npz (``test.py``) needs torch and none of the others. The code lives in
subpackages, each importing only those below it: inputs, guidance, network, render, conformal,
cube, run, apps (see the README's Layout).
"""

import importlib
import importlib.abc
import importlib.util
import sys
from importlib.metadata import PackageNotFoundError, version

from .errors import CalibrationError, ColorcubeError, HintError, ImageReadError, OptionError, SchemaError, WeightsError

#: public name -> the submodule it lives in, imported on first use
_API = {
    "Calibration": "conformal.calibration",
    "PipelineSettings": "settings",
    "archive_index": "cube.index",
    "calibrate": "conformal.records",
    "colorize": "run.colorize",
    "colorize_archive": "run.archive",
    "evaluate": "apps.evaluate",
    "explore": "apps.explorer",
    "gallery": "apps.gallery",
    "load_model": "network.weights",
    "open_archive": "cube.index",
    "open_cube": "cube.store",
    "palette": "apps.triage",
    "read_gray": "inputs.images",
    "read_rgb": "inputs.images",
    "suggest_hints": "apps.triage",
    "validate_cube": "cube.schema",
    "write_colorized": "run.colorize",
}
#: public modules reached by a short name (``colorcube.plot.coverage_curve``)
_MODULES = {"plot": "apps.plot"}


def __getattr__(name):
    """A public name or a submodule (``colorcube.cube.store``), imported on first use."""
    if name in _API:
        value = getattr(importlib.import_module(f".{_API[name]}", __name__), name)
        globals()[name] = value
        return value
    if name in _MODULES:
        return importlib.import_module(f".{_MODULES[name]}", __name__)
    if importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'colorcube' has no attribute {name!r}")


def _deferred(module: str, *, extra: str | None = None, needed_for: str = ""):
    """A third-party module imported on first use, for the few that are optional (``extra``: the
    pip extra that installs it; its absence is a ColorcubeError saying so) or slow to import on a
    path that rarely needs them (scipy.stats, scikit-image's colour module): with
    :func:`__getattr__`, the only place colorcube defers an import. ``needed_for`` starts the
    error's message (what the module is needed for)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if extra is None:
            raise
        what = f"{needed_for} needs {module}" if needed_for else f"{module} is not installed"
        raise ColorcubeError(f"{what}: pip install 'colorcube[{extra}]'") from exc


class _Accessor:
    """``ds.colorcube``: the real accessor, imported when it is first used on a Dataset."""

    def __new__(cls, ds):
        return importlib.import_module(".apps.accessor", __name__).CubeAccessor(ds)


def _register_accessor(xarray) -> None:
    xarray.register_dataset_accessor("colorcube")(_Accessor)


class _OnXarrayImport(importlib.abc.MetaPathFinder):
    """Registers the accessor right after xarray is imported, so that ``import colorcube``
    need not import xarray and ``ds.colorcube`` still works on any Dataset."""

    _looking = False  # our own lookup of xarray's spec must not come back here

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "xarray" or self._looking:
            return None
        self._looking = True
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self._looking = False
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            _register_accessor(module)
            if self in sys.meta_path:  # only once xarray is really imported: a mere find_spec keeps the hook
                sys.meta_path.remove(self)

        spec.loader.exec_module = exec_module
        return spec


if "xarray" in sys.modules:
    _register_accessor(sys.modules["xarray"])
elif not any(isinstance(f, _OnXarrayImport) for f in sys.meta_path):
    sys.meta_path.insert(0, _OnXarrayImport())

try:
    __version__ = version("colorcube")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "Calibration",
    "CalibrationError",
    "ColorcubeError",
    "HintError",
    "ImageReadError",
    "OptionError",
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
    "gallery",
    "load_model",
    "open_archive",
    "open_cube",
    "palette",
    "plot",
    "read_gray",
    "read_rgb",
    "suggest_hints",
    "validate_cube",
    "write_colorized",
]
