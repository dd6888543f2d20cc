"""atlas/html.py: pages whose names and data cannot break out of their markup, with links into the site."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

from cortex_cli.atlas.html import render_index, render_token
from cortex_cli.atlas.pages import ClassUse, ConceptSummary, Neighbour, TokenPage

HOSTILE = 'evil <script>alert("x")</script> & co'


class Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.links: list[str] = []
        self.data: dict[str, str] = {}
        self._in: str | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attrs = dict(attrs)
        self.links += [attrs[k] for k in ("href", "src") if k in attrs]
        self._in = attrs.get("id") if tag == "script" else None

    def handle_data(self, data):
        if self._in:
            self.data[self._in] = self.data.get(self._in, "") + data


def _parse(page: str) -> Collect:
    parser = Collect()
    parser.feed(page)
    return parser


def test_the_index_escapes_names_and_embeds_the_filter_data_as_json():
    concepts = [ConceptSummary(0, HOSTILE, [], "concepts/0-evil.html", 5, [3, 9], [3], 1)]
    search = {"concepts": [{"name": HOSTILE, "path": "concepts/0-evil.html"}], "note": "</script><b>"}
    cross = [{"token": 3, "salient_classes": 1, "salient": 4, "occurrence_classes": 2}]
    page = render_index(HOSTILE, "3 classes", concepts, cross, {3: "img/a.png", 9: "img/b.png"}, [], [("model", HOSTILE)], search, "f")
    parsed = _parse(page)
    assert parsed.tags.count("script") == 2  # the JSON island and the filter code: the names opened none
    assert HOSTILE not in page and "evil &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; co" in page
    assert json.loads(parsed.data["atlas-data"]) == search  # '</' escaped inside the island, the same data read back
    assert {"concepts/0-evil.html", "tokens/3.html", "tokens/9.html", "img/a.png", "atlas.css", "index.html"} <= set(parsed.links)
    assert "salient in 1 class (4×)" in page and "<td class=\"num\">1/2</td>" in page


def test_a_token_page_links_its_classes_and_neighbours_relative_to_tokens():
    use = ClassUse(1, 0, HOSTILE, 4, 2, 1, "concepts/0-evil.html", True)
    lonely = ClassUse(2, 5, "unlisted", 1, 1, 3, None, False)
    page = render_token(TokenPage("tokens/3.html", 3, "img/t.png", 2, 3, 5, 2, [use, lonely], [use], [],
                                  [Neighbour(8, 0.123456, "img/n.png", "tokens/8.html"), Neighbour(9, 1.5, "img/m.png", None)],
                                  [(HOSTILE, "concepts/0-evil.html", 2)]), 16, "crumbs", "footer")
    parsed = _parse(page)
    assert "script" not in parsed.tags and HOSTILE not in page
    assert "../concepts/0-evil.html" in parsed.links and "../tokens/8.html" in parsed.links and "../img/t.png" in parsed.links
    assert not any(link.startswith("tokens/") or link.startswith("/") for link in parsed.links)  # every link relative to tokens/
    assert "../tokens/9.html" not in parsed.links  # a neighbour without a page is not a dead link
    assert "salient in</dt><dd>2 classes (5 times in 2 images)" in page and "all 16×16 positions" in page
    assert re.search(r"<h1>token 3</h1>", page) and "0.123" in page and "0.1235" not in page
