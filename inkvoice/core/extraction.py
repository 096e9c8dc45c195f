"""Feature extraction over many files: parallel over the machine's cores, with a disk cache.

Both pipelines turn files into fixed-length feature vectors with a pure function of
(file, parameters). This module runs such a function over a list of files, in worker
processes, and remembers each result under a key made of the file's content and the
parameters, so a re-run on the same data reads the cache instead of recomputing.

A re-run on a whole unchanged data set takes a faster path still: hashing and loading one
small file per clip costs about as much as computing short features, so the results of a
whole list are also kept together, keyed by each file's path, size and modification time.
"""

import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inkvoice.core.errors import ParameterError, ProjectError


def default_cache_dir():
    """The feature cache folder: ``$INKVOICE_CACHE`` or ``~/.cache/inkvoice``."""
    configured = os.environ.get("INKVOICE_CACHE")
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "inkvoice"


def parameters_digest(parameters):
    """A short stable digest of a JSON-able parameter dict (part of every cache key)."""
    text = json.dumps(parameters, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class FeatureCache:
    """Feature vectors on disk, keyed by file content and extraction parameters.

    Parameters
    ----------
    folder : path-like or None
        Where entries live; None disables the cache (every lookup misses).
    parameters : dict
        Everything that changes the features; a different dict never shares entries.
    """

    def __init__(self, folder, parameters):
        self.folder = None if folder is None else Path(folder) / parameters_digest(parameters)

    def key(self, path):
        """The content key of ``path``: the SHA-256 of its bytes."""
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()

    def get(self, key):
        """The cached array for ``key``, or None when absent or unreadable."""
        if self.folder is None:
            return None
        return self._load(self.folder / key[:2] / f"{key}.npy")

    def set_file(self, paths):
        """Where the results of the whole list ``paths`` are kept, or None without a cache.

        Keyed by each file's absolute path, size and modification time (a stat, no reading),
        so any change to any file, or to the list, misses.
        """
        if self.folder is None:
            return None
        try:
            stats = [(os.path.abspath(p), s.st_size, s.st_mtime_ns) for p in paths for s in [os.stat(p)]]
        except OSError:
            return None  # a missing file: the per-file path reports it
        digest = hashlib.sha256(json.dumps(stats).encode()).hexdigest()
        return self.folder / "sets" / f"{digest}.npy"

    def get_set(self, paths):
        """The stacked results of ``paths`` when this exact list was extracted before, else None."""
        target = self.set_file(paths)
        if target is None or not target.is_file():
            return None
        stacked = self._load(target)
        return stacked if stacked is not None and len(stacked) == len(paths) else None

    def put_set(self, paths, arrays):
        """Keep the results of ``paths`` together (only when every file succeeded alike)."""
        target = self.set_file(paths)
        if target is not None and arrays and len({a.shape for a in arrays}) == 1:
            self._write(target, np.stack(arrays))

    @staticmethod
    def _load(target):
        try:
            return np.load(target, allow_pickle=False)
        except (OSError, ValueError):
            return None

    def put(self, key, array):
        """Store ``array`` under ``key``; a cache that cannot be written is skipped, not fatal."""
        if self.folder is not None:
            self._write(self.folder / key[:2] / f"{key}.npy", array)

    def _write(self, target, array):
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            temporary = target.with_name(f".{target.name}.{os.getpid()}.part")
            with open(temporary, "wb") as handle:
                np.save(handle, np.asarray(array), allow_pickle=False)
            os.replace(temporary, target)
        except OSError:
            self.folder = None  # read-only or full disk: carry on without a cache


def _run_one(job):
    function, path, parameters = job
    try:
        return function(path, **parameters)
    except ProjectError as error:
        return error


def _run_chunk(jobs):
    return [_run_one(job) for job in jobs]


def extract_many(function, paths, parameters, *, cache_dir=None, n_jobs=None, progress=None, chunk_size=32,
                 scheduler=None, send_files=False):
    """Apply ``function(path, **parameters)`` to every path, in parallel and through the cache.

    Parameters
    ----------
    function : callable
        A module-level function (so worker processes can import it) returning a numpy array,
        raising a ProjectError for a file it cannot use.
    paths : sequence of path-like
    parameters : dict
        Keyword arguments for ``function``; they also key the cache.
    cache_dir : path-like or None
        Cache folder; None means no cache.
    n_jobs : int or None
        Worker processes; None uses every core, 1 runs in this process.
    progress : callable or None
        Called as ``progress(n_done)`` after each finished chunk.
    scheduler : str or None
        Address of a Dask scheduler (e.g. ``tcp://10.0.0.5:8786``): the files missing from the
        cache are then extracted as tasks on its workers (see :mod:`inkvoice.core.cluster`),
        with the same results, errors and order; ``n_jobs`` is then unused.
    send_files : bool
        With ``scheduler``: send the files' bytes to the workers instead of their paths.

    Returns
    -------
    list
        One entry per path, in order: the feature array, or the ProjectError explaining
        why that file could not be used (the other files still go through).
    """
    if send_files and not scheduler:
        raise ParameterError("send_files needs a scheduler: files are only sent to a Dask cluster's workers")
    paths = [Path(p) for p in paths]
    cache = FeatureCache(cache_dir, {"function": f"{function.__module__}.{function.__qualname__}", **parameters})
    stacked = cache.get_set(paths)
    if stacked is not None:
        if progress is not None:
            progress(len(paths))
        return list(stacked)
    results = [None] * len(paths)
    keys = [None] * len(paths)
    pending = []
    for index, path in enumerate(paths):
        if cache.folder is not None:
            try:
                keys[index] = cache.key(path)
            except OSError:
                keys[index] = None
            cached = None if keys[index] is None else cache.get(keys[index])
            if cached is not None:
                results[index] = cached
                continue
        pending.append(index)
    if progress is not None and len(paths) > len(pending):
        progress(len(paths) - len(pending))

    workers = (os.cpu_count() or 1) if n_jobs is None else max(1, int(n_jobs))
    chunks = [pending[i : i + chunk_size] for i in range(0, len(pending), chunk_size)]
    if scheduler and pending:
        from inkvoice.core.cluster import run_on_cluster

        finished = run_on_cluster(_run_chunk, function, paths, pending, parameters, scheduler, send_files, chunk_size)
        _collect(finished, results, keys, cache, progress)
    elif workers == 1 or len(pending) <= chunk_size:
        outputs = (_run_chunk([(function, paths[i], parameters) for i in chunk]) for chunk in chunks)
        _collect(zip(chunks, outputs), results, keys, cache, progress)
    else:
        with ProcessPoolExecutor(max_workers=min(workers, len(chunks))) as pool:
            outputs = pool.map(_run_chunk, [[(function, paths[i], parameters) for i in chunk] for chunk in chunks])
            _collect(zip(chunks, outputs), results, keys, cache, progress)
    if not any(isinstance(result, ProjectError) for result in results):
        cache.put_set(paths, results)
    return results


def _collect(finished, results, keys, cache, progress):
    """Place each finished chunk's outputs, given as (indices, outputs) pairs, and cache them."""
    for chunk, output in finished:
        for index, value in zip(chunk, output):
            results[index] = value
            if keys[index] is not None and not isinstance(value, ProjectError):
                cache.put(keys[index], value)
        if progress is not None:
            progress(len(chunk))


@dataclass(frozen=True)
class ExtractionSettings:
    """How a command turns many files into features: how parallel, and whether through the cache.

    The CLIs build one from their shared options; the service and the benchmarks build their
    own. Every pipeline extracts through :meth:`extract`, so a new way to run extraction is
    added here once.

    Parameters
    ----------
    n_jobs : int > 0 or None
        Worker processes; None uses every core, 1 runs in this process.
    cache : bool
        Read and write the feature cache (see :func:`default_cache_dir`).
    scheduler : str or None
        Address of a Dask scheduler whose workers extract instead (see :mod:`inkvoice.core.cluster`).
    send_files : bool
        With ``scheduler``: send the files' bytes, for workers that do not share this machine's paths.
    """

    n_jobs: int | None = None
    cache: bool = True
    scheduler: str | None = None
    send_files: bool = False

    def __post_init__(self):
        if self.send_files and not self.scheduler:
            raise ParameterError("send_files needs a scheduler: files are only sent to a Dask cluster's workers")

    def extract(self, function, paths, parameters, progress=None):
        """:func:`extract_many` with these settings: one array or ProjectError per path, in order."""
        return extract_many(function, paths, parameters, cache_dir=default_cache_dir() if self.cache else None,
                            n_jobs=self.n_jobs, progress=progress, scheduler=self.scheduler,
                            send_files=self.send_files)
