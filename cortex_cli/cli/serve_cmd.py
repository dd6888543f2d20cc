"""`cortex serve`: the live explorer (the atlas, image pages, masking and editing in the browser) and its JSON API."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ..core.errors import CortexError
from ..serve import DEFAULT_HOST, DEFAULT_PORT, exposure_warning, serve
from .app import command, workspace
from .options import Model
from .render import console, err_console


@command("serve")
def serve_cmd(
    ctx: typer.Context,
    host: str = typer.Option(DEFAULT_HOST, "--host", help="Address to listen on (default: loopback only; another one warns)."),
    port: int = typer.Option(DEFAULT_PORT, "--port", "-p", help="TCP port (0: any free one, printed)."),
    model: Model = None,
    token: Annotated[Optional[str], typer.Option("--token", envvar="CORTEX_SERVE_TOKEN",
                                                 help="Require this bearer token on every request (or $CORTEX_SERVE_TOKEN).")] = None,
    queue: int = typer.Option(4, "--queue", help="Compute jobs (explain, mask, edit) that may wait; more get HTTP 429."),
) -> None:
    """Serve the index as a live explorer: every atlas page rendered from the index, image pages with the TSV heat map,
    live masking and editing, and a JSON API under /api/ (its OpenAPI page at /docs). Ctrl-C stops it.

    Needs the serve extra: pip install "cortex-cli[serve]".

    Example: cortex serve --port 8765   (then open http://127.0.0.1:8765/)
    """
    from ..serve.app import Settings

    warning = exposure_warning(host, token)
    if warning:
        err_console.print(f"warning: {warning}", style="yellow", highlight=False, soft_wrap=True)
    if queue < 1:
        raise CortexError(f"--queue {queue}: at least one job must be able to wait")
    ws = workspace(ctx)
    serve(ws, Settings(model=model, token=token, queue_limit=queue), host=host, port=port,
          on_ready=lambda url: console.print(f"cortex explorer on {url} (API docs: {url}docs); Ctrl-C stops it",
                                             highlight=False, soft_wrap=True))
    err_console.print("stopped")
