"""`cortex serve`: the index as a live explorer in the browser, and a JSON API under `/api/` (FastAPI under uvicorn).

`create_app` builds the application over an open `Workspace`; `serve` runs it until Ctrl-C. Needs the `[serve]`
extra (`pip install "cortex-cli[serve]"`).
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Callable

from ..core.errors import CortexError

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8765


def is_loopback(host: str) -> bool:
    """Whether `host` only listens on this machine (127.0.0.0/8, ::1, 'localhost')."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, token: str | None) -> str | None:
    """What to tell the user who binds `host` (None on loopback)."""
    if is_loopback(host):
        return None
    if token is None:
        return (f"serving on {host}: anyone who reaches this machine can read the index and queue edits on its device; "
                "pass --token to require a bearer token")
    return f"serving on {host}: every request must carry the token ('Authorization: Bearer …', or open /?token=… once in a browser)"


def serve(workspace, settings=None, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          on_ready: Callable[[str], None] | None = None) -> None:
    """Run the explorer over `workspace` on host:port until Ctrl-C (waiting jobs are cancelled, the running one finishes)."""
    try:
        import uvicorn

        from .app import Settings, create_app
    except ImportError as exc:
        raise CortexError(f"cortex serve needs FastAPI and uvicorn ({exc.name} is missing): pip install \"cortex-cli[serve]\"") from None
    if not 0 <= port < 65536:
        raise CortexError(f"--port {port} is not a TCP port (0..65535; 0: any free one)")
    app = create_app(workspace, settings or Settings())
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.create_server((host, port), family=family)
    except OSError as exc:
        raise CortexError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); is another server on that port? pass --port") from None
    if on_ready is not None:
        shown = f"[{host}]" if ":" in host else host
        on_ready(f"http://{shown}:{sock.getsockname()[1]}/")
    try:
        server.run(sockets=[sock])  # uvicorn handles SIGINT/SIGTERM: stops accepting, finishes open requests, runs the lifespan's end
    except KeyboardInterrupt:  # uvicorn re-raises the signal it caught once it has shut down
        pass
    finally:
        sock.close()
