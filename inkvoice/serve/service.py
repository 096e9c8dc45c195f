"""What the server does, free of any web framework: the models loaded once, the enrolment store, one method per job.

The web app (:mod:`inkvoice.serve.app`) turns requests into calls of these methods and a
:class:`ServiceError` into a JSON answer with its status. Uploads are written to a private
temporary folder, handed to the pipelines' library functions like any file, and removed; no
answer ever names a path on the server's disk.
"""

import base64
import contextlib
import hashlib
import hmac
import os
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from inkvoice import __version__
from inkvoice.core.errors import DependencyError, ParameterError, ProjectError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
#: Largest request body accepted, in megabytes (one file, or all the references of one enrolment).
DEFAULT_MAX_UPLOAD_MB = 20
#: Labels listed with their probabilities in a speech answer.
DEFAULT_TOP_K = 3
# Everything a client can send for a file name that we keep; the rest becomes "_".
_UNSAFE_NAME = re.compile(r"[^\w. -]+")
# A store URL in a message (it may name a user, a host or a password).
_STORE_URL = re.compile(r"postgres(?:ql)?://\S+")
# A hint in brackets naming a command-line option ("(raise it with --max-seconds)"): the
# library's messages speak to the CLI's user, the service's to a client who has no options.
_OPTION_HINT = re.compile(r"\s*\([^()]*--[a-z][\w-]*[^()]*\)")


class ServiceError(Exception):
    """A request that cannot be answered: ``status`` is the HTTP status, the message is for the client."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = int(status)
        self.message = str(message)

    def __reduce__(self):  # back from a worker process with its status
        return ServiceError, (self.status, self.message)


@dataclass
class Upload:
    """One uploaded file: the name the client gave it and its bytes."""

    name: str
    content: bytes


def public_name(name, fallback="upload"):
    """A client's file name made safe to write and show: its last part, harmless characters, bounded length."""
    name = str(name or "").replace("\\", "/").split("/")[-1]
    name = _UNSAFE_NAME.sub("_", name).strip(" .")[:80]
    return name or fallback


def check_writer(writer, new=False):
    """A writer name from a URL, as the store keeps it; ServiceError 400 for an unusable name.

    ``new``: the name is to be enrolled, and must be one the service can reach (see
    :func:`inkvoice.signature.enrollment.new_writer_name`).
    """
    from inkvoice.signature.enrollment import new_writer_name, writer_name

    try:
        return new_writer_name(writer) if new else writer_name(writer)
    except ProjectError as error:
        raise ServiceError(400, str(error)) from None


