"""A real uvicorn serving `create_app` on a free loopback port in a thread, and a small JSON client for it."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

import uvicorn
from sqlalchemy import MetaData, create_engine, func, select

from cortex_cli.serve.app import Settings, create_app


@dataclass
class Answer:
    status: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body)


class Running:
    """`create_app(workspace, settings)` under uvicorn until `stop()`."""

    def __init__(self, workspace, settings: Settings | None = None) -> None:
        self.app = create_app(workspace, settings)
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.base = f"http://127.0.0.1:{port}"

    def call(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None, headers: dict | None = None,
             timeout: float = 120) -> Answer:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=dict(headers or {}))
        if body is not None and raw is None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return Answer(response.status, response.read(), dict(response.headers))
        except urllib.error.HTTPError as error:
            return Answer(error.code, error.read(), dict(error.headers))

    def get(self, path: str, **kw) -> Answer:
        return self.call("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw) -> Answer:
        return self.call("POST", path, body, **kw)

    def wait_job(self, job: int, timeout: float = 300) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            status = self.get(f"/api/jobs/{job}").json()
            if status["status"] in ("done", "failed", "cancelled") or time.monotonic() > deadline:
                return status
            time.sleep(0.1)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def snapshot(url: str) -> dict[str, tuple]:
    """Every table's row count and its rows' content hash: equal snapshots, an unchanged store."""
    engine = create_engine(url)
    try:
        meta = MetaData()
        meta.reflect(engine)
        found = {}
        with engine.connect() as connection:
            for name, table in sorted(meta.tables.items()):
                rows = connection.execute(select(table)).all()
                found[name] = (connection.execute(select(func.count()).select_from(table)).scalar(), hash(tuple(sorted(map(repr, rows)))))
        return found
    finally:
        engine.dispose()
