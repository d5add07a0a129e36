import dask
import numpy as np
import pytest
import xarray as xr

from colorcube.cube.store import cube_to_zarr, group_attrs, open_cube, update_group_attrs, write_cube
from colorcube.errors import OptionError, SchemaError
from colorcube.testing import CountingScheduler, random_cube


def test_zarr_round_trip_is_lazy(tmp_path):
    ds = random_cube(70, 90)
    cube_to_zarr(ds, tmp_path / "c.zarr", chunk=32)
    counter = CountingScheduler()
    with dask.config.set(scheduler=counter):
        back = open_cube(tmp_path / "c.zarr", chunks={})
        window = back["interval"].isel(y=slice(10, 40), x=slice(0, 33)).sel(channel="G")
        assert counter.calls == 0
        assert window.chunks is not None
        values = window.values
    assert counter.calls == 1
    assert values.dtype == np.float32
    original = ds["interval"].isel(y=slice(10, 40), x=slice(0, 33)).sel(channel="G").values
    # stored outward on the 1/255 grid: contains the original band (up to the 1e-3-step slack that keeps
    # already-coded bounds from moving), at most one step wider per side
    slack = 1e-3 / 255
    assert (values[..., 0] <= original[..., 0] + slack).all() and (values[..., 1] >= original[..., 1] - slack).all()
    assert np.abs(values - original).max() <= 1 / 255 + 1e-7
    np.testing.assert_array_equal(values, np.round(values * 255).astype(np.float32) / np.float32(255))
    np.testing.assert_allclose(back["rgb"].values, ds["rgb"].values, atol=0.5 / 255 + 1e-7)
    np.testing.assert_allclose(back["gray"].values, ds["gray"].values, atol=0.5 / 65535 + 1e-7)
    assert back.attrs["alpha"] == 0.1 and back.attrs["lambda"] == [1.0, 2.0, "inf"]
    assert back["rgb"].encoding["chunks"] == (32, 32, 3)


def test_coded_cube_round_trips_exactly(tmp_path):
    """A cube already on the storage grid (what colorize returns) is stored and read back bit for bit."""
    ds = random_cube(40, 50)
    coded = ds.copy()
    for name, n in (("gray", 65535), ("rgb", 255), ("interval", 255)):
        coded[name] = np.round(ds[name] * n).astype(np.float32) / np.float32(n)
    cube_to_zarr(coded, tmp_path / "c.zarr", chunk=16)
    back = open_cube(tmp_path / "c.zarr").load()
    for name in ("gray", "rgb", "interval"):
        np.testing.assert_array_equal(back[name].values, coded[name].values)


def test_plain_xarray_reads_the_codes_through_cf(tmp_path):
    """Other tools open the store with xarray alone: CF scale_factor gives the same values."""
    ds = random_cube(30, 40)
    cube_to_zarr(ds, tmp_path / "c.zarr")
    ours = open_cube(tmp_path / "c.zarr").load()
    plain = xr.open_zarr(tmp_path / "c.zarr", consolidated=False, zarr_format=3).load()
    for name in ("gray", "rgb", "interval"):
        np.testing.assert_array_equal(plain[name].values.astype(np.float32), ours[name].values)
    assert list(plain.channel.values) == ["R", "G", "B"]


def test_open_cube_names_a_missing_store(tmp_path):
    with pytest.raises(SchemaError, match="no cube there"):
        open_cube(tmp_path / "nothing.zarr")


@pytest.mark.parametrize("compression", ["lz4", "zstd"])
def test_compression_choices_store_the_same_cube(tmp_path, compression):
    ds = random_cube(40, 50)
    cube_to_zarr(ds, tmp_path / "none.zarr")
    cube_to_zarr(ds, tmp_path / "c.zarr", compression=compression)
    plain, packed = open_cube(tmp_path / "none.zarr").load(), open_cube(tmp_path / "c.zarr").load()
    for name in ("gray", "rgb", "interval"):
        np.testing.assert_array_equal(packed[name].values, plain[name].values)
    with pytest.raises(OptionError, match="compression='gzip'"):
        cube_to_zarr(ds, tmp_path / "bad.zarr", compression="gzip")
    assert not (tmp_path / "bad.zarr").exists()  # refused before anything was written


@pytest.mark.parametrize("chunk", [1024, 24])
def test_direct_local_writer_writes_the_files_zarr_writes(tmp_path, chunk):
    """The direct route for local, uncompressed, in-memory cubes gives zarr's own files, byte for byte
    (edge chunks padded, coordinates, metadata documents), so any zarr or xarray reader sees one layout."""
    import dask.array as da

    ds = random_cube(50, 70)
    direct, via_zarr = tmp_path / "direct.zarr", tmp_path / "zarr.zarr"
    assert write_cube(ds, direct, chunk=chunk, group="images/a") is None  # took the direct route
    lazy = ds.copy()
    lazy["gray"] = lazy["gray"].copy(data=da.from_array(ds["gray"].values, chunks=16))  # dask: zarr's route
    assert write_cube(lazy, via_zarr, chunk=chunk, group="images/a") is not None

    def files(root):
        return {str(f.relative_to(root)): f.read_bytes() for f in root.rglob("*") if f.is_file()}

    mine, theirs = files(direct), files(via_zarr)
    assert sorted(mine) == sorted(theirs) and len(mine) > 10
    assert [k for k in mine if mine[k] != theirs[k]] == []
    xr.testing.assert_identical(open_cube(direct, group="images/a").load(), open_cube(via_zarr, group="images/a").load())
    with pytest.raises(SchemaError, match="exists"):
        write_cube(ds, direct, chunk=chunk, group="images/a", mode="w-")


def test_group_attributes_read_and_updated_in_place(tmp_path):
    ds = random_cube(20, 30)
    write_cube(ds, tmp_path / "a.zarr", group="images/x")
    assert group_attrs(tmp_path / "a.zarr", "images/x")["alpha"] == 0.1
    assert group_attrs(tmp_path / "a.zarr", "images/missing") == {}
    update_group_attrs(tmp_path / "a.zarr", "images/x", {"colorcube_status": "complete"})
    back = open_cube(tmp_path / "a.zarr", group="images/x")
    assert back.attrs["colorcube_status"] == "complete" and back.attrs["alpha"] == 0.1
    assert not list((tmp_path / "a.zarr").rglob("*.tmp"))


def test_threads_writing_groups_of_one_fresh_store(tmp_path):
    """Writers in threads share the store's parent groups: none may trip over another's files."""
    from concurrent.futures import ThreadPoolExecutor

    ds = random_cube(16, 16)
    for attempt in range(5):
        root = tmp_path / f"s{attempt}.zarr"
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i, root=root: write_cube(ds, root, group=f"images/g{i}"), range(16)))
        assert sorted(p.name for p in (root / "images").iterdir()) == sorted(f"g{i}" for i in range(16)) + ["zarr.json"]
        assert open_cube(root, group="images/g7").attrs["alpha"] == 0.1
