import numpy as np
import pytest
import xarray as xr

from colorcube.cube.schema import validate_cube
from colorcube.errors import SchemaError
from colorcube.testing import random_cube


def test_schema():
    ds = random_cube()
    assert ds["interval"].dims == ("y", "x", "channel", "bound")
    assert list(ds.channel.values) == ["R", "G", "B"] and list(ds.bound.values) == ["lower", "upper"]
    assert ds.interval.sel(channel="R").shape == (20, 30, 2)
    assert ds.attrs["lambda"] == [1.0, 2.0, "inf"]


@pytest.mark.parametrize("mutate, match", [
    (lambda ds: ds.drop_vars("rgb"), "rgb"),
    (lambda ds: ds.rename({"x": "col"}), "dims"),
    (lambda ds: ds.assign(gray=ds.gray.astype("float64")), "float32"),
    (lambda ds: ds.assign_coords(channel=["r", "g", "b"]), "channel"),
    (lambda ds: ds.assign_attrs(alpha=3), "alpha"),
])
def test_validation_rejects(mutate, match):
    with pytest.raises(SchemaError, match=match):
        validate_cube(mutate(random_cube()))


def test_value_checks():
    ds = random_cube()
    bad = ds.copy(deep=True)
    bad["interval"][0, 0, 0] = [0.9, 0.1]
    with pytest.raises(SchemaError, match="lower > upper"):
        validate_cube(bad, check_values=True)
    with pytest.raises(SchemaError, match="Dataset"):
        validate_cube(xr.DataArray([1]))


def test_decoded_codes_equal_eight_bit_truth():
    """code / 255 read back must be the very float32 an 8-bit truth pixel reads as (band edges compare exactly)."""
    from colorcube.cube.schema import decode_codes

    k = np.arange(256, dtype=np.uint8)
    np.testing.assert_array_equal(decode_codes({"rgb": k})["rgb"], k.astype(np.float32) / np.float32(255))
    assert (k.astype(np.float32) * np.float32(1 / 255) != k.astype(np.float32) / np.float32(255)).any()
