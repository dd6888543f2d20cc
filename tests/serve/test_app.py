"""The explorer's JSON API through a real uvicorn on a loopback port, on SQLite and on PostgreSQL.

The mini model (it has judges and a trained CE) with three indexed images of one class: every `/api/` answer is
what the CLI's `--json` prints, an edit job reaches `done` and is stored as the CLI stores it, and a sweep of
malformed requests all get a one-line 4xx JSON error, leave the store unchanged, and the server keeps answering.
"""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin
from typer.testing import CliRunner

from cortex_cli.api import Workspace
from cortex_cli.cli import app as cli
from cortex_cli.images.pngmeta import read_png
from cortex_cli.serve.app import Settings
from cortex_cli.store.schema import EditRow

from serve_helpers import Running, snapshot

CONCEPT = "red-capped bird"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def served(request, tmp_path_factory):
    """(server, database URL, workspace) with three images of CONCEPT indexed."""
    home = tmp_path_factory.mktemp(f"serve-{request.param}")
    if request.param == "sqlite":
        url, server_db = f"sqlite:///{home / 'cortex.db'}", None
    else:
        server_db = request.getfixturevalue("pg_server")
        url = server_db.database()
    workspace = Workspace(home=home, db=url)
    with workspace:
        workspace.index(CONCEPT, images=3)
        running = Running(workspace, Settings(atlas_interval=0.0))
        try:
            yield running, url, workspace
        finally:
            running.stop()
    if server_db is not None:
        server_db.drop(url)


