"""What every result of the Python API can do: `to_dict()`, `to_pandas()`, and a table in a notebook.

Results are frozen dataclasses that inherit `Result`. A result that is naturally a table (a concept's
top tokens, a token's classes, an evaluation) says which rows make it by overriding `table_rows()`;
any other result is one row of its scalar fields. The API may attach a thumbnail source to a result
(`attach_thumbnails`): its notebook table then shows each listed token's codebook entry decoded.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable
from typing import Any

from .errors import CortexError
from .jsonable import to_jsonable

Thumbnail = Callable[[int], Any]  # token -> a PIL image of the codebook entry

_THUMBS = "_cortex_thumbnails"
MAX_HTML_ROWS = 50


class Result:
    """Mixin of the API's result dataclasses."""

    def to_dict(self) -> dict[str, Any]:
        """The result as plain JSON-ready values: exactly what the CLI prints with `--json`."""
        return to_jsonable(self)

    def table_rows(self) -> list[dict[str, Any]]:
        """The result as table rows (dicts of plain values); by default one row of its scalar fields."""
        return [{k: v for k, v in self.to_dict().items() if not isinstance(v, (dict, list))}]

    def to_pandas(self) -> Any:
        """`table_rows()` as a pandas DataFrame (pandas is optional: `pip install 'cortex-cli[pandas]'`)."""
        try:
            import pandas
        except ImportError:
            raise CortexError("to_pandas() needs pandas, which is not installed: pip install 'cortex-cli[pandas]'") from None
        return pandas.DataFrame(self.table_rows())

    def _repr_html_(self) -> str:
        rows = self.table_rows()
        thumbnail = getattr(self, _THUMBS, None)
        title = html.escape(type(self).__name__ + _caption(self))
        if not rows:
            return f"<p><b>{title}</b>: no rows</p>"
        columns = list(dict.fromkeys(k for row in rows for k in row))
        pictured = thumbnail is not None and "token" in columns
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in (["picture"] if pictured else []) + columns)
        body = []
        for row in rows[:MAX_HTML_ROWS]:
            cells = [_thumbnail_cell(thumbnail, row.get("token")) if pictured else None]
            cells = [c for c in cells if c is not None] + [f"<td>{html.escape(_cell(row.get(c)))}</td>" for c in columns]
            body.append("<tr>" + "".join(cells) + "</tr>")
        more = f"<p>{len(rows) - MAX_HTML_ROWS} more rows: to_pandas() has them all</p>" if len(rows) > MAX_HTML_ROWS else ""
        return (f"<p><b>{title}</b></p><table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{more}")


def attach_thumbnails(result: Result, thumbnail: Thumbnail) -> Result:
    """Let `result`'s notebook table show each token's codebook entry (not part of `to_dict()`)."""
    object.__setattr__(result, _THUMBS, thumbnail)
    return result


def _caption(result: Any) -> str:
    parts = [str(getattr(result, name)) for name in ("model", "class_name", "kind") if getattr(result, name, None) is not None]
    return f" ({', '.join(parts)})" if parts else ""


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _thumbnail_cell(thumbnail: Thumbnail, token: Any) -> str:
    if not isinstance(token, int) or isinstance(token, bool):
        return "<td></td>"
    buffer = io.BytesIO()
    thumbnail(token).save(buffer, format="PNG")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<td><img src="data:image/png;base64,{data}" width="32" height="32" alt="token {token}"></td>'


__all__ = ["Result", "attach_thumbnails"]
