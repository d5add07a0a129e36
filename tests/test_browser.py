"""The explorer in a real browser: JupyterLab on localhost, Debian's Chromium driven by
Playwright, runs 01-quickstart.ipynb, checks the widget shows an image and that moving
the alpha slider changes the band-width view, and saves a screenshot; then places a colour
hint with a real click on the image and checks the picture changed there; accepts a
suggested hint position by clicks (suggestion, then a palette swatch); and opens the
gallery of a 2,000-photo archive, times its first page, sorts it and opens a photo.

Marked ``browser``: CI runs it as its own step (`pytest -m browser`), after installing
Chromium with apt; the default run deselects it.
"""

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from colorcube.testing import synthetic_archive

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    work = tmp_path_factory.mktemp("lab")
    shutil.copy(ROOT / "notebooks" / "01-quickstart.ipynb", work)
    port, token = _free_port(), "colorcube-test"
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(work / ".jupyter"), "JUPYTER_RUNTIME_DIR": str(work / ".rt")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
         f"--ServerApp.token={token}", f"--ServerApp.root_dir={work}", "--allow-root",
         "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 240  # a loaded 2-core machine can take minutes
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("JupyterLab did not start within 240 s")
    try:
        _start_kernel(url, token, "01-quickstart.ipynb")
        yield url, token, work
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _start_kernel(url: str, token: str, notebook: str) -> None:
    """Start the notebook's kernel through the REST API: when JupyterLab has to start it
    itself on a loaded machine, it may stop at its kernel-picker dialog."""
    body = json.dumps({"path": notebook, "type": "notebook", "name": notebook,
                       "kernel": {"name": "python3"}}).encode()
    req = urllib.request.Request(f"{url}/api/sessions?token={token}", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=60).read()


def _launch(p):
    return p.chromium.launch(executable_path=CHROMIUM, args=[
        "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"])


def _run_notebook(page, url: str, token: str, shot: Path, *, notebook: str = "01-quickstart.ipynb",
                  until=None):
    """Open a notebook, run all its cells and return the locator ``until`` (default: the
    explorer's main image) once it is visible."""
    # a slow kernel start can still raise JupyterLab's kernel picker: accept its default (Python 3)
    page.add_locator_handler(page.locator(".jp-Dialog"),
                             lambda dialog: dialog.locator(".jp-mod-accept").first.click())
    # generous timeouts: on a loaded 2-core machine JupyterLab alone takes a minute to start
    page.goto(f"{url}/lab/tree/{notebook}?token={token}", timeout=120_000)
    page.wait_for_selector(".jp-Notebook", timeout=120_000)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=180_000)
    news = page.get_by_role("button", name="No", exact=True)
    if news.count():
        news.first.click()
    target = until if until is not None else page.locator(".colorcube-explorer img").first
    # "Run All Cells" is ignored while the kernel is still starting: ask again until it runs
    for attempt in range(4):
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
        try:
            target.wait_for(state="visible", timeout=150_000)
            break
        except Exception:
            if attempt == 3:
                page.screenshot(path=str(shot.with_name("browser-failure.png")))
                raise
    return target


