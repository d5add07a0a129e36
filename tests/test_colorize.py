"""``colorize`` (run.colorize): the cube as a Dataset, written to zarr with ``out=``, and for a list of photos."""

import numpy as np
import pytest
import xarray as xr

import colorcube
from colorcube.errors import ColorcubeError
from colorcube.settings import PipelineSettings
from colorcube.testing import gray_of


def test_cube_at_full_resolution_keeps_gray(tiny_model, photos):
    g = gray_of(photos["chelsea"])  # 300 x 451, not a multiple of anything
    ds = colorcube.colorize(g, model=tiny_model, calibration=None,
                            settings=PipelineSettings(working_size=128))
    assert {d: ds.sizes[d] for d in ("y", "x", "channel", "bound")} == {"y": 300, "x": 451, "channel": 3, "bound": 2}
    assert ds.coefficients.shape == (32 * 300 // 451 + 1, 32, 10)  # the network grid of a 128-px working size
    np.testing.assert_array_equal(ds["gray"].values, g)  # 8-bit values survive the uint16 code exactly
    iv, rgb = ds["interval"].values, ds["rgb"].values
    assert (iv[..., 0] <= rgb).all() and (rgb <= iv[..., 1]).all()
    assert ds.attrs["calibrated"] == 0 and "UNCALIBRATED" in ds.attrs["guarantee"]
    assert ds.attrs["lambda"] == [1.0, 1.0, 1.0]


def test_written_cube_equals_in_memory_cube(tiny_model, gray, tmp_path):
    settings = PipelineSettings(working_size=96)
    mem = colorcube.colorize(gray, model=tiny_model, calibration=None, settings=settings)
    disk = colorcube.colorize(gray, model=tiny_model, calibration=None, settings=settings,
                              out=tmp_path / "c.zarr", chunk=100)
    for name in ("gray", "rgb", "interval", "coefficients"):
        np.testing.assert_array_equal(disk[name].values, mem[name].values)
    assert disk.coefficients.attrs["extent"] == mem.coefficients.attrs["extent"]


def test_a_list_is_colorized_batched_and_each_cube_is_its_own(tiny_model, photos, tmp_path, monkeypatch):
    from PIL import Image

    import colorcube.network.working

    paths = []
    for i, name in enumerate(("chelsea", "coffee", "astronaut")):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(photos[name][:300:3, :450:3]).convert("L").save(paths[-1])  # all three 100 x 150
    sizes, real = [], colorcube.network.working.predict
    monkeypatch.setattr(colorcube.network.working, "predict",
                        lambda model, x, *a, **k: sizes.append(x.shape[0]) or real(model, x, *a, **k))
    many = colorcube.colorize(paths, model=tiny_model, calibration=None, batch=2)
    assert max(sizes) == 2  # a batch of two images did run
    assert isinstance(many, list) and len(many) == 3
    for path, cube in zip(paths, many):
        alone = colorcube.colorize(path, model=tiny_model, calibration=None)
        xr.testing.assert_identical(cube, alone)
    with pytest.raises(ColorcubeError, match="out= writes one image"):
        colorcube.colorize(paths, model=tiny_model, calibration=None, out=tmp_path / "x.zarr")
