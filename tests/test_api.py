"""The package's public API: the verbs, the lazy imports, the accessor."""

import importlib
import inspect
import subprocess
import sys

import numpy as np
import pytest
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
    for name, path in (("calibrate", "conformal.records"), ("evaluate", "apps.evaluate")):
        module = importlib.import_module(f"colorcube.{path}")
        assert inspect.ismodule(module) and getattr(module, name) is getattr(colorcube, name)
        assert inspect.isfunction(getattr(colorcube, name))


@pytest.mark.parametrize("order", ["colorcube first", "xarray first", "xarray looked up first"])
def test_import_loads_nothing_heavy_and_the_accessor_comes_with_xarray(order):
    first, second = ("xarray", "colorcube") if order == "xarray first" else ("colorcube", "xarray")
    # an availability check (find_spec) before the real import must not use up the registration hook
    lookup = "import importlib.util; assert importlib.util.find_spec('xarray'); " if "looked up" in order else ""
    code = (f"import sys; import {first}; {lookup}"
            "heavy = [m for m in ('torch', 'dask', 'zarr', 'sklearn', 'ipywidgets', 'matplotlib') if m in sys.modules]; "
            f"assert heavy == [] or '{first}' == 'xarray' and 'torch' not in heavy, heavy; "
            f"import {second}; import xarray, colorcube; "
            "assert type(xarray.Dataset().colorcube).__name__ == 'CubeAccessor'; "
            "thin = [m for m in ('colorcube.run.pipeline', 'colorcube.apps.explorer', 'ipywidgets') if m in sys.modules]; "
            "assert thin == [], thin; "
            "from colorcube.conformal.records import photo_records; "
            "assert colorcube.calibrate.__name__ == 'calibrate' and 'sklearn' in sys.modules")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert hasattr(xr.Dataset(), "colorcube")


def test_one_photo_to_png_and_npz_loads_no_xarray_dask_or_zarr(tmp_path):
    """What test.py runs: the command line's colorize without --zarr needs torch, not the cube stack."""
    from PIL import Image

    Image.fromarray(np.full((40, 60), 120, np.uint8)).save(tmp_path / "p.png")
    code = ("import sys; from colorcube.apps.cli import main; "
            f"rc = main(['colorize', {str(tmp_path / 'p.png')!r}, '-o', {str(tmp_path)!r}]); "
            "loaded = [m for m in ('xarray', 'dask', 'zarr', 'pandas', 'sklearn') if m in sys.modules]; "
            "assert rc == 0 and loaded == [], (rc, loaded)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "p_color.png").is_file() and (tmp_path / "p_intervals.npz").is_file()
