"""Uploads (size, pixels, content keys, never a path) and the live atlas (rebuilt when stale, never serves outside its site)."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from cortex_cli.api import Workspace
from cortex_cli.attribution import SaliencySettings
from cortex_cli.core.errors import CortexError, NotFound
from cortex_cli.serve import live
from cortex_cli.serve.live import LiveAtlas, Uploads


def _png(side: int = 8) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.arange(side * side * 3, dtype=np.uint8).reshape(side, side, 3)).save(buffer, "PNG")
    return buffer.getvalue()


def test_an_upload_is_kept_under_its_content_key_and_found_again(tmp_path):
    uploads = Uploads(tmp_path / "up")
    key, path = uploads.add(_png())
    assert len(key) == 16 and set(key) <= set("0123456789abcdef")
    assert uploads.add(_png()) == (key, path)  # the same bytes: the same key
    assert uploads.path(key) == path and path.read_bytes() == _png()
    assert uploads.add(_png(9))[0] != key


@pytest.mark.parametrize("data, message", [
    (b"", "the upload is empty"),
    (b"not a picture at all", "not an image PIL can read"),
    (_png()[:40], "not an image PIL can read|cannot|truncated|damaged"),
])
def test_bad_uploads_are_refused_in_one_line_and_leave_nothing(tmp_path, data, message):
    uploads = Uploads(tmp_path / "up")
    with pytest.raises(CortexError, match=message) as refused:
        uploads.add(data)
    assert "\n" not in str(refused.value)
    assert list((tmp_path / "up").iterdir()) == []


def test_a_check_refusing_what_an_upload_carries_keeps_nothing(tmp_path):
    uploads = Uploads(tmp_path / "up")

    def refuse(found):
        assert found.image.size == (8, 8)
        raise CortexError("the PNG was made by model 'other', which is not registered here")

    with pytest.raises(CortexError, match="model 'other'"):
        uploads.add(_png(), check=refuse)
    assert list((tmp_path / "up").iterdir()) == []


def test_a_damaged_upload_is_named_the_upload_never_by_its_server_path(tmp_path):
    from cortex_cli.images.pngmeta import KEY_TOKENS

    meta = PngImagePlugin.PngInfo()
    meta.add_text(KEY_TOKENS, "not tokens")
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(buffer, "PNG", pnginfo=meta)
    with pytest.raises(CortexError) as refused:
        Uploads(tmp_path / "up").add(buffer.getvalue())
    assert "the upload" in str(refused.value) and str(tmp_path) not in str(refused.value)


def test_uploads_over_the_byte_or_pixel_limit_are_refused(tmp_path, monkeypatch):
    uploads = Uploads(tmp_path / "up")
    monkeypatch.setattr(live, "MAX_UPLOAD_BYTES", 100)
    with pytest.raises(CortexError, match="at most 100"):
        uploads.add(b"x" * 101)
    monkeypatch.setattr(live, "MAX_UPLOAD_BYTES", 8 << 20)
    monkeypatch.setattr(live, "MAX_UPLOAD_PIXELS", 63)
    with pytest.raises(CortexError, match="8x8 pixels; at most 63"):
        uploads.add(_png(8))
    assert list((tmp_path / "up").iterdir()) == []


@pytest.mark.parametrize("key", ["../../etc/passwd", "0123456789ABCDEF", "0123", "/tmp/x.png", "0123456789abcdef0", ""])
def test_an_upload_is_named_by_its_key_never_by_a_path(tmp_path, key):
    uploads = Uploads(tmp_path / "up")
    with pytest.raises(CortexError, match="16 hex digits"):
        uploads.path(key)


def test_an_unknown_key_is_not_found(tmp_path):
    with pytest.raises(NotFound, match="no upload 0123456789abcdef"):
        Uploads(tmp_path / "up").path("0123456789abcdef")


def test_the_atlas_serves_files_inside_its_site_only(tmp_path):
    site = tmp_path / "site"
    (site / "concepts").mkdir(parents=True)
    (site / "concepts" / "a.html").write_text("a")
    (tmp_path / "secret.txt").write_text("s")
    (site / "link").symlink_to(tmp_path / "secret.txt")
    atlas = LiveAtlas(None, "mini", site)
    assert atlas.file("concepts/a.html") == (site / "concepts" / "a.html").resolve()
    for outside in ["../secret.txt", "concepts/../../secret.txt", "/etc/passwd", "link", "concepts", "missing.html", "\0"]:
        assert atlas.file(outside) is None, outside


def test_the_atlas_says_why_there_is_none_then_builds_once_something_is_indexed(tmp_path, tiny_model, db_url):
    from index_helpers import index_three_classes

    workspace = Workspace(home=tmp_path / "home", db=db_url)
    atlas = LiveAtlas(workspace, "tiny", tmp_path / "site", min_interval=0.0)
    with workspace:
        reason = atlas.refresh()
        assert reason is not None and "\n" not in reason and not (tmp_path / "site" / "index.html").exists()
        index_three_classes(workspace.store, tiny_model, SaliencySettings(samples=2, top_n=8))
        assert atlas.refresh() is None and atlas.error is None
        assert (tmp_path / "site" / "index.html").is_file()
        built = (tmp_path / "site" / "index.html").stat().st_mtime_ns
        slow = LiveAtlas(workspace, "tiny", tmp_path / "site", min_interval=3600.0)
        slow._checked = time.monotonic()  # just checked: a request within the interval does not rebuild
        assert slow.refresh() is None and (tmp_path / "site" / "index.html").stat().st_mtime_ns == built
