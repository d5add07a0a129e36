import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from colorcube.apps.cli import main
from colorcube.testing import gray_of

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gray_png(tmp_path_factory, photos):
    d = tmp_path_factory.mktemp("in")
    g = (gray_of(photos["coffee"][::2, ::2]) * 255).round().astype(np.uint8)  # 200 x 300
    Image.fromarray(g).save(d / "my photo.png")
    return d / "my photo.png"


def test_test_py_writes_two_files_in_cwd(tmp_path, gray_png):
    proc = subprocess.run([sys.executable, str(ROOT / "test.py"), str(gray_png.resolve())], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    color = np.asarray(Image.open(tmp_path / "my photo_color.png"))
    assert color.dtype == np.uint8 and color.shape == (200, 300, 3)
    with np.load(tmp_path / "my photo_intervals.npz", allow_pickle=False) as z:
        assert float(z["alpha"]) == pytest.approx(0.1)
        for ch in "RGB":
            iv = z[ch]
            assert iv.shape == (200, 300, 2) and iv.dtype == np.float32
            assert (iv >= 0).all() and (iv <= 1).all() and (iv[..., 0] <= iv[..., 1]).all()
        assert bool(z["calibrated"]) and len(z["lambda"]) == 3
    # the point estimate lies in its bands (8-bit rounding aside)
    with np.load(tmp_path / "my photo_intervals.npz") as z:
        for c, ch in enumerate("RGB"):
            v = color[..., c] / 255.0
            assert ((v >= z[ch][..., 0] - 0.5 / 255) & (v <= z[ch][..., 1] + 0.5 / 255)).mean() > 0.999


def test_colorize_many_alpha_and_zarr(tmp_path, gray_png, photos):
    other = tmp_path / "sub"
    other.mkdir()
    Image.fromarray(photos["rocket"][::4, ::4]).save(other / "my photo.png")  # same stem, colour input
    out = tmp_path / "out"
    rc = main(["colorize", str(gray_png), str(other / "my photo.png"), "-o", str(out), "--alpha", "0.2", "--zarr"])
    assert rc == 0
    assert (out / "my photo_color.png").is_file() and (out / "my photo_2_color.png").is_file()
    import colorcube

    ds = colorcube.open_cube(out / "my photo.zarr")
    assert ds.attrs["alpha"] == 0.2 and ds.attrs["calibrated"] == 1
    with np.load(out / "my photo_intervals.npz") as z:
        np.testing.assert_array_equal(z["G"], ds["interval"].sel(channel="G").values)
    # smaller alpha -> wider bands
    rc = main(["colorize", str(gray_png), "-o", str(tmp_path / "o2"), "--alpha", "0.05"])
    with np.load(out / "my photo_intervals.npz") as wide_a, np.load(tmp_path / "o2" / "my photo_intervals.npz") as w:
        assert np.diff(w["R"]).mean() > np.diff(wide_a["R"]).mean()


@pytest.mark.parametrize("make, reason", [
    (lambda p: p.write_bytes(b""), "empty"),
    # a PNG cut inside its header chunk: refused as damaged (the chunk runs past the end)
    (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00"), "truncated"),
    (lambda p: p.write_text("just some text"), "not a recognised image"),
    (lambda p: p.mkdir(), "directory"),
])
def test_bad_files_one_line_and_nonzero(tmp_path, make, reason):
    bad = tmp_path / "bad.png"
    make(bad)
    proc = subprocess.run([sys.executable, str(ROOT / "test.py"), str(bad)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("colorcube: error")]
    assert len(lines) == 1 and str(bad) in lines[0] and reason in lines[0]
    assert "Traceback" not in proc.stderr


def test_bad_alpha_cli(tmp_path, gray_png, capsys):
    assert main(["colorize", str(gray_png), "-o", str(tmp_path / "out"), "--alpha", "1.2"]) == 2
    assert "alpha" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # refused before anything is made


def test_calibrate_and_evaluate_cli(tmp_path, photo_dir, capsys):
    cal = tmp_path / "c.cal"
    assert main(["calibrate", str(photo_dir), "-o", str(cal), "--working-size", "128"]) == 0
    assert "calibrated on 12 images" in capsys.readouterr().out
    rc = main(["evaluate", str(photo_dir), "--json", str(tmp_path / "e.json"), "--calibration", str(cal),
               "--alpha", "0.2"])
    assert rc == 0
    import json

    res = json.loads((tmp_path / "e.json").read_text())
    assert res["n_images"] == 12 and res["settings"]["working_size"] == 128
    cov = res["alphas"]["0.2"]["coverage"]
    # in-sample evaluation: CRC's bound n/(n+1) R + 1/(n+1) <= alpha forces mean risk <= alpha
    assert all(c >= 0.8 - 1e-9 for c in cov)
    # a calibration made for another pipeline is refused
    assert main(["colorize", str(next(photo_dir.iterdir())), "-o", str(tmp_path), "--calibration", str(cal),
                 "--working-size", "256"]) == 2
    assert "working_size" in capsys.readouterr().err


def test_cli_without_shared_data_env(tmp_path, gray_png):
    # runs from a folder with no ../shared and no network: shipped weights and calibration suffice
    env = {k: v for k, v in os.environ.items()}
    env["HOME"] = str(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "colorcube.apps.cli", "colorize", str(gray_png), "-o", str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    with np.load(tmp_path / "my photo_intervals.npz") as z:
        assert bool(z["calibrated"]) and str(z["method"]) == "crc"


def test_demo_writes_outputs_and_reports_coverage(tmp_path, capsys):
    assert main(["demo", "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "chelsea_gray_color.png").is_file() and (tmp_path / "chelsea_gray_intervals.npz").is_file()
    assert "pixels inside their R, G, B bands" in out
    psnr_color, psnr_gray = _psnrs(out)
    assert psnr_color > psnr_gray  # the colour estimate is closer to the truth than the gray input


def _psnrs(text):
    import re

    m = re.search(r"PSNR ([\d.]+) dB \(gray input ([\d.]+)\)", text)
    return float(m.group(1)), float(m.group(2))


def test_a_hard_crash_names_its_place():
    # a segfault inside a command (as a kernel reading outside its tables would give) is not catchable;
    # the CLI's faulthandler prints where it happened before the process dies
    code = ("import ctypes, sys; import colorcube.apps.cli as cli; "
            "cli.cmd_export = lambda args: ctypes.string_at(0); sys.exit(cli.main(['export', 'a.zarr', 'out']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode != 0
    assert "Segmentation fault" in proc.stderr and "cli.py" in proc.stderr and "in main" in proc.stderr


@pytest.mark.slow
def test_hints_and_reference_on_the_command_line(tmp_path, gray_png, photos, capsys):
    import json

    import colorcube

    (tmp_path / "h").mkdir()
    hint_file = tmp_path / "h" / "my photo.json"
    hint_file.write_text(json.dumps([{"x": 150, "y": 100, "rgb": [200, 30, 30]},
                                     {"x": 10, "y": 5, "rgb": [0, 90, 200]}]))
    ref = tmp_path / "ref.png"
    Image.fromarray(photos["coffee"][::4, ::4]).save(ref)
    proc = subprocess.run([sys.executable, str(ROOT / "test.py"), str(gray_png.resolve()), "--zarr", "--hints",
                           str(hint_file), "--reference", str(ref), "--reference-strength", "0.5"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "2 hint pixels" in proc.stdout and "reference" in proc.stdout
    ds = colorcube.open_cube(tmp_path / "my photo.zarr")
    assert ds.attrs["hints"] == 2 and ds.attrs["reference_strength"] == 0.5
    assert sorted(ds.hints.values[:, :2].tolist()) == [[5, 10], [100, 150]]
    color = np.asarray(Image.open(tmp_path / "my photo_color.png"))
    with np.load(tmp_path / "my photo_intervals.npz") as z:
        for c, ch in enumerate("RGB"):  # the band at the hint pixel holds the hint's colour
            assert z[ch][100, 150, 0] * 255 <= [200, 30, 30][c] + 1e-3 <= z[ch][100, 150, 1] * 255 + 2e-3
    assert color[100, 150, 0] > color[100, 150, 2]
    # a folder of per-image hint files: images without one get none
    rc = main(["colorize", str(gray_png), "-o", str(tmp_path / "o"), "--hints", str(tmp_path / "h")])
    assert rc == 0 and "2 hint pixels" in capsys.readouterr().out


@pytest.mark.parametrize("content, match", [
    ('[{"x": 300, "y": 0, "rgb": [1, 2, 3]}]', "outside the 300 x 200 image"),
    ('[{"x": 1, "y": 1, "rgb": [1, 2, 3]', "not valid JSON"),
])
def test_bad_hint_files_one_line(tmp_path, gray_png, capsys, content, match):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    rc = main(["colorize", str(gray_png), "-o", str(tmp_path / "o"), "--hints", str(bad)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and err[0].startswith(f"colorcube: error: {bad}: ") and match in err[0]


def test_bad_hint_png_and_one_file_for_many_images(tmp_path, gray_png, capsys):
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((10, 10, 4), np.uint8)).save(small)
    rc = main(["colorize", str(gray_png), "-o", str(tmp_path / "o"), "--hints", str(small)])
    assert rc != 0 and "small.png: hint image is 10 x 10 but the photo is 300 x 200" in capsys.readouterr().err
    rc = main(["colorize", str(gray_png), str(gray_png), "-o", str(tmp_path / "o"), "--hints", str(small)])
    assert rc == 2 and "one hint file is for one image" in capsys.readouterr().err
