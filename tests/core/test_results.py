"""results.Result: to_dict is the JSON, to_pandas the table rows, the notebook table escapes and shows thumbnails."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from PIL import Image

from cortex_cli.core.errors import CortexError
from cortex_cli.core.results import MAX_HTML_ROWS, Result, attach_thumbnails


@dataclass(frozen=True)
class Row:
    token: int
    count: int


@dataclass(frozen=True)
class Ranking(Result):
    model: str
    class_name: str
    path: Path
    rows: list[Row] = field(default_factory=list)

    def table_rows(self):
        return [{"token": r.token, "count": r.count} for r in self.rows]


@dataclass(frozen=True)
class Plain(Result):
    name: str
    added: int
    ratio: float
    ids: list[int]


def test_to_dict_is_plain_json_values():
    r = Ranking("mini", "red-capped bird", Path("/x/y.png"), [Row(4, 29)])
    assert r.to_dict() == {"model": "mini", "class_name": "red-capped bird", "path": "/x/y.png", "rows": [{"token": 4, "count": 29}]}


def test_default_table_is_one_row_of_scalars_and_pandas_follows_the_rows():
    pytest.importorskip("pandas")
    plain = Plain("a", 3, 0.5, [1, 2])
    assert plain.table_rows() == [{"name": "a", "added": 3, "ratio": 0.5}]  # lists are not cells
    frame = Ranking("mini", "c", Path("p"), [Row(4, 29), Row(7, 3)]).to_pandas()
    assert list(frame.columns) == ["token", "count"] and frame["count"].tolist() == [29, 3]


def test_to_pandas_without_pandas_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now raises ImportError
    with pytest.raises(CortexError, match=r"pip install 'cortex-cli\[pandas\]'"):
        Plain("a", 1, 1.0, []).to_pandas()


def test_html_escapes_values_and_shows_one_thumbnail_per_token():
    drawn = []

    def thumbnail(token):
        drawn.append(token)
        return Image.new("RGB", (4, 4), (token, 0, 0))

    r = Ranking("<mini>", "a & b", Path("p"), [Row(4, 29), Row(7, 3)])
    assert "<img" not in r._repr_html_()  # no thumbnail source: a plain table
    html = attach_thumbnails(r, thumbnail)._repr_html_()
    assert drawn == [4, 7] and html.count("<img") == 2 and "&lt;mini&gt;" in html and "a &amp; b" in html
    assert "_cortex_thumbnails" not in str(r.to_dict())


def test_long_tables_are_cut_in_html_but_not_in_pandas():
    pytest.importorskip("pandas")
    r = Ranking("m", "c", Path("p"), [Row(i, i) for i in range(MAX_HTML_ROWS + 5)])
    html = r._repr_html_()
    assert html.count("<tr>") == MAX_HTML_ROWS + 1 and "5 more rows" in html
    assert len(r.to_pandas()) == MAX_HTML_ROWS + 5
