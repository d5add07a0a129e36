import importlib

import numpy as np
import pytest

import colorcube
from colorcube.conformal.records import calibrate, photo_records
from colorcube.conformal.weighting import (
    feature_names,
    image_features,
    reweight,
)
from colorcube.errors import CalibrationError, ColorcubeError
from colorcube.inputs.images import list_images, source_of
from colorcube.settings import PipelineSettings
from colorcube.testing import gray_of

SETTINGS = PipelineSettings(working_size=96)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """Records cache shared by this module's calibrations (each photo runs through the network once)."""
    return tmp_path_factory.mktemp("records-cache")


@pytest.fixture(scope="module")
def cal(tiny_model, photo_dir, cache):
    return calibrate(list_images(photo_dir), model=tiny_model, settings=SETTINGS, source="skimage", progress=False,
                     cache=cache)


def test_provenance(cal):
    p = cal.provenance
    assert cal.n == 12 and p["n_images"] == 12 and p["source"] == "skimage"
    assert p["model_hash"] == "0" * 64 and p["settings"]["working_size"] == 96
    assert p["settings"]["vividness"] == 0.5 and p["date"].startswith("20")


def test_colorize_carries_alpha_and_lambda(cal, tiny_model, photos):
    ds = colorcube.colorize(gray_of(photos["rocket"][::4, ::4]), alpha=0.2, model=tiny_model, calibration=cal)
    assert ds.attrs["alpha"] == 0.2 and ds.attrs["method"] == "crc" and ds.attrs["calibrated"] == 1
    assert ds.attrs["lambda"] == [float(v) if np.isfinite(v) else "inf" for v in cal.lambda_for(0.2)]
    assert "12 calibration images" in ds.attrs["guarantee"]
    assert "0.8" in ds.attrs["guarantee"]


def test_other_model_refused(cal, photos):
    from colorcube.network.model import ColorNet, ModelConfig

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


# -- provenance, sources, features, cache ------------------------------------------------------------


def test_provenance_lists_files_hashes_sources_and_features(cal, photo_dir, tiny_model):
    import hashlib

    files = list_images(photo_dir)
    p = cal.provenance
    assert p["files"] == [str(f) for f in files]
    assert p["sha256"][5] == hashlib.sha256(files[5].read_bytes()).hexdigest()
    assert p["sources"] == [photo_dir.name] * 12 and p["source_counts"] == {photo_dir.name: 12}
    assert p["hint_points"] == 0
    assert cal.features.shape == (12, len(feature_names(tiny_model))) and np.isfinite(cal.features).all()


def test_source_of_prefers_the_index_then_the_prefix(tmp_path):
    (tmp_path / "INDEX.tsv").write_text("file\tsource\twidth\nodd__1.png\tsrc-a\t3\n")
    assert source_of(tmp_path / "odd__1.png") == "src-a"
    assert source_of(tmp_path / "kodak24__kodim01.png") == "kodak24"
    assert source_of(tmp_path / "plain.png") == tmp_path.name


def test_a_record_runs_the_network_once_and_keeps_the_same_features(tiny_model, photos, monkeypatch):
    from colorcube.conformal.records import image_record
    from colorcube.network import model as model_module

    truth = photos["coffee"][::3, ::3].astype(np.float32) / 255
    g = gray_of(photos["coffee"][::3, ::3])
    calls = []
    forward = model_module.ColorNet.forward
    monkeypatch.setattr(model_module.ColorNet, "forward", lambda self, *a, **k: calls.append(1) or forward(self, *a, **k))
    rec = image_record(truth, g, tiny_model, SETTINGS)
    assert len(calls) == 1  # colours, bands and features from one network run
    np.testing.assert_array_equal(rec["features"], image_features(tiny_model, g, SETTINGS))
    hinted = image_record(truth, g, tiny_model, SETTINGS, hints=[(5, 5, (200, 30, 30))])
    np.testing.assert_array_equal(hinted["features"], rec["features"])  # of the gray input alone, as an archive's


def test_records_cache_is_reused_and_keyed_by_settings(cal, cache, tiny_model, photo_dir, monkeypatch):
    calibrate_module = importlib.import_module("colorcube.conformal.records")

    paths = list_images(photo_dir)[:3]
    first = photo_records(paths, model=tiny_model, settings=SETTINGS, progress=False)  # no cache: computed
    monkeypatch.setattr(calibrate_module, "image_record", lambda *a, **k: pytest.fail("the network ran again"))
    again = photo_records(paths, model=tiny_model, settings=SETTINGS, cache=cache, progress=False)
    np.testing.assert_array_equal(first.curves, again.curves)
    np.testing.assert_array_equal(first.features, again.features)
    assert again.sha256 == first.sha256
    with pytest.raises(pytest.fail.Exception, match="ran again"):  # other settings: another cache folder
        photo_records(paths, model=tiny_model, settings=PipelineSettings(working_size=64), cache=cache,
                      progress=False)


