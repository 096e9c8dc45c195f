"""Running the app: load the models once, bind the address, serve with uvicorn until interrupted."""

import json
import os
import socket

from inkvoice.core.errors import ParameterError
from inkvoice.serve.service import DEFAULT_HOST, DEFAULT_MAX_UPLOAD_MB, DEFAULT_PORT, Service


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
        sock.bind((host, port))
    except OSError as error:
        raise ParameterError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    sock.listen(2048)
    return sock


def run(host=DEFAULT_HOST, port=DEFAULT_PORT, speech_model=None, signature_model=None, store=None, token=None,
        max_upload_mb=DEFAULT_MAX_UPLOAD_MB, test_copies=None, busy_seconds=None, workers=1, announce=print):
    """Serve until interrupted; ``announce`` receives the line that gives the page's address.

    With ``workers`` > 1, that many processes share the listening socket, each with its own
    copy of the models: Python runs one request's feature extraction at a time per process,
    so on several cores several processes answer more requests at once.
    """
    _need_extra()
    import uvicorn
    from threadpoolctl import threadpool_limits

    from inkvoice.serve.app import SETTINGS_VARIABLE, create_app

    # Requests are the parallelism: BLAS threads on each request's small products only compete.
    threadpool_limits(limits=1, user_api="blas")
    sock = bind(host, port)  # first, so a taken port is reported before the models load
    settings = {"speech_model": None if speech_model is None else str(speech_model),
                "signature_model": None if signature_model is None else str(signature_model),
                "store": None if store is None else str(store), "token": token, "test_copies": test_copies,
                "busy_seconds": busy_seconds}
    try:
        service = Service(**settings)  # with several workers, only checks the models and the store
    except BaseException:
        sock.close()
        raise
    try:
        bound_host, bound_port = sock.getsockname()[:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        options = {"log_level": "info", "timeout_graceful_shutdown": 5}
        if workers > 1:
            service.close()
            from uvicorn.supervisors import Multiprocess

            os.environ[SETTINGS_VARIABLE] = json.dumps({**settings, "max_upload_mb": max_upload_mb})
            config = uvicorn.Config("inkvoice.serve.app:app_from_environment", factory=True, workers=workers,
                                    timeout_worker_healthcheck=120, **options)
            announce(f"serving {' and '.join(service.models)} on http://{shown}:{bound_port}/ with {workers} worker "
                     "processes (API schema at /openapi.json); Ctrl-C stops")
            Multiprocess(config, sockets=[sock]).run()
            return
        service.warm_up()
        announce(f"serving {' and '.join(service.models)} on http://{shown}:{bound_port}/ "
                 "(API schema at /openapi.json); Ctrl-C stops")
        try:
            uvicorn.Server(uvicorn.Config(create_app(service, max_upload_mb), **options)).run(sockets=[sock])
        except KeyboardInterrupt:
            pass  # uvicorn has shut down cleanly and passes the interrupt on: stopping is the normal end
    finally:
        sock.close()
        service.close()
