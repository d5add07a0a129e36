"""A corpus of broken and odd files, each made here: colorized correctly or refused
with a one-line ColorcubeError naming the file and the reason."""

import io
import os
import struct
import subprocess
import sys
import zipfile
import zlib

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from colorcube.apps.cli import main
from colorcube.cube.index import archive_index
from colorcube.errors import ColorcubeError
from colorcube.inputs.images import read_gray
from colorcube.testing import damage_png, gray_of


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _bomb_png() -> bytes:
    """A few hundred bytes that claim a 100000 x 100000 gray image."""
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1000)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _save(im, fmt, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("notes.txt", "not a photograph")
    return buf.getvalue()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, photos):
    """kind -> (path, expected shape or None when it must be refused, refusal reason)."""
    d = tmp_path_factory.mktemp("corpus")
    rgb = np.ascontiguousarray(photos["chelsea"][::4, ::4])  # 75 x 113
    g8 = (gray_of(rgb) * 255).round().astype(np.uint8)
    h, w = g8.shape
    png, jpg = _save(Image.fromarray(g8), "PNG"), _save(Image.fromarray(g8), "JPEG", quality=90)
    tif = _save(Image.fromarray(g8), "TIFF")
    files = {}

    def put(kind, name, data, expect, reason=""):
        p = d / kind / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if callable(data):
            data(p)
        else:
            p.write_bytes(data)
        files[kind] = (p, expect, reason)

    put("empty", "empty.png", b"", None, "empty")
    put("truncated_png", "t.png", png[: len(png) // 2], None, "")
    put("truncated_jpeg", "t.jpg", jpg[: len(jpg) // 3], None, "")
    put("truncated_tiff", "t.tif", tif[: len(tif) // 2], None, "")
    put("text_as_png", "notes.png", b"Minutes of the 1921 council meeting\n", None, "not a recognised image")
    put("html_as_png", "page.png", b"<!doctype html><html><body>404</body></html>", None, "not a recognised image")
    put("signature_only", "sig.png", b"\x89PNG\r\n\x1a\n", None, "")
    put("pdf_as_png", "doc.png", b"%PDF-1.4\n1 0 obj<<>>endobj\n%%EOF", None, "not a recognised image")
    put("zip_as_png", "archive.png", _zip_bytes(), None, "not a recognised image")
    put("directory", "folder.png", lambda p: p.mkdir(), None, "directory")
    put("symlink_loop", "loop.png", lambda p: os.symlink(p, p), None, "link")
    put("bomb", "bomb.png", _bomb_png(), None, "ceiling")
    put("nan_tiff", "nan.tif", lambda p: tifffile.imwrite(p, np.full((8, 8), np.nan, np.float32)), None, "NaN")
    put("bad_crc_png", "crc.png", damage_png(png, "idat_crc"), None, "CRC")
    put("no_iend_png", "no_end.png", png[: png.rindex(b"IEND") - 4], None, "IEND")
    put("cmyk_jpeg", "cmyk.jpg", _save(Image.fromarray(rgb).convert("CMYK"), "JPEG"), (h, w))
    put("png16", "g16.png", lambda p: Image.fromarray(g8.astype(np.uint16) * 257).save(p), (h, w))
    put("tiff16", "g16.tif", lambda p: tifffile.imwrite(p, g8.astype(np.uint16) * 257), (h, w))
    put("tiff_float", "f.tif", lambda p: tifffile.imwrite(p, g8.astype(np.float32) / 255), (h, w))
    put("palette", "p.png", _save(Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE), "PNG"), (h, w))
    put("rgba", "a.png", _save(Image.fromarray(rgb).convert("RGBA"), "PNG"), (h, w))
    put("gray_alpha", "la.png", _save(Image.fromarray(g8).convert("LA"), "PNG"), (h, w))
    im = Image.fromarray(g8)
    exif = im.getexif()
    exif[0x0112] = 8  # rotated 90 degrees on display
    put("exif_rotated", "r.jpg", _save(im, "JPEG", exif=exif), (w, h))
    put("one_pixel", "px.png", _save(Image.new("L", (1, 1), 77), "PNG"), (1, 1))
    put("very_long", "strip.png", _save(Image.new("L", (100000, 3), 128), "PNG"), (3, 100000))
    noise = np.random.default_rng(0).integers(0, 256, (2000, 5), dtype=np.uint8)
    put("very_tall", "tall.png", _save(Image.fromarray(noise), "PNG"), (2000, 5))  # 16 px wide at working size
    put("thin", "thin.png", _save(Image.fromarray(np.ascontiguousarray(noise.T[:3])), "PNG"), (3, 2000))
    put("black", "black.png", _save(Image.new("L", (40, 30), 0), "PNG"), (30, 40))
    put("white", "white.tif", lambda p: tifffile.imwrite(p, np.full((30, 40), 65535, np.uint16)), (30, 40))
    put("already_colour", "colour.png", _save(Image.fromarray(rgb), "PNG"), (h, w))
    put("unicode_spaces", "Fotografía de la plaza 1921 (copia).png", png, (h, w))
    put("same_stem_a", "scan.png", png, (h, w))
    put("same_stem_b", "scan.png", jpg, (h, w))
    put("bmp", "b.bmp", _save(Image.fromarray(g8), "BMP"), (h, w))
    put("gif", "g.gif", _save(Image.fromarray(g8), "GIF"), (h, w))
    put("png_named_jpg", "really_png.jpg", png, (h, w))
    put("dots_in_name", "..hidden.scan.v2.png", png, (h, w))
    return files


def test_corpus_has_at_least_25_kinds(corpus):
    assert len(corpus) >= 25


def test_each_file_read_or_refused_in_one_line(corpus):
    for kind, (path, expect, reason) in corpus.items():
        if expect is None:
            with pytest.raises(ColorcubeError) as exc:
                read_gray(path)
            msg = str(exc.value)
            assert "\n" not in msg and str(path) in msg and reason in msg, (kind, msg)
        else:
            g = read_gray(path, warn_color=False)
            assert g.shape == expect and g.dtype == np.float32, kind
            assert np.isfinite(g).all() and g.min() >= 0 and g.max() <= 1, kind


def test_archive_over_corpus(corpus, tmp_path, capsys):
    root = next(iter(corpus.values()))[0].parents[1]
    rc = main(["archive", str(root), str(tmp_path / "a.zarr"), "--chunk", "256"])
    _out, err = capsys.readouterr()
    assert rc == 1
    idx = archive_index(tmp_path / "a.zarr")
    good = [k for k, (_, e, _) in corpus.items() if e is not None]
    bad = [k for k, (_, e, _) in corpus.items() if e is None and k != "directory"]
    assert (idx.status == "complete").sum() == len(good)
    assert (idx.status == "failed").sum() == len(bad)  # a folder named .png is not a file: not listed
    failed_lines = [ln for ln in err.splitlines() if ln.startswith("failed: ")]
    assert len(failed_lines) == len(bad) and "Traceback" not in err
    for kind in bad:  # one line each, naming the file
        assert sum(str(corpus[kind][0]) in ln for ln in failed_lines) == 1, kind
    assert idx.name.is_unique and all("/" not in n and not n.startswith(".") for n in idx.name)


@pytest.mark.parametrize("which", ["one", "all"])
def test_refused_inputs_print_one_line_each_and_no_traceback_from_any_thread(corpus, tmp_path, which):
    """In a fresh process, as a user runs it: every refused file one line naming it, non-zero exit,
    and nothing from a background thread (the kernel loader) when the run stops early."""
    bad = [str(p) for k, (p, e, _) in corpus.items() if e is None and k not in ("directory", "symlink_loop")]
    files = [str(corpus["zip_as_png"][0])] if which == "one" else bad
    proc = subprocess.run([sys.executable, "-m", "colorcube.apps.cli", "colorize", *files, "-o", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr and "Exception in thread" not in proc.stderr, proc.stderr
    assert proc.stderr.count("colorcube: error: ") == len(files), proc.stderr  # (after tqdm's \r, not a newline)
    assert all(proc.stderr.count(f"colorcube: error: {f}: ") == 1 for f in files), proc.stderr


def test_colorize_cli_same_stems_do_not_overwrite(corpus, tmp_path):
    a, b = corpus["same_stem_a"][0], corpus["same_stem_b"][0]
    assert main(["colorize", str(a), str(b), "-o", str(tmp_path)]) == 0
    assert (tmp_path / "scan_color.png").is_file() and (tmp_path / "scan_2_color.png").is_file()


def test_bomb_allowed_only_when_raised_explicitly(tmp_path):
    p = tmp_path / "big.png"
    Image.new("L", (2000, 1500)).save(p)
    with pytest.raises(ColorcubeError, match="ceiling"):
        read_gray(p, max_pixels=1_000_000)
    assert read_gray(p, max_pixels=3_000_001).shape == (1500, 2000)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=400), header=st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0",
                                                             b"II*\x00", b"MM\x00*", b"BM", b"GIF89a"]))
def test_fuzz_random_bytes_never_crash_obscurely(tmp_path_factory, data, header):
    p = tmp_path_factory.mktemp("fz") / "x.png"
    p.write_bytes(header + data)
    try:
        g = read_gray(p, warn_color=False)
    except ColorcubeError as exc:
        assert str(p) in str(exc) and "\n" not in str(exc)
    else:
        assert g.dtype == np.float32 and g.ndim == 2 and np.isfinite(g).all()


def test_no_code_path_unpickles_user_files():
    import pathlib

    src = pathlib.Path(__file__).resolve().parents[1] / "colorcube"
    text = "\n".join(f.read_text() for f in src.glob("*.py"))
    assert "import pickle" not in text and "allow_pickle=True" not in text
    for line in text.splitlines():
        if "torch.load(" in line:
            assert "weights_only=True" in line
