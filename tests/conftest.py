"""Shared fixtures: small photos from scikit-image, a tiny random network, and gray scans with their archive."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from colorcube.network.model import ColorNet, ModelConfig


def _photos():
    from skimage import data

    return {"astronaut": data.astronaut(), "chelsea": data.chelsea(), "coffee": data.coffee(), "rocket": data.rocket()}


@pytest.fixture(scope="session")
def photos():
    """The four colour photos that ship with scikit-image, uint8 (y, x, 3)."""
    return _photos()


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory, photos):
    """A folder holding the skimage photos (downscaled) as PNG and JPEG, 3 crops each."""
    d = tmp_path_factory.mktemp("photos")
    for name, arr in photos.items():
        im = Image.fromarray(arr)
        im.thumbnail((256, 256))
        a = np.asarray(im)
        h, w = a.shape[:2]
        for k, (ys, xs) in enumerate([(slice(0, h), slice(0, w)), (slice(0, h * 3 // 4), slice(w // 4, w)),
                                      (slice(h // 4, h), slice(0, w * 3 // 4))]):
            Image.fromarray(np.ascontiguousarray(a[ys, xs])).save(d / f"{name}_{k}.{'png' if k % 2 else 'jpg'}",
                                                                   quality=95)
    return d


@pytest.fixture(scope="session")
def tiny_model():
    """A small random network (eval mode) with a fake identity for calibration checks."""
    torch.manual_seed(0)
    model = ColorNet(ModelConfig(width=8)).eval()
    model.weights_hash = "0" * 64
    model.weights_name = "tiny-random"
    return model


@pytest.fixture(scope="session")
def shipped():
    """The shipped weights, on the CPU."""
    from colorcube.network.weights import load_model

    return load_model(device="cpu")


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory, tiny_model):
    """``tiny_model`` saved as a weights file, for commands that load weights by path."""
    from colorcube.network.weights import save_weights

    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    save_weights(tiny_model, path)
    return path


@pytest.fixture
def run_bounds_checked(tmp_path):
    """Run ``module.function(0, 40)`` of the test suite in a subprocess with numba bounds checking on.

    Returns nothing; fails the calling test with the subprocess's stderr if it exits non-zero.
    """
    root = Path(__file__).resolve().parents[1]

    def run(module: str, function: str) -> None:
        # numba's cache does not key on NUMBA_BOUNDSCHECK: a cached unchecked build would be reused
        env = {**os.environ, "NUMBA_BOUNDSCHECK": "1", "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
        code = f"import sys; sys.path.insert(0, {str(root)!r}); from {module} import {function}; {function}(0, 40)"
        proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True,
                              timeout=600, check=False)
        assert proc.returncode == 0, proc.stderr[-3000:]

    return run


@pytest.fixture(scope="module")
def gray(photos):
    from colorcube.testing import gray_of

    return gray_of(photos["astronaut"][::2, ::2])  # 256 x 256


@pytest.fixture(scope="module")
def folder(tmp_path_factory, photos):
    """Six gray scans of different sizes (one in a subfolder with the same stem) and two broken files."""
    from colorcube.testing import gray_of

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
    from colorcube.run.archive import colorize_archive

    out = tmp_path_factory.mktemp("arc") / "out.zarr"
    res = colorize_archive(folder, out, chunk=64, progress=False)
    return out, res
