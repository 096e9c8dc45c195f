"""The web app of ``inkvoice serve``: the JSON API (with its OpenAPI schema) and the page, on FastAPI.

Every answer that is not a success is JSON ``{"error": message}`` with its status; unexpected
failures are logged on the server and reach the client only as "internal error". ``HEAD``
is answered wherever ``GET`` is, and JSON, the page's text and explanations go out gzipped to
clients that accept it.
"""

import json
import logging
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import Depends, FastAPI, File, Path as PathParameter, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from starlette.middleware.gzip import GZipMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from inkvoice import __version__
from inkvoice.serve.guard import TooManyRequests
from inkvoice.serve.service import DEFAULT_MAX_UPLOAD_MB, DEFAULT_TOP_K, ServiceError, Upload, check_writer

STATIC = Path(__file__).with_name("static")
MEGABYTE = 1 << 20
# Room for the multipart boundaries and headers around the files themselves.
_MULTIPART_SLACK = 64 * 1024
# Answers smaller than this go out as they are: compressing them saves less than it costs.
_GZIP_MINIMUM_BYTES = 500
# What a client is told to wait before asking a server that is starting again, in seconds.
_STARTING_RETRY_SECONDS = 2
_log = logging.getLogger("inkvoice.serve")


class Error(BaseModel):
    error: str


class ModelInfo(BaseModel):
    name: str
    version: str
    labels: list[str] | None = None
    threshold: float | None = None


class Health(BaseModel):
    status: Literal["starting", "ready"]
    version: str
    models: dict[str, ModelInfo]
    enrolment: bool  # whether the server has an enrolment token (enrolment and removal are on)


class Probability(BaseModel):
    label: str
    probability: float


class Prediction(BaseModel):
    file: str
    label: str
    confidence: float
    top: list[Probability]
    reason: str | None = None  # why the answer is "unknown"


class Segment(BaseModel):
    start: float
    end: float
    label: str
    confidence: float


class Transcription(BaseModel):
    file: str
    digits: str
    segments: list[Segment]


class Writer(BaseModel):
    writer: str
    references: int


class Enrolment(BaseModel):
    writer: str
    added: int
    references: int


class Reference(BaseModel):
    number: int
    source: str
    thumbnail: str | None  # the URL of its picture, or null for a reference enrolled before pictures were kept


class References(BaseModel):
    writer: str
    references: list[Reference]


class Removal(BaseModel):
    writer: str
    removed: int


class Region(BaseModel):
    top: int
    left: int
    height: int
    width: int
    deviation: float


class Group(BaseModel):
    group: str
    description: str
    effect: float


class Explanation(BaseModel):
    image: str
    nearest_reference: int
    # "picture": the reference's kept picture; "stroke directions": enrolled before pictures were kept
    reference_shown: Literal["picture", "stroke directions"]
    regions: list[Region]
    groups: list[Group]
    summary: str


class Verification(BaseModel):
    writer: str
    file: str
    genuine: bool
    verdict: Literal["genuine", "forged"]
    score: float
    threshold: float
    mode: Literal["independent", "dependent"]
    references: int
    reason: str | None = None  # why a query outside what the model was trained on is forged
    explanation: Explanation | None = None


def _errors(*statuses):
    return {status: {"model": Error} for status in statuses}


def _error_response(status, message, headers=None):
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class RequestLimits:
    """ASGI middleware: refuse bodies over ``max_mb`` megabytes (413) and add the page's security headers."""

    def __init__(self, app, max_mb):
        self.app = app
        self.max_mb = max_mb
        self.max_bytes = int(max_mb * MEGABYTE)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_large = f"the request is larger than this server's limit of {self.max_mb:g} MB"
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes + _MULTIPART_SLACK:
            return await _error_response(413, too_large)(scope, receive, send)
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes + _MULTIPART_SLACK:
                    raise StarletteHTTPException(413, too_large)
            return message

        async def secured_send(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"content-security-policy",
                     b"default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; frame-ancestors 'none'"),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, limited_receive, secured_send)


class HeadAsGet:
    """ASGI middleware: ``HEAD`` answered as ``GET`` would be (status and headers), without the body."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "HEAD":
            return await self.app(scope, receive, send)

        async def headers_only(message):
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headers_only)


def _validation_message(error):
    """One readable line for FastAPI's list of validation errors."""
    parts = []
    for item in error.errors():
        location = [str(part) for part in item.get("loc", ())]
        where, name = (location[0], location[-1]) if location else ("request", "?")
        if where == "body" and item.get("type") == "missing":
            parts.append(f"the multipart field {name!r} is missing")
        elif where == "body":
            parts.append(f"the multipart field {name!r} is not a file upload")
        else:
            parts.append(f"{where} parameter {name!r}: {item.get('msg', 'invalid')}")
    return "; ".join(parts) or "the request is malformed"


