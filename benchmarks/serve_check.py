"""The explorer checked as a reviewer checks it, from a fresh home: index, serve, compare, edit, and a random sweep of
malformed requests (each must get a one-line 4xx JSON error; the store must not change; the server must keep answering).

    python benchmarks/serve_check.py --requests 600 --seed 0 [--out docs/bench/serve_check.json]

Prints (and writes) a JSON summary: the top-tokens comparison, the edit job's time and status, and the sweep's counts.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from PIL import Image, PngImagePlugin
from sqlalchemy import MetaData, create_engine, func, select

GARBAGE_INTS = [0, -1, -(2**63), 2**63, 2**64, 10**30, 1.5, "1", "", "x", [], {}, True, None, "NaN", float("inf")]
GARBAGE_TEXT = ["", "x" * 201, 5, [], {}, True, None, ["a"], {"$gt": ""}]
GARBAGE_SEGMENTS = ["-1", "0", "1e5", "NaN", "%00", "..%2f..%2fcortex.db", "%2e%2e", "'%20OR%201=1%20--", "%F0%9F%98%80", "9" * 30, "%20",
                    "%ff", "abc", "1.5", "0x10", "99999999"]


def _call(base: str, method: str, path: str, body=None, raw: bytes | None = None) -> tuple[int, bytes]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(base + path, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _snapshot(url: str) -> dict:
    engine = create_engine(url)
    meta = MetaData()
    meta.reflect(engine)
    with engine.connect() as connection:
        found = {name: (connection.execute(select(func.count()).select_from(t)).scalar(),
                        hash(tuple(sorted(map(repr, connection.execute(select(t)).all()))))) for name, t in meta.tables.items()}
    engine.dispose()
    return found


def _bad_pngs(good: bytes) -> list[bytes]:
    """A cortex PNG with its metadata damaged (a meta chunk holding other JSON is read as it is: not damage), and non-pictures."""
    picture = Image.open(io.BytesIO(good))
    damaged = []
    for key, value in picture.text.items():
        for broken in ("", "x" * 50, value[: len(value) // 2]) + (("[[999999]]",) if key != "cortex:meta" else ()):  # any JSON meta is read
            meta = PngImagePlugin.PngInfo()
            for k, v in picture.text.items():
                meta.add_text(k, broken if k == key else v)
            buffer = io.BytesIO()
            picture.save(buffer, "PNG", pnginfo=meta)
            damaged.append(buffer.getvalue())
    return damaged + [b"", good[:100], b"GIF89a", os.urandom(2000), good[:8] + os.urandom(500)]


def sweep(base: str, rng: random.Random, count: int, upload_png: bytes) -> list[tuple]:
    """`count` requests, each malformed in one random way."""
    edit = {"image": 1, "target": "blue-capped bird", "region": "4:8,4:8", "steps": 5}
    fields = {"/api/edit": (edit, {"image": GARBAGE_INTS, "target": GARBAGE_TEXT + ["unicorn", "9999"], "steps": GARBAGE_INTS + [20001],
                                   "region": GARBAGE_TEXT + ["9:99,0:1", "a:b", "4:4,4:8", "-1:2,0:1", "0:17,0:1", "1,2,3", "all;x"],
                                   "space": GARBAGE_TEXT + ["pixel"], "seed": GARBAGE_INTS[1:], "extractor": ["", "nope", 5, []],
                                   "model": ["", "nope", 5]}),
              "/api/mask": ({"image": 1, "top_n": 3}, {"image": GARBAGE_INTS, "top_n": GARBAGE_INTS + [4097], "fill": GARBAGE_TEXT + ["white"],
                                                       "positions": [[], [-1], [256], [1.5], ["1"], [None], "1,2", 5, [0] * 5000],
                                                       "target": ["", "unicorn", 5], "seed": GARBAGE_INTS[1:], "extractor": ["", "nope"]}),
              "/api/explain": ({"image": 1, "top_n": 3}, {"image": GARBAGE_INTS, "top_n": GARBAGE_INTS + [4097], "target": ["", "unicorn", 5],
                                                          "extractor": ["", "nope", 5], "seed": GARBAGE_INTS[1:]})}
    bad_pngs = _bad_pngs(upload_png)
    made = []
    for _ in range(count):
        kind = rng.choice(["body", "body", "body", "extra", "missing", "raw", "path", "query", "method", "upload"])
        if kind in ("body", "extra", "missing", "raw"):
            route = rng.choice(list(fields))
            valid, bad = fields[route]
            body = dict(valid)
            if kind == "body":
                name = rng.choice(list(bad))
                body[name] = rng.choice(bad[name])
            elif kind == "extra":
                body[rng.choice(["path", "file", "out", "sql", "__class__"])] = "/etc/passwd"
            elif kind == "missing":
                body.pop("image")
                if route == "/api/edit" and rng.random() < 0.5:
                    body = {k: v for k, v in body.items() if k not in ("target", "region")}
            made.append(("POST", route, None, rng.choice([b"{", b"null", b"[]", b"\xff\xfe", b'{"image": 1,}', b"1" * 10000]))
                        if kind == "raw" else ("POST", route, body, None))
        elif kind == "path":
            template = rng.choice(["/api/images/{}", "/api/images/{}.png", "/api/token/{}", "/api/token/{}.png", "/api/jobs/{}",
                                   "/api/jobs/1/files/{}", "/api/uploads/{}.png", "/images/{}.html", "/uploads/{}.html", "/{}",
                                   "/concepts/{}.html", "/tokens/{}.html", "/api/{}"])
            segment = rng.choice([g for g in GARBAGE_SEGMENTS if not (template.startswith("/api/token/") and g == "0")])  # token 0 exists
            made.append(("GET", template.format(segment), None, None))
        elif kind == "query":
            good = {"concept": "red-capped%20bird", "k": "10", "baseline": "frequency"}
            name = rng.choice(["concept", "k", "baseline", "split", "model", "run", "images", "extractor"])
            good[name] = rng.choice({"concept": ["", "unicorn", "%00"], "k": ["0", "-1", "x", "1e9", "100001"],
                                     "baseline": ["", "magic"], "split": ["", "all", "TRAIN"], "model": ["nope", "%00"],
                                     "run": ["0", "-1", "x", "999999", str(2**64)], "images": ["0", "x", str(2**64)],
                                     "extractor": ["nope", "%00"]}[name])
            made.append(("GET", "/api/top-tokens?" + "&".join(f"{k}={v}" for k, v in good.items()), None, None))
        elif kind == "method":
            route = rng.choice(["/api/models", "/api/edit", "/api/mask", "/api/explain", "/api/images/1", "/api/top-tokens", "/api/uploads"])
            method = rng.choice(["PUT", "DELETE", "PATCH"] + (["GET"] if route in ("/api/edit", "/api/mask", "/api/explain", "/api/uploads") else [])
                                + (["POST"] if route in ("/api/models", "/api/images/1", "/api/top-tokens") else []))
            made.append((method, route, None, None))
        else:
            made.append(("POST", "/api/uploads", None, rng.choice(bad_pngs)))
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="cortex-serve-check-"))
    env = {**os.environ, "CORTEX_HOME": str(home)}
    cortex = [sys.executable, "-m", "cortex_cli"]
    started = time.perf_counter()
    subprocess.run([*cortex, "index", "--class", "red-capped bird", "--images", str(args.images), "--quiet"], env=env, check=True,
                   capture_output=True)
    indexed_s = time.perf_counter() - started
    server = subprocess.Popen([*cortex, "serve", "--port", "0"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = server.stdout.readline().split()[3].rstrip("/")
    summary: dict = {"images": args.images, "index_s": round(indexed_s, 1)}
    try:
        cli = json.loads(subprocess.run([*cortex, "top-tokens", "red-capped bird", "-k", "10", "--baseline", "frequency", "--json"],
                                        env=env, check=True, capture_output=True, text=True).stdout)
        status, body = _call(base, "GET", "/api/top-tokens?concept=red-capped%20bird&k=10&baseline=frequency")
        summary["top_tokens_equal_cli"] = status == 200 and json.loads(body) == cli
        t0 = time.perf_counter()
        status, body = _call(base, "POST", "/api/edit", {"image": 1, "target": "blue-capped bird", "region": "4:8,4:8", "steps": 30})
        job = json.loads(body)["job"]
        while (state := json.loads(_call(base, "GET", f"/api/jobs/{job}")[1]))["status"] in ("queued", "running"):
            time.sleep(0.2)
        summary["edit"] = {"accepted": status, "status": state["status"], "seconds": round(time.perf_counter() - t0, 1),
                           "changed": len(state["result"]["changed"]) if state["result"] else None}
        upload_png = _call(base, "GET", "/api/images/1.png")[1]
        url = f"sqlite:///{home / 'cortex.db'}"
        before = _snapshot(url)
        requests = sweep(base, random.Random(args.seed), args.requests, upload_png)
        codes: dict[str, int] = {}
        failures = []
        for method, path, body, raw in requests:
            status, reply = _call(base, method, path, body, raw)
            codes[str(status)] = codes.get(str(status), 0) + 1
            try:
                error = json.loads(reply).get("error", "")
            except (ValueError, AttributeError):
                error = None
            if not (400 <= status < 500) or not error or "\n" in error or "Traceback" in error or "internal error" in error:
                failures.append({"method": method, "path": path, "body": repr(body)[:200], "raw": repr(raw)[:80], "status": status,
                                 "reply": reply[:300].decode(errors="replace")})
        summary["sweep"] = {"requests": len(requests), "seed": args.seed, "status_codes": dict(sorted(codes.items())),
                            "not_a_one_line_4xx": failures[:20], "failures": len(failures),
                            "store_unchanged": _snapshot(url) == before,
                            "still_answering": _call(base, "GET", "/api/models")[0] == 200}
    finally:
        server.send_signal(signal.SIGINT)
        _, err = server.communicate(timeout=60)
        summary["ctrl_c"] = {"exit": server.returncode, "traceback": "Traceback" in err}
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
