"""Running the app: load the models, bind the address, serve with uvicorn until interrupted or terminated.

The server answers as soon as it listens: while its worker processes load the models,
``/healthz`` says "starting" (503) and the jobs answer 503; then "ready". SIGINT (Ctrl-C) and
SIGTERM (what systemd, Docker and Kubernetes send) both stop it cleanly at any moment: the
workers and the multiprocessing resource tracker end, and the upload folder is removed.
"""

import contextlib
import json
import signal
import socket
import threading

from inkvoice.core.errors import ParameterError
from inkvoice.serve.guard import DEFAULT_CLIENT_LIMIT, DEFAULT_WRITER_LIMIT
from inkvoice.serve.service import DEFAULT_HOST, DEFAULT_MAX_UPLOAD_MB, DEFAULT_PORT

# The signals that stop the server: while it is one thread they end as KeyboardInterrupt does;
# from the moment other threads run they only ask it to stop (see ``_StopRequest``).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _need_extra():
    try:
        import fastapi  # noqa: F401
        import python_multipart  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as error:
        raise ParameterError(
            f"the server needs the 'serve' extra ({error.name} is missing): pip install 'inkvoice[serve]'"
        ) from None


def bind(host, port):
    """A listening socket on ``host``:``port`` (port 0: a free one), refused with one clear line."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Answers go out at once: with Nagle's algorithm a response written in two parts waits
        # for the client's delayed acknowledgement, 40 ms on Linux. Accepted sockets inherit it.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
    except OSError as error:
        raise ParameterError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    sock.listen(2048)
    return sock


def json_protocol():
    """uvicorn's HTTP/1.1 protocol, answering a request it cannot parse with the API's JSON error body.

    The app never sees such a request (a broken request line or header, a header too large):
    uvicorn answers it itself, in plain text, unless told otherwise here.
    """
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class JsonErrorProtocol(H11Protocol):
        def send_400_response(self, msg):
            body = json.dumps({"error": "the request is not valid HTTP/1.1"}).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                       (b"connection", b"close")]
            for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"), h11.Data(data=body),
                          h11.EndOfMessage()):
                self.transport.write(self.conn.send(event))
            self.transport.close()

    return JsonErrorProtocol


@contextlib.contextmanager
def _stop_signals(handler):
    """The stop signals handled by ``handler`` for the duration of the block."""
    previous = {number: signal.signal(number, handler) for number in STOP_SIGNALS}
    try:
        yield
    finally:
        for number, handler_before in previous.items():
            signal.signal(number, handler_before)


def _signals_interrupt():
    """SIGTERM raises KeyboardInterrupt as SIGINT does, so that both end through the same clean-up
    (while the server is still one thread, loading the models)."""
    return _stop_signals(signal.default_int_handler)


class _StopRequest:
    """A stop signal's handler once threads run: it asks the server, the start of the workers and
    the caller to stop, and raises nothing.

    An exception raised by a signal handler lands wherever the main thread happens to be: inside
    an import another thread waits for (a module lock left held, a deadlock), inside an event
    loop's finaliser (a traceback). So from the moment the starting thread runs, a signal only
    sets flags the main thread and uvicorn look at. A second Ctrl-C skips the graceful wait for
    open connections, as it does in uvicorn.
    """

    def __init__(self, server, stop_starting):
        self.server = server
        self.stop_starting = stop_starting
        self.asked = threading.Event()

    def __call__(self, number, frame):
        if self.asked.is_set() and number == signal.SIGINT:
            self.server.force_exit = True
        self.asked.set()
        self.stop_starting.set()
        self.server.should_exit = True


def _uninterrupted():
    """Stop signals held back while cleaning up: a second Ctrl-C must not cut the clean-up short."""
    return _stop_signals(signal.SIG_IGN)


def run(host=DEFAULT_HOST, port=DEFAULT_PORT, speech_model=None, signature_model=None, store=None, token=None,
        max_upload_mb=DEFAULT_MAX_UPLOAD_MB, test_copies=None, busy_seconds=None, workers=None, read_token=None,
        client_limit=DEFAULT_CLIENT_LIMIT, writer_limit=DEFAULT_WRITER_LIMIT, audit_log=None, announce=print):
    """Serve until interrupted (SIGINT) or terminated (SIGTERM); ``announce`` receives the lines that
    give the page's address and say when the server is ready.

    The jobs run in ``workers`` processes, each with its own copy of the models (default: one
    per core, see :func:`inkvoice.serve.workers.default_workers`); 0 runs them on this
    process's threads. ``client_limit`` and ``writer_limit`` are verifications per hour per
    client address and per writer (0: no limit); ``audit_log`` is the path of the audit log
    (JSON lines), or None for none. Returns normally when stopped by either signal.
    """
    with _signals_interrupt():
        try:
            _run(host, port, speech_model, signature_model, store, token, max_upload_mb, test_copies, busy_seconds,
                 workers, read_token, client_limit, writer_limit, audit_log, announce)
        except KeyboardInterrupt:
            pass  # everything has been stopped and removed: stopping is the normal end of a server


def _run(host, port, speech_model, signature_model, store, token, max_upload_mb, test_copies, busy_seconds, workers,
         read_token, client_limit, writer_limit, audit_log, announce):
    _need_extra()
    import uvicorn
    from threadpoolctl import threadpool_limits

    from inkvoice.serve.app import create_app, set_ready
    from inkvoice.serve.guard import AuditLog, VerificationLimits
    from inkvoice.serve.service import Service
    from inkvoice.serve.workers import InProcess, WorkerPool, default_workers

    workers = default_workers() if workers is None else int(workers)
    # Requests are the parallelism: BLAS threads on each request's small products only compete.
    threadpool_limits(limits=1, user_api="blas")
    settings = {"speech_model": None if speech_model is None else str(speech_model),
                "signature_model": None if signature_model is None else str(signature_model),
                "store": None if store is None else str(store), "token": token, "read_token": read_token,
                "test_copies": test_copies, "busy_seconds": busy_seconds}
    sock = service = audit = starter = None
    stop_starting = threading.Event()
    started = {}  # what the starting thread made: "pool", or "error"
    try:
        sock = bind(host, port)  # first, so a taken port is reported before the models load
        limits = VerificationLimits(client_limit, writer_limit)
        audit = AuditLog(audit_log) if audit_log is not None else None
        service = Service(**settings)  # checks the models and the store now, whatever runs the jobs
        app = create_app(service, max_upload_mb, limits=limits, audit=audit, starting=True)
        config = uvicorn.Config(app, log_level="info", timeout_graceful_shutdown=5, http=json_protocol())
        server = uvicorn.Server(config)
        running = f"{workers} worker process{'es' if workers != 1 else ''}" if workers else "this process"

        def start_jobs():
            try:
                if workers:
                    # The workers' upload folders inside this process's, which goes when the server stops.
                    started["pool"] = WorkerPool({**settings, "upload_folder": str(service.upload_folder)}, workers,
                                                 stop=stop_starting)
                    jobs = started["pool"]
                else:
                    service.warm_up()
                    jobs = InProcess(service)
            except BaseException as error:  # noqa: B036 - reported by the serving thread
                started["error"] = error
                server.should_exit = True
                return
            set_ready(app, jobs)
            announce(f"ready: {running} answer{'s' if not workers or workers == 1 else ''}; Ctrl-C stops")

        bound_host, bound_port = sock.getsockname()[:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        announce(f"serving {' and '.join(service.models)} on http://{shown}:{bound_port}/ (API schema at "
                 f"/openapi.json); starting {running}: /healthz answers 503 until ready")
        stop_request = _StopRequest(server, stop_starting)
        # Replaced for good (``run`` puts the handlers it found back at the end): the clean-up
        # below holds the signals back itself, so there is no moment for one to raise.
        for number in STOP_SIGNALS:
            signal.signal(number, stop_request)
        starter = threading.Thread(target=start_jobs, name="inkvoice-start", daemon=True)
        starter.start()
        server.run(sockets=[sock])  # uvicorn handles the signals while it serves, then passes them on
        if isinstance(started.get("error"), Exception) and not stop_request.asked.is_set():
            raise started["error"]
    finally:
        with _uninterrupted():
            stop_starting.set()
            if starter is not None:
                starter.join()
            if sock is not None:
                sock.close()
            if started.get("pool") is not None:
                started["pool"].close()
            if service is not None:
                service.close()
            if audit is not None:
                audit.close()