async def _upload(file):
    return Upload(file.filename, await file.read())


def create_app(service, max_upload_mb=DEFAULT_MAX_UPLOAD_MB, jobs=None, *, limits=None, audit=None,
               starting=False):
    """The FastAPI application serving ``service`` (an :class:`inkvoice.serve.service.Service`).

    ``jobs`` runs the jobs that extract features (:mod:`inkvoice.serve.workers`: a pool of
    worker processes); by default they run on this process's threads with ``service`` itself.
    Reading and changing the store alone (writers, references, their pictures, removal) takes
    a fraction of a millisecond and always runs here, so it never queues behind feature extraction.

    ``limits`` (:class:`inkvoice.serve.guard.VerificationLimits`) bounds verifications per
    client and per writer (429 beyond); ``audit`` (:class:`inkvoice.serve.guard.AuditLog`)
    records every enrolment, removal and verification. With ``starting``, the app answers
    while the jobs' runner is not there yet: ``/healthz`` says "starting" (503) and the jobs
    answer 503, until :func:`set_ready` gives it.
    """
    from inkvoice.serve.workers import InProcess

    store_jobs = InProcess(service)
    app = FastAPI(
        title="inkvoice",
        version=__version__,
        description="Spoken digits and signature verification. Enrolment and deletion need "
                    "`Authorization: Bearer TOKEN`, listing writers and their references the same "
                    "token or the read-only one; verification is limited per client and per writer "
                    "(429 with Retry-After); errors are `{\"error\": message}`.",
        docs_url=None,  # the interactive pages load their scripts from a CDN; /openapi.json is served
        redoc_url=None,
    )
    app.state.jobs = None if starting else (store_jobs if jobs is None else jobs)
    app.add_middleware(RequestLimits, max_mb=max_upload_mb)
    app.add_middleware(GZipMiddleware, minimum_size=_GZIP_MINIMUM_BYTES, compresslevel=6)
    app.add_middleware(HeadAsGet)
    bearer = HTTPBearer(auto_error=False, description="The enrolment token the server was started with (--token), "
                                                      "or for reading only, the read-only one (--read-token).")
    Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]

    def token_of(credentials):
        return credentials.credentials if credentials else None

    async def reader(credentials: Credentials):
        service.authorise(token_of(credentials), read=True)

    async def run(job, *args, **kwargs):
        if app.state.jobs is None:
            raise ServiceError(503, "the server is starting; try again in a moment")
        return await app.state.jobs(job, *args, **kwargs)

    def client_of(request):
        return request.client.host if request.client else "unknown"

    async def audited(request, writer, action, answer):
        """``await answer`` recorded in the audit log: what was asked, by whom, and what came of it."""
        try:
            result = await answer
        except ServiceError as error:
            if audit is not None:
                audit.record(client_of(request), writer, action, error.status, error=error.message)
            raise
        except TooManyRequests as error:
            if audit is not None:
                audit.record(client_of(request), writer, action, 429, error=error.message)
            raise
        if audit is not None:
            references = result.get("added", result.get("removed"))
            audit.record(client_of(request), result.get("writer", writer), action, 200, verdict=result.get("verdict"),
                         score=result.get("score"), references=references)
        return result

    @app.exception_handler(ServiceError)
    async def service_error(request, error):
        headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
        if error.status == 503:
            headers = {"Retry-After": str(_STARTING_RETRY_SECONDS)}
        return _error_response(error.status, error.message, headers)

    @app.exception_handler(TooManyRequests)
    async def too_many(request, error):
        return _error_response(429, error.message, {"Retry-After": str(error.retry_after)})

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, error):
        return _error_response(400, _validation_message(error))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, error):
        message = error.detail if isinstance(error.detail, str) else json.dumps(error.detail)
        if error.status_code == 400 and "parsing the body" in message:
            message = "the request body is not valid multipart form data"
        return _error_response(error.status_code, message, getattr(error, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected_error(request, error):
        _log.exception("unexpected error in %s %s", request.method, request.url.path)
        return _error_response(500, "internal error; the server's log has the details")

    @app.get("/healthz", response_model=Health, response_model_exclude_none=True, responses={503: {"model": Health}},
             tags=["service"])
    async def healthz():
        """Whether the service is ready (200) or still starting (503, its worker processes loading the
        models), its version, each loaded model's name and version (a digest of its file), and
        whether enrolment is on."""
        if app.state.jobs is None:
            return JSONResponse(service.health("starting"), status_code=503,
                                headers={"Retry-After": str(_STARTING_RETRY_SECONDS)})
        return service.health()

    @app.post("/api/speech/predict", response_model=Prediction, response_model_exclude_none=True,
              responses=_errors(400, 404, 413, 503), tags=["speech"])
    async def speech_predict(file: Annotated[UploadFile, File(description="An audio file (wav, flac, ogg)")],
                             top_k: Annotated[int, Query(ge=1, le=100)] = DEFAULT_TOP_K):
        """The label heard in an audio file, its confidence, and the ``top_k`` most likely labels."""
        return await run("predict_speech", await _upload(file), top_k=top_k)

    @app.post("/api/speech/transcribe", response_model=Transcription, responses=_errors(400, 404, 413, 503),
              tags=["speech"])
    async def speech_transcribe(file: Annotated[UploadFile, File(description="A recording of several digits")]):
        """The digit string in a recording, with each digit's start, end, label and confidence."""
        return await run("transcribe", await _upload(file))

    # Writer names may hold anything, "/" included: the routes take the rest of the path as
    # the name (the suffixes tell the routes apart), and clients percent-encode it.
    @app.get("/api/signature/writers", response_model=list[Writer], responses=_errors(401, 403, 404),
             dependencies=[Depends(reader)], tags=["signature"])
    async def signature_writers():
        """Enrolled writers and how many references each has (needs a token)."""
        return await store_jobs("writers")

    @app.post("/api/signature/writers/{writer:path}/references", response_model=Enrolment,
              responses=_errors(400, 401, 403, 404, 413, 503), tags=["signature"])
    async def signature_enrol(request: Request, writer: str, credentials: Credentials,
                              files: Annotated[list[UploadFile], File(description="Reference signature images")]):
        """Enrol reference signatures of ``writer``: all of them, or none when any one is unusable (needs the
        enrolment token)."""
        async def enrol():
            service.authorise(token_of(credentials))
            return await run("enrol", writer, [await _upload(upload) for upload in files])

        return await audited(request, writer, "enrol", enrol())

    @app.get("/api/signature/writers/{writer:path}/references", response_model=References,
             responses=_errors(400, 401, 403, 404, 503), dependencies=[Depends(reader)], tags=["signature"])
    async def signature_references(writer: str):
        """``writer``'s references in enrolment order, each with the URL of its picture (a PNG of the cleaned
        signature, at most 200 x 100 pixels), or null for one enrolled before the store kept pictures
        (needs a token)."""
        answer = await store_jobs("references", writer)
        base = f"/api/signature/writers/{quote(answer['writer'], safe='')}/references"
        return {"writer": answer["writer"], "references": [
            {"number": reference["number"], "source": reference["source"],
             "thumbnail": f"{base}/{reference['number']}/thumbnail" if reference["picture"] else None}
            for reference in answer["references"]]}

    @app.get("/api/signature/writers/{writer:path}/references/{number}/thumbnail",
             response_class=Response, responses={200: {"content": {"image/png": {}}}, **_errors(400, 401, 403, 404, 503)},
             dependencies=[Depends(reader)], tags=["signature"])
    async def signature_thumbnail(writer: str, number: Annotated[int, PathParameter(ge=1)]):
        """The picture of ``writer``'s reference ``number`` (from 1, in enrolment order): a small PNG (needs a
        token)."""
        picture = await store_jobs("thumbnail", writer, number)
        # A writer removed and enrolled again reuses the numbers, and the picture is private:
        # never kept by a shared cache, never answered from the browser's unchecked.
        return Response(picture, media_type="image/png", headers={"Cache-Control": "private, no-cache"})

    @app.delete("/api/signature/writers/{writer:path}", response_model=Removal,
                responses=_errors(400, 401, 403, 404, 503), tags=["signature"])
    async def signature_remove(request: Request, writer: str, credentials: Credentials):
        """Forget ``writer`` and all their references (needs the enrolment token)."""
        async def remove():
            service.authorise(token_of(credentials))
            return await store_jobs("remove", writer)

        return await audited(request, writer, "remove", remove())

    @app.post("/api/signature/writers/{writer:path}/verify", response_model=Verification,
              response_model_exclude_none=True, responses=_errors(400, 404, 413, 429, 501, 503), tags=["signature"])
    async def signature_verify(request: Request, writer: str,
                               file: Annotated[UploadFile, File(description="The signature image to check")],
                               mode: Literal["independent", "dependent"] = "independent",
                               explain: bool = False):
        """Whether a signature image is ``writer``'s: the verdict, its score and the threshold.

        With ``explain``, also why: the regions and feature groups that departed most from the
        references, and a picture of them beside the nearest reference (a PNG data URL).
        Verifications are limited per client and per writer: beyond, 429 with ``Retry-After``.
        """
        async def verify():
            if limits is not None:
                limits.check(client_of(request), check_writer(writer))
            return await run("verify", writer, await _upload(file), mode=mode, explain=explain)

        return await audited(request, writer, "verify", verify())

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def set_ready(app, jobs):
    """The app made with ``starting`` is ready: its jobs run with ``jobs`` from now on."""
    app.state.jobs = jobs
