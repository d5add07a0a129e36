import os

import numpy as np
import pytest
import torch

import colorcube
from colorcube.color import gray_to_lightness, rgb_to_lab
from colorcube.errors import ColorcubeError
from colorcube.network.working import working_stage
from colorcube.render.fullres import full_stage
from colorcube.render.predict import predict_bands
from colorcube.settings import PipelineSettings


def test_lightness_of_colour_equals_input_lightness(tiny_model, gray):
    rgb, _, _ = predict_bands(gray, tiny_model, PipelineSettings(working_size=128))
    lab = rgb_to_lab(torch.from_numpy(rgb).permute(2, 0, 1))[0].numpy()
    target = gray_to_lightness(torch.from_numpy(gray)).numpy()
    inside = ((rgb > 0.01) & (rgb < 0.99)).all(axis=-1)  # gamut clipping changes L
    assert inside.mean() > 0.5
    np.testing.assert_allclose(lab[inside], target[inside], atol=0.05)


def test_blocks_do_not_change_results(tiny_model, gray):
    settings = PipelineSettings(working_size=96)
    whole = predict_bands(gray, tiny_model, settings, block_pixels=1 << 30)
    blocked = predict_bands(gray, tiny_model, settings, block_pixels=1000)
    for a, b in zip(whole, blocked):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_tiles_reproduce_untiled(tiny_model, gray):
    coeffs = working_stage(gray, tiny_model, PipelineSettings(working_size=64))
    full = full_stage(gray, coeffs)
    tile = full_stage(gray[37:150, 101:230], coeffs, y0=37, x0=101, threads=2)
    for a, b in zip(tile, full):
        np.testing.assert_array_equal(a, b[37:150, 101:230])


class _StepModel(torch.nn.Module):
    """Predicts chroma +40/-40 from the sign of (L - 50): a sharp chroma edge on a lightness edge."""

    def __init__(self, base):
        super().__init__()
        self.config = base.config
        self.register_buffer("bins", base.bins)
        self.register_buffer("rgb_table", base.rgb_table)
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    @property
    def n_bins(self):
        return self.bins.shape[0]

    def forward(self, lightness, hints=None):
        small = torch.nn.functional.avg_pool2d(lightness, 4)
        target = torch.where(small > 50, 40.0, -40.0)
        d = (self.bins[:, 1].view(1, -1, 1, 1) - target) ** 2
        return -d / 10.0, torch.full((lightness.shape[0], 3, *small.shape[-2:]), 0.1)


def test_guided_upsampling_reduces_bleeding(tiny_model):
    model = _StepModel(tiny_model).eval()
    g = np.full((512, 512), 0.2, np.float32)
    g[:, 253:] = 0.8  # edge not aligned with the 4-px output grid
    truth_b = np.where(np.arange(512) >= 253, 40.0, -40.0)
    errs = {}
    for guided in (True, False):
        s = PipelineSettings(working_size=128, guided=guided, vividness=0.05, precision="float32")
        rgb, _, _ = predict_bands(g, model, s)
        b = rgb_to_lab(torch.from_numpy(rgb).permute(2, 0, 1))[2].numpy()
        errs[guided] = np.abs(b - truth_b[None, :])[:, 240:266].mean()
    assert errs[True] < 0.5 * errs[False]


@pytest.mark.parametrize("bad, match", [
    (np.zeros((3, 4, 5)), "shape"),
    (np.zeros((0, 4)), "shape"),
    (np.full((8, 8), np.nan, np.float32), "NaN"),
    (np.full((8, 8), 2.0, np.float32), r"\[0, 1\]"),
])
def test_bad_arrays(tiny_model, bad, match):
    with pytest.raises(ColorcubeError, match=match):
        colorcube.colorize(bad, model=tiny_model, calibration=None)


def test_bad_alpha_and_settings(tiny_model, gray):
    with pytest.raises(ColorcubeError, match="alpha"):
        colorcube.colorize(gray, alpha=1.5, model=tiny_model, calibration=None)
    with pytest.raises(ColorcubeError, match="working_size"):
        PipelineSettings(working_size=8)
    with pytest.raises(ColorcubeError, match="revision 1.*recalibrate"):
        PipelineSettings(revision=1)