def test_colorcube_calibrate_is_the_function(tiny_model, photo_dir, cache):
    module = importlib.import_module("colorcube.conformal.records")  # its module, imported: the name stays the function
    assert colorcube.calibrate is calibrate and module.calibrate is calibrate
    assert "calibrate" in colorcube.__all__
    cal = colorcube.calibrate(list_images(photo_dir)[:2], model=tiny_model, settings=SETTINGS, progress=False,
                              cache=cache)
    assert cal.n == 2


# -- archive weights -------------------------------------------------------------------------------


def test_weighted_calibration_end_to_end_warns_and_refuses(tmp_path, tiny_model, photo_dir, photos, cache):
    from PIL import Image

    archive = tmp_path / "archive"
    archive.mkdir()
    for k in range(4):  # gray crops of one photo: an archive unlike the 12 mixed calibration photos
        Image.fromarray(photos["coffee"][k * 40 : k * 40 + 200, ::2]).convert("L").save(archive / f"scan{k}.png")
    with pytest.warns(UserWarning, match="looks unlike the calibration photos"):
        wc = calibrate(list_images(photo_dir), model=tiny_model, settings=SETTINGS, target=archive,
                       target_description="coffee scans", progress=False, cache=cache)
    t = wc.provenance["target"]
    assert wc.weighted and t["n_images"] == 4 and t["description"] == "coffee scans" and 0 < wc.ess <= 12
    assert "coffee scans" in wc.guarantee(0.5) and wc.guarantee(0.5).startswith("Approximately")
    with pytest.raises(CalibrationError, match="effective sample size"):
        wc.lambda_for(wc.min_alpha() * 0.9)
    lam = wc.lambda_for(min(0.99, wc.min_alpha() + 0.05))
    assert lam.shape == (3,)
    # the stored features let the weighting be redone without the network
    again = reweight(wc.subset(np.arange(12)), wc.features[:3], description="again", warn=False)
    assert again.weighted and again.provenance["target"]["description"] == "again"
    assert again.target_ratios is None  # features alone name no photo: every photo gets the bound


def test_archive_photos_get_their_own_weighted_lambda(tmp_path, tiny_model, tiny_weights, photo_dir, photos, cache):
    """Calibrated with --target, each archive photo (by SHA-256) is served weighted CRC with its own
    likelihood ratio, in colorize and in the archive; other photos get the bound."""
    import dataclasses
    import hashlib

    from PIL import Image

    from colorcube.conformal.estimators import weighted_crc_lambda
    from colorcube.network.weights import load_weights

    model = load_weights(tiny_weights)  # the archive loads the weights file: calibrate that model

    archive = tmp_path / "archive"
    archive.mkdir()
    for k in range(6):
        Image.fromarray(photos["coffee"][k * 30 : k * 30 + 200, ::2]).convert("L").save(archive / f"scan{k}.png")
    with pytest.warns(UserWarning, match="looks unlike"):
        wc = calibrate(list_images(photo_dir), model=model, settings=SETTINGS, target=archive,
                       progress=False, cache=cache)
    scans = list_images(archive)
    digests = [hashlib.sha256(p.read_bytes()).hexdigest() for p in scans]
    assert wc.provenance["target"]["sha256"] == digests and wc.target_ratios.shape == (6,)
    # the bound's weights are the photos' own ratios clipped at w_test
    assert wc.ratios.shape == (12,)
    np.testing.assert_array_equal(wc.weights, np.minimum(wc.ratios, wc.w_test))
    alpha = 0.9  # 12 photos and 6 unlike them: a large alpha leaves some finite lambdas
    own = {}
    for p, d in zip(scans, digests):
        lam, w = wc.lambda_for_photo(alpha, d)
        assert w == pytest.approx(wc.target_ratios[digests.index(d)])
        if w / (wc.ratios.sum() + w) > alpha:
            assert np.isinf(lam).all()
        else:
            expect = [weighted_crc_lambda(wc.curves[:, c], alpha, wc.ratios, w) for c in range(3)]
            np.testing.assert_array_equal(lam, expect)
        ds = colorcube.colorize(p, model=model, calibration=wc, alpha=alpha)
        assert ds.attrs["lambda"] == [float(v) if np.isfinite(v) else "inf" for v in lam]
        assert ds.attrs["calibration_weight"] == pytest.approx(w)
        own[p.stem] = ds
    assert len({str(ds.attrs["lambda"]) for ds in own.values()}) > 1  # each photo its own
    # its stored gray colorized again under the photo's hash: the same lambda
    again = colorcube.colorize(own["scan1"]["gray"].values, model=model, calibration=wc, alpha=alpha,
                               source_hash=digests[1])
    assert again.attrs["lambda"] == own["scan1"].attrs["lambda"]
    # bands at another alpha, rebuilt from the cube, use the photo's own weight too
    lam85 = wc.lambda_for_photo(0.85, digests[1])[0]
    assert not np.array_equal(lam85, wc.lambda_for(0.85))
    np.testing.assert_array_equal(own["scan1"].colorcube.bands(0.85, calibration=wc).attrs["lambda"], lam85)
    # a photo whose own weight takes more than alpha of the risk: no finite lambda, its band is [0, 1]
    unlike = dataclasses.replace(wc, target_ratios=np.r_[1e6, wc.target_ratios[1:]])
    assert np.isinf(unlike.lambda_for_photo(alpha, digests[0])[0]).all()
    ds = colorcube.colorize(scans[0], model=model, calibration=unlike, alpha=alpha)
    assert ds.attrs["lambda"] == ["inf"] * 3 and ds.attrs["calibration_weight"] == 1e6
    assert (ds["interval"].sel(bound="lower") == 0).all() and (ds["interval"].sel(bound="upper") == 1).all()
    # photos are known by their source's bytes: the pixels of scan0 as an array are another photo, and
    # a photo outside the archive gets the archive-wide bound, no own weight
    bound = [float(v) if np.isfinite(v) else "inf" for v in wc.lambda_for(alpha)]
    for image in (np.asarray(Image.open(scans[0])), gray_of(photos["astronaut"])):
        other = colorcube.colorize(image, model=model, calibration=wc, alpha=alpha)
        assert other.attrs["lambda"] == bound and "calibration_weight" not in other.attrs
    # the archive serves the same per-photo lambdas and bands
    from colorcube.cube.index import open_image
    from colorcube.run.archive import colorize_archive

    out = tmp_path / "arch.zarr"
    res = colorize_archive(archive, out, weights=tiny_weights, calibration=wc, alpha=alpha, progress=False)
    assert not res.failed
    assert len(res.done) == len(own)
    for name in res.done:
        cube, ds = open_image(out, name), own[name.rsplit("-", 1)[0]]
        assert cube.attrs["lambda"] == ds.attrs["lambda"]
        np.testing.assert_array_equal(cube["interval"].values, ds["interval"].values)


