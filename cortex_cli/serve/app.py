"""`cortex serve`: the index as a live website and a JSON API, one more client of `Workspace` (like the CLI).

Every `/api/` answer is what the CLI's `--json` prints for the same request (`to_jsonable` of the same result);
every refused request is a 4xx `{"error": "<one line>"}` and changes nothing. Reads run concurrently in the
server's thread pool; explain, mask and edit run one at a time on the device (`jobs.JobQueue`), and a full
queue answers 429. Pages: the atlas (`live.LiveAtlas`), an image page per stored image or upload
(`pages.py`: heat map, top-n boxes, the token under the pointer, live masking and editing). It keeps files
under `<home>/serve/`: `atlas-<model>/`, `uploads/` (by content key) and `jobs/<start>-<pid>/job-N/` (an edit's
PNGs, which its stored row names, as the CLI's edit rows name theirs).
"""

from __future__ import annotations

import functools
import hmac
import io
import os
import tempfile
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path as FilePath
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..atlas.html import CSS, STYLESHEET
from ..core.environment import cortex_home
from ..core.errors import CortexError, NotFound, first_line
from ..core.jsonable import to_jsonable
from ..core.version import __version__
from ..images.pngmeta import read_png
from ..store.database import lost_database
from .jobs import Job, JobQueue, QueueFull
from .live import MAX_UPLOAD_BYTES, LiveAtlas, Uploads
from .pages import EXPLORER_JS, explore_page, image_page, no_atlas_page

LOOPBACK = ("127.0.0.1", "localhost", "::1")
FILLS = Literal["black", "mean", "blur", "tokens"]
MAX_STEPS = 20000
MAX_ID = 2**63 - 1  # ids are 64-bit integers in both databases
Id = Annotated[int, Path(ge=1, le=MAX_ID, description="an id (1 and up)")]


@dataclass
class Settings:
    """What `cortex serve` was started with."""

    model: str | None = None  # the model pages and requests use unless a request names one
    token: str | None = None  # a bearer token every request must carry (None: none asked)
    queue_limit: int = 4  # compute jobs that may wait
    state_dir: FilePath | None = None  # where the atlas, uploads and job files go (default: the home): under serve/
    atlas_interval: float = 2.0  # seconds between two checks of the atlas against the index


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image: StrictInt | None = Field(None, ge=1, le=MAX_ID, description="a stored image id")
    upload: str | None = Field(None, pattern=r"^[0-9a-f]{16}$", description="an upload key (POST /api/uploads)")
    model: str | None = Field(None, min_length=1, max_length=200)


class ExplainBody(_Body):
    top_n: StrictInt = Field(10, ge=1, le=4096)
    target: str | None = Field(None, min_length=1, max_length=200, description="explain this class or concept instead")
    extractor: str | None = Field(None, min_length=1, max_length=200)
    seed: StrictInt = Field(0, ge=0, le=2**31 - 1)


class MaskBody(_Body):
    positions: list[StrictInt] | None = Field(None, min_length=1, max_length=4096, description="row * m + col; default: the top n")
    top_n: StrictInt = Field(5, ge=1, le=4096)
    fill: FILLS = "black"
    target: str | None = Field(None, min_length=1, max_length=200, description="the class the judges score")
    extractor: str | None = Field(None, min_length=1, max_length=200)
    seed: StrictInt = Field(0, ge=0, le=2**31 - 1)


class EditBody(_Body):
    target: str = Field(..., min_length=1, max_length=200)
    region: str = Field(..., min_length=1, max_length=40, description="'R0:R1,C0:C1' (half-open), 'R,C' or 'all'")
    steps: StrictInt = Field(300, ge=1, le=MAX_STEPS)
    space: Literal["token", "embedding"] = "token"
    seed: StrictInt = Field(0, ge=0, le=2**31 - 1)
    extractor: str | None = Field(None, min_length=1, max_length=200)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _validation_line(exc: RequestValidationError) -> str:
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "request"
    return f"{where}: {first.get('msg', 'invalid')}"


@dataclass
class _Served:
    """What the routes share: the workspace, its default model, the atlas, uploads and the compute queue."""

    workspace: Any
    model_name: str
    atlas: LiveAtlas
    uploads: Uploads
    jobs: JobQueue
    scratch: FilePath  # a temporary directory for the server's life (stored images written as PNGs)

    def model_of(self, name: str | None) -> str:
        return name or self.model_name