def _file_version(path):
    """A short digest of a model file's bytes: two servers answer alike exactly when it matches."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


class Service:
    """The models of both pipelines, loaded once, and the jobs of the API.

    Parameters
    ----------
    speech_model : path-like or None
        A ``speech`` model file; None serves no speech endpoints (they answer 404).
    signature_model : path-like or None
        A ``signature`` model file; None serves no signature endpoints.
    store : path-like, str or None
        The enrolment store: an SQLite file or a ``postgresql://`` URL; default: the
        signature model's, as ``signature enroll`` uses it.
    token : str or None
        Bearer token that enrolment and deletion need; None turns both off. It also opens
        what ``read_token`` opens.
    read_token : str or None
        Bearer token that lists writers and shows their references' pictures, and nothing
        more; without either token those are off.
    test_copies : int or None
        Speech test-time augmentation copies (default: the model's own setting).
    busy_seconds : float > 0 or None
        How long a request waits for a store locked by another process before its answer
        is 503 (default: the store's own default).
    upload_folder : path-like or None
        Where the private folder for uploads is made (default: the system's temporary folder);
        the server gives its worker processes a folder of its own, which it removes at the end.

    Raises
    ------
    ProjectError
        A model file or the store cannot be used (checked at start, not at the first request).
    """

    def __init__(self, speech_model=None, signature_model=None, store=None, token=None, test_copies=None,
                 busy_seconds=None, upload_folder=None, read_token=None):
        if speech_model is None and signature_model is None:
            raise ParameterError("give a speech model, a signature model or both")
        self.token = token or None
        self.read_token = read_token or None
        self.test_copies = test_copies
        if busy_seconds is None:
            from inkvoice.signature.enrollment import DEFAULT_BUSY_SECONDS as busy_seconds
        self.busy_seconds = busy_seconds
        self.speech = self.verifier = None
        self.models = {}
        self._secrets = []  # (text on the server, what a client sees instead)
        if speech_model is not None:
            from inkvoice.speech.model import SpeechModel

            self.speech = SpeechModel.load(speech_model)
            self.models["speech"] = self._describe(speech_model, labels=self.speech.labels)
        if signature_model is not None:
            from inkvoice.signature.api import default_store
            from inkvoice.signature.enrollment import is_store_url, open_store
            from inkvoice.signature.model_file import load_verifier

            self.verifier, _ = load_verifier(signature_model)
            self.signature_path = Path(signature_model)
            # Explanation pictures are drawn with matplotlib's pyplot, which is not thread-safe.
            self._explaining = threading.Lock()
            self.store_location = store if store is not None else default_store(signature_model)
            self.store_is_url = is_store_url(self.store_location)
            if not self.store_is_url:
                self.store_location = Path(self.store_location)
                self._secrets.append((str(self.store_location.resolve()), "the enrolment store"))
            self._secrets.append((str(self.store_location), "the enrolment store"))
            self.models["signature"] = self._describe(signature_model, threshold=round(self.verifier.threshold, 4))
            if self.store_is_url or self.store_location.is_file():
                # A store of other feature settings, or out of reach, is refused now, not at the first request.
                open_store(self.store_location, self.verifier.feature_parameters, create=self.store_is_url,
                           busy_seconds=self.busy_seconds).close()
        self._uploads = Path(tempfile.mkdtemp(prefix="inkvoice-serve-", dir=upload_folder))
        self._secrets.append((str(self._uploads), "upload"))

    def _describe(self, path, **details):
        path = Path(path)
        for text in (str(path.resolve().parent), str(path.parent)):
            if text not in ("", "."):
                self._secrets.append((text + os.sep, ""))
        return {"name": path.name, "version": _file_version(path), **details}

    def warm_up(self):
        """Answer one made-up request of each kind, so the first client does not wait for imports.

        The first clip at another sample rate than the model's loads the resampler and the first
        image the image libraries: seconds, on a busy machine, that a client should never see.
        """
        import io

        import numpy as np

        if self.speech is not None:
            import soundfile

            rate = 2 * int(self.speech.features["sample_rate"])
            time = np.arange(rate // 2) / rate
            buffer = io.BytesIO()
            soundfile.write(buffer, (0.5 * np.sin(2 * np.pi * 440 * time)).astype(np.float32), rate, format="WAV")
            with contextlib.suppress(ServiceError):  # any answer will do: the imports are what count
                self.predict_speech(Upload("warm-up.wav", buffer.getvalue()))
        if self.verifier is not None:
            from PIL import Image

            page = np.full((120, 300), 235, dtype=np.uint8)
            page[40:80, 30:270:7] = 20
            buffer = io.BytesIO()
            Image.fromarray(page).save(buffer, format="PNG")
            with self.staged([Upload("warm-up.png", buffer.getvalue())]) as paths, contextlib.suppress(ServiceError):
                self._features(paths)

    @property
    def upload_folder(self):
        """The private folder where uploads are staged while a request needs them."""
        return self._uploads

    def close(self):
        """Remove the upload folder."""
        shutil.rmtree(self._uploads, ignore_errors=True)

    # --- plumbing ------------------------------------------------------------------------

    def public(self, message):
        """``message`` with every server path replaced by what a client may see, and no command-line option."""
        text = _OPTION_HINT.sub("", str(message))
        text = re.sub(re.escape(str(self._uploads)) + r"[/\\][^/\\]+[/\\]", "", text)
        for secret, shown in sorted(self._secrets, key=lambda pair: -len(pair[0])):
            text = text.replace(secret, shown)
        return _STORE_URL.sub("the enrolment store", text)

    @contextlib.contextmanager
    def staged(self, uploads):
        """The uploads written to this thread's private folder: yields their paths; they go afterwards.

        A thread runs one job at a time, so its folder is reused from job to job: making and
        removing a folder per request costs milliseconds on some file systems.
        """
        folder = self._uploads / f"job-{threading.get_ident()}"
        folder.mkdir(exist_ok=True)
        try:
            paths = []
            for index, upload in enumerate(uploads):
                name = public_name(upload.name, f"upload-{index + 1}")
                target = folder / name
                if target.exists():  # two uploads of one name
                    target = folder / f"{index + 1}-{name}"
                target.write_bytes(upload.content)
                paths.append(target)
            yield paths
        finally:
            for entry in os.scandir(folder):
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)

    def _need(self, pipeline):
        if pipeline == "speech" and self.speech is None:
            raise ServiceError(404, "this server has no speech model")
        if pipeline == "signature" and self.verifier is None:
            raise ServiceError(404, "this server has no signature model")

    @contextlib.contextmanager
    def _store(self, create):
        """The enrolment store, opened for one request; its own failures become 503 (busy) or 500."""
        from inkvoice.signature.enrollment import StoreBusyError, open_store

        try:
            with open_store(self.store_location, self.verifier.feature_parameters, create=create,
                            busy_seconds=self.busy_seconds) as store:
                yield store
        except StoreBusyError:
            raise ServiceError(503, "the enrolment store is busy; try again in a moment") from None
        except ProjectError as error:
            # What reaches here is the store's own failure (the jobs handle their callers' errors).
            raise ServiceError(500, f"the enrolment store cannot be used: {self.public(error)}") from None

    def _store_exists(self):
        return self.store_is_url or self.store_location.is_file()

    def _bad_file(self, error):
        return ServiceError(400, self.public(error))

    # --- jobs ------------------------------------------------------------------------------

    def health(self, status="ready"):
        """The service's ``status`` (starting or ready), version, each loaded model's name and version,
        and whether enrolment is on (the server has an enrolment token)."""
        return {"status": status, "version": __version__, "models": self.models,
                "enrolment": self.token is not None}

    def predict_speech(self, upload, top_k=DEFAULT_TOP_K):
        """The label heard in one uploaded audio file, its confidence and the ``top_k`` best labels.

        ``label`` is ``unknown`` (with a ``reason``) for sounds that are none of the model's words.
        """
        self._need("speech")
        with self.staged([upload]) as (path,):
            (record,) = self.speech.predict_files([path], top_k=top_k, test_copies=self.test_copies,
                                                  extraction=self._extraction())
        if "error" in record:
            raise self._bad_file(record["error"])
        return {**record, "file": path.name}

    def transcribe(self, upload):
        """The digit string in one uploaded recording, with each digit's start, end, label and confidence."""
        self._need("speech")
        with self.staged([upload]) as (path,):
            (record,) = self.speech.transcribe_files([path], test_copies=self.test_copies,
                                                     extraction=self._extraction())
        if "error" in record:
            raise self._bad_file(record["error"])
        return {**record, "file": path.name}

    def writers(self):
        """Enrolled writers and their reference counts."""
        self._need("signature")
        if not self._store_exists():
            return []
        with self._store(create=False) as store:
            return [{"writer": name, "references": int(count)} for name, count in store.writers()]

    def _reference_count(self, store, writer):
        count = dict(store.writers()).get(writer)
        if not count:
            raise ServiceError(404, f"writer {writer!r} is not enrolled")
        return int(count)

    def _extraction(self):
        from inkvoice.core.extraction import ExtractionSettings

        # In this process and past the cache: each upload is new, and a worker pool costs
        # more than one image takes.
        return ExtractionSettings(n_jobs=1, cache=False)

    def _features(self, paths):
        """Signature features of staged files: a list of arrays, or ServiceError 400 naming each bad file."""
        from inkvoice.signature.features import extract_files

        results = extract_files(paths, self.verifier.feature_parameters, self._extraction())
        failures = [self.public(result) for result in results if isinstance(result, ProjectError)]
        if failures:
            raise ServiceError(400, "; ".join(failures))
        return results

    def enrol(self, writer, uploads, min_references=None):
        """Add reference signatures to ``writer``: all of the uploads, or (any one unusable) none."""
        from inkvoice.signature.api import enroll_files
        from inkvoice.signature.enrollment import DEFAULT_MIN_REFERENCES, StoreBusyError, StoreDamagedError

        self._need("signature")
        writer = check_writer(writer, new=True)
        if not uploads:
            raise ServiceError(400, "no reference images: send them as multipart fields named 'files'")
        minimum = DEFAULT_MIN_REFERENCES if min_references is None else min_references
        with self.staged(uploads) as paths:
            try:
                answer = enroll_files(self.signature_path, writer, paths, self.store_location,
                                      extraction=self._extraction(), min_references=minimum, verifier=self.verifier,
                                      busy_seconds=self.busy_seconds)
            except StoreBusyError:
                raise ServiceError(503, "the enrolment store is busy; try again in a moment") from None
            except StoreDamagedError as error:
                raise ServiceError(500, f"the enrolment store cannot be used: {self.public(error)}") from None
            except ProjectError as error:
                # The store's own failures name it; the rest (too few references, ...) are the request's.
                status = 500 if str(error).startswith("enrolment store") else 400
                raise ServiceError(status, self.public(error)) from None
        if not answer["enrolled"]:
            bad = "; ".join(self.public(record["error"]) for record in answer["images"] if "error" in record)
            raise ServiceError(400, f"nothing enrolled for writer {writer!r}: {bad}")
        return {"writer": answer["writer"], "added": answer["added"], "references": answer["total"]}

    @contextlib.contextmanager
    def _enrolled(self, writer):
        """The store open for an enrolled writer: yields (the writer's stored name, the store, their reference count).

        ServiceError 400 for an unusable name, 404 for a writer who is not enrolled.
        """
        self._need("signature")
        writer = check_writer(writer)
        if not self._store_exists():
            raise ServiceError(404, f"writer {writer!r} is not enrolled")
        with self._store(create=False) as store:
            yield writer, store, self._reference_count(store, writer)

    def references(self, writer):
        """``writer``'s references in enrolment order: each one's number (from 1), file name and whether its picture is kept."""
        with self._enrolled(writer) as (writer, store, _):
            rows = store.thumbnails_of(writer)
        return {"writer": writer,
                "references": [{"number": number, "source": source, "picture": thumbnail is not None}
                               for number, (source, thumbnail) in enumerate(rows, start=1)]}

    def thumbnail(self, writer, number):
        """The picture (PNG bytes) kept of ``writer``'s reference ``number`` (counted from 1 in enrolment order)."""
        with self._enrolled(writer) as (writer, store, count):
            if not 1 <= number <= count:
                raise ServiceError(404, f"writer {writer!r} has {count} references; there is no reference {number}")
            source, thumbnail = store.thumbnails_of(writer)[number - 1]
        if thumbnail is None:
            raise ServiceError(404, f"no picture is kept of reference {number} of writer {writer!r} ({source}): it "
                                    "was enrolled before the store kept pictures; enrol it again to see one")
        return thumbnail

    def remove(self, writer):
        """Forget ``writer`` and their references."""
        with self._enrolled(writer) as (writer, store, _):
            removed = store.remove(writer)
        return {"writer": writer, "removed": int(removed)}

    def verify(self, writer, upload, mode="independent", explain=False):
        """Whether one uploaded signature is ``writer``'s: verdict, score and the threshold it was held to.

        With ``explain``, the answer also holds the explanation of the verdict, its picture
        as a PNG data URL.
        """
        from inkvoice.signature.api import verify_features
        from inkvoice.signature.verifier import MODES

        if mode not in MODES:
            raise ServiceError(400, f"mode must be one of {', '.join(MODES)}; got {mode!r}")
        with self._enrolled(writer) as (writer, store, count):
            references = store.references(writer)
            pictures = [thumbnail for _, thumbnail in store.thumbnails_of(writer)] if explain else None
        with self.staged([upload]) as (path,):
            results = self._features([path])
            explanations = path.parent / "explanations" if explain else None
            try:
                with self._explaining if explain else contextlib.nullcontext():
                    (record,) = verify_features(self.verifier, [path], results, references, mode=mode,
                                                explain=explanations, reference_pictures=pictures)
            except DependencyError as error:
                raise ServiceError(501, f"explanations are not available on this server: {error}") from None
            except ProjectError as error:
                raise self._bad_file(error) from None
            answer = {
                "writer": writer,
                "file": path.name,
                "genuine": record["verdict"] == "genuine",
                "verdict": record["verdict"],
                "score": record["score"],
                "threshold": record["threshold"],
                "mode": mode,
                "references": count,
            }
            if "reason" in record:
                answer["reason"] = record["reason"]
            if explain:
                explanation = dict(record["explanation"])
                picture = Path(explanation.pop("png")).read_bytes()
                answer["explanation"] = {"image": "data:image/png;base64," + base64.b64encode(picture).decode(),
                                         **explanation}
        return answer

    def authorise(self, token, read=False):
        """Check a bearer token: 401 without one, 403 for a wrong one or when the server has none.

        ``read``: for listing writers and their references' pictures, which the read-only
        token opens too; otherwise for enrolment and deletion, which only the enrolment token opens.
        """
        tokens = [self.token, self.read_token] if read else [self.token]
        tokens = [known for known in tokens if known is not None]
        if not tokens:
            raise ServiceError(403, "the list of writers and their references are private on this server, which has "
                                    "no token to open them" if read else
                                    "enrolment and removal are turned off on this server (it has no enrolment token)")
        if not token:
            raise ServiceError(401, "this needs the header 'Authorization: Bearer TOKEN'")
        # Every token is compared, so that the time taken does not tell which one came close.
        matches = [hmac.compare_digest(str(token).encode(), known.encode()) for known in tokens]
        if not any(matches):
            raise ServiceError(403, "the token is wrong")
