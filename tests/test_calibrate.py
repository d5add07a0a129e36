import numpy as np
import pytest

import colorcube
from colorcube.calibrate import calibrate, list_images
from colorcube.errors import ColorcubeError
from colorcube.pipeline import PipelineSettings

SETTINGS = PipelineSettings(working_size=96)


@pytest.fixture(scope="module")
def cal(tiny_model, photo_dir):
    return calibrate(list_images(photo_dir), model=tiny_model, settings=SETTINGS, source="skimage", progress=False)


def test_provenance(cal):
    p = cal.provenance
    assert cal.n == 12 and p["n_images"] == 12 and p["source"] == "skimage"
    assert p["model_hash"] == "0" * 64 and p["settings"]["working_size"] == 96
    assert p["settings"]["vividness"] == 0.5 and p["date"].startswith("20")


def test_colorize_carries_alpha_and_lambda(cal, tiny_model, photos):
    from .conftest import gray_of

    ds = colorcube.colorize(gray_of(photos["rocket"][::4, ::4]), alpha=0.2, model=tiny_model, calibration=cal)
    assert ds.attrs["alpha"] == 0.2 and ds.attrs["method"] == "crc" and ds.attrs["calibrated"] == 1
    assert ds.attrs["lambda"] == [float(v) if np.isfinite(v) else "inf" for v in cal.lambda_for(0.2)]
    assert "12 calibration images" in ds.attrs["guarantee"]
    assert "0.8" in ds.attrs["guarantee"]


def test_other_model_refused(cal, photos):
    from colorcube.model import ColorNet, ModelConfig

    other = ColorNet(ModelConfig(width=8)).eval()
    other.weights_hash = "f" * 64
    with pytest.raises(ColorcubeError, match="not for the loaded model"):
        colorcube.colorize(np.zeros((32, 32), np.float32), model=other, calibration=cal)


def test_unreadable_photos_are_skipped_and_listed(tmp_path, tiny_model, photo_dir):
    import shutil

    for p in list_images(photo_dir)[:4]:
        shutil.copy(p, tmp_path / p.name)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    cal = calibrate(list_images(tmp_path), model=tiny_model, settings=SETTINGS, progress=False)
    assert cal.n == 4 and cal.provenance["skipped"] == [str(tmp_path / "broken.jpg")]


def test_list_images_errors(tmp_path):
    with pytest.raises(ColorcubeError, match="not a folder"):
        list_images(tmp_path / "missing")
    with pytest.raises(ColorcubeError, match="no image files"):
        list_images(tmp_path)
