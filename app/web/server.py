"""``imgsim serve``: the JSON API and the pages, over ``app.api``, with the network loaded once.

Every answer to a bad request is a 4xx JSON object ``{"error": "..."}`` (one line, never a
traceback). Image bytes are served only for stored images, by id, from the paths the database
holds; no path taken from a request is ever opened. An uploaded photo goes to a temporary file
of the server's own, with the same byte and pixel limits as ingest. With a token configured
(``IMGSIM_API_TOKEN``; required off localhost) every request must carry it.
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from fastapi import Body, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from app import api
from app.collection.groups import MIN_CONFIDENCE, GroupingError
from app.collection.whitening import WhiteningError
from app.config import get_settings
from app.describe.methods import DEFAULT_METHOD, UnknownMethod
from app.describe.registry import MODELS, UnknownModel
from app.evaluation.evaluate import EvaluationError
from app.files.images import ImageError
from app.retrieval.query import NothingStored, QueryError
from app.store.collections import DEFAULT_COLLECTION, CollectionError
from app.store.errors import DatabaseError, describe
from app.web import guards
from app.web import jobs as ingest_jobs
from app.web import views
from app.web.budget import Full, MemoryBudget, decode_cost
from app.web.views import answer_json

log = logging.getLogger("imgsim")
HERE = Path(__file__).parent
UPLOAD_CHUNK = 1 << 20
COMPARED = "verified,gem+w,gem,global"  # the methods a comparison shows unless told


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


error = guards.error


# Errors of the layers below, as (status, message) for the client.
CLIENT_ERRORS = [
    (NothingStored, 404), (QueryError, 400), (CollectionError, 404), (UnknownModel, 400), (UnknownMethod, 400),
    (ImageError, 400), (WhiteningError, 409), (GroupingError, 409), (EvaluationError, 409), (LookupError, 404), (ingest_jobs.Forbidden, 403),
    (ingest_jobs.Busy, 409), (FileNotFoundError, 404), (ValueError, 400),
]


def create_app(engine: Engine | None = None, token: str | None = None,
               allowed_hosts: tuple[str, ...] | None = None, watch: list[tuple[Path, str]] = ()) -> FastAPI:
    """The application; ``engine``: the database (default: the configured one); ``token``: what
    every request must carry (default: IMGSIM_API_TOKEN; None: nothing); ``allowed_hosts``: the
    Host headers it answers (default: IMGSIM_ALLOWED_HOSTS; None: any); ``watch``: (folder,
    collection) pairs it follows while it runs."""
    settings = get_settings()
    token = token if token is not None else settings.api_token
    app = FastAPI(title="imgsim", description="Image similarity search on PostgreSQL + pgvector",
                  docs_url=None, redoc_url=None)  # their pages load scripts from a CDN: /docs is ours
    decoding = MemoryBudget(settings.decode_memory_mb * 2**20)
    templates = Jinja2Templates(directory=HERE / "templates")
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    store = views.Views(engine, settings)
    jobs = ingest_jobs.Jobs(lambda: store.engine, settings.allowed_roots)
    watchers = ingest_jobs.Watchers(lambda: store.engine, list(watch))
    app.router.add_event_handler("startup", watchers.start)
    app.router.add_event_handler("shutdown", watchers.stop)

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError):
        return error(exc.status, str(exc))

    @app.exception_handler(HTTPException)
    async def _http(_request: Request, exc: HTTPException):  # unknown routes, wrong verbs
        return error(exc.status_code, exc.detail)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "body", "path"))
        return error(422, f"{where}: {first.get('msg', 'invalid request')}")

    def client_error(status: int):
        async def handler(_request: Request, exc: Exception):
            if isinstance(exc, OSError) and exc.filename:  # never a server path in an answer
                return error(status, "a file the server needed is not readable now")
            return error(status, exc)  # each says itself in one line (the KeyErrors of names too)
        return handler

    for kind, status in CLIENT_ERRORS:
        app.add_exception_handler(kind, client_error(status))

    @app.exception_handler(Full)
    async def _full(_request: Request, exc: Full):
        return error(503, exc, {"Retry-After": "5"})

    async def _database(_request: Request, exc: Exception):
        fault = describe(exc)  # one line for the log; the client's has no host, port or socket path
        log.error("database: %s", fault.message if fault else exc)
        if fault is None or not fault.unreachable:
            return error(500, "a database error; see the server's log")
        return error(503, "the database cannot be reached; try again later", {"Retry-After": "5"})

    for kind in (DBAPIError, DatabaseError):
        app.add_exception_handler(kind, _database)

    @app.exception_handler(Exception)
    async def _internal(_request: Request, exc: Exception):
        log.error("internal error: %s: %s", type(exc).__name__, exc)
        return error(500, f"internal error ({type(exc).__name__}); see the server's log")

    guards.install(app, token, allowed_hosts if allowed_hosts is not None else settings.allowed_hosts)

    @app.get("/api/health")
    def health():
        """``ok``, or 503 when the database cannot be reached."""
        if not store.database_reachable():
            return error(503, "the database cannot be reached")
        return {"status": "ok"}

    @app.get("/api/collections")
    def collections() -> list[dict]:
        return api.collections(engine=store.engine)

    @app.get("/api/search")
    def search_stored(id: int = Query(ge=1), model: str | None = None, method: str = DEFAULT_METHOD,
                      collection: str = DEFAULT_COLLECTION, k: int = Query(10, ge=1, le=200),
                      max_distance: float | None = Query(None, ge=0, le=2)) -> dict:
        return answer_json(api.search(id, model, k, method, collection, max_distance=max_distance,
                                      engine=store.engine))

    @app.post("/api/search")
    def search_upload(file: UploadFile = File(...), model: str | None = Form(None),
                      method: str = Form(DEFAULT_METHOD), collection: str = Form(DEFAULT_COLLECTION),
                      k: int = Form(10, ge=1, le=200), max_distance: float | None = Form(None, ge=0, le=2)) -> dict:
        with upload(file, settings.max_file_bytes) as path, decoding.reserve(decode_cost(path)):
            return answer_json(api.search(path, model, k, method, collection, max_distance=max_distance,
                                          engine=store.engine))

    @app.get("/api/images/{image_id}")
    def image(image_id: int) -> dict:
        return store.record(image_id)

    @app.get("/api/images/{image_id}/thumbnail")
    def thumbnail(image_id: int, size: int = Query(256, ge=32, le=1024)):
        return FileResponse(store.thumbnail(image_id, size), media_type="image/jpeg",
                            headers={"Cache-Control": "private, max-age=86400"})

    @app.get("/api/images/{image_id}/matches/{other_id}")
    def matches(image_id: int, other_id: int, method: str = DEFAULT_METHOD) -> dict:
        return store.matches(image_id, other_id, method)

    @app.get("/api/groups")
    def groups(collection: str = DEFAULT_COLLECTION, model: str | None = None,
               min_confidence: float = Query(MIN_CONFIDENCE, ge=0, le=1)) -> dict:
        """The photos of the same item, in groups (a person's decisions hold), and the exact copies."""
        return {"groups": [g.as_dict() for g in api.groups(model, DEFAULT_METHOD, collection, min_confidence,
                                                             store.engine)],
                "exact": api.exact_copies(store.engine, collection)}

    app.get("/api/duplicates", include_in_schema=False)(groups)  # the earlier name of the same answer

    @app.post("/api/decisions")
    def decisions(decision: views.Decision) -> dict:
        """A person's word: ``image`` is (or is not) the same item as each of ``others``; without
        ``image``, ``not-same`` says no two of ``others`` show one item (a whole group)."""
        return {"pairs": store.decide(decision), "verdict": decision.verdict}

    @app.get("/api/compare")
    def compare(id: int = Query(ge=1), methods: str = Query(COMPARED, max_length=500),
                collection: str = DEFAULT_COLLECTION, k: int = Query(10, ge=1, le=100)) -> dict:
        return store.compare(id, _methods(methods), collection, k)

    @app.get("/api/evaluate")
    def evaluate(collection: str = DEFAULT_COLLECTION, model: str | None = None, method: str = DEFAULT_METHOD,
                 k: int = Query(10, ge=1, le=100)) -> dict:
        """Every labelled file of the collection as a query among the others: mAP, P@1, recall@k."""
        return api.evaluate_collection(collection, model, method, k, store.engine).as_dict()

    @app.post("/api/ingest", status_code=202)
    def start_ingest(folder: str = Body(..., max_length=4096), collection: str = Body(DEFAULT_COLLECTION),
                     method: str = Body(DEFAULT_METHOD)) -> dict:
        return jobs.start(folder, collection, method).as_dict()

    @app.get("/api/ingest")
    def ingest_jobs_list() -> list[dict]:
        return [j.as_dict() for j in jobs.jobs.values()]

    @app.get("/api/watches")
    def watches() -> list[dict]:
        """The folders the service follows: state, syncs, the last sync's counts."""
        return [w.as_dict() for w in watchers.watches]

    @app.get("/api/ingest/{job_id}")
    def ingest_job(job_id: int) -> dict:
        return jobs.get(job_id).as_dict()

    @app.get("/api/failures")
    def failures(collection: str | None = None) -> list[dict]:
        return store.failures(collection)

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    def api_page(request: Request):
        """The endpoints, from the OpenAPI schema (served at /openapi.json), with nothing from a CDN."""
        return templates.TemplateResponse(request, "api.html", {"schema": app.openapi()})

    @app.get("/", response_class=HTMLResponse)
    def search_page(request: Request):
        return templates.TemplateResponse(request, "search.html", {
            "collections": store.collection_names(), "models": list(MODELS), "model": settings.default_model})

    @app.get("/match/{image_id}/{other_id}", response_class=HTMLResponse)
    def match_page(request: Request, image_id: int, other_id: int, method: str = DEFAULT_METHOD):
        return templates.TemplateResponse(request, "match.html", {
            "a": store.record(image_id), "b": store.record(other_id), "method": method})

    @app.get("/compare", response_class=HTMLResponse)
    def compare_page(request: Request, id: int = Query(ge=1), methods: str = Query(COMPARED, max_length=500),
                     collection: str = DEFAULT_COLLECTION, k: int = Query(10, ge=1, le=100)):
        return templates.TemplateResponse(request, "compare.html",
                                          store.compare(id, _methods(methods), collection, k))

    @app.get("/collections", response_class=HTMLResponse)
    def collections_page(request: Request):
        return templates.TemplateResponse(request, "collections.html", {
            "collections": api.collections(engine=store.engine), "jobs": list(jobs.jobs.values()),
            "watches": [w.as_dict() for w in watchers.watches],
            "failures": store.failures(None), "can_ingest": bool(settings.allowed_roots)})

    @app.get("/groups", response_class=HTMLResponse)
    @app.get("/duplicates", response_class=HTMLResponse, include_in_schema=False)
    def groups_page(request: Request, collection: str = DEFAULT_COLLECTION,
                    min_confidence: float = Query(MIN_CONFIDENCE, ge=0, le=1)):
        return templates.TemplateResponse(request, "groups.html", {
            "groups": api.groups(None, DEFAULT_METHOD, collection, min_confidence, store.engine),
            "collection": collection, "min_confidence": min_confidence, "collections": store.collection_names()})

    return app


def _methods(text: str) -> list[str]:
    names = [m.strip() for m in text.split(",") if m.strip()]
    if not 1 <= len(names) <= 6:
        raise ValueError("methods: give 1 to 6 method names, separated by commas")
    return names


class upload:
    """An uploaded file in a temporary file of the server's own (removed after), read in chunks
    and refused past ``limit`` bytes."""

    def __init__(self, file: UploadFile, limit: int):
        self.file, self.limit = file, limit

    def __enter__(self) -> Path:
        self.temp = tempfile.NamedTemporaryFile(prefix="imgsim-upload-", suffix=".img", delete=False)
        size = 0
        with self.temp as out:
            while chunk := self.file.file.read(UPLOAD_CHUNK):
                size += len(chunk)
                if size > self.limit:
                    self.__exit__()
                    raise ApiError(413, f"upload too large: more than {self.limit} bytes (IMGSIM_MAX_FILE_BYTES)")
                out.write(chunk)
        if size == 0:
            self.__exit__()
            raise ApiError(400, "empty upload")
        return Path(self.temp.name)

    def __exit__(self, *_exc) -> None:
        Path(self.temp.name).unlink(missing_ok=True)
