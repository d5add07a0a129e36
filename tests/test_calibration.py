"""The Calibration object: lambdas for any alpha, its statement, refusals, and its .cal file."""

import json

import numpy as np
import pytest

from colorcube.conformal.calibration import Calibration
from colorcube.conformal.estimators import effective_sample_size, weighted_crc_lambda
from colorcube.errors import CalibrationError

from .test_estimators import _cal


def test_file_round_trip_and_refusals(tmp_path):
    cal = _cal(np.random.default_rng(6), method="rcps", delta=0.05)
    path = cal.to_file(tmp_path / "c.cal")
    back = Calibration.from_file(path, model_hash="a" * 64)
    np.testing.assert_array_equal(back.curves, cal.curves)
    assert back.method == "rcps" and back.delta == 0.05
    for a in (0.07, 0.1, 0.3):
        np.testing.assert_array_equal(back.lambda_for(a), cal.lambda_for(a))
    with pytest.raises(CalibrationError, match="not for the loaded model"):
        Calibration.from_file(path, model_hash="b" * 64)
    # truncated
    (tmp_path / "t.cal").write_bytes(path.read_bytes()[:500])
    with pytest.raises(CalibrationError, match="t.cal"):
        Calibration.from_file(tmp_path / "t.cal")
    # tampered content with a valid zip: rewrite curves, keep the stored checksum
    import io
    import zipfile

    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    buf = io.BytesIO()
    np.save(buf, np.zeros_like(cal.curves))
    members["curves.npy"] = buf.getvalue()
    with zipfile.ZipFile(tmp_path / "x.cal", "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    with pytest.raises(CalibrationError, match="checksum"):
        Calibration.from_file(tmp_path / "x.cal")


def test_pipeline_settings_mismatch_is_refused():
    cal = _cal(np.random.default_rng(8))
    cal.provenance["settings"] = {"working_size": 512}
    with pytest.raises(CalibrationError, match="working_size"):
        cal.check_compatible(settings={"working_size": 256})


def test_modes_sentences_and_min_alpha():
    rng = np.random.default_rng(14)
    cal = _cal(rng, n=60)
    assert cal.min_alpha() == pytest.approx(1 / 61)
    cal.lambda_for(1 / 61 + 1e-9)
    with pytest.raises(CalibrationError, match="at least"):
        cal.lambda_for(1 / 61 - 1e-4)
    assert "each channel (R, G, B)" in cal.guarantee(0.1) and "not all three" in cal.guarantee(0.1)
    assert "all three" in cal.guarantee(0.1, joint=True)
    per = cal.guarantee(0.1, beta=0.2)
    assert "With probability at least 0.9" in per and "at least 0.8 of its pixels" in per
    # per-image lambdas are at least as wide as expected-coverage ones at the same alpha and beta >= alpha
    assert (cal.lambda_for(0.1, beta=0.1) >= cal.lambda_for(0.1)).all()
    per_cal = Calibration(curves=cal.curves, joint_curves=cal.joint_curves, beta=0.2)
    np.testing.assert_array_equal(per_cal.lambda_for(0.1), cal.lambda_for(0.1, beta=0.2))
    np.testing.assert_array_equal(per_cal.lambda_for(0.1, beta=None), cal.lambda_for(0.1))
    assert cal.min_alpha(method="rcps", delta=0.1) == pytest.approx(1 - 0.1 ** (1 / 60))


def test_weighted_calibration_object():
    rng = np.random.default_rng(15)
    cal = _cal(rng, n=60)
    w = rng.lognormal(0, 1, 60)
    wc = Calibration(curves=cal.curves, joint_curves=cal.joint_curves, weights=w, w_test=float(w.max()),
                     provenance={"target": {"description": "scans", "n_images": 30}})
    assert wc.weighted and wc.ess == pytest.approx(effective_sample_size(w))
    assert wc.min_alpha() == pytest.approx(w.max() / (w.sum() + w.max()))
    text = wc.guarantee(0.2)
    assert text.startswith("Approximately") and "effective sample size" in text and "scans" in text
    assert "Approximately" in wc.guarantee(0.2, beta=0.2)
    assert wc.summary()["weighted"] and wc.summary()["ess"] > 0
    with pytest.raises(CalibrationError, match="CRC only"):
        wc.lambda_for(0.2, method="rcps")
    with pytest.raises(CalibrationError, match="w_test"):
        Calibration(curves=cal.curves, joint_curves=cal.joint_curves, weights=w)
    # a smaller weight for a given photo gives it a narrower (or equal) lambda
    assert (wc.lambda_for(0.2, w_test=0.01) <= wc.lambda_for(0.2)).all()


def test_photo_lambda_is_weighted_crc_with_the_photos_own_ratio(tmp_path):
    rng = np.random.default_rng(19)
    cal = _cal(rng, n=60)
    ratios = rng.lognormal(0, 1, 60)
    mine = np.array([0.5, 3.0, 1e3])
    wc = Calibration(curves=cal.curves, joint_curves=cal.joint_curves, weights=np.minimum(ratios, 2.0), w_test=2.0,
                     ratios=ratios, target_ratios=mine,
                     provenance={"target": {"description": "scans", "n_images": 3, "sha256": ["a", "b", "c"]}})
    for name, w in zip("ab", mine):
        lam, got = wc.lambda_for_photo(0.2, name)
        assert got == w
        np.testing.assert_array_equal(lam, [weighted_crc_lambda(cal.curves[:, c], 0.2, ratios, w) for c in range(3)])
    # 1e3 / (sum + 1e3) > 0.2: no finite lambda serves that photo (weighted_crc_lambda refuses)
    assert 1e3 / (ratios.sum() + 1e3) > 0.2
    lam, got = wc.lambda_for_photo(0.2, "c")
    assert np.isinf(lam).all() and got == 1e3
    with pytest.raises(CalibrationError):
        weighted_crc_lambda(cal.curves[:, 0], 0.2, ratios, 1e3)
    # all at once (what a run precomputes): the same lambdas, for many weights and joint bands too
    table = wc.photo_lambdas(0.2)
    assert set(table) == {"a", "b", "c"}
    for name, w in zip("abc", mine):
        assert table[name][1] == w
        if name != "c":  # "c": inf, checked above
            np.testing.assert_array_equal(
                table[name][0], [weighted_crc_lambda(cal.curves[:, c], 0.2, ratios, w) for c in range(3)])
    assert np.isinf(table["c"][0]).all()
    many = rng.lognormal(0, 1.5, 300)
    got_many = wc._own_lambdas(0.2, many, None, None)
    for w, row in zip(many, got_many):
        try:
            expect = [weighted_crc_lambda(cal.curves[:, c], 0.2, ratios, w) for c in range(3)]
        except CalibrationError:
            expect = [np.inf] * 3
        np.testing.assert_array_equal(row, expect)
    joint = wc.lambda_for_photo(0.2, "a", joint=True)[0]
    assert (joint == weighted_crc_lambda(cal.joint_curves, 0.2, ratios, 0.5)).all()
    # any other photo: the archive-wide bound
    lam, got = wc.lambda_for_photo(0.2, "zz")
    assert got is None and (lam == wc.lambda_for(0.2)).all()
    assert "its own ratio" in wc.guarantee(0.2) and wc.summary()["own_weights"] == 3
    back = Calibration.from_file(wc.to_file(tmp_path / "own.cal"))
    with np.load(tmp_path / "own.cal") as z:  # a new format: earlier readers refuse it by name, not as corrupted
        assert json.loads(z["meta"].tobytes())["format"] == "colorcube-calibration-3"
    np.testing.assert_array_equal(back.target_ratios, mine)
    np.testing.assert_array_equal(back.lambda_for_photo(0.2, "b")[0], wc.lambda_for_photo(0.2, "b")[0])
    with pytest.raises(CalibrationError, match="one per name"):
        Calibration(curves=cal.curves, joint_curves=cal.joint_curves, weights=ratios, w_test=2.0, ratios=ratios,
                    target_ratios=mine[:2], provenance={"target": {"sha256": ["a", "b", "c"]}})
    with pytest.raises(CalibrationError, match="come together"):
        Calibration(curves=cal.curves, joint_curves=cal.joint_curves, ratios=ratios, target_ratios=mine)


def test_file_round_trip_of_features_weights_and_beta(tmp_path):
    rng = np.random.default_rng(16)
    cal = _cal(rng, n=40)
    full = Calibration(curves=cal.curves, joint_curves=cal.joint_curves, beta=0.25,
                       features=rng.standard_normal((40, 7)), weights=rng.random(40) + 0.1, w_test=1.5,
                       provenance={"model_hash": "a" * 64, "files": [f"p{i}.png" for i in range(40)]})
    back = Calibration.from_file(full.to_file(tmp_path / "w.cal"))
    assert back.beta == 0.25 and back.w_test == 1.5 and back.provenance["files"][3] == "p3.png"
    np.testing.assert_array_equal(back.features, full.features)
    np.testing.assert_array_equal(back.weights, full.weights)
    np.testing.assert_array_equal(back.lambda_for(0.2), full.lambda_for(0.2))
    sub = full.subset(np.arange(40) < 10)
    assert sub.n == 10 and not sub.weighted and sub.provenance["files"] == [f"p{i}.png" for i in range(10)]


def test_reads_format_1_files(tmp_path):
    """Calibrations written before features and weights (format 1) still load."""
    import io
    import json

    from colorcube.conformal.calfile import _digest

    cal = _cal(np.random.default_rng(17), n=30)
    meta = {"format": "colorcube-calibration-1", "method": "crc", "delta": 0.1, "joint": False,
            "provenance": cal.provenance}
    arrays = {"curves": cal.curves, "joint_curves": cal.joint_curves, "grid": cal.grid}
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8),
                        sha256=np.frombuffer(_digest(arrays, meta).encode(), np.uint8))
    (tmp_path / "old.cal").write_bytes(buf.getvalue())
    old = Calibration.from_file(tmp_path / "old.cal")
    assert old.beta is None and old.features is None and not old.weighted
    np.testing.assert_array_equal(old.lambda_for(0.1), cal.lambda_for(0.1))


def test_hinted_calibration_refused_without_hints():
    cal = _cal(np.random.default_rng(18))
    cal.provenance["hint_points"] = 5
    with pytest.raises(CalibrationError, match="5 random hint points"):
        cal.check_compatible(hints=0)
    cal.check_compatible(hints=3)
    cal.check_compatible()  # not checked when the caller does not say
    assert "5 random true-colour hint points" in cal.guarantee(0.1) and "not for photos without hints" in \
        cal.guarantee(0.1)
    assert cal.summary()["hint_points"] == 5


def test_any_alpha_and_joint_is_wider():
    cal = _cal(np.random.default_rng(5))
    lam1, lam2 = cal.lambda_for(0.2), cal.lambda_for(0.05)
    assert (lam2 > lam1).all()
    joint = cal.lambda_for(0.1, joint=True)
    assert (joint >= cal.lambda_for(0.1)).all() and len(set(joint)) == 1
    assert "0.9" in cal.guarantee(0.1) and "60 calibration images" in cal.guarantee(0.1)
    assert "RCPS" in cal.guarantee(0.1, method="rcps")
