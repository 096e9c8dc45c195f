"""Feature extraction as tasks on a Dask cluster, giving the answers a local run gives.

:func:`inkvoice.core.extraction.extract_many` uses this module when it is given a
scheduler address; Dask (the ``distributed`` extra) is imported here and nowhere else.

Files reach the workers in one of two ways:

- by path (the default): each task carries the absolute paths of its files, and the workers
  read them, so every worker must see the same files at the same paths (a shared file
  system). A worker that cannot see a file this machine sees stops the run with a message
  saying so, rather than reporting a missing file that is not missing;
- by content (``send_files``): this machine reads each file and sends its bytes, and the
  worker writes them, under the file's own name, into a private temporary folder.

Either way a file's error message names the file as the caller gave it, and a file that is
not a readable regular file here is handed to the feature function here, so error lines,
like results and their order, are those of a local run.
"""

import contextlib
import math
import os
import stat
import tempfile
from pathlib import Path

from inkvoice.core.errors import DependencyError, ProjectError

#: Seconds to wait for the scheduler to answer a connection.
CONNECT_TIMEOUT_SECONDS = 10
#: Seconds to wait for the cluster to have at least one worker.
WORKER_WAIT_SECONDS = 30
#: Files larger than this are not sent with ``send_files``: they are handled here instead,
#: where the feature function's own size checks refuse them before decoding.
SEND_FILES_MAX_BYTES = 256 * 2**20
#: Chunks per worker thread: enough to balance uneven files, few enough to keep the
#: per-task overhead (a few milliseconds) small beside the work.
CHUNKS_PER_THREAD = 4
#: Tasks in flight per worker thread: enough to keep every worker busy while results travel.
IN_FLIGHT_PER_THREAD = 3
#: Packages whose versions decide the features: every worker must have this machine's.
FEATURE_PACKAGES = ("inkvoice", "numpy", "scipy", "librosa", "soundfile", "scikit-image", "pillow")

_CLIENTS = {}


def _distributed():
    try:
        import distributed
    except ImportError:
        raise DependencyError(
            "running on a Dask cluster needs the distributed package: pip install 'inkvoice[distributed]'"
        ) from None
    return distributed


def connect(address):
    """A Dask client connected to the scheduler at ``address``, reused within this process.

    Raises
    ------
    ProjectError
        The scheduler cannot be reached within ``CONNECT_TIMEOUT_SECONDS``, or has had no
        worker for ``WORKER_WAIT_SECONDS``.
    DependencyError
        ``distributed`` is not installed.
    """
    distributed = _distributed()
    client = _CLIENTS.get(address)
    if client is not None and client.status == "running":
        return client
    _check_address(address)
    try:
        client = distributed.Client(address, timeout=f"{CONNECT_TIMEOUT_SECONDS}s", set_as_default=False)
    except (OSError, TimeoutError, ValueError) as error:
        raise ProjectError(f"cannot reach the Dask scheduler at {address!r}: {error}") from None
    try:
        client.wait_for_workers(1, timeout=WORKER_WAIT_SECONDS)
    except TimeoutError:
        client.close()
        raise ProjectError(
            f"the Dask scheduler at {address!r} has had no worker for {WORKER_WAIT_SECONDS} s: start workers "
            f"with `dask worker {address}`"
        ) from None
    try:
        _check_versions(client)
    except BaseException:
        client.close()
        raise
    _CLIENTS[address] = client
    return client


def package_versions():
    """The installed versions of FEATURE_PACKAGES (None for one that is missing)."""
    from importlib import metadata

    versions = {}
    for name in FEATURE_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _check_versions(client):
    """Refuse workers whose feature code differs from this machine's: their answers could too."""
    here = package_versions()
    try:
        answers = client.run(package_versions)
    except ImportError as error:
        raise ProjectError(f"the Dask workers cannot import inkvoice ({error}): install it on every worker") from None
    for worker, versions in sorted(answers.items()):
        for name, version in here.items():
            if versions.get(name) != version:
                raise ProjectError(
                    f"the Dask worker {worker} has {name} {versions.get(name) or '(not installed)'} but this machine "
                    f"has {version or '(not installed)'}: install the same versions on every worker, so that "
                    "features are computed alike"
                )


def _check_address(address):
    """Refuse what is not a scheduler address before a client is built (a half-built one hangs at exit)."""
    from distributed.comm import registry
    from distributed.comm.addressing import parse_address, parse_host_port

    try:
        scheme, location = parse_address(str(address))
        if scheme not in registry.backends:
            raise ValueError(f"unknown protocol {scheme!r} (known: {', '.join(sorted(registry.backends))})")
        if scheme in ("tcp", "tls"):
            host, port = parse_host_port(location)
            if not host or not port:
                raise ValueError("expected a host and a port")
    except ValueError as error:
        raise ProjectError(f"{address!r} is not a Dask scheduler address such as tcp://10.0.0.5:8786: {error}") from None