def test_calibrate_command_per_image_target_and_cache(tmp_path, tiny_weights, photo_dir, capsys):
    from colorcube.apps.cli import main
    from colorcube.conformal.calibration import Calibration

    out, cache = tmp_path / "p.cal", tmp_path / "cache"
    common = ["--weights", str(tiny_weights), "--working-size", "96", "--cache", str(cache)]
    assert main(["calibrate", str(photo_dir), "-o", str(out), "--per-image", "0.3", "--alpha", "0.3", *common]) == 0
    text = capsys.readouterr().out
    assert "calibrated on 12 images (1 sources" in text and "smallest alpha served: 0.0769" in text
    assert "at least 0.7 of its pixels" in text
    cal = Calibration.from_file(out)
    assert cal.beta == 0.3 and len(cal.provenance["sha256"]) == 12
    assert len(list(cache.glob("records-*/*.npz"))) == 12
    # too small an alpha for 12 photos: refused, nothing written
    assert main(["calibrate", str(photo_dir), "-o", str(tmp_path / "no.cal"), "--alpha", "0.05", *common]) == 2
    assert "at least 19" in capsys.readouterr().err and not (tmp_path / "no.cal").exists()
    # weighted for an archive (the same photos, read as gray): effective sample size printed
    rc = main(["calibrate", str(photo_dir), "-o", str(tmp_path / "w.cal"), "--target", str(photo_dir),
               "--alpha", "0.4", *common])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "effective sample size" in captured.out and "Approximately" in captured.out
    assert "each of the 12 archive images is served with its own weight" in captured.out


def test_calibration_with_random_hints(cal, tiny_model, photo_dir, cache):
    paths = list_images(photo_dir)[:3]
    hinted = calibrate(paths, model=tiny_model, settings=SETTINGS, hints=5, progress=False, cache=cache)
    assert hinted.hint_points == 5 and hinted.provenance["hint_points"] == 5
    assert "5 random true-colour hint points" in hinted.guarantee(0.3)
    # the hint process has its own cache entries; the photos' features are those of the gray alone
    assert len(list(cache.glob("records-*"))) >= 2
    np.testing.assert_array_equal(hinted.features, cal.features[:3])
    assert not np.array_equal(hinted.curves, cal.curves[:3])  # pinned hint pixels are covered
    with pytest.raises(CalibrationError, match="hinted photos"):
        hinted.check_compatible(hints=0)
