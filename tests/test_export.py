"""Plain file exports of a colorized photo: PNG and the bands as npz."""

import numpy as np
import pytest
from PIL import Image

from colorcube.cube.export import write_intervals_npz, write_png
from colorcube.errors import ColorcubeError


def test_writers_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.random((7, 9, 3)).astype(np.float32)
    write_png(tmp_path / "c.png", rgb)
    back = np.asarray(Image.open(tmp_path / "c.png"))
    assert back.dtype == np.uint8 and back.shape == (7, 9, 3)
    assert np.abs(back / 255.0 - rgb).max() <= 0.5 / 255 + 1e-6
    codes = rng.integers(0, 256, (7, 9, 3), dtype=np.uint8)  # storage codes go in as they are
    write_png(tmp_path / "k.png", codes)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "k.png")), codes)
    lo = rng.random((7, 9, 3)).astype(np.float32) * 0.5
    iv = np.stack([lo, lo + 0.3], axis=-1)
    write_intervals_npz(tmp_path / "i.npz", iv, alpha=0.1, attrs={"lambda": [1.0, 2.0, 3.0]})
    with np.load(tmp_path / "i.npz", allow_pickle=False) as z:
        assert z["R"].shape == (7, 9, 2) and z["R"].dtype == np.float32
        np.testing.assert_array_equal(z["G"], iv[:, :, 1, :])
        assert float(z["alpha"]) == pytest.approx(0.1)
        assert list(z["lambda"]) == [1.0, 2.0, 3.0]


def test_write_to_missing_folder_is_a_colorcube_error(tmp_path):
    with pytest.raises(ColorcubeError, match="cannot write"):
        write_png(tmp_path / "no" / "such" / "c.png", np.zeros((2, 2, 3)))
