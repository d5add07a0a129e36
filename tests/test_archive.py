import os
import signal
import subprocess
import sys
import time

import dask
import numpy as np
import pytest
import zarr
from PIL import Image

import colorcube
from colorcube.archive import Source, archive_index, colorize_archive, group_name, list_sources, open_archive
from colorcube.cli import main
from colorcube.errors import ColorcubeError

from .conftest import gray_of
from .test_cube import CountingScheduler


@pytest.fixture(scope="module")
def folder(tmp_path_factory, photos):
    """Six gray scans of different sizes (one in a subfolder with the same stem) and two broken files."""
    d = tmp_path_factory.mktemp("scans")
    (d / "sub").mkdir()
    for i, (name, arr) in enumerate(photos.items()):
        g = (gray_of(arr[:: 2 + i % 2, :: 2 + i % 2]) * 255).round().astype(np.uint8)
        Image.fromarray(g).save(d / f"{name}.png")
    Image.fromarray((gray_of(photos["coffee"][::3, ::3]) * 255).astype(np.uint8)).save(d / "sub" / "coffee.png")
    Image.fromarray((gray_of(photos["rocket"][::5, ::5]) * 255).astype(np.uint8)).save(d / "sub" / "rocket.jpg")
    (d / "notes.png").write_text("this is not an image")
    (d / "empty.jpg").write_bytes(b"")
    (d / "readme.txt").write_text("ignored: not an image suffix")
    return d


