"""Reference photo: per-lightness-band (a*, b*) histograms and the reweighting of the predicted colours."""

import numpy as np
import pytest
import torch

import colorcube
from colorcube.color import gray_to_lightness
from colorcube.errors import ColorcubeError, HintError
from colorcube.guidance.reference import BAND_CENTRES, band_weights, reference_histogram, reweighter
from colorcube.metrics import psnr
from colorcube.network.decode import predict
from colorcube.testing import gray_of


def test_histogram_shape_and_band_weights(photos, tiny_model):
    ref = reference_histogram(photos["coffee"], tiny_model.bins)
    assert ref.hist.shape == (len(BAND_CENTRES), tiny_model.n_bins)
    np.testing.assert_allclose(ref.hist.sum(axis=1), 1, rtol=1e-5)
    assert (ref.hist > 0).all()
    w = band_weights(torch.linspace(0, 100, 101))
    torch.testing.assert_close(w.sum(dim=1), torch.ones(101))
    assert w[50].argmax() == 2 and w[0, 0] == 1


def test_bad_references(tiny_model, tmp_path):
    with pytest.raises(HintError, match="no colour"):
        reference_histogram(np.full((20, 20, 3), 0.5, np.float32), tiny_model.bins)
    with pytest.raises(HintError, match=r"\(y, x, 3\)"):
        reference_histogram(np.zeros((20, 20)), tiny_model.bins)
    with pytest.raises(ColorcubeError, match="missing.png"):
        reference_histogram(tmp_path / "missing.png", tiny_model.bins)
    with pytest.raises(HintError, match="strength"):
        reweighter(reference_histogram(np.eye(8)[:, :3][None].repeat(8, 0), tiny_model.bins), -1)


def _band_marginals(model, lightness, reweight=None):
    """The per-band mean bin distribution of the prediction, plain or reweighted."""
    captured = {}

    def spy(probs, light):
        captured["probs"], captured["light"] = probs, light
        return reweight(probs, light) if reweight else torch.zeros_like(probs)

    with torch.inference_mode():
        predict(model, lightness, reweight=spy, vividness=1.0)
        z = torch.log(captured["probs"]) + spy(captured["probs"], captured["light"])
        p = torch.softmax(z, dim=1)
        wb = band_weights(captured["light"])
        m = wb.T @ p / wb.sum(dim=0)[:, None]
    return m, wb.sum(dim=0)


def test_reweighting_moves_each_band_toward_the_reference(photos, tiny_model):
    """Model-independent: the predicted colour marginal of every populated lightness band gets
    closer (KL) to the reference's histogram, more so with more strength."""
    light = gray_to_lightness(torch.from_numpy(gray_of(photos["astronaut"][::4, ::4][:128, :128])))[None, None]
    ref = reference_histogram(photos["coffee"], tiny_model.bins)
    target = torch.from_numpy(ref.hist)

    def kl(m):
        return (target * torch.log(target / m.clamp_min(1e-12))).sum(dim=1)

    plain, mass = _band_marginals(tiny_model, light)
    half, _ = _band_marginals(tiny_model, light, reweighter(ref, 0.5))
    full, _ = _band_marginals(tiny_model, light, reweighter(ref, 1.0))
    populated = mass > 20
    assert populated.sum() >= 2
    assert (kl(half)[populated] < kl(plain)[populated]).all()
    assert (kl(full)[populated] < kl(half)[populated]).all()
    none, _ = _band_marginals(tiny_model, light, reweighter(ref, 0.0))
    torch.testing.assert_close(none, plain)


def test_reference_in_colorize(photos):
    truth = photos["chelsea"][::2, ::2]
    gray = gray_of(truth)
    auto = colorcube.colorize(gray)
    zero = colorcube.colorize(gray, reference=truth, reference_strength=0.0)
    np.testing.assert_array_equal(zero.rgb.values, auto.rgb.values)  # strength 0: the automatic colours
    ds = colorcube.colorize(gray, reference=truth)
    assert ds.attrs["reference"] == "<array>" and ds.attrs["reference_strength"] == 1.0
    assert "reference photo" in ds.attrs["guarantee"]
    # the truth as reference: closer to the truth than the automatic colours
    assert psnr(ds.rgb.values, truth / 255.0) > psnr(auto.rgb.values, truth / 255.0)
