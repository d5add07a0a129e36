"""An archive on disk (cube.index): the per-photo band summary, opening an archive lazily, and the writer's lock."""

import subprocess
import sys

import dask
import dask.array as da
import numpy as np
import pytest

import colorcube
from colorcube.cube.index import UNCERTAINTY_COLUMNS, WIDE_BAND, band_summary, open_archive
from colorcube.errors import ColorcubeError
from colorcube.run.archive import colorize_archive
from colorcube.testing import CountingScheduler


def _band(width: np.ndarray) -> np.ndarray:
    """(y, x) widths -> a (y, x, 3, 2) float band centred at 0.5 with that width in every channel."""
    w = np.repeat(width[..., None], 3, axis=2).astype(np.float32)
    return np.stack([0.5 - w / 2, 0.5 + w / 2], axis=-1)


def test_band_summary_from_codes_floats_and_dask_agree():
    rng = np.random.default_rng(0)
    # stored bands lie on the 1/255 grid; widths around the threshold (102/255) test its edge
    width = rng.integers(90, 115, (40, 50)) / 255
    width[:3] = 0.0
    codes = np.round(_band(width) * 255).astype(np.uint8)
    band = codes.astype(np.float32) / np.float32(255)  # the band as a cube decodes it
    true_width = (codes[..., 1].astype(int) - codes[..., 0]) / 255  # (y, x, 3)
    s_float, s_codes = band_summary(band), band_summary(codes)
    s_dask = band_summary(da.from_array(band, chunks=(16, 16, 3, 2)))
    assert set(s_float) == set(UNCERTAINTY_COLUMNS)
    for i, k in enumerate(UNCERTAINTY_COLUMNS[:3]):
        assert s_codes[k] == pytest.approx(true_width[..., i].mean(), abs=1e-9)
        assert s_float[k] == pytest.approx(s_codes[k], abs=1e-6)
        assert s_dask[k] == pytest.approx(s_codes[k], abs=1e-6)
    expected = (true_width.mean(axis=2) > WIDE_BAND + 1e-9).mean()
    assert 0.2 < expected < 0.8
    assert s_codes["wide_share"] == s_float["wide_share"] == s_dask["wide_share"] == pytest.approx(expected)
    with pytest.raises(colorcube.ColorcubeError, match="channel=3"):
        band_summary(np.zeros((4, 4, 3)))


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