@pytest.fixture(scope="module")
def archive(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("arc") / "out.zarr"
    res = colorize_archive(folder, out, chunk=64, progress=False)
    return out, res


def test_good_done_broken_listed(archive):
    out, res = archive
    assert res.total == 8 and len(res.done) == 6 and len(res.failed) == 2
    idx = archive_index(out)
    failed = idx[idx.status == "failed"]
    assert sorted(os.path.basename(s) for s in failed.source) == ["empty.jpg", "notes.png"]
    assert all(r for r in failed.error) and any("empty" in r for r in failed.error)
    assert (idx[idx.status == "complete"].hash.str.len() == 64).all()


def test_archive_equals_colorize_and_tiles_match(archive, folder):
    out, _ = archive
    tree = open_archive(out)
    assert len(tree.children) == 6
    for name, node in tree.children.items():
        ds = node.to_dataset()
        assert ds["interval"].dims == ("y", "x", "channel", "bound")
        ref = colorcube.colorize(ds.attrs["source"])  # untiled, default torch threads
        assert ds.sizes["y"] > 64 and ds.sizes["x"] > 64  # several chunks
        # Tiles are exact; the archive's working stage runs on one torch thread, colorize on all, which
        # moves float sums by ~1e-6: a value sitting on a code boundary may then land one step over.
        for v in ("gray", "rgb", "interval"):
            diff = np.abs(ds[v].values - ref[v].values)
            assert diff.max() <= 1 / 255 + 1e-7 and (diff > 0).mean() < 1e-3
        assert ds.attrs["alpha"] == 0.1 and ds.attrs["calibrated"] == 1


def test_open_and_select_compute_nothing(archive):
    out, _ = archive
    counter = CountingScheduler()
    with dask.config.set(scheduler=counter):
        tree = open_archive(out)
        name = sorted(tree.children)[0]
        window = tree[name]["interval"].isel(y=slice(5, 70), x=slice(10, 90)).sel(channel="R", bound="upper")
        assert counter.calls == 0
        window.values
    assert counter.calls == 1


def test_rerun_skips_complete_and_redoes_incomplete(archive, folder, tmp_path):
    import shutil

    out, _ = archive
    copy = tmp_path / "copy.zarr"
    shutil.copytree(out, copy)
    name = archive_index(copy).query("status == 'complete'").name.iloc[0]
    g = zarr.open_group(str(copy), path=f"images/{name}", mode="r+")
    g.attrs.update({"colorcube_status": "incomplete"})  # as if killed before the marker
    res = colorize_archive(folder, copy, chunk=64, progress=False)
    assert res.done == [name] and len(res.skipped) == 5


def test_sigkill_then_resume(folder, tmp_path):
    out = tmp_path / "k.zarr"
    cmd = [sys.executable, "-m", "colorcube.cli", "archive", str(folder), str(out), "--chunk", "64"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:  # kill once at least one image is complete, mid-run
        time.sleep(0.2)
        try:
            if (archive_index(out).status == "complete").sum() >= 2:
                break
        except ColorcubeError:
            pass
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 1  # the two broken files
    import re

    # the images finished before the kill are skipped, not redone
    assert int(re.search(r"(\d+) already complete", rerun.stdout).group(1)) >= 2
    idx = archive_index(out)
    assert len(idx) == 8 and idx.name.is_unique
    assert (idx.status == "complete").sum() == 6 and (idx.status == "failed").sum() == 2
    ref = colorize_archive(folder, tmp_path / "ref.zarr", chunk=64, progress=False)
    assert len(ref.done) == 6
    a, b = open_archive(out), open_archive(tmp_path / "ref.zarr")
    for name in b.children:
        np.testing.assert_array_equal(a[name]["interval"].values, b[name]["interval"].values)


@pytest.mark.slow
def test_local_cluster_equals_local(archive, folder, tmp_path):
    from distributed import Client, LocalCluster

    out, _ = archive
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        res = colorize_archive(folder, tmp_path / "d.zarr", chunk=64, client=client, progress=False)
    assert len(res.done) == 6 and len(res.failed) == 2
    a, b = open_archive(out), open_archive(tmp_path / "d.zarr")
    for name in a.children:
        for v in ("rgb", "interval"):
            np.testing.assert_array_equal(a[name][v].values, b[name][v].values)


def test_fsspec_memory_url(folder):
    res = colorize_archive([str(folder / "chelsea.png")], "memory://arc/test.zarr", chunk=128, progress=False)
    assert len(res.done) == 1
    tree = open_archive("memory://arc/test.zarr")
    assert tree[res.done[0]]["rgb"].shape[2] == 3


def test_cli_exit_and_summary(folder, tmp_path, capsys):
    rc = main(["archive", str(folder / "sub"), str(tmp_path / "c.zarr"), "--chunk", "100"])
    assert rc == 0
    assert "2 done" in capsys.readouterr().out
    rc = main(["archive", str(folder), str(tmp_path / "c2.zarr"), "--chunk", "100"])
    captured = capsys.readouterr()
    assert rc == 1 and "2 failed" in captured.out and "notes.png" in captured.err
    assert main(["export", str(tmp_path / "c.zarr"), str(tmp_path / "exp"), "--format", "tiff"]) == 0
    import tifffile

    tifs = sorted((tmp_path / "exp").glob("*_bands.tif"))
    assert len(tifs) == 2 and tifffile.imread(tifs[0]).shape[2] == 6


def test_sources_and_names(folder, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text(f"# scans\n{folder / 'chelsea.png'}\n\n{folder / 'sub' / 'coffee.png'}\n")
    assert [os.path.basename(s.path) for s in list_sources(listing)] == ["chelsea.png", "coffee.png"]
    assert len(list_sources(str(folder / "**" / "*.png"))) == 6  # glob, recursive
    with pytest.raises(ColorcubeError, match="matches no files"):
        list_sources(str(tmp_path / "*.tif"))
    # same stem in two folders -> distinct names; hostile names stay inside the archive
    a, b = group_name(Source(str(folder / "coffee.png"))), group_name(Source(str(folder / "sub" / "coffee.png")))
    assert a != b and a.startswith("coffee-")
    evil = group_name(Source("../../etc/..passwd"))
    assert "/" not in evil and not evil.startswith(".") and ".." not in evil.split("-")[0][:2]


def test_zarr_of_gray_images(tmp_path, photos, folder):
    store = tmp_path / "grays.zarr"
    root = zarr.open_group(str(store), mode="w")
    g = gray_of(photos["chelsea"][::3, ::3])
    root.create_array("cat", shape=g.shape, dtype="uint8")[...] = (g * 255).round().astype(np.uint8)
    srcs = list_sources(store)
    assert [s.array for s in srcs] == ["cat"]
    res = colorize_archive(store, tmp_path / "o.zarr", chunk=64, progress=False)
    assert len(res.done) == 1
    ds = open_archive(tmp_path / "o.zarr")[res.done[0]].to_dataset()
    np.testing.assert_allclose(ds.gray.values, (g * 255).round() / 255, atol=1e-6)


def test_disk_full_stops_cleanly_and_resumes(folder, tmp_path, monkeypatch):
    import errno

    from zarr.storage import LocalStore

    import colorcube.store

    out = tmp_path / "full.zarr"
    real_write, real_set = colorcube.store.cube_to_zarr, LocalStore.set
    images = {"n": 0}

    def counting_write(*args, **kwargs):
        images["n"] += 1
        return real_write(*args, **kwargs)

    async def filling_set(self, key, value, *args, **kwargs):
        # the disk fills while the third image's chunks are being written
        if images["n"] >= 3 and "/c/" in key:
            raise OSError(errno.ENOSPC, "No space left on device")
        return await real_set(self, key, value, *args, **kwargs)

    monkeypatch.setattr(colorcube.store, "cube_to_zarr", counting_write)
    monkeypatch.setattr(LocalStore, "set", filling_set)
    with pytest.raises(ColorcubeError, match="No space left on device.*re-run"):
        colorize_archive(folder, out, chunk=64, progress=False, workers=1)
    assert not (out / ".colorcube.lock").exists()
    idx = archive_index(out)
    assert (idx.status == "complete").sum() == 2  # what was finished before the disk filled is kept
    monkeypatch.setattr(LocalStore, "set", real_set)
    res = colorize_archive(folder, out, chunk=64, progress=False)
    assert len(res.skipped) == 2 and len(res.done) == 4
    assert (archive_index(out).status == "complete").sum() == 6


def test_second_writer_is_refused_stale_lock_taken_over(folder, tmp_path):
    out = tmp_path / "l.zarr"
    out.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / ".colorcube.lock").write_text(str(sleeper.pid))
        with pytest.raises(ColorcubeError, match=f"pid {sleeper.pid}"):
            colorize_archive([str(folder / "chelsea.png")], out, progress=False)
    finally:
        sleeper.kill()
        sleeper.wait()
    res = colorize_archive([str(folder / "chelsea.png")], out, progress=False)  # its writer is gone
    assert len(res.done) == 1 and not (out / ".colorcube.lock").exists()