def test_integer_and_tiny_inputs(tiny_model):
    ds = colorcube.colorize(np.full((1, 1), 128, np.uint8), model=tiny_model, calibration=None)
    assert ds.sizes["y"] == 1 and ds.sizes["x"] == 1
    ds = colorcube.colorize(np.zeros((3, 900), np.uint16), model=tiny_model, calibration=None,
                            settings=PipelineSettings(working_size=256))
    assert ds["rgb"].shape == (3, 900, 3)


def test_an_8bit_colour_array_is_colorized_from_its_luma(tiny_model):
    rgb = np.random.default_rng(0).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    with pytest.warns(UserWarning, match="BT.601"):
        ds = colorcube.colorize(rgb, model=tiny_model, calibration=None)
    luma = (rgb / 255.0) @ np.array([0.299, 0.587, 0.114])
    assert np.abs(ds["gray"].values - luma).max() < 1 / 255


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_results_do_not_depend_on_torch_threads(tiny_model, gray, precision):
    """Thread counts change float summation order only: bands agree far below the 1/255 storage step."""
    before = torch.get_num_threads()
    try:
        outs = []
        for n in (1, 2):
            torch.set_num_threads(n)
            outs.append(predict_bands(gray, tiny_model, PipelineSettings(working_size=128, precision=precision)))
    finally:
        torch.set_num_threads(before)
    for a, b in zip(*outs):
        np.testing.assert_allclose(a, b, atol=1e-3 / 255)


def test_bfloat16_stays_close_to_float32(tiny_model, gray):
    f32, b16 = (predict_bands(gray, tiny_model, PipelineSettings(working_size=128, precision=p))[0]
                for p in ("float32", "bfloat16"))
    assert np.abs(f32 - b16).mean() < 1 / 255  # bf16 keeps 8 bits of mantissa; colours move by a fraction of a step
    with pytest.raises(ColorcubeError, match="precision"):
        PipelineSettings(precision="float16")


def test_bands_at_rebuilds_the_unrounded_bands(tiny_model, gray):
    """The stored gray + coefficients give back colour and spread exactly as the pipeline had them."""
    from colorcube.render.fullres import bands_at

    settings = PipelineSettings(working_size=96)
    ds = colorcube.colorize(gray, model=tiny_model, calibration=None, settings=settings)
    rgb, _lower, upper = predict_bands(gray, tiny_model, settings)
    c = ds.coefficients
    f, s = bands_at(ds.gray.values[::3, ::3], c.values, c.attrs["extent"], shape=gray.shape, step=3)
    np.testing.assert_array_equal(f, rgb[::3, ::3])
    np.testing.assert_allclose(s, (upper - rgb)[::3, ::3], atol=1e-6)
    with pytest.raises(ColorcubeError, match="every 3-th pixel"):
        bands_at(ds.gray.values, c.values, c.attrs["extent"], shape=gray.shape, step=3)


@pytest.mark.parametrize("to_zarr", [False, True])
def test_colorize_enters_each_module_once_in_data_flow_order(tiny_model, tmp_path, to_zarr):
    """run orchestrates: it hands the image to each stage's module once, in the order data flows."""
    import sys

    from PIL import Image

    path = tmp_path / "p.png"
    Image.fromarray(np.full((40, 60), 90, np.uint8)).save(path)
    calls = []

    def profile(frame, event, arg):
        caller = frame.f_back.f_globals.get("__name__", "") if frame.f_back is not None else ""
        if event == "call" and caller.startswith("colorcube.run."):
            module = frame.f_globals.get("__name__", "")
            if module.startswith("colorcube.") and not module.startswith("colorcube.run."):
                calls.append(module.removeprefix("colorcube."))

    out = tmp_path / "c.zarr" if to_zarr else None
    colorcube.colorize(path, model=tiny_model, calibration=None, out=out)  # every lazy import done
    sys.setprofile(profile)
    try:
        colorcube.colorize(path, model=tiny_model, calibration=None, out=out)
    finally:
        sys.setprofile(None)
    runs = [m for i, m in enumerate(calls) if i == 0 or calls[i - 1] != m]
    # preparation (alpha, settings), then the image: read, hints, working stage, full resolution, the cube
    stages = ["conformal.estimators", "conformal.lookup", "settings", "cube.attrs", "inputs.images", "guidance.hints",
              "network.working", "render.fullres"]
    expected = ["render.codes", *stages, "cube.schema", "cube.store"] if to_zarr else [*stages, "render.codes",
                                                                                        "cube.schema"]
    assert runs == expected, " ".join(runs)