@contextlib.contextmanager
def _explorer_page(lab, tmp_path, suffix: str = ""):
    """Chromium on the quickstart notebook, all cells run: yields (page, the explorer's image, screenshot
    path); the explorer is photographed into that path when the block ends."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "install Debian's chromium: apt-get install -y chromium"
    url, token, _ = lab
    shot = Path(os.environ.get("COLORCUBE_SCREENSHOT", tmp_path / "explorer.png"))
    shot = shot.with_name(shot.stem + suffix + shot.suffix)
    with sync_playwright() as p:
        browser = _launch(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        img = _run_notebook(page, url, token, shot)
        yield page, img, shot
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.locator(".colorcube-explorer").first.screenshot(path=str(shot))
        browser.close()
    print(f"screenshot: {shot}")


# the displayed image's pixels around (x, y) in its own (natural) pixel coordinates, read back
# through a canvas (the widget shows a same-origin blob: URL, so the canvas is not tainted)
_PIXELS = """(img, [x, y]) => {
    const c = document.createElement("canvas");
    c.width = img.naturalWidth; c.height = img.naturalHeight;
    const ctx = c.getContext("2d");
    ctx.drawImage(img, 0, 0);
    return Array.from(ctx.getImageData(x - 2, y - 2, 5, 5).data);
}"""


def test_hint_by_click_changes_the_picture_there(lab, tmp_path):
    """A real click on the image picks a pixel; a colour typed into the picker is placed there
    with "place hint"; the recolorized picture around that pixel takes the colour."""
    with _explorer_page(lab, tmp_path, "-hint") as (page, img, _):
        img.scroll_into_view_if_needed()
        page.wait_for_timeout(1000)
        box = img.bounding_box()
        natural = img.evaluate("e => [e.naturalWidth, e.naturalHeight]")
        cx, cy = 0.3 * box["width"], 0.55 * box["height"]  # CSS pixels inside the image
        x, y = int(cx * natural[0] / box["width"]), int(cy * natural[1] / box["height"])
        img.click(position={"x": cx, "y": cy})
        # the click picked that pixel: the pixel sliders (display coordinates) show it
        readouts = page.locator(".colorcube-explorer .widget-readout")
        deadline = time.time() + 30
        while time.time() < deadline and not {str(x), str(y)} <= set(readouts.all_inner_texts()):
            page.wait_for_timeout(300)
        picked = readouts.all_inner_texts()
        before_src = img.get_attribute("src")
        before = img.evaluate(_PIXELS, [x, y])
        colour = page.locator(".colorcube-colour input[type='text']").first
        colour.fill("#1060ff")
        colour.press("Enter")
        page.wait_for_timeout(500)
        page.locator(".colorcube-place button, button.colorcube-place").first.click()
        # the first hint loads the model in the kernel: minutes on a loaded machine, about a second otherwise
        status = page.locator(".colorcube-explorer .widget-html-content")
        deadline = time.time() + 300
        while time.time() < deadline and (img.get_attribute("src") == before_src
                                          or not any("1 hint pixels" in t for t in status.all_inner_texts())):
            page.wait_for_timeout(500)
        page.wait_for_timeout(500)
        after = img.evaluate(_PIXELS, [x, y])
        status = status.all_inner_texts()
    assert str(x) in picked and str(y) in picked, f"the click did not pick pixel ({x}, {y}): {picked}"
    assert any("1 hint pixels" in s for s in status), f"no hint placed: {status}"

    def blue_minus_red(rgba):
        px = [rgba[i : i + 4] for i in range(0, len(rgba), 4)]
        return sum(b - r for r, _, b, _ in px) / len(px)

    b, a = blue_minus_red(before), blue_minus_red(after)
    assert a > b + 20, f"the picture did not turn blue at the click: B - R {b:.1f} -> {a:.1f}"


def test_explorer_in_chromium(lab, tmp_path):
    with _explorer_page(lab, tmp_path) as (page, img, shot):
        assert img.evaluate("e => e.naturalWidth") > 100
        page.locator(".colorcube-explorer button", has_text="band width").first.click()
        page.wait_for_timeout(1500)
        before = img.get_attribute("src")
        handle = page.locator(".colorcube-explorer .widget-slider .noUi-handle").first
        handle.scroll_into_view_if_needed()
        handle.focus()
        for _ in range(15):
            handle.press("ArrowRight")
        deadline = time.time() + 30
        while img.get_attribute("src") == before and time.time() < deadline:
            page.wait_for_timeout(300)
        after = img.get_attribute("src")
        img.scroll_into_view_if_needed()
        page.wait_for_timeout(500)
    assert after != before, "moving the alpha slider did not change the band-width view"
    assert shot.stat().st_size > 10_000


def test_a_suggested_hint_is_accepted_by_clicks(lab, tmp_path):
    """"suggest where to hint" lists positions; a click on the first picks it and shows the palette
    there; a click on a swatch places that colour as a hint."""
    with _explorer_page(lab, tmp_path, "-suggest") as (page, img, _):
        img.scroll_into_view_if_needed()
        page.locator(".colorcube-suggest button, button.colorcube-suggest").first.click()
        first = page.locator(".colorcube-suggestion button, button.colorcube-suggestion").first
        first.wait_for(state="visible", timeout=60_000)
        first.click()
        # the palette needs the model in the kernel: minutes on a loaded machine, about a second otherwise
        swatch = page.locator(".colorcube-swatch button, button.colorcube-swatch").first
        swatch.wait_for(state="visible", timeout=300_000)
        n_swatches = page.locator(".colorcube-swatch button, button.colorcube-swatch").count()
        swatch.click()
        status = page.locator(".colorcube-explorer .widget-html-content")
        deadline = time.time() + 300
        while time.time() < deadline and not any("1 hint pixels" in t for t in status.all_inner_texts()):
            page.wait_for_timeout(500)
        texts = status.all_inner_texts()
    assert 1 <= n_swatches <= 5, f"expected a palette of 1-5 colours, got {n_swatches}"
    assert any("1 hint pixels" in s for s in texts), f"the swatch click placed no hint: {texts}"


GALLERY_PHOTOS = 2000
# cell 1 loads the package (its import is not the gallery's time); cell 2 is the gallery
_GALLERY_CELLS = [
    "import colorcube\nprint('colorcube ready')",
    "import time\nt0 = time.perf_counter()\nview = colorcube.gallery({out!r}, calibration=None)\n"
    "print(f'gallery in the kernel: {{time.perf_counter() - t0:.2f}} s, {{view.gallery.reads}} thumbnails read')\n"
    "view",
]


def test_gallery_of_an_archive_of_2000_photos(lab, tmp_path):
    """The gallery over 2,000 archived photos: its first page shows (the time from cell 1's
    output to 24 thumbnails on screen is printed), only the page's thumbnails are read, the
    sort changes the order on screen, and "open" opens that photo in the explorer."""
    from playwright.sync_api import sync_playwright

    url, token, work = lab
    out = synthetic_archive(work / "archive.zarr", GALLERY_PHOTOS, side=48)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c.format(out=str(out))) for c in _GALLERY_CELLS])
    nbformat.write(nb, work / "gallery.ipynb")
    _start_kernel(url, token, "gallery.ipynb")
    shot = Path(os.environ.get("COLORCUBE_SCREENSHOT", tmp_path / "explorer.png"))
    shot = shot.with_name(shot.stem + "-gallery" + shot.suffix)
    with sync_playwright() as p:
        browser = _launch(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        ready = page.locator(".jp-OutputArea-output", has_text="colorcube ready").first
        _run_notebook(page, url, token, shot, notebook="gallery.ipynb", until=ready)
        t0 = time.perf_counter()
        page.wait_for_function("() => document.querySelectorAll('.colorcube-gallery img').length >= 24",
                               timeout=120_000)
        first_page = time.perf_counter() - t0
        kernel = page.locator(".jp-OutputArea-output", has_text="gallery in the kernel").first.inner_text()
        print(f"gallery of {GALLERY_PHOTOS} photos: first page on screen {first_page:.2f} s after cell 1's "
              f"output; {kernel}")
        names = page.locator(".colorcube-gallery .colorcube-caption")
        default_first = names.first.inner_text()
        page.locator(".colorcube-gallery select").first.select_option("failed first")
        deadline = time.time() + 30
        while time.time() < deadline and names.first.inner_text() == default_first:
            page.wait_for_timeout(200)
        failed_first = names.first.inner_text()
        page.locator(".colorcube-gallery select").first.select_option("name")
        deadline = time.time() + 30
        while time.time() < deadline and "photo-00000" not in names.first.inner_text():
            page.wait_for_timeout(200)
        page.locator(".colorcube-open button, button.colorcube-open").first.click()
        opened = page.locator(".colorcube-gallery .colorcube-explorer img").first
        opened.wait_for(state="visible", timeout=120_000)
        opened_width = opened.evaluate("e => e.naturalWidth")
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.locator(".colorcube-gallery").first.screenshot(path=str(shot))
        browser.close()
    assert "24 thumbnails read" in kernel, f"the first page read more than its thumbnails: {kernel}"
    assert "photo-00019" in failed_first and "failed" in failed_first, \
        f"sorting by failure did not put the first failed photo first: {failed_first!r}"
    assert opened_width == 72, f"the opened photo is not the archived 48 x 72 one: width {opened_width}"