def close_clients():
    """Close every client this process opened (benchmarks and tests that stop their clusters)."""
    while _CLIENTS:
        _, client = _CLIENTS.popitem()
        with contextlib.suppress(Exception):
            client.close()


def run_on_cluster(run_here, function, paths, pending, parameters, address, send_files=False, chunk_size=32):
    """Run ``function`` on ``paths[i]`` for each index in ``pending`` as tasks on a cluster.

    Parameters
    ----------
    run_here : callable
        ``run_here([(function, path, parameters), ...])`` runs jobs in this process and
        returns their outputs; used for files that cannot be sent or seen from here.
    function : callable
        A module-level function importable on the workers (the same inkvoice installed there).
    paths : list of Path
    pending : list of int
        Indices into ``paths`` to extract.
    parameters : dict
    address : str
        The scheduler, e.g. ``tcp://10.0.0.5:8786``.
    send_files : bool
        Send the files' bytes instead of their paths.
    chunk_size : int > 0
        Most files in one task.

    Yields
    ------
    (indices, outputs)
        As tasks finish: indices into ``paths`` and, for each, the feature array or the
        ProjectError that a local run would give.
    """
    distributed = _distributed()
    client = connect(address)
    here, remote = [], []
    for index in pending:
        (remote if _shippable(paths[index], send_files) else here).append(index)
    if here:
        yield here, run_here([(function, paths[i], parameters) for i in here])
    if not remote:
        return
    threads = max(1, sum(client.nthreads().values()))
    size = max(1, min(chunk_size, math.ceil(len(remote) / (CHUNKS_PER_THREAD * threads))))
    waiting = [remote[start : start + size] for start in range(0, len(remote), size)][::-1]
    futures = {}

    def submit():
        chunk = waiting.pop()
        items = [_item(paths[i], send_files) for i in chunk]
        if send_files:
            # Scattered data goes straight to a worker, and the task runs where its data is.
            items = client.scatter([items], hash=False)[0]
        future = client.submit(run_items, function, items, parameters, pure=False)
        futures[future] = chunk
        return future

    # A bounded number of tasks in flight: what is read and sent for them, or held as their
    # results, stays in proportion to the cluster, not to the number of files.
    finished = distributed.as_completed([submit() for _ in range(min(len(waiting), IN_FLIGHT_PER_THREAD * threads))],
                                        loop=client.loop)
    try:
        for future in finished:
            chunk = futures.pop(future)
            try:
                outputs = future.result()
            except ImportError as error:
                raise ProjectError(
                    f"a Dask worker cannot import the feature code ({error}): install the same inkvoice on every worker"
                ) from None
            except distributed.KilledWorker as error:
                raise ProjectError(f"Dask workers died while extracting features: {error}") from None
            for index, output in zip(chunk, outputs):
                if isinstance(output, Unseen):
                    raise ProjectError(
                        f"the Dask worker {output.worker} cannot see {paths[index]} ({output.location}): workers read "
                        "files at the paths this machine gives, so share them at the same paths or pass --send-files"
                    )
            if waiting:
                finished.add(submit())
            yield chunk, outputs
    finally:
        client.cancel(list(futures))


def _shippable(path, send_files):
    """Whether ``path`` is a regular file (of at most SEND_FILES_MAX_BYTES to send) readable here."""
    try:
        status = os.stat(path)
    except OSError:
        return False
    if not stat.S_ISREG(status.st_mode) or not os.access(path, os.R_OK):
        return False
    return not send_files or status.st_size <= SEND_FILES_MAX_BYTES


def _item(path, send_files):
    """What a task needs of one file: (name given, where the worker finds it, its bytes or None)."""
    if send_files:
        return str(path), path.name, path.read_bytes()
    return str(path), os.path.abspath(path), None


class Unseen:
    """A worker's answer for a file that is not at the path this machine gave."""

    def __init__(self, worker, location):
        self.worker = worker
        self.location = location


def run_items(function, items, parameters):
    """The task a worker runs: ``function`` on each item, errors naming files as given."""
    outputs = []
    with tempfile.TemporaryDirectory(prefix="inkvoice-") as folder:
        for number, (given, location, content) in enumerate(items):
            if content is not None:
                target = Path(folder) / str(number) / location
                target.parent.mkdir()
                target.write_bytes(content)
                location = str(target)
            elif not os.path.exists(location):
                outputs.append(Unseen(_worker_address(), location))
                continue
            try:
                outputs.append(function(Path(location), **parameters))
            except ProjectError as error:
                if location != given:
                    error.args = (str(error).replace(location, given), *error.args[1:])
                outputs.append(error)
    return outputs


def _worker_address():
    with contextlib.suppress(ImportError, ValueError):
        from distributed import get_worker

        return get_worker().address
    return "?"
