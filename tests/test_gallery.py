import shutil

import numpy as np
import pytest
from PIL import Image

import colorcube
from colorcube.apps.gallery import SORTS, page_order, thumbnail
from colorcube.cube.index import archive_index, open_image
from colorcube.errors import ColorcubeError, OptionError
from colorcube.run.archive import colorize_archive
from colorcube.testing import gray_of, synthetic_archive


@pytest.fixture(scope="module")
def archive(tmp_path_factory, photos, tiny_weights):
    """Nine small gray photos (crops of the skimage photos) and one broken file, archived with a tiny model."""
    d = tmp_path_factory.mktemp("gallery_scans")
    k = 0
    for name, arr in photos.items():
        for crop in ((slice(0, 96), slice(0, 128)), (slice(40, 136), slice(60, 188))):
            if k < 9:
                Image.fromarray(np.round(gray_of(arr[crop]) * 255).astype(np.uint8)).save(d / f"p{k:02d}_{name}.png")
                k += 1
    (d / "zz_broken.png").write_bytes(b"not an image")
    out = tmp_path_factory.mktemp("gallery") / "out.zarr"
    colorize_archive(d, out, weights=tiny_weights, calibration=None, progress=False)
    return out


def test_order_follows_the_index_and_failed_photos_go_last_or_first(archive):
    index = archive_index(archive)
    unsure = page_order(index, "least sure first")
    done = unsure[unsure.status == "complete"]
    assert list(done.wide_share) == sorted(done.wide_share, reverse=True)
    assert unsure.status.iloc[-1] == "failed"
    assert page_order(index, "failed first").status.iloc[0] == "failed"
    assert list(page_order(index, "name").name) == sorted(index.name)
    assert set(SORTS) >= {"least sure first", "name", "failed first"}
    with pytest.raises(OptionError, match="sort='size'"):
        page_order(index, "size")


def test_thumbnail_is_the_stored_colour_strided(archive):
    name = archive_index(archive).query("status == 'complete'").name.iloc[0]
    rgb = open_image(archive, name)["rgb"].values
    thumb = thumbnail(archive, name, side=40)
    step = int(np.ceil(max(rgb.shape[:2]) / 40))
    assert thumb.dtype == np.uint8 and max(thumb.shape[:2]) <= 40
    np.testing.assert_array_equal(thumb, np.round(rgb[::step, ::step] * 255).astype(np.uint8))


def test_pages_read_only_their_thumbnails_and_open_shows_the_explorer(archive):
    view = colorcube.gallery(archive, page_size=4, calibration=None)
    g = view.gallery
    assert g.pages == 3 and len(g.grid.children) == 4 and g.reads == 4
    g.next.click()
    assert g.page.value == 2 and g.reads == 8
    g.previous.click()
    assert g.reads == 8  # kept once read
    g.sort.value = "failed first"
    first = g.grid.children[0]
    open_button = first.children[-1]
    assert open_button.disabled  # a failed photo has nothing to open
    g.sort.value = "name"
    name = g.rows().name.iloc[0]
    g.grid.children[0].children[-1].click()
    assert g.viewer.children and g.opened.data["attrs"]["source"].endswith(".png")
    assert g.opened.images["image"]().attrs["source_hash"] == archive_index(archive).set_index("name").loc[name, "hash"]


def test_an_unreadable_photo_is_shown_as_such_and_names_are_escaped(tmp_path):
    out = synthetic_archive(tmp_path / "a.zarr", 3, side=16)
    shutil.rmtree(out / "images" / "photo-00001" / "rgb")  # its colour codes lost
    with pytest.raises(ColorcubeError, match="photo-00001"):
        thumbnail(out, "photo-00001")
    g = colorcube.gallery(out, page_size=3, calibration=None).gallery
    cells = {c.children[1].value.split("<br>")[0].removeprefix("<small>"): c for c in g.grid.children}
    broken = cells["photo-00001"]
    assert "no readable colour codes" in broken.children[0].value and broken.children[-1].disabled
    assert not cells["photo-00000"].children[-1].disabled and g.reads == 3
    with pytest.raises(OptionError, match="side"):
        thumbnail(out, "photo-00000", side=0)


def test_the_gallery_and_the_archive_index_load_no_network(tmp_path):
    """Sorting and paging an archive needs neither torch nor the explorer (they load on the first
    "open"): the gallery of a synthetic archive in a fresh process."""
    import subprocess
    import sys

    out = synthetic_archive(tmp_path / "a.zarr", 30, side=16)
    code = ("import sys, colorcube; view = colorcube.gallery(sys.argv[1]); index = colorcube.archive_index(sys.argv[1]); "
            "loaded = [m for m in ('torch', 'colorcube.apps.explorer', 'colorcube.run.pipeline') if m in sys.modules]; "
            "assert loaded == [], loaded; assert len(index) == 30")
    proc = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
