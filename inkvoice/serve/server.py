"""Running the app: load the models once, bind the address, serve with uvicorn until interrupted."""

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
        # Answers go out at once: with Nagle's algorithm a response written in two parts waits
        # for the client's delayed acknowledgement, 40 ms on Linux. Accepted sockets inherit it.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
    except OSError as error:
        raise ParameterError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    sock.listen(2048)
    return sock


def run(host=DEFAULT_HOST, port=DEFAULT_PORT, speech_model=None, signature_model=None, store=None, token=None,
        max_upload_mb=DEFAULT_MAX_UPLOAD_MB, test_copies=None, busy_seconds=None, workers=None, announce=print):
    """Serve until interrupted; ``announce`` receives the line that gives the page's address.

    The jobs run in ``workers`` processes, each with its own copy of the models (default: one
    per core, see :func:`inkvoice.serve.workers.default_workers`); 0 runs them on this
    process's threads.
    """
    _need_extra()
    import uvicorn
    from threadpoolctl import threadpool_limits

    from inkvoice.serve.app import create_app
    from inkvoice.serve.workers import WorkerPool, default_workers

    workers = default_workers() if workers is None else int(workers)
    # Requests are the parallelism: BLAS threads on each request's small products only compete.
    threadpool_limits(limits=1, user_api="blas")
    sock = bind(host, port)  # first, so a taken port is reported before the models load
    settings = {"speech_model": None if speech_model is None else str(speech_model),
                "signature_model": None if signature_model is None else str(signature_model),
                "store": None if store is None else str(store), "token": token, "test_copies": test_copies,
                "busy_seconds": busy_seconds}
    service = pool = None
    try:
        service = Service(**settings)  # checks the models and the store now, whatever runs the jobs
        if workers:
            # The workers' upload folders inside this process's, which goes when the server stops.
            pool = WorkerPool({**settings, "upload_folder": str(service.upload_folder)}, workers)
        else:
            service.warm_up()
        bound_host, bound_port = sock.getsockname()[:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        running = f"{workers} worker process{'es' if workers != 1 else ''}" if workers else "this process"
        announce(f"serving {' and '.join(service.models)} on http://{shown}:{bound_port}/ with {running} "
                 "(API schema at /openapi.json); Ctrl-C stops")
        config = uvicorn.Config(create_app(service, max_upload_mb, jobs=pool), log_level="info",
                                timeout_graceful_shutdown=5)
        try:
            uvicorn.Server(config).run(sockets=[sock])
        except KeyboardInterrupt:
            pass  # uvicorn has shut down cleanly and passes the interrupt on: stopping is the normal end
    finally:
        sock.close()
        if pool is not None:
            pool.close()
        if service is not None:
            service.close()
