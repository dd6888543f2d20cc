"""The `cortex` command line: thin commands that parse, make one `Workspace` call (`cortex_cli.api`), and render."""

import os
import sys

from .app import app
from . import models_cmd, generate_cmd, mini_cmd, extractor_cmd, index_cmd, query_cmd, explain_cmd, demo_cmd  # noqa: F401,E402
from . import edit_cmd, optimize_cmd, eval_cmd, atlas_cmd, concepts_cmd, audit_cmd, image_cmd, serve_cmd  # noqa: F401,E402

__all__ = ["app", "main"]


def main() -> None:
    """The `cortex` command.

    Under torchrun a rank leaves with `os._exit` once the command is done: its workspace has closed the
    database and destroyed the process group (after a barrier), and stdout/stderr are flushed here.
    Skipping interpreter teardown avoids a rare abort ("terminate called without an active exception",
    SIGABRT) seen in CI in about 1 of 60 two-rank gloo jobs after every rank had finished its work:
    torch's gloo backend can tear its C++ threads down against a finalizing interpreter
    (pytorch/pytorch#179291 discusses the same crash).
    """
    if not ("RANK" in os.environ and "WORLD_SIZE" in os.environ):  # not a torchrun rank (`distributed.in_torchrun`)
        app()
        return
    code = 0
    try:
        app()
    except SystemExit as exc:
        if isinstance(exc.code, int) or exc.code is None:
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)
