"""The web app of ``inkvoice serve``: the JSON API (with its OpenAPI schema) and the page, on FastAPI.

Every answer that is not a success is JSON ``{"error": message}`` with its status; unexpected
failures are logged on the server and reach the client only as "internal error".
"""

import json
import logging
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import Depends, FastAPI, File, Path as PathParameter, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from inkvoice import __version__
from inkvoice.serve.service import DEFAULT_MAX_UPLOAD_MB, DEFAULT_TOP_K, ServiceError, Upload

STATIC = Path(__file__).with_name("static")
MEGABYTE = 1 << 20
# Room for the multipart boundaries and headers around the files themselves.
_MULTIPART_SLACK = 64 * 1024
_log = logging.getLogger("inkvoice.serve")


class Error(BaseModel):
    error: str


class ModelInfo(BaseModel):
    name: str
    version: str
    labels: list[str] | None = None
    threshold: float | None = None


class Health(BaseModel):
    status: str
    version: str
    models: dict[str, ModelInfo]


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
        too_large = f"the request is larger than this server's limit of {self.max_mb:g} MB (--max-upload-mb)"
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


def create_app(service, max_upload_mb=DEFAULT_MAX_UPLOAD_MB, jobs=None):
    """The FastAPI application serving ``service`` (an :class:`inkvoice.serve.service.Service`).

    ``jobs`` runs the jobs that extract features (:mod:`inkvoice.serve.workers`: a pool of
    worker processes); by default they run on this process's threads with ``service`` itself.
    Reading and changing the store alone (writers, references, their pictures, removal) takes
    a fraction of a millisecond and always runs here, so it never queues behind feature extraction.
    """
    from inkvoice.serve.workers import InProcess

    store_jobs = InProcess(service)
    jobs = store_jobs if jobs is None else jobs
    app = FastAPI(
        title="inkvoice",
        version=__version__,
        description="Spoken digits and signature verification. Enrolment and deletion need "
                    "`Authorization: Bearer TOKEN`; errors are `{\"error\": message}`.",
        docs_url=None,  # the interactive pages load their scripts from a CDN; /openapi.json is served
        redoc_url=None,
    )
    app.add_middleware(RequestLimits, max_mb=max_upload_mb)
    bearer = HTTPBearer(auto_error=False, description="The token the server was started with (--token).")

    async def authorised(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]):
        service.authorise(credentials.credentials if credentials else None)

    @app.exception_handler(ServiceError)
    async def service_error(request, error):
        headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
        return _error_response(error.status, error.message, headers)

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

    @app.get("/healthz", response_model=Health, response_model_exclude_none=True, tags=["service"])
    async def healthz():
        """The service's version and each loaded model's name and version (a digest of its file)."""
        return service.health()

    @app.post("/api/speech/predict", response_model=Prediction, response_model_exclude_none=True,
              responses=_errors(400, 404, 413), tags=["speech"])
    async def speech_predict(file: Annotated[UploadFile, File(description="An audio file (wav, flac, ogg)")],
                             top_k: Annotated[int, Query(ge=1, le=100)] = DEFAULT_TOP_K):
        """The label heard in an audio file, its confidence, and the ``top_k`` most likely labels."""
        return await jobs("predict_speech", await _upload(file), top_k=top_k)

    @app.post("/api/speech/transcribe", response_model=Transcription, responses=_errors(400, 404, 413),
              tags=["speech"])
    async def speech_transcribe(file: Annotated[UploadFile, File(description="A recording of several digits")]):
        """The digit string in a recording, with each digit's start, end, label and confidence."""
        return await jobs("transcribe", await _upload(file))

    @app.get("/api/signature/writers", response_model=list[Writer], responses=_errors(404), tags=["signature"])
    async def signature_writers():
        """Enrolled writers and how many references each has."""
        return await store_jobs("writers")

    @app.post("/api/signature/writers/{writer}/references", response_model=Enrolment,
              responses=_errors(400, 401, 403, 404, 413, 503), dependencies=[Depends(authorised)],
              tags=["signature"])
    async def signature_enrol(writer: str,
                              files: Annotated[list[UploadFile], File(description="Reference signature images")]):
        """Enrol reference signatures of ``writer``: all of them, or none when any one is unusable."""
        return await jobs("enrol", writer, [await _upload(upload) for upload in files])

    @app.get("/api/signature/writers/{writer}/references", response_model=References,
             responses=_errors(400, 404, 503), tags=["signature"])
    async def signature_references(writer: str):
        """``writer``'s references in enrolment order, each with the URL of its picture (a PNG of the cleaned
        signature, at most 200 x 100 pixels), or null for one enrolled before the store kept pictures."""
        answer = await store_jobs("references", writer)
        base = f"/api/signature/writers/{quote(answer['writer'], safe='')}/references"
        return {"writer": answer["writer"], "references": [
            {"number": reference["number"], "source": reference["source"],
             "thumbnail": f"{base}/{reference['number']}/thumbnail" if reference["picture"] else None}
            for reference in answer["references"]]}

    @app.get("/api/signature/writers/{writer}/references/{number}/thumbnail",
             response_class=Response, responses={200: {"content": {"image/png": {}}}, **_errors(400, 404, 503)},
             tags=["signature"])
    async def signature_thumbnail(writer: str, number: Annotated[int, PathParameter(ge=1)]):
        """The picture of ``writer``'s reference ``number`` (from 1, in enrolment order): a small PNG."""
        picture = await store_jobs("thumbnail", writer, number)
        # A writer removed and enrolled again reuses the numbers: never answer from a cache unchecked.
        return Response(picture, media_type="image/png", headers={"Cache-Control": "no-cache"})

    @app.delete("/api/signature/writers/{writer}", response_model=Removal,
                responses=_errors(400, 401, 403, 404, 503), dependencies=[Depends(authorised)],
                tags=["signature"])
    async def signature_remove(writer: str):
        """Forget ``writer`` and all their references."""
        return await store_jobs("remove", writer)

    @app.post("/api/signature/writers/{writer}/verify", response_model=Verification, response_model_exclude_none=True,
              responses=_errors(400, 404, 413, 501, 503), tags=["signature"])
    async def signature_verify(writer: str,
                               file: Annotated[UploadFile, File(description="The signature image to check")],
                               mode: Literal["independent", "dependent"] = "independent",
                               explain: bool = False):
        """Whether a signature image is ``writer``'s: the verdict, its score and the threshold.

        With ``explain``, also why: the regions and feature groups that departed most from the
        references, and a picture of them beside the nearest reference (a PNG data URL).
        """
        return await jobs("verify", writer, await _upload(file), mode=mode, explain=explain)

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app

