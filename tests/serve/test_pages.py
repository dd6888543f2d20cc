"""The explorer's pages: every element the script uses exists, titles are escaped, the script parses."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from cortex_cli.serve.pages import EXPLORER_JS, explore_page, image_page, no_atlas_page


class _Ids(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.scripts: dict[str, str] = {}
        self._script: str | None = None

    def handle_starttag(self, tag, attrs):
        found = dict(attrs)
        if "id" in found:
            self.ids.append(found["id"])
        self._script = found.get("id") if tag == "script" else None

    def handle_endtag(self, tag):
        self._script = None

    def handle_data(self, data):
        if self._script:
            self.scripts[self._script] = data


def _parsed(page: str) -> _Ids:
    parser = _Ids()
    parser.feed(page)
    return parser


def test_every_element_the_script_looks_up_is_on_the_image_page_once():
    parsed = _parsed(image_page({"image": 3}, "image 3", "/api/images/3.png", 16, "mini"))
    wanted = set(re.findall(r"\$\('([\w-]+)'\)", EXPLORER_JS))
    created = set(re.findall(r"\bid: '([\w-]+)'", EXPLORER_JS))  # made by the script itself
    assert wanted, "the pattern no longer finds the script's lookups"
    assert wanted - set(parsed.ids) == set()
    assert len(parsed.ids) == len(set(parsed.ids)), "duplicate ids"
    assert created.isdisjoint(parsed.ids)


def test_the_page_hands_the_script_its_source_and_model_as_json():
    parsed = _parsed(image_page({"upload": "0123456789abcdef"}, "upload", "/api/uploads/0123456789abcdef.png", None, 'mi"ni'))
    assert json.loads(parsed.scripts["source"]) == {"upload": "0123456789abcdef"}
    assert json.loads(parsed.scripts["model"]) == 'mi"ni'
    breakout = image_page({"image": 1}, "t", "/p.png", 16, "</script><script>alert(1)</script>")
    assert json.loads(_parsed(breakout).scripts["model"]) == "</script><script>alert(1)</script>"
    assert 'src="/explorer.js"' in image_page({"image": 1}, "t", "/p.png", 16, "mini")


def test_titles_and_reasons_are_escaped():
    hostile = "<script>alert(1)</script>"
    for page in (image_page({"image": 1}, hostile, "/p.png", 16, "mini"), no_atlas_page(hostile, hostile), explore_page(hostile)):
        assert hostile not in page and "&lt;script&gt;" in page


def test_the_pages_link_the_api_docs_and_the_upload_page():
    for page in (image_page({"image": 1}, "t", "/p.png", 16, "mini"), no_atlas_page("mini", "nothing indexed"), explore_page("mini")):
        assert 'href="/docs"' in page and 'href="/explore.html"' in page
    assert "cortex index --class" in no_atlas_page("mini", "nothing indexed")


@pytest.mark.skipif(shutil.which("node") is None, reason="node not found: the script's syntax check needs it")
def test_the_explorer_script_parses(tmp_path):
    script = tmp_path / "explorer.js"
    script.write_text(EXPLORER_JS)
    checked = subprocess.run(["node", "--check", str(script)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    broken = tmp_path / "broken.js"
    broken.write_text(EXPLORER_JS.replace("function draw() {", "function draw() {{", 1))
    assert subprocess.run(["node", "--check", str(broken)], capture_output=True).returncode != 0
