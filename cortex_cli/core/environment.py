"""Where cortex keeps its state, and which device it computes on."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import platformdirs
import torch

from .errors import CortexError

HOME_ENV = "CORTEX_HOME"
DB_ENV = "CORTEX_DB"
_HOME: ContextVar[Path | None] = ContextVar("cortex_home", default=None)


@contextmanager
def home_override(home: str | Path | None) -> Iterator[None]:
    """Within the block, `cortex_home()` is `home` (a `Workspace`'s own home); None leaves it as it was."""
    if home is None:
        yield
        return
    token = _HOME.set(Path(home).expanduser())
    try:
        yield
    finally:
        _HOME.reset(token)


def cortex_home() -> Path:
    """The state directory: a `Workspace`'s home, else `$CORTEX_HOME`, else the platform's per-user data dir."""
    raw = os.environ.get(HOME_ENV)
    home = _HOME.get() or (Path(raw).expanduser() if raw else Path(platformdirs.user_data_dir("cortex")))
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CortexError(f"cannot create cortex home {str(home)!r} ({exc.strerror}); set {HOME_ENV} to a writable directory") from exc
    return home


def default_db_url() -> str:
    """`$CORTEX_DB` (a SQLite or PostgreSQL URL, e.g. postgresql+psycopg://user@host/cortex), else SQLite file `cortex.db` in the cortex home."""
    raw = os.environ.get(DB_ENV, "").strip()
    return raw or f"sqlite:///{cortex_home() / 'cortex.db'}"


def artifacts_dir(*parts: str) -> Path:
    """A directory under the cortex home for checkpoints and reports (created)."""
    path = cortex_home().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def writable_dir(path: str | Path, what: str = "to") -> Path:
    """`path` created and probed for writing; CortexError ("cannot write {what} ...") if it is not."""
    path = Path(path).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".cortex-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise CortexError(f"cannot write {what} {str(path)!r} ({exc.strerror or exc}); choose a writable --out directory") from exc
    return path


def resolve_device(spec: str = "auto") -> torch.device:
    """Parse `auto|cpu|cuda[:i]`; `auto` picks CUDA when available."""
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise CortexError(f"device {spec!r} requested but CUDA is not available; use --device cpu")
        index = spec.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise CortexError(f"device {spec!r} does not exist; {torch.cuda.device_count()} CUDA device(s) visible")
        return torch.device(spec)
    raise CortexError(f"unknown device {spec!r}; use auto, cpu, cuda or cuda:N")
