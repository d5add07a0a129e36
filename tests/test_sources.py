"""Where archive inputs come from: folders, globs, text files, lists and zarr stores of gray arrays."""

import hashlib
import re

import numpy as np
import pytest
import zarr

from colorcube.errors import ColorcubeError, ImageReadError
from colorcube.inputs.sources import Source, group_name, list_sources, read_source, source_hash
from colorcube.testing import gray_of, write_gray_png


@pytest.fixture(scope="module")
def scans(tmp_path_factory, photos):
    """b.png, a.jpg, sub/a.png (a stem twice), a broken c.tif, and files without an image suffix."""
    d = tmp_path_factory.mktemp("scans")
    (d / "sub").mkdir()
    write_gray_png(d / "b.png", photos["coffee"][::8, ::8])
    write_gray_png(d / "sub" / "a.png", photos["rocket"][::8, ::8])
    (d / "a.jpg").write_bytes((d / "b.png").read_bytes())  # a PNG under another image suffix
    (d / "c.tif").write_bytes(b"not a tiff")
    (d / "notes.txt").write_text("not an image")
    (d / "Z.PNG.bak").write_bytes(b"")
    return d


def _names(sources, root):
    return [str(s.path)[len(str(root)) + 1:] for s in sources]


def test_folder_is_recursive_sorted_and_keeps_broken_image_files(scans):
    found = list_sources(scans)
    assert all(isinstance(s, Source) and s.array is None for s in found)
    assert _names(found, scans) == sorted(["a.jpg", "b.png", "c.tif", "sub/a.png"])


def test_glob_and_its_errors(scans):
    assert _names(list_sources(str(scans / "**" / "*.png")), scans) == ["b.png", "sub/a.png"]
    assert _names(list_sources(str(scans / "?.jpg")), scans) == ["a.jpg"]
    with pytest.raises(ColorcubeError, match="matches no files"):
        list_sources(str(scans / "*.webp"))


def test_text_file_of_paths(scans, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text(f"# scans to do\n\n{scans / 'b.png'}\n  relative.png  \n{scans / 'sub' / 'a.png'}\n")
    assert [s.path for s in list_sources(listing)] == [str(scans / "b.png"), str(tmp_path / "relative.png"),
                                                       str(scans / "sub" / "a.png")]


def test_list_is_taken_as_is(scans):
    paths = [scans / "sub" / "a.png", "missing.png", scans / "b.png"]
    assert list_sources(paths) == [Source(str(p)) for p in paths]
    assert list_sources(tuple(paths)) == list_sources(paths)


@pytest.mark.parametrize("what, match", [("missing", "source not found"), ("empty_folder", "no image files")])
def test_bad_sources_name_the_path(tmp_path, what, match):
    p = tmp_path / what
    if what == "empty_folder":
        p.mkdir()
        (p / "readme.md").write_text("no images here")
    with pytest.raises(ColorcubeError, match=match) as exc:
        list_sources(p)
    assert str(p) in str(exc.value)


def test_zarr_store_of_gray_arrays(tmp_path):
    store = tmp_path / "grays.zarr"
    root = zarr.open_group(str(store), mode="w")
    root.create_array("b", data=np.zeros((4, 5), np.uint8))
    root.create_array("a", data=np.zeros((3, 2), np.uint16))
    root.create_array("rgb", data=np.zeros((3, 2, 3), np.uint8))  # not 2-D: not a gray image
    root.create_group("batch").create_array("c", data=np.zeros((2, 2), np.float32))
    assert [(s.path, s.array) for s in list_sources(store)] == [(str(store), n) for n in ("a", "b", "batch/c")]
    empty = tmp_path / "empty.zarr"
    zarr.open_group(str(empty), mode="w").create_array("rgb", data=np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(ColorcubeError, match="no 2-D gray arrays"):
        list_sources(empty)


def test_group_names_are_unique_stable_and_safe(scans):
    sources = list_sources(scans) + [Source("../../etc/..passwd"), Source("x/Fotografía de la plaza (1921).png"),
                                     Source("/data/store.zarr", "batch/a"), Source("/data/store.zarr", "a")]
    names = [group_name(s) for s in sources]
    assert len(set(names)) == len(names)  # sub/a.png and a.jpg, and both zarr arrays named a, stay apart
    assert names == [group_name(Source(s.path, s.array)) for s in sources]  # stable: a function of the source
    for name in names:
        assert re.fullmatch(r"[A-Za-z0-9._-]+-[0-9a-f]{8}", name), name
        assert ".." not in name and "/" not in name
    label = Source(str(scans / "b.png")).label
    assert group_name(Source(label)).endswith("-" + hashlib.sha256(label.encode()).hexdigest()[:8])
    assert group_name(Source(str(scans / "b.png"))).startswith("b-")


def test_read_source_reads_files_and_zarr_arrays(scans, photos, tmp_path):
    gray, damage = read_source(Source(str(scans / "b.png")), None)
    np.testing.assert_array_equal(gray, gray_of(photos["coffee"][::8, ::8]))
    assert damage == ""
    store = tmp_path / "s.zarr"
    codes = np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000
    zarr.open_group(str(store), mode="w").create_array("g", data=codes)
    src = Source(str(store), "g")
    arr, damage = read_source(src, None)
    assert arr.dtype == np.float32 and damage == ""
    np.testing.assert_array_equal(arr, codes.astype(np.float32) / 65535)
    assert source_hash(src) == hashlib.sha256(codes.tobytes()).hexdigest()
    assert source_hash(Source(str(scans / "b.png"))) == hashlib.sha256((scans / "b.png").read_bytes()).hexdigest()


@pytest.mark.parametrize("bad", ["broken_file", "missing_file", "above_one", "nan"])
def test_read_source_errors_name_the_source(scans, tmp_path, bad):
    if bad in ("broken_file", "missing_file"):
        src = Source(str(scans / ("c.tif" if bad == "broken_file" else "gone.png")))
    else:
        store = tmp_path / "bad.zarr"
        data = np.full((3, 3), 0.5, np.float32)
        data[1, 1] = 1.5 if bad == "above_one" else np.nan
        zarr.open_group(str(store), mode="w").create_array("g", data=data)
        src = Source(str(store), "g")
    with pytest.raises(ImageReadError) as exc:
        read_source(src, None)
    assert (src.label if src.array else src.path) in str(exc.value)
    if bad == "missing_file":
        with pytest.raises(ImageReadError, match="cannot be read"):
            source_hash(src)


@pytest.mark.parametrize("name", ["b.png", "a.jpg"])
def test_a_file_is_read_once_for_its_hash_damage_check_and_pixels(scans, monkeypatch, name):
    import builtins
    import io

    from colorcube.inputs.sources import source_data

    path = scans / name
    opened = []
    real = io.open

    def counting(file, *args, **kwargs):
        if str(file) == str(path):
            opened.append(file)
        return real(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting)
    monkeypatch.setattr(io, "open", counting)
    source = Source(str(path))
    with source_data(source) as data:
        digest = source_hash(source, data)
        gray, damage = read_source(source, None, data)
    assert len(opened) == 1
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    np.testing.assert_array_equal(gray, read_source(source, None)[0])  # the bytes decode as the file does
    assert damage == ""
