"""Where the jobs of the API run: worker processes, each with its own copy of the models, or this process's threads.

The server's own process only speaks HTTP: it parses requests, reads uploads and answers,
while feature extraction and scoring run in ``n_workers`` processes fed from one queue. Python
runs one thread at a time per process, so jobs on threads of the serving process would hold
up every other request's reading and answering (and each other); processes use every core and
leave the event loop free, and a shared queue keeps every worker busy whichever connection a
request came on.
"""

import asyncio
import contextlib
import logging
import os
import signal
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from inkvoice.core.errors import ProjectError
from inkvoice.serve.service import ServiceError

#: Worker processes when none are asked for: one per core this process may use, at most this many.
MAX_DEFAULT_WORKERS = 8
# How long the workers may take to load the models and warm up, in seconds.
START_SECONDS = 300
# How often a start that may be called off looks whether it is, in seconds.
_STOP_POLL_SECONDS = 0.1
# How often a worker looks whether the serving process is still there, in seconds.
_PARENT_POLL_SECONDS = 1.0
_log = logging.getLogger("inkvoice.serve")


def default_workers():
    """One worker process per core available to this process, at most ``MAX_DEFAULT_WORKERS``."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(MAX_DEFAULT_WORKERS, cores))


class InProcess:
    """Jobs run on this process's threads (``--workers 0``): least memory, one core's worth of Python."""

    def __init__(self, service):
        self.service = service

    async def __call__(self, job, *args, **kwargs):
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(getattr(self.service, job), *args, **kwargs)

    def close(self):
        pass


class WorkerPool:
    """``n_workers`` processes, each holding a :class:`inkvoice.serve.service.Service` made from ``settings``.

    Every worker has loaded the models and answered a warm-up request of each kind before the
    constructor returns. ``await pool(job, *args)`` runs ``Service.job(*args)`` in the first free
    worker; a worker that dies (killed, out of memory) costs its requests a 503, and the pool is
    started afresh for the next ones. Setting the event ``stop`` calls a start off: the workers
    are ended at once and the constructor raises :class:`StartCancelled`.
    """

    def __init__(self, settings, n_workers, stop=None):
        self.settings = dict(settings)
        self.n_workers = int(n_workers)
        self._stop = stop if stop is not None else threading.Event()
        self._executor = self._start()
        self._restarting = None  # an asyncio.Lock, made in the event loop that first needs it

    def _start(self):
        import multiprocessing
        from multiprocessing import resource_tracker

        # Spawned, not forked: the serving process runs threads, which a fork would copy mid-step.
        context = multiprocessing.get_context("spawn")
        # The workers start with Ctrl-C held back (a signal mask survives exec) until they ignore it:
        # Ctrl-C reaches the whole process group, and the serving process stops them itself. The
        # resource tracker is started first: starting it unblocks SIGINT on the thread that does,
        # which inside the block would let the workers start with Ctrl-C open.
        resource_tracker.ensure_running()
        with _sigint_blocked():
            ready = context.Barrier(self.n_workers)
            executor = ProcessPoolExecutor(self.n_workers, mp_context=context, initializer=_start_worker,
                                           initargs=(self.settings, ready))
            # n jobs that each wait for all n workers: every worker has started, loaded and warmed up.
            futures = [executor.submit(_wait, START_SECONDS) for _ in range(self.n_workers)]
        deadline = time.monotonic() + START_SECONDS + 10
        try:
            pending = futures
            while pending:
                if self._stop.is_set():
                    raise StartCancelled()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"not ready after {START_SECONDS} s")
                done, pending = wait(pending, timeout=_STOP_POLL_SECONDS, return_when=FIRST_EXCEPTION)
                for future in done:
                    future.result()
        except BaseException as error:
            _end(executor)
            if isinstance(error, Exception) and not isinstance(error, StartCancelled):
                raise ProjectError(f"the worker processes did not start: {error}") from None
            raise
        return executor

    async def __call__(self, job, *args, **kwargs):
        executor = self._executor
        try:
            return await asyncio.wrap_future(executor.submit(_run, job, args, kwargs))
        except BrokenProcessPool:
            self._restarting = self._restarting or asyncio.Lock()
            async with self._restarting:
                if executor is self._executor:  # the first request to find it broken starts it again
                    _log.error("a worker process ended unexpectedly; starting the workers again")
                    executor.shutdown(wait=False, cancel_futures=True)
                    self._executor = await asyncio.get_running_loop().run_in_executor(None, self._start)
            raise ServiceError(503, "a worker process of the server stopped; try again in a moment") from None

    def close(self):
        """Stop the workers (after the jobs they are running)."""
        self._executor.shutdown(wait=True, cancel_futures=True)


class StartCancelled(Exception):
    """The start of the worker processes was called off (the server is stopping)."""


def _end(executor):
    """End an executor's processes now, whatever they are doing, and wait for them."""
    for process in list((getattr(executor, "_processes", None) or {}).values()):
        with contextlib.suppress(OSError, ValueError):
            process.terminate()
    executor.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def _sigint_blocked():
    """SIGINT blocked on this thread, and so in the processes it starts, until the block ends."""
    if not hasattr(signal, "pthread_sigmask"):  # not on POSIX: nothing to hold back
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


_SERVICE = None
_READY = None


def _start_worker(settings, ready):
    global _SERVICE, _READY
    from multiprocessing.util import Finalize

    from threadpoolctl import threadpool_limits

    from inkvoice.serve.service import Service

    # Ctrl-C reaches the whole process group: the serving process stops the workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), name="inkvoice-parent", daemon=True).start()
    # Requests are the parallelism: BLAS threads on each request's small products only compete.
    threadpool_limits(limits=1, user_api="blas")
    _SERVICE = Service(**settings)
    _SERVICE.warm_up()
    _READY = ready
    Finalize(_SERVICE, _SERVICE.close, exitpriority=10)


def _exit_with_parent(parent):
    """End this worker once the serving process has gone without stopping it (SIGKILL, out of memory).

    Nothing else would: each worker holds both ends of the pool's queues, so it never reads an
    end of file, and would keep its copy of the models in memory for good.
    """
    while os.getppid() == parent:
        time.sleep(_PARENT_POLL_SECONDS)
    os._exit(1)


def _wait(seconds):
    _READY.wait(timeout=seconds)


def _run(job, args, kwargs):
    return getattr(_SERVICE, job)(*args, **kwargs)