BASE = "fe37fb8"  # the last commit before the modules were reorganised (issue 15)


@pytest.mark.slow
def test_cubes_are_those_of_the_commit_before_the_reorganisation(tmp_path, photos):
    """The same photos through this checkout and through BASE (a git worktree, its own process),
    with BASE's shipped network and no calibration: identical stored codes.
    ``python benchmarks/identical.py`` runs the same on the benchmark photos."""
    import subprocess
    import sys
    from pathlib import Path

    from PIL import Image

    root = Path(__file__).resolve().parents[1]
    if subprocess.run(["git", "-C", str(root), "cat-file", "-e", f"{BASE}^{{commit}}"], capture_output=True,
                      check=False).returncode:
        reason = f"commit {BASE} is not in this clone's history (a shallow clone): nothing to compare with"
        if os.environ.get("CI"):
            pytest.fail(reason + "; CI must clone with history")
        pytest.skip(reason)
    paths = []
    for name in ("chelsea", "coffee", "astronaut"):
        paths.append(tmp_path / f"{name}.png")
        Image.fromarray(photos[name][::2, ::2]).convert("L").save(paths[-1])
    # BASE's own shipped network (v2), uncalibrated, in both trees: the pipeline is what is compared
    weights = tmp_path / "v2.safetensors"
    shipped = f"{BASE}:colorcube/weights/colorcube-v2.safetensors"
    weights.write_bytes(subprocess.run(["git", "-C", str(root), "show", shipped], capture_output=True, check=True).stdout)
    code = ("import sys, numpy as np, colorcube\n"
            "import importlib\n"
            "for where in ('colorcube.weights', 'colorcube.model', 'colorcube.network.weights'):  # each tree's home\n"
            "    try:\n"
            "        load_weights = importlib.import_module(where).load_weights\n"
            "        break\n"
            "    except (ImportError, AttributeError):\n"
            "        continue\n"
            f"model = load_weights({str(weights)!r})\n"
            "out = {}\n"
            "for i, p in enumerate(sys.argv[1:-1]):\n"
            "    ds = colorcube.colorize(p, model=model, calibration=None)\n"
            "    for v, n in (('gray', 65535), ('rgb', 255), ('interval', 255)):\n"
            "        out[f'{i}_{v}'] = np.round(ds[v].values.astype(np.float64) * n).astype(np.int32)\n"
            "np.savez(sys.argv[-1], **out)\n")
    base = tmp_path / "base"
    subprocess.run(["git", "-C", str(root), "worktree", "add", "--detach", str(base), BASE], check=True,
                   capture_output=True)
    try:
        results = []
        for tree in (base, root):
            out = tmp_path / f"{tree.name}.npz"
            proc = subprocess.run([sys.executable, "-c", code, *map(str, paths), str(out)], cwd=tree,
                                  env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True, text=True,
                                  check=False, timeout=900)
            assert proc.returncode == 0, proc.stderr[-3000:]
            with np.load(out) as z:
                results.append({k: z[k] for k in z.files})
    finally:
        subprocess.run(["git", "-C", str(root), "worktree", "remove", "--force", str(base)], check=False,
                       capture_output=True)
    old, new = results
    assert sorted(old) == sorted(new) and len(old) == 9
    assert [k for k in old if not np.array_equal(old[k], new[k])] == []
