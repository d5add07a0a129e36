"""Archive weighting (conformal.weighting): per-photo features and likelihood-ratio weights for covariate shift."""

import numpy as np
import pytest

from colorcube.conformal.weighting import feature_names, image_features, likelihood_ratio_weights, ratio_features
from colorcube.settings import PipelineSettings
from colorcube.testing import gray_of

SETTINGS = PipelineSettings(working_size=96)


def test_image_features_are_deterministic_and_carry_the_gray_statistics(tiny_model, photos):
    g = gray_of(photos["coffee"][::3, ::3])
    f = image_features(tiny_model, g, SETTINGS)
    names = feature_names(tiny_model)
    assert f.shape == (len(names),) and f.dtype == np.float32 and np.isfinite(f).all()
    np.testing.assert_array_equal(f, image_features(tiny_model, g, SETTINGS))
    assert f[names.index("L_mean")] == pytest.approx(g.mean(), abs=1e-6)
    assert f[names.index("log10_pixels")] == pytest.approx(np.log10(g.size), abs=1e-6)
    kept = ratio_features(f)  # the archive classifier leaves out image size and aspect
    assert kept.shape == (len(names) - 2,) and names[len(kept):] == ["log10_pixels", "log_aspect"]
    other = image_features(tiny_model, gray_of(photos["rocket"][::3, ::3]), SETTINGS)
    emb = [i for i, n in enumerate(names) if n.startswith("embed_")]
    assert np.abs(f[emb] - other[emb]).max() > 0.1 * np.abs(f[emb]).max()  # the embedding differs between photos


def test_likelihood_ratio_weights_recover_a_known_shift():
    """Calibration x ~ N(0, I_5), target x ~ N(e_1, I_5): log w(x) = x_1 - 1/2, the classifier's
    AUC is Phi(1 / sqrt 2) = 0.760 (standard error about 0.02 for 600 vs 300 images: 3 of them),
    and the effective sample size of the exact weights is n / E[w^2] = n / e = 221."""
    from scipy.stats import norm

    rng = np.random.default_rng(0)
    xc, xt = rng.standard_normal((600, 5)), rng.standard_normal((300, 5))
    xt[:, 0] += 1.0
    w, w_test, info = likelihood_ratio_weights(xc, xt, components=5, clip_quantile=1.0)
    assert np.corrcoef(np.log(w), xc[:, 0])[0, 1] > 0.9
    assert abs(info["auc"] - norm.cdf(1 / np.sqrt(2))) < 0.06
    assert 221 / 1.5 < info["ess"] < 221 * 1.5
    # clip_quantile 1: w_test is the largest archive weight, and no calibration weight exceeds it
    assert w_test >= w.max() and w_test > np.median(w)
    # no shift: the classifier cannot tell them apart, the weights stay near 1
    _, _, info0 = likelihood_ratio_weights(xc, rng.standard_normal((300, 5)), components=5)
    assert abs(info0["auc"] - 0.5) < 0.06 and info0["ess"] > 0.8 * 600
