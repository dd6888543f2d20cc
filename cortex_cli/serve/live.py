"""What the explorer keeps beside the store: the atlas, brought up to date from the index on request, and uploads.

The atlas is `cortex atlas`'s incremental build (only pages whose inputs changed are recomputed) into a
directory under the home, run when a page is asked for and the last check is older than `min_interval`
seconds, so pages show the index as it is now with no build step. Uploads are PNGs a client sent, kept
for the server's life under a content name (16 hex digits of their SHA-256): clients name them by that
key, never by a path.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from pathlib import Path
from typing import Callable

from PIL import Image

from ..core.errors import CortexError, NotFound, first_line
from ..images.pngmeta import PngTokens, read_png

MAX_UPLOAD_BYTES = 8 * 1024 * 1024  # a PNG a client may send
MAX_UPLOAD_PIXELS = 4096 * 4096
UPLOAD_KEY = re.compile(r"^[0-9a-f]{16}$")


class LiveAtlas:
    """The atlas of one model in `root`, rebuilt from the index when stale; `error` says why there is none."""

    def __init__(self, workspace, model: str | None, root: Path, min_interval: float = 2.0) -> None:
        self.workspace, self.model, self.root, self.min_interval = workspace, model, root, min_interval
        self.error: str | None = None
        self._checked = float("-inf")
        self._lock = threading.Lock()

    def refresh(self) -> str | None:
        """Bring the pages up to date (at most once per `min_interval`); the one-line reason when there is no atlas."""
        with self._lock:
            if time.monotonic() - self._checked < self.min_interval:
                return self.error
            try:
                self.workspace.atlas(self.root, model=self.model, image_pages=True)
                self.error = None
            except CortexError as exc:
                self.error = first_line(exc)
            self._checked = time.monotonic()
            return self.error

    def file(self, relative: str) -> Path | None:
        """The site's file at `relative` (never outside the site), or None."""
        root = self.root.resolve()
        try:
            found = (root / relative).resolve()
            found.relative_to(root)
        except (ValueError, OSError):
            return None
        return found if found.is_file() else None


class Uploads:
    """Uploaded pictures under their content key."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def add(self, data: bytes, check: Callable[[PngTokens], None] | None = None) -> tuple[str, Path]:
        """Keep a picture; (key, path). CortexError when it is too large, not an image, damaged, or `check` refuses
        what it carries (nothing is kept then)."""
        if not data:
            raise CortexError("the upload is empty; send the PNG's bytes as the request body")
        if len(data) > MAX_UPLOAD_BYTES:
            raise CortexError(f"the upload is {len(data)} bytes; at most {MAX_UPLOAD_BYTES} (8 MiB)")
        key = hashlib.sha256(data).hexdigest()[:16]
        path = self.root / f"{key}.png"
        partial = self.root / f"{key}.partial"
        partial.write_bytes(data)
        try:
            try:
                with Image.open(partial) as probe:
                    width, height = probe.size
            except Exception as exc:  # PIL raises several kinds for non-images
                raise CortexError(f"the upload is not an image PIL can read ({first_line(exc)})") from None
            if width * height > MAX_UPLOAD_PIXELS:
                raise CortexError(f"the upload is {width}x{height} pixels; at most {MAX_UPLOAD_PIXELS} pixels")
            try:
                found = read_png(partial)  # decodes it: truncated or corrupt metadata fails here
            except CortexError as exc:  # its message names the file: say "the upload", never a server path
                raise CortexError(first_line(exc).replace(repr(str(partial)), "the upload").replace(str(partial), "the upload")) from None
            if check is not None:
                check(found)
            partial.replace(path)
        finally:
            partial.unlink(missing_ok=True)
        return key, path

    def path(self, key: str) -> Path:
        """The upload named `key`; CortexError when the key is malformed or unknown."""
        if not isinstance(key, str) or not UPLOAD_KEY.match(key):
            raise CortexError("an upload key is 16 hex digits, as POST /api/uploads returns it")
        path = self.root / f"{key}.png"
        if not path.is_file():
            raise NotFound(f"no upload {key}; send the PNG to POST /api/uploads first")
        return path
