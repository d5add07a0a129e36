"""The package's public API: the verbs, the lazy imports, the accessor."""

import importlib
import inspect
import subprocess
import sys

import xarray as xr

import colorcube

VERBS = ("archive_index", "calibrate", "colorize", "colorize_archive", "evaluate", "explore", "load_model",
         "open_archive")


def test_all_is_sorted_and_every_name_is_there():
    assert colorcube.__all__ == sorted(colorcube.__all__)
    assert set(VERBS) | {"Calibration", "__version__"} <= set(colorcube.__all__)
    assert "build_cube" not in colorcube.__all__ and not hasattr(colorcube, "build_cube")
    for name in colorcube.__all__:
        assert getattr(colorcube, name) is not None, name


def test_verbs_are_plain_functions_under_their_own_names():
    for name in VERBS:
        func = getattr(colorcube, name)
        assert inspect.isfunction(func) and func.__name__ == name, name
    assert inspect.isclass(colorcube.Calibration)


def test_submodules_of_the_same_name_do_not_replace_the_functions():
    for name in ("calibrate", "evaluate"):
        module = importlib.import_module(f"colorcube.{name}")
        assert inspect.ismodule(module) and getattr(module, name) is getattr(colorcube, name)
        assert inspect.isfunction(getattr(colorcube, name))


def test_import_loads_neither_scikit_learn_nor_ipywidgets_and_registers_the_accessor():
    code = ("import sys, xarray, colorcube; "
            "assert 'sklearn' not in sys.modules and 'ipywidgets' not in sys.modules, 'eager import'; "
            "assert hasattr(xarray.Dataset(), 'colorcube'); "
            "from colorcube.calibrate import list_images; "
            "assert colorcube.calibrate.__name__ == 'calibrate' and 'sklearn' in sys.modules")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert hasattr(xr.Dataset(), "colorcube")
