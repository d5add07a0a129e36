"""The explorer in a real browser: JupyterLab on localhost, Debian's Chromium driven by
Playwright, runs 01-quickstart.ipynb, checks the widget shows an image and that moving
the alpha slider changes the band-width view, and saves a screenshot.

Marked ``browser``: CI runs it as its own step (`pytest -m browser`), after installing
Chromium with apt; the default run deselects it.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

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
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("JupyterLab did not start within 90 s")
    # Start the notebook's kernel through the REST API first: when JupyterLab has to
    # start it itself on a loaded machine, it may stop at its kernel-picker dialog.
    body = json.dumps({"path": "01-quickstart.ipynb", "type": "notebook", "name": "01-quickstart.ipynb",
                       "kernel": {"name": "python3"}}).encode()
    req = urllib.request.Request(f"{url}/api/sessions?token={token}", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=60).read()
    yield url, token
    proc.terminate()
    proc.wait(timeout=30)


def test_explorer_in_chromium(lab, tmp_path):
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "install Debian's chromium: apt-get install -y chromium"
    url, token = lab
    shot = Path(os.environ.get("COLORCUBE_SCREENSHOT", tmp_path / "explorer.png"))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-quic"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        # a slow kernel start can still raise JupyterLab's kernel picker: accept its default (Python 3)
        page.add_locator_handler(page.locator(".jp-Dialog"),
                                 lambda dialog: dialog.locator(".jp-mod-accept").first.click())
        page.goto(f"{url}/lab/tree/01-quickstart.ipynb?token={token}")
        page.wait_for_selector(".jp-Notebook", timeout=60_000)
        page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=90_000)
        news = page.get_by_role("button", name="No", exact=True)
        if news.count():
            news.first.click()
        img = page.locator(".colorcube-explorer img").first
        # "Run All Cells" is ignored while the kernel is still starting: ask again until it runs
        for attempt in range(4):
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
            try:
                img.wait_for(state="visible", timeout=60_000)
                break
            except Exception:
                if attempt == 3:
                    page.screenshot(path=str(shot.with_name("browser-failure.png")))
                    raise
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
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.locator(".colorcube-explorer").first.screenshot(path=str(shot))
        browser.close()
    print(f"screenshot: {shot}")
    assert after != before, "moving the alpha slider did not change the band-width view"
    assert shot.stat().st_size > 10_000
