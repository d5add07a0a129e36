import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import zarr
from PIL import Image

import colorcube
from colorcube.apps.cli import main
from colorcube.cube.index import UNCERTAINTY_COLUMNS, archive_index, band_summary, open_archive, open_image
from colorcube.errors import ColorcubeError
from colorcube.inputs.sources import Source, group_name, list_sources
from colorcube.run.archive import colorize_archive
from colorcube.testing import gray_of


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
        for v in ("gray", "rgb", "interval"):  # tiles are exact, and both run the network alike
            np.testing.assert_array_equal(ds[v].values, ref[v].values, err_msg=f"{name} {v}")
        assert ds.attrs["alpha"] == 0.1 and ds.attrs["calibrated"] == 1


@pytest.mark.parametrize("batch", [1, 4])
def test_batched_archive_is_colorize_exactly(folder, tmp_path, batch, photos):
    """Small images take the batched, overlapped path: the same cubes as colorize, bit for bit."""
    import shutil

    scans = tmp_path / "scans"
    shutil.copytree(folder, scans)
    for k in range(3):  # three scans of one size, so that batches of several images form
        g = (gray_of(photos["astronaut"][k * 7 : k * 7 + 200, ::3]) * 255).round().astype(np.uint8)
        Image.fromarray(g).save(scans / f"same{k}.png")
    out = tmp_path / "b.zarr"
    res = colorize_archive(scans, out, progress=False, batch=batch)
    assert len(res.done) == 9 and max(res.stage_times.batches) <= batch
    assert batch == 1 or max(res.stage_times.batches) >= 2  # the three of one size shared a network call
    assert set(res.stage_times.seconds) >= {"prepare", "network", "finish", "full resolution", "write"}
    for name, node in open_archive(out).children.items():
        ds = node.to_dataset()
        ref = colorcube.colorize(ds.attrs["source"])
        for v in ("gray", "rgb", "interval", "coefficients"):
            np.testing.assert_array_equal(ds[v].values, ref[v].values, err_msg=f"{name} {v}")


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
    cmd = [sys.executable, "-m", "colorcube.apps.cli", "archive", str(folder), str(out), "--chunk", "64"]
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
    rc = main(["-v", "archive", str(folder / "sub"), str(tmp_path / "c.zarr"), "--chunk", "100", "--batch", "2"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "2 done" in out and "network batches of" in out and "busy: prepare" in out  # -v: time per stage
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


@pytest.mark.parametrize("chunk", [64, 1024])  # chunk by chunk through zarr; in memory, the direct writer
def test_disk_full_stops_cleanly_and_resumes(folder, tmp_path, monkeypatch, chunk):
    import errno
    import pathlib

    from zarr.storage import LocalStore

    import colorcube.run.archive_steps

    out = tmp_path / "full.zarr"
    real_write, real_set, real_bytes = colorcube.run.archive_steps.write_cube, LocalStore.set, pathlib.Path.write_bytes
    images = {"n": 0}

    def counting_write(*args, **kwargs):
        images["n"] += 1
        return real_write(*args, **kwargs)

    def full(key):  # the disk fills while the third image's chunks are being written
        return images["n"] >= 3 and "/c/" in str(key)

    async def filling_set(self, key, value, *args, **kwargs):
        if full(key):
            raise OSError(errno.ENOSPC, "No space left on device")
        return await real_set(self, key, value, *args, **kwargs)

    def filling_bytes(self, data):
        if full(self):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_bytes(self, data)

    monkeypatch.setattr(colorcube.run.archive_steps, "write_cube", counting_write)
    monkeypatch.setattr(LocalStore, "set", filling_set)
    monkeypatch.setattr(pathlib.Path, "write_bytes", filling_bytes)
    with pytest.raises(ColorcubeError, match="No space left on device.*re-run"):
        colorize_archive(folder, out, chunk=chunk, progress=False, workers=1)
    assert not (out / ".colorcube.lock").exists()
    idx = archive_index(out)
    assert (idx.status == "complete").sum() == 2  # what was finished before the disk filled is kept
    monkeypatch.setattr(LocalStore, "set", real_set)
    monkeypatch.setattr(pathlib.Path, "write_bytes", real_bytes)
    res = colorize_archive(folder, out, chunk=chunk, progress=False)
    assert len(res.skipped) == 2 and len(res.done) == 4
    assert (archive_index(out).status == "complete").sum() == 6


def _odd_files(d):
    """Odd but valid files: extreme shapes, bit depths, modes, orientation, names."""
    import tifffile
    from skimage import data

    d.mkdir(parents=True, exist_ok=True)
    rgb = np.ascontiguousarray(data.chelsea()[::6, ::6])
    g8 = np.asarray(Image.fromarray(rgb).convert("L"))
    noise = np.random.default_rng(0).integers(0, 256, (2000, 5), dtype=np.uint8)
    Image.new("L", (1, 1), 77).save(d / "one.png")
    Image.fromarray(np.ascontiguousarray(noise.T[:3])).save(d / "thin_3x2000.png")
    Image.fromarray(noise).save(d / "tall_2000x5.png")
    Image.fromarray(g8.astype(np.uint16) * 257).save(d / "g16.png")
    tifffile.imwrite(d / "g16.tif", g8.astype(np.uint16) * 257)
    tifffile.imwrite(d / "f32.tif", g8.astype(np.float32) / 255)
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE).save(d / "palette.png")
    Image.fromarray(rgb).convert("CMYK").save(d / "cmyk.jpg")
    Image.fromarray(rgb).convert("RGBA").save(d / "rgba.png")
    Image.new("L", (60, 40), 0).save(d / "black.png")
    Image.new("L", (60, 40), 255).save(d / "white.png")
    im = Image.fromarray(g8)
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(d / "rotated.jpg", exif=exif)
    Image.fromarray(g8).save(d / "Fotografía de la plaza 1921 (copia).png")
    return sorted(d.iterdir())


def _bad_files(d):
    """Broken files, the bad-checksum PNG among them."""
    import io

    import tifffile

    d.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    Image.new("L", (30, 20), 90).save(buf, "PNG")
    png = buf.getvalue()
    crc_at = png.index(b"IDAT") + 4 + int.from_bytes(png[png.index(b"IDAT") - 4:png.index(b"IDAT")], "big")
    (d / "bad_crc.png").write_bytes(png[:crc_at] + bytes([png[crc_at] ^ 1]) + png[crc_at + 1:])
    (d / "empty.png").write_bytes(b"")
    (d / "notes.png").write_text("not an image")
    (d / "cut.png").write_bytes(png[: len(png) // 2])
    tifffile.imwrite(d / "nan.tif", np.full((4, 4), np.nan, np.float32))
    return sorted(d.iterdir())


@pytest.mark.parametrize("where", ["working stage", "chunk kernel", "non-finite network output"])
def test_any_exception_in_one_image_is_its_failure_record(tmp_path, tiny_weights, monkeypatch, where):
    import colorcube.run.archive_steps

    files = [f for f in _odd_files(tmp_path / "in") if f.name in ("one.png", "g16.png", "rgba.png", "white.png")]
    victim = files[1]
    shape = np.asarray(Image.open(victim)).shape
    if where in ("working stage", "non-finite network output"):
        real = colorcube.run.archive_steps.network_maps

        def failing(inputs, *args, **kwargs):  # a batch holding the victim fails; it is redone one by one
            if where == "working stage" and any(inp.shape == shape for inp in inputs):
                raise RuntimeError("simulated\nfailure")
            maps = real(inputs, *args, **kwargs)
            for inp, m in zip(inputs, maps):
                if inp.shape == shape:  # what made the kernels read outside their tables
                    with torch.inference_mode():  # undecoded outputs (logits, err) are inference tensors
                        for part in m if isinstance(m, tuple) else [torch.from_numpy(m)]:
                            part.fill_(float("nan"))
            return maps

        monkeypatch.setattr(colorcube.run.archive_steps, "network_maps", failing)
    else:
        real = colorcube.run.archive_steps.stage_codes

        def failing(gray, coeffs, *args, **kwargs):
            if tuple(coeffs.shape) == shape:
                raise IndexError("index is out of bounds")
            return real(gray, coeffs, *args, **kwargs)

        # the kernel of a small image (the per-photo step) and of a large image's chunks
        monkeypatch.setattr(colorcube.run.pipeline, "stage_codes", failing)
        monkeypatch.setattr(colorcube.run.archive_steps, "stage_codes", failing)
    out = tmp_path / "a.zarr"
    res = colorize_archive(files, out, chunk=16, weights=tiny_weights, calibration=None, progress=False, workers=2)
    assert len(res.done) == 3 and len(res.failed) == 1
    reason = res.failures[str(victim)]
    expected = {"working stage": "RuntimeError: simulated failure", "chunk kernel": "IndexError: index is out of bounds",
                "non-finite network output": "the network's output for this image holds NaN"}[where]
    assert reason.startswith(f"{victim}: {expected}") and "\n" not in reason
    idx = archive_index(out)
    assert set(idx.status) == {"complete", "failed"} and idx[idx.status == "failed"].error.tolist() == [reason]


def test_damaged_file_refused_or_allowed_and_marked(tmp_path, tiny_weights, capsys):
    src = tmp_path / "in"
    _bad_files(src)
    for f in src.iterdir():
        if f.name != "bad_crc.png":
            f.unlink()
    Image.new("L", (30, 20), 90).save(src / "good.png")
    args = ["--weights", str(tiny_weights), "--uncalibrated", "--chunk", "16"]
    assert main(["archive", str(src), str(tmp_path / "refused.zarr"), *args]) == 1
    err = capsys.readouterr().err
    failed = [ln for ln in err.splitlines() if ln.startswith("failed: ")]
    assert len(failed) == 1 and failed == [
        ln for ln in err.splitlines() if "bad_crc.png" in ln and "CRC" in ln and "--allow-damaged" in ln]
    assert main(["archive", str(src), str(tmp_path / "allowed.zarr"), *args, "--allow-damaged"]) == 0
    err = capsys.readouterr().err
    assert f"colorcube: warning: {src / 'bad_crc.png'}: damaged file (PNG chunk IDAT" in err
    idx = archive_index(tmp_path / "allowed.zarr").set_index("source")
    assert (idx.status == "complete").all()
    assert "CRC" in idx.loc[str(src / "bad_crc.png"), "damaged"] and idx.loc[str(src / "good.png"), "damaged"] == ""


_STRESS = """
import sys
from colorcube.apps.cli import main
odd, mixed, out, weights, runs = sys.argv[1:]
common = ["--weights", weights, "--uncalibrated", "--chunk", "64", "--workers", "4"]
for k in range(int(runs)):
    print("odd", main(["archive", odd, f"{out}/odd{k}.zarr", *common]), flush=True)
print("mixed", main(["archive", mixed, f"{out}/mixed.zarr", *common]), flush=True)
"""


@pytest.mark.slow
def test_stress_odd_corpus_threaded_never_crashes(tmp_path, tiny_weights):
    """Several threaded archive runs over odd files in one process, then a folder mixing
    them with broken ones; a crash (a segfault in a kernel) fails the test with its place."""
    import shutil

    odd = _odd_files(tmp_path / "odd")
    mixed = tmp_path / "mixed"
    bad = _bad_files(mixed / "bad")
    shutil.copytree(tmp_path / "odd", mixed / "odd")
    runs = 4
    proc = subprocess.run([sys.executable, "-c", _STRESS, str(tmp_path / "odd"), str(mixed), str(tmp_path),
                           str(tiny_weights), str(runs)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]  # -11 for a segfault
    codes = [ln for ln in proc.stdout.splitlines() if ln.startswith(("odd ", "mixed "))]
    failures = "\n".join(ln for ln in proc.stderr.splitlines() if "failed" in ln and "/bad/" not in ln)
    assert codes == ["odd 0"] * runs + ["mixed 1"], failures[-4000:]
    assert "Traceback" not in proc.stderr
    for k in range(runs):
        idx = archive_index(tmp_path / f"odd{k}.zarr")
        assert len(idx) == len(odd) and (idx.status == "complete").all()
    idx = archive_index(tmp_path / "mixed.zarr").set_index("source")
    assert len(idx) == len(odd) + len(bad) and (idx.error.str.count("\n") == 0).all()
    assert (idx.loc[[str(mixed / "bad" / f.name) for f in bad], "status"] == "failed").all()
    assert (idx.loc[[str(mixed / "odd" / f.name) for f in odd], "status"] == "complete").all()


def test_per_image_hint_folder(tmp_path, photos, capsys):
    """A folder of per-image hint files: the hinted image is what colorize makes with that file,
    its cube keeps the hints, the other image gets none, and a changed hint file redoes only its image."""
    import json

    scans, hint_dir = tmp_path / "scans", tmp_path / "hints"
    scans.mkdir()
    hint_dir.mkdir()
    for name in ("chelsea", "coffee"):
        g = (gray_of(photos[name][::4, ::4]) * 255).round().astype(np.uint8)
        Image.fromarray(g).save(scans / f"{name}.png")
    hint_file = hint_dir / "chelsea.json"
    hint_file.write_text(json.dumps([{"x": 20, "y": 30, "rgb": [20, 60, 220]}]))
    out = tmp_path / "a.zarr"
    assert main(["archive", str(scans), str(out), "--chunk", "32", "--hints", str(hint_dir)]) == 0
    tree = open_archive(out)
    by_source = {os.path.basename(tree[n].attrs["source"]): tree[n].to_dataset() for n in tree.children}
    cube, plain = by_source["chelsea.png"], by_source["coffee.png"]
    assert cube.attrs["hints"] == 1 and cube.hints.values.tolist() == [[30, 20, 20, 60, 220]]
    assert "hints" not in plain and "hints" not in plain.attrs
    again = colorcube.colorize(scans / "chelsea.png", hints=hint_file)
    for v in ("rgb", "interval"):
        np.testing.assert_array_equal(cube[v].values, again[v].values)
    assert cube.interval.values[30, 20, 2, 1] * 255 >= 220 - 1e-3  # the band holds the hint's blue
    hint_file.write_text(json.dumps([{"x": 21, "y": 30, "rgb": [20, 60, 220]}]))
    res = colorize_archive(scans, out, chunk=32, hints=hint_dir, progress=False)
    assert len(res.done) == 1 and len(res.skipped) == 1
    with pytest.raises(ColorcubeError, match="not a folder of per-image hint files"):
        colorize_archive(scans, out, hints=hint_file, progress=False)


def test_index_carries_band_uncertainty_and_old_archives_gain_it(archive, folder, tmp_path):
    out, _ = archive
    idx = archive_index(out)
    done = idx[idx.status == "complete"]
    assert done[list(UNCERTAINTY_COLUMNS)].notna().all().all()
    assert idx[idx.status == "failed"][list(UNCERTAINTY_COLUMNS)].isna().all().all()
    for _, row in done.iterrows():  # the index holds the stored band's own summary
        expect = band_summary(open_image(out, row["name"])["interval"].values)
        assert {k: row[k] for k in expect} == pytest.approx(expect, abs=1e-6)
    # an archive written before the index kept them: the next run fills them in, colorizing nothing
    copy = tmp_path / "old.zarr"
    shutil.copytree(out, copy)
    for name in done.name:
        g = zarr.open_group(str(copy), path=f"images/{name}", mode="r+")
        for k in UNCERTAINTY_COLUMNS:
            del g.attrs[k]
    assert archive_index(copy)[list(UNCERTAINTY_COLUMNS)].isna().all().all()
    res = colorize_archive(folder, copy, chunk=64, progress=False)
    assert res.done == [] and len(res.skipped) == len(done)
    again = archive_index(copy).set_index("name").loc[done.name, list(UNCERTAINTY_COLUMNS)]
    np.testing.assert_allclose(again.values, done.set_index("name")[list(UNCERTAINTY_COLUMNS)].values, atol=1e-6)