def _cli_json(url: str, *args) -> object:
    result = CliRunner().invoke(cli, ["--db", url, *map(str, args), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_reads_answer_exactly_what_the_cli_json_prints(served):
    server, url, _ = served
    assert server.get(f"/api/top-tokens?concept={CONCEPT.replace(' ', '%20')}&k=10&baseline=frequency").json() == _cli_json(
        url, "top-tokens", CONCEPT, "-k", 10, "--baseline", "frequency")
    assert server.get("/api/models").json() == _cli_json(url, "models", "list")
    assert server.get("/api/images/2").json() == _cli_json(url, "image", 2)
    token = server.get("/api/images/2").json()["tokens"][0][0]
    assert server.get(f"/api/token/{token}?top=5").json() == _cli_json(url, "token", token, "--top", 5)
    tile = server.get(f"/api/token/{token}.png")
    assert tile.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(tile.body)).size == (64, 64)  # the codebook entry decoded alone, at the mini model's size


def test_explain_and_mask_answer_what_show_and_mask_print(served):
    server, url, _ = served
    assert server.post("/api/explain", {"image": 1, "top_n": 4}).json() == _cli_json(url, "show", 1, "--top-n", 4)
    masked = server.post("/api/mask", {"image": 1, "top_n": 3, "fill": "tokens"}).json()
    printed = _cli_json(url, "mask", 1, "--top-n", 3, "--fill", "tokens")
    assert masked.pop("out").startswith("/api/jobs/") and printed.pop("out") is None
    assert masked == printed
    assert all(0 <= j["masked"] <= 1 for j in masked["judges"]) and {j["judge"] for j in masked["judges"]} == {"resnet", "vit"}


def test_a_stored_image_uploaded_back_is_explained_as_the_stored_one(served):
    server, _, _ = served
    png = server.get("/api/images/1.png")
    assert png.status == 200 and png.headers["content-type"] == "image/png"
    sent = server.post("/api/uploads", raw=png.body, headers={"Content-Type": "image/png"}).json()
    assert sent["tokens"] is True and sent["model"] == "mini"
    assert server.get(sent["png"]).body == png.body
    stored = server.post("/api/explain", {"image": 1, "top_n": 5}).json()
    uploaded = server.post("/api/explain", {"upload": sent["upload"], "top_n": 5}).json()
    assert [t["position"] for t in uploaded["top"]] == [t["position"] for t in stored["top"]]
    assert uploaded["source"] == sent["png"]  # a URL, never the server's path
    assert server.get(sent["page"]).status == 200


def test_a_plain_picture_is_encoded_explained_and_masked_for_the_class_asked(served):
    server, _, workspace = served
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(buffer, "PNG")
    sent = server.post("/api/uploads", raw=buffer.getvalue()).json()
    assert sent["tokens"] is False and sent["model"] is None
    explained = server.post("/api/explain", {"upload": sent["upload"], "top_n": 3}).json()
    assert explained["tokens_from"] == "VQGAN encoding" and len(explained["top"]) == 3
    unnamed = server.post("/api/mask", {"upload": sent["upload"], "top_n": 3})
    assert unnamed.status == 400 and "give 'target'" in unnamed.json()["error"] and str(workspace.home) not in unnamed.json()["error"]
    masked = server.post("/api/mask", {"upload": sent["upload"], "top_n": 3, "target": explained["class_name"]}).json()
    assert masked["class_name"] == explained["class_name"] and masked["positions"] == sorted(t["position"] for t in explained["top"])


def test_an_edit_job_reaches_done_and_is_stored_as_the_cli_stores_it(served):
    server, url, workspace = served
    started = server.post("/api/edit", {"image": 1, "target": "blue-capped bird", "region": "4:8,4:8", "steps": 30})
    assert started.status == 202
    status = server.wait_job(started.json()["job"])
    assert status["status"] == "done", status
    assert status["progress"]["done"] == status["progress"]["total"] == 30
    result = status["result"]
    assert result["region"] == "4:8,4:8" and result["target_name"] == "blue-capped bird"
    assert {p["scorer"] for p in result["probabilities"]} >= {"judge:resnet", "judge:vit"}
    edited = server.get(result["output_path"])
    assert edited.status == 200 and result["output_path"] in status["files"]
    downloaded = workspace.home / "downloaded.png"
    downloaded.write_bytes(edited.body)
    assert read_png(downloaded).tokens.tolist() == result["result_tokens"]
    with workspace.store.session() as session:
        row = session.get(EditRow, result["edit_id"])
        assert (row.region, row.method, row.target_class) == ("4:8,4:8", "token", 1)
        assert Path(row.output_path).read_bytes() == edited.body  # the stored row names a file that stays


def _bad_requests(server) -> list[tuple]:
    """(method, path, json body or None, raw bytes or None): each must be refused."""
    edit = {"image": 1, "target": "blue-capped bird", "region": "4:8,4:8", "steps": 5}
    bad_edits = [{**edit, "image": 0}, {**edit, "image": 10**9}, {**edit, "image": "1"}, {**edit, "image": -3}, {**edit, "image": 2**70},
                 {**edit, "region": "9:99,0:1"}, {**edit, "region": "a:b"}, {**edit, "region": ""}, {**edit, "region": "4:4,4:8"},
                 {**edit, "region": "all; drop table edits"}, {**edit, "steps": 0}, {**edit, "steps": -5}, {**edit, "steps": 10**9},
                 {**edit, "steps": "30"}, {**edit, "steps": 30.5}, {**edit, "steps": True}, {**edit, "target": "unicorn"},
                 {**edit, "target": ""}, {**edit, "space": "pixels"}, {**edit, "extractor": "nope"}, {**edit, "seed": -1},
                 {**edit, "upload": "0123456789abcdef"}, {k: v for k, v in edit.items() if k != "image"}, {**edit, "path": "/etc/passwd"},
                 {**edit, "model": "nope"}, {**edit, "upload": "../../etc/passwd", "image": None}]
    return ([("POST", "/api/edit", body, None) for body in bad_edits] + [
        ("POST", "/api/edit", None, b"{not json"), ("POST", "/api/edit", None, b""), ("POST", "/api/edit", [1, 2], None),
        ("POST", "/api/mask", {"image": 1, "positions": [256]}, None), ("POST", "/api/mask", {"image": 1, "positions": [-1]}, None),
        ("POST", "/api/mask", {"image": 1, "positions": []}, None), ("POST", "/api/mask", {"image": 1, "positions": [1.5]}, None),
        ("POST", "/api/mask", {"image": 1, "fill": "white"}, None), ("POST", "/api/mask", {"image": 1, "target": "unicorn"}, None),
        ("POST", "/api/mask", {"image": 1, "top_n": 0}, None), ("POST", "/api/mask", {"image": 99999}, None),
        ("POST", "/api/explain", {"image": 1, "top_n": "all"}, None), ("POST", "/api/explain", {"image": 1, "extractor": "nope"}, None),
        ("POST", "/api/explain", {"image": 1, "target": "unicorn"}, None), ("POST", "/api/explain", {}, None),
        ("POST", "/api/uploads", None, b""), ("POST", "/api/uploads", None, b"GIF89a not really"),
        ("GET", "/api/uploads/0123456789abcdef.png", None, None), ("GET", "/api/uploads/..%2f..%2fetc%2fpasswd.png", None, None),
        ("GET", "/api/images/0", None, None), ("GET", "/api/images/-1", None, None), ("GET", "/api/images/abc", None, None),
        ("GET", "/api/images/999999", None, None), ("GET", "/api/images/999999.png", None, None), ("GET", "/api/images/1?model=nope", None, None),
        ("GET", "/api/top-tokens", None, None), ("GET", "/api/top-tokens?concept=unicorn", None, None),
        ("GET", "/api/top-tokens?concept=red-capped%20bird&k=0", None, None), ("GET", "/api/top-tokens?concept=red-capped%20bird&k=x", None, None),
        ("GET", "/api/top-tokens?concept=red-capped%20bird&baseline=magic", None, None), ("GET", "/api/token/-1", None, None),
        ("GET", "/api/token/256", None, None), ("GET", "/api/token/256.png", None, None), ("GET", "/api/token/1e3", None, None),
        ("GET", "/api/jobs/999999", None, None), ("GET", "/api/jobs/x", None, None), ("GET", "/api/jobs/1/files/..%2f..%2fcortex.db", None, None),
        ("GET", "/api/jobs/1/files/.hidden", None, None), ("GET", "/images/999999.html", None, None), ("GET", "/uploads/zz.html", None, None),
        ("GET", "/..%2f..%2fetc%2fpasswd", None, None), ("GET", "/%2e%2e/%2e%2e/etc/passwd", None, None), ("GET", "/api/nothing", None, None),
        ("DELETE", "/api/models", None, None), ("PUT", "/api/edit", edit, None), ("GET", "/api/edit", None, None),
        ("PATCH", "/api/images/1", None, None), ("POST", "/api/models", {}, None)])


def _png_of_another_model(server) -> bytes:
    """The stored image 1 as a cortex PNG whose metadata names a model that is not registered."""
    from cortex_cli.images.pngmeta import KEY_MODEL

    picture = Image.open(io.BytesIO(server.get("/api/images/1.png").body))
    meta = PngImagePlugin.PngInfo()
    for key, value in picture.text.items():
        meta.add_text(key, "elsewhere" if key == KEY_MODEL else value)
    buffer = io.BytesIO()
    picture.save(buffer, "PNG", pnginfo=meta)
    return buffer.getvalue()


def test_malformed_requests_get_a_one_line_4xx_json_error_and_leave_the_store_unchanged(served):
    server, url, _ = served
    before = snapshot(url)
    refused = server.post("/api/uploads", raw=_png_of_another_model(server))
    assert refused.status == 400 and "'elsewhere', which is not registered" in refused.json()["error"]
    for method, path, body, raw in _bad_requests(server):
        answer = server.call(method, path, body, raw=raw, headers={"Content-Type": "application/json"} if raw is not None else None)
        assert 400 <= answer.status < 500, (method, path, body, answer.status, answer.body[:300])
        error = answer.json()["error"]
        assert error and "\n" not in error and "Traceback" not in error and "internal error" not in error, (method, path, body, error)
    assert snapshot(url) == before
    assert server.get("/api/models").status == 200


def test_an_upload_declared_over_the_limit_is_refused_before_its_body_is_read(served):
    server, _, _ = served
    host, port = server.base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(b"POST /api/uploads HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 9437184\r\n\r\n")
        reply = b""
        while b"}" not in reply:
            chunk = connection.recv(4096)
            assert chunk, reply
            reply += chunk
    head, body = reply.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 413") and b"at most 8388608" in body


def test_a_full_compute_queue_answers_429_and_queues_nothing(served):
    server, url, _ = served
    jobs = server.app.state.served.jobs
    gate = threading.Event()
    blockers = [jobs.submit("edit", lambda job: gate.wait(30))]
    while blockers[0].status == "queued":
        time.sleep(0.01)
    blockers += [jobs.submit("edit", lambda job: None) for _ in range(jobs.limit)]
    before = snapshot(url)
    try:
        full = server.post("/api/edit", {"image": 1, "target": "blue-capped bird", "region": "4:8,4:8", "steps": 5})
        assert full.status == 429 and "queue is full" in full.json()["error"]
        assert server.post("/api/mask", {"image": 1, "positions": [3]}).status == 429
        assert server.get("/api/images/1").status == 200  # reads do not wait for the device
    finally:
        gate.set()
    for job in blockers:
        job.finished.wait(30)
    assert snapshot(url) == before


def test_pages_are_the_atlas_live_and_the_api_is_documented(served):
    server, _, _ = served
    assert server.get("/").status == 200  # followed to /index.html
    index = server.get("/index.html").body.decode()
    assert "concepts/0-red-capped-bird.html" in index
    concept = server.get("/concepts/0-red-capped-bird.html").body.decode()
    assert 'href="../images/1.html"' in concept or "images/1.html" in concept
    page = server.get("/images/1.html").body.decode()
    assert 'id="view"' in page and "/api/images/1.png" in page
    assert server.get("/explorer.js").headers["content-type"].startswith("text/javascript")
    spec = server.get("/openapi.json").json()
    assert {"/api/models", "/api/top-tokens", "/api/token/{token}", "/api/images/{image_id}", "/api/explain", "/api/mask", "/api/edit",
            "/api/jobs/{job_id}"} <= set(spec["paths"])
    assert server.get("/docs").status == 200


def test_a_token_is_asked_of_every_request_when_set(served):
    _, _, workspace = served
    guarded = Running(workspace, Settings(token="s3cret"))
    try:
        refused = guarded.get("/api/models")
        assert refused.status == 401 and "Authorization: Bearer" in refused.json()["error"]
        assert guarded.get("/api/models", headers={"Authorization": "Bearer wrong"}).status == 401
        assert guarded.get("/index.html").status == 401
        assert guarded.get("/api/models", headers={"Authorization": "Bearer s3cret"}).status == 200
        opened = guarded.get("/api/models?token=s3cret")
        assert opened.status == 200 and "cortex_token=s3cret" in opened.headers.get("set-cookie", "")
        assert guarded.get("/api/models", headers={"Cookie": "cortex_token=s3cret"}).status == 200
    finally:
        guarded.stop()
