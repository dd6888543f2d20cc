"""The explorer in Debian's headless Chromium (DevTools protocol on a pipe; no browser download): open a concept page,
follow it to an image page, see the heat map and the judges, drag a box on the token grid, start an edit and see
its result image. With CORTEX_SCREENSHOTS=DIR it also writes the docs' screenshots (docs/serve.md) there.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from cortex_cli.api import Workspace
from cortex_cli.serve.app import Settings

from serve_helpers import Browser, Running


def _chromium() -> str | None:
    return next((found for name in ("chromium", "chromium-browser", "google-chrome") if (found := shutil.which(name))), None)


@pytest.fixture(scope="module")
def explorer(tmp_path_factory):
    chromium = _chromium()
    if chromium is None:
        pytest.skip("Chromium not found (Debian: apt-get install chromium; .ci/run installs it): the explorer's browser test needs it")
    home = tmp_path_factory.mktemp("explorer")
    with Workspace(home=home, db=f"sqlite:///{home / 'cortex.db'}") as workspace:
        workspace.index("red-capped bird", images=3)
        server = Running(workspace, Settings())
        browser = Browser(chromium, home / "profile")
        try:
            yield server, browser
        finally:
            browser.close()
            server.stop()


def _shot(browser: Browser, name: str) -> None:
    folder = os.environ.get("CORTEX_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        browser.screenshot(Path(folder) / name)


def _centre_of_cell(browser: Browser, row: int, col: int) -> tuple[float, float]:
    left, top, side, grid = browser.js("(() => { const r = document.getElementById('view').getBoundingClientRect(); "
                                       "return [r.left, r.top, r.width, parseInt(document.getElementById('view').dataset.grid)]; })()")
    cell = side / grid
    return left + (col + 0.5) * cell, top + (row + 0.5) * cell


def test_concept_page_to_image_page_to_a_finished_edit(explorer):
    server, browser = explorer
    browser.open(server.base + "/concepts/0-red-capped-bird.html")
    browser.wait_for("document.readyState === 'complete' && !!document.querySelector('a[href$=\"images/1.html\"]')")
    assert "red-capped bird" in browser.js("document.querySelector('h1').textContent")
    _shot(browser, "serve-concept.png")

    browser.js("document.querySelector('a[href$=\"images/1.html\"]').scrollIntoView({block: 'center'})")
    browser.click('a[href$="images/1.html"]')
    browser.wait_for("location.pathname === '/images/1.html' && document.body.dataset.ready")
    assert browser.js("document.body.dataset.ready") == "1", browser.js("document.getElementById('status').textContent")
    assert browser.js("parseInt(document.getElementById('view').dataset.grid)") == 16
    browser.wait_for("!!document.getElementById('mask-table')")  # the page masks the top n on load
    judges = browser.js("[...document.querySelectorAll('#mask-table tbody tr')].map(r => r.cells[0].textContent)")
    assert sorted(judges) == ["resnet", "vit"]
    painted = browser.js("(() => { const c = document.getElementById('view'); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
                         " let lit = 0; for (let i = 0; i < d.length; i += 4) lit += d[i] + d[i + 1] + d[i + 2] > 0; return lit; })()")
    assert painted > 1000  # the picture and its heat map are drawn

    x, y = _centre_of_cell(browser, 2, 3)
    browser.mouse("mouseMoved", x, y)
    assert "row 2, col 3" in browser.wait_for("(document.getElementById('hover-text') || {}).textContent")
    assert browser.js("document.querySelector('#hover img').getAttribute('src')").startswith("/api/token/")
    browser.wait_for("(() => { const i = document.querySelector('#hover img'); return i.complete && i.naturalWidth > 0; })()")

    browser.drag(_centre_of_cell(browser, 4, 4), _centre_of_cell(browser, 7, 7))
    assert browser.js("document.getElementById('region').value") == "4:8,4:8"
    steps = 300 if os.environ.get("CORTEX_SCREENSHOTS") else 30  # the docs show an edit that changes tokens
    browser.js(f"document.getElementById('steps').value = '{steps}'; true")
    browser.wait_for("[...document.getElementById('target').options].some(o => o.value === 'blue-capped bird')")
    browser.js("document.getElementById('target').value = 'blue-capped bird'; true")
    _shot(browser, "serve-image.png")
    browser.click("#edit-go")
    browser.wait_for("(() => { const i = document.getElementById('edit-strip'); return i && i.complete && i.naturalWidth > 0; })()", timeout=300)
    assert browser.js("document.getElementById('edit-status').textContent") == "done"
    download = browser.js("document.getElementById('edit-download').getAttribute('href')")
    assert download.startswith("/api/jobs/") and download.endswith(".png") and server.get(download).status == 200
    scorers = browser.js("[...document.querySelectorAll('#edit-table tbody tr')].map(r => r.cells[0].textContent)")
    assert {"judge:resnet", "judge:vit"} <= set(scorers)
    _shot(browser, "serve-edit.png")
    assert browser.console == [], json.dumps(browser.console)