def create_app(workspace, settings: Settings | None = None) -> FastAPI:
    """The explorer's FastAPI application over an open `Workspace` (its store is opened here, once)."""
    settings = settings or Settings()
    scratch = tempfile.TemporaryDirectory(prefix="cortex-serve-")
    root = FilePath(scratch.name)
    model_name = workspace.model(settings.model).name
    state = FilePath(settings.state_dir or workspace.home or cortex_home())
    uploads = Uploads(state / "serve" / "uploads")
    this_run = state / "serve" / "jobs" / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"  # kept: stored edits name their files
    served = _Served(workspace, model_name, LiveAtlas(workspace, model_name, state / "serve" / f"atlas-{model_name}", settings.atlas_interval),
                     uploads, JobQueue(this_run, settings.queue_limit, public={uploads.root: "/api/uploads"}), root)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        served.jobs.stop()
        scratch.cleanup()

    app = FastAPI(title="cortex explorer", version=__version__, lifespan=lifespan,
                  description="The CORTEX index of a VQ generator, live: every answer is what `cortex ... --json` prints.")
    app.state.served = served
    _guard(app, settings)
    _reads(app, served)
    _compute(app, served)
    _pages(app, served)
    return app


def _guard(app: FastAPI, settings: Settings) -> None:
    """A bearer token when asked; every error a one-line JSON answer."""

    @app.middleware("http")
    async def require_token(request: Request, call_next):
        if settings.token is None:
            return await call_next(request)
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip() or request.cookies.get("cortex_token", "")
        from_query = request.query_params.get("token", "")
        if not (hmac.compare_digest(given, settings.token) or (from_query and hmac.compare_digest(from_query, settings.token))):
            return _error(401, "this server asks for a token: send 'Authorization: Bearer <token>' (a browser: open /?token=<token> once)")
        response = await call_next(request)
        if from_query:
            response.set_cookie("cortex_token", settings.token, httponly=True, samesite="strict")
        return response

    @app.exception_handler(CortexError)
    async def cortex_error(request: Request, exc: CortexError):
        return _error(404 if isinstance(exc, NotFound) else 429 if isinstance(exc, QueueFull) else 400, first_line(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        return _error(422, _validation_line(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        detail = exc.detail if isinstance(exc.detail, str) else "request refused"
        message = {404: f"no such page or API route: {request.url.path}", 405: f"{request.method} is not allowed on {request.url.path}"}
        return _error(exc.status_code, message.get(exc.status_code, detail))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        lost = lost_database(exc)
        if lost is not None:
            return _error(503, first_line(lost))
        return _error(500, f"internal error ({type(exc).__name__}): {first_line(exc)}")


def _reads(app: FastAPI, served: _Served) -> None:
    """The JSON API's reads: they run concurrently, in the server's thread pool."""
    workspace, model_of, uploads = served.workspace, served.model_of, served.uploads

    @functools.lru_cache(maxsize=512)
    def tile(model: str, token: int) -> bytes:
        from ..images.pictures import token_thumbnails

        buffer = io.BytesIO()
        token_thumbnails(workspace.model(model), workspace.device)(token).save(buffer, "PNG")
        return buffer.getvalue()

    @app.get("/api/models", summary="Registered models and their classes (`cortex models list --json`)")
    def models() -> Any:
        return to_jsonable(workspace.models())

    @app.get("/api/concepts", summary="Named concepts of a model (`cortex concepts list --json`)")
    def concepts(model: Annotated[str | None, Query(max_length=200)] = None) -> Any:
        return to_jsonable(workspace.concepts(model=model_of(model)))

    @app.get("/api/top-tokens", summary="T*_concept beside a baseline (`cortex top-tokens CONCEPT -k K --baseline B --json`)")
    def top_tokens(concept: Annotated[str, Query(min_length=1, max_length=200)], k: Annotated[int, Query(ge=1, le=100000)] = 100,
                   baseline: Literal["frequency", "specific"] | None = None, images: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
                   extractor: Annotated[str | None, Query(max_length=200)] = None, run: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
                   split: Literal["train", "val", "test"] = "train", model: Annotated[str | None, Query(max_length=200)] = None) -> Any:
        return to_jsonable(workspace.top_tokens(concept, k, model=model_of(model), baseline=baseline, images=images, extractor=extractor,
                                                run=run, split=split))

    @app.get("/api/token/{token}.png", summary="The codebook entry of a token, decoded alone (a PNG tile)")
    def token_png(token: Annotated[int, Path(ge=0, le=MAX_ID)], model: Annotated[str | None, Query(max_length=200)] = None) -> Response:
        info = workspace.model(model_of(model))
        if not 0 <= token < info.n_embed:
            raise CortexError(f"token {token} is outside the codebook (0..{info.n_embed - 1})")
        return Response(tile(info.name, token), media_type="image/png", headers={"Cache-Control": "max-age=3600"})

    @app.get("/api/token/{token}", summary="Which classes use a token (`cortex token T --json`)")
    def token(token: Annotated[int, Path(ge=0, le=MAX_ID)], top: Annotated[int, Query(ge=1, le=1000)] = 20, model: Annotated[str | None, Query(max_length=200)] = None,
              split: Literal["train", "val", "test"] = "train") -> Any:
        return to_jsonable(workspace.token(token, top=top, model=model_of(model), split=split))

    @app.get("/api/images/{image_id}.png", summary="A stored image as the cortex PNG `cortex image ID --out` writes")
    def image_png(image_id: Id, model: Annotated[str | None, Query(max_length=200)] = None) -> Response:
        out = served.scratch / "images" / f"{model_of(model)}-{image_id}.png"
        if not out.is_file():
            out.parent.mkdir(parents=True, exist_ok=True)
            workspace.image(image_id, model=model_of(model), out=out)
        return FileResponse(out, media_type="image/png")

    @app.get("/api/images/{image_id}", summary="A stored image: identity, token grid, its index runs (`cortex image ID --json`)")
    def image(image_id: Id, model: Annotated[str | None, Query(max_length=200)] = None) -> Any:
        return to_jsonable(workspace.image(image_id, model=model_of(model)))

    @app.post("/api/uploads", summary="Upload a PNG (the raw bytes as the body, at most 8 MiB) → its key")
    async def upload(request: Request) -> Any:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES:
            return _error(413, f"the upload is {declared} bytes; at most {MAX_UPLOAD_BYTES} (8 MiB)")
        data = bytearray()
        async for chunk in request.stream():
            data.extend(chunk)
            if len(data) > MAX_UPLOAD_BYTES:
                return _error(413, f"the upload is over {MAX_UPLOAD_BYTES} bytes (8 MiB)")
        def known_model(found) -> None:
            if found.model_name is not None and found.model_name not in {m.name for m in workspace.models()}:
                raise CortexError(f"the PNG was made by model {found.model_name!r}, which is not registered here (GET /api/models)")

        key, _ = uploads.add(bytes(data), check=known_model)
        found = read_png(uploads.path(key))
        return {"upload": key, "model": found.model_name, "tokens": found.tokens is not None, "page": f"/uploads/{key}.html",
                "png": f"/api/uploads/{key}.png"}

    @app.get("/api/uploads/{key}.png", summary="An upload, as it was sent")
    def upload_png(key: str) -> Response:
        return FileResponse(uploads.path(key), media_type="image/png")


def _compute(app: FastAPI, served: _Served) -> None:
    """Explain, mask and edit: jobs on the compute queue, one at a time on the device."""
    workspace, model_of, uploads, jobs, model_name = served.workspace, served.model_of, served.uploads, served.jobs, served.model_name

    def source_of(body: _Body) -> tuple[int | FilePath, str | None]:
        """(a stored id or an upload's path, the model to use), checked: exactly one of image and upload."""
        if (body.image is None) == (body.upload is None):
            raise CortexError("give exactly one of 'image' (a stored image id) and 'upload' (a key from POST /api/uploads)")
        if body.image is not None:
            workspace.image(body.image, model=model_of(body.model))  # NotFound before anything is queued
            return body.image, model_of(body.model)
        return uploads.path(body.upload), body.model  # a cortex PNG names its model

    def answer(job: Job) -> Any:
        return _error(400, job.error) if job.error is not None else job.result  # a full queue was refused at submit (429)

    @app.post("/api/explain", summary="One image's salient tokens (`cortex show ID --json` / `cortex explain PNG --json`)")
    def explain(body: ExplainBody) -> Any:
        source, model = source_of(body)
        if isinstance(source, int):
            work = lambda job: workspace.show(source, None, top_n=body.top_n, extractor=body.extractor, model=model,  # noqa: E731
                                              seed=body.seed, target=body.target)
        else:
            work = lambda job: workspace.explain(source, top_n=body.top_n, extractor=body.extractor or "ce", model=model,  # noqa: E731
                                                 target=body.target, seed=body.seed)
        return answer(jobs.run("explain", work))

    @app.post("/api/mask", summary="Judges' P(class) with tokens masked beside random ones (`cortex mask IMAGE --json`)")
    def mask(body: MaskBody) -> Any:
        source, model = source_of(body)
        if isinstance(source, FilePath) and body.target is None and "class_id" not in read_png(source).meta:
            raise CortexError("this picture names no class: give 'target', the class the judges should score")
        return answer(jobs.run("mask", lambda job: workspace.mask(
            source, positions=body.positions, top_n=body.top_n, fill=body.fill, seed=body.seed, target=body.target,
            extractor=body.extractor, model=model, out=job.work_dir / "mask.png")))

    @app.post("/api/edit", summary="Start an edit (`cortex edit ... --json` once done) → {\"job\": id}; poll GET /api/jobs/{id}")
    def edit(body: EditBody) -> Any:
        from ..search.regions import parse_region
        from ..search.token_selection import optimize_settings

        source, model = source_of(body)
        info = workspace.model(model if model is not None else _png_model(source, model_name))
        parse_region(body.region, info.grid)
        workspace.subject(body.target, model=info.name)
        optimize_settings(None, steps=body.steps, space=body.space, seed=body.seed).validate()
        if body.extractor is not None:
            from ..extractors.registry import get_extractor

            get_extractor(workspace.store, info, body.extractor)

        def work(job: Job):
            picture = source if isinstance(source, FilePath) else workspace.image(source, model=info.name, out=job.work_dir / "source.png").out
            return workspace.edit(picture, body.target, body.region, model=info.name, extractor=body.extractor, out=job.work_dir,
                                  progress=job.progress, steps=body.steps, space=body.space, seed=body.seed)

        job = jobs.submit("edit", work)
        return JSONResponse({"job": job.id, "status": f"/api/jobs/{job.id}"}, status_code=202)

    @app.get("/api/jobs/{job_id}", summary="A job's status, progress, result and files")
    def job_status(job_id: Id) -> Any:
        job = jobs.get(job_id)
        if job is None:
            raise NotFound(f"no job {job_id} (jobs are kept while the server runs)")
        return job.to_dict()

    @app.get("/api/jobs/{job_id}/files/{name}", summary="A file a job wrote (an edit's PNGs, a mask's strip)")
    def job_file(job_id: Id, name: str) -> Response:
        job = jobs.get(job_id)
        if job is None or "/" in name or "\\" in name or name.startswith(".") or not (job.work_dir / name).is_file():
            raise NotFound(f"job {job_id} wrote no file {name!r}")
        return FileResponse(job.work_dir / name)


def _pages(app: FastAPI, served: _Served) -> None:
    """The explorer's pages: the live atlas, image and upload pages, the explorer's script and stylesheet."""
    workspace, model_name, uploads, atlas = served.workspace, served.model_name, served.uploads, served.atlas

    @app.get(f"/{STYLESHEET}", include_in_schema=False)
    def stylesheet() -> Response:
        return Response(CSS, media_type="text/css")

    @app.get("/explorer.js", include_in_schema=False)
    def explorer_js() -> Response:
        return Response(EXPLORER_JS, media_type="text/javascript")

    @app.get("/images/{image_id}.html", response_class=HTMLResponse, include_in_schema=False)
    def image_html(image_id: Id) -> str:
        found = workspace.image(image_id, model=model_name)
        return image_page({"image": image_id}, f"image {image_id}: {found.class_name} ({found.split}, seed {found.seed})",
                          f"/api/images/{image_id}.png", found.grid, model_name)

    @app.get("/uploads/{key}.html", response_class=HTMLResponse, include_in_schema=False)
    def upload_html(key: str) -> str:
        uploads.path(key)
        return image_page({"upload": key}, f"upload {key}", f"/api/uploads/{key}.png", None, model_name)

    @app.get("/explore.html", response_class=HTMLResponse, include_in_schema=False)
    def explore() -> str:
        return explore_page(model_name)

    @app.get("/", include_in_schema=False)
    def root() -> Response:
        return RedirectResponse("/index.html")

    @app.get("/{path:path}", include_in_schema=False)
    def atlas_file(path: str) -> Response:
        if path.endswith(".html") or path == "atlas.json":
            reason = atlas.refresh()
            if reason is not None and path == "index.html":
                return HTMLResponse(no_atlas_page(model_name, reason))
        found = atlas.file(path)
        if found is None:
            raise NotFound(f"no such page or API route: /{path}")
        return FileResponse(found)


def _png_model(source: int | FilePath, default: str) -> str:
    """The model a PNG names in its cortex metadata (else `default`)."""
    if isinstance(source, int):
        return default
    return read_png(source).model_name or default
