"""Feature extraction over many files: parallel over the machine's cores, with a disk cache.

Both pipelines turn files into fixed-length feature vectors with a pure function of
(file, parameters). This module runs such a function over a list of files, in worker
processes, and remembers each result under a key made of the file's content and the
parameters, so a re-run on the same data reads the cache instead of recomputing.

A re-run on a whole unchanged data set takes a faster path still: loading one small file per
clip costs about as much as computing short features, so the results of a whole list are also
kept together, keyed by the contents of all its files in order. Entries are checked before
use (a damaged or planted entry is a miss, never an answer), and the least recently used are
removed when the cache outgrows its limit.
"""

import contextlib
import hashlib
import hmac
import json
import math
import os
import secrets
import stat
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inkvoice.core.errors import DataError, ParameterError, ProjectError
from inkvoice.core.files import read_input_bytes


CACHE_FORMAT = 1
# Largest total size of the feature cache before the least recently used entries are removed.
DEFAULT_CACHE_LIMIT = 2 * 10**9
CACHE_LIMIT_VARIABLE = "INKVOICE_CACHE_LIMIT"
# Features live under this subfolder of the cache folder (downloads have their own).
FEATURES_FOLDER = "features"
_ENTRY_SUFFIX = ".entry"
_MAGIC = b"INKVOICE-FEATURES\n"
_MAX_ENTRY_BYTES = 512 * 2**20
_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}


def default_cache_dir():
    """The cache folder: ``$INKVOICE_CACHE``, else ``$XDG_CACHE_HOME/inkvoice`` or ``~/.cache/inkvoice``.

    Features are kept in its ``features/`` subfolder.
    """
    configured = os.environ.get("INKVOICE_CACHE")
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "inkvoice"


def cache_limit():
    """The feature cache's size limit in bytes: ``$INKVOICE_CACHE_LIMIT`` (``500M``, ``2G``, ...) or 2 GB."""
    text = os.environ.get(CACHE_LIMIT_VARIABLE, "").strip()
    if not text:
        return DEFAULT_CACHE_LIMIT
    number, unit = text.rstrip("bB").rstrip("iI"), ""
    if number and number[-1].lower() in _UNITS:
        number, unit = number[:-1], number[-1].lower()
    try:
        value = float(number) * _UNITS[unit]
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise ParameterError(f"{CACHE_LIMIT_VARIABLE} must be a size such as 500M or 2G; got {text!r}")
    return int(value)


def parameters_digest(parameters):
    """A short stable digest of a JSON-able parameter dict (part of every cache key)."""
    text = json.dumps(parameters, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class FeatureCache:
    """Feature vectors on disk, keyed by file content and extraction parameters.

    Cached features never change an answer: every entry carries a keyed digest of its bytes
    (the key is a random secret kept in the cache folder, readable by its owner only), the
    content key it was stored under, the digest of its parameters (which include the
    pipelines' feature version), its dtype and shape; an entry that fails any check, holds
    a non-finite value or differs in shape from the parameters' other entries is a miss, and
    is recomputed and overwritten.

    Parameters
    ----------
    folder : path-like or None
        The cache folder (entries go under its ``features/``); None disables the cache.
    parameters : dict
        Everything that changes the features; a different dict never shares entries.
    """

    def __init__(self, folder, parameters):
        self.digest = parameters_digest(parameters)
        self.root = None if folder is None else Path(folder) / FEATURES_FOLDER
        self.folder = None if folder is None else self.root / self.digest
        self._secret = None
        self._shape = None
        self.written = 0

    def key(self, path):
        """The content key of ``path``: the SHA-256 of its bytes.

        Raises DataError when ``path`` is not a regular file of bounded size (a FIFO or device is
        refused without being read).
        """
        return hashlib.sha256(read_input_bytes(path, what="input file")).hexdigest()

    def set_key(self, keys):
        """The key of a whole list of files from their content keys (order matters)."""
        return hashlib.sha256("\n".join(keys).encode()).hexdigest()

    def get(self, key):
        """The cached array for content key ``key``, or None when absent or failing a check."""
        if self.folder is None:
            return None
        return self._load(self._entry(key), key, self._expected_shape())

    def put(self, key, array):
        """Store ``array`` under ``key``; a cache that cannot be written is skipped, not fatal."""
        array = np.asarray(array)
        if self.folder is None or not _cacheable(array):
            return
        if self._expected_shape() is None:
            self._shape = array.shape
            self._write(self.folder / "shape.entry", np.asarray(array.shape, dtype=np.int64), "shape")
        if self.folder is not None and array.shape == self._shape:
            self._write(self._entry(key), array, key)

    def get_set(self, keys):
        """The stacked results of the files with content ``keys`` when this exact list was cached."""
        if self.folder is None or self._expected_shape() is None:
            return None
        key = self.set_key(keys)
        return self._load(self.folder / "sets" / f"{key}{_ENTRY_SUFFIX}", key, (len(keys), *self._shape))

    def put_set(self, keys, arrays):
        """Keep the results of the files with content ``keys`` together (only when all share a shape)."""
        if self.folder is None or not arrays or len({np.shape(a) for a in arrays}) != 1:
            return
        stacked = np.stack(arrays)
        if _cacheable(stacked) and stacked.shape[1:] == self._expected_shape():
            key = self.set_key(keys)
            self._write(self.folder / "sets" / f"{key}{_ENTRY_SUFFIX}", stacked, key)

    def _entry(self, key):
        return self.folder / key[:2] / f"{key}{_ENTRY_SUFFIX}"

    def _expected_shape(self):
        if self._shape is None and self.folder is not None:
            shape = self._load(self.folder / "shape.entry", "shape", None)
            if shape is not None and shape.ndim == 1 and np.all(shape >= 0):
                self._shape = tuple(int(n) for n in shape)
        return self._shape

    def _key(self):
        if self._secret is None:
            self._secret = _cache_secret(self.root)
        return self._secret

    def _mac(self, header, payload):
        return hmac.new(self._key(), header + b"\n" + payload, hashlib.sha256).hexdigest().encode()

    def _load(self, target, source, shape):
        """The array in entry ``target`` if it passes every check, else None (a miss)."""
        try:
            data = read_input_bytes(target, _MAX_ENTRY_BYTES, "cache entry")
            if not data.startswith(_MAGIC):
                return None
            mac, header, payload = data[len(_MAGIC) :].split(b"\n", 2)
            if not hmac.compare_digest(mac, self._mac(header, payload)):
                return None
            fields = json.loads(header)
            dtype = np.dtype(fields["dtype"])
            stored_shape = tuple(fields["shape"])
            if (fields["format"] != CACHE_FORMAT or fields["parameters"] != self.digest or fields["source"] != source
                    or dtype.kind not in "fi" or dtype.hasobject or (shape is not None and stored_shape != shape)
                    or not all(isinstance(n, int) and n >= 0 for n in stored_shape)
                    or math.prod(stored_shape) * dtype.itemsize != len(payload)):
                return None
            array = np.frombuffer(bytearray(payload), dtype=dtype).reshape(stored_shape)
        except (ProjectError, ValueError, TypeError, KeyError, OSError):
            return None
        if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
            return None
        with contextlib.suppress(OSError):
            os.utime(target)  # most recently used: kept longest when the cache is over its limit
        return array

    def _write(self, target, array, source):
        array = np.ascontiguousarray(array)
        payload = array.tobytes()
        header = json.dumps({"format": CACHE_FORMAT, "parameters": self.digest, "source": source,
                             "dtype": array.dtype.str, "shape": list(array.shape)}, sort_keys=True).encode()
        temporary = target.with_name(f".{target.name}.{os.getpid()}.part")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(temporary, "wb") as handle:
                handle.write(_MAGIC + self._mac(header, payload) + b"\n" + header + b"\n" + payload)
            os.replace(temporary, target)
            self.written += len(payload)
        except OSError:
            with contextlib.suppress(OSError):
                temporary.unlink()
            self.folder = None  # read-only or full disk: carry on without a cache


def _cacheable(array):
    return array.dtype.kind == "f" and array.ndim >= 1 and bool(np.all(np.isfinite(array)))


def _cache_secret(root):
    """The random key of the cache's entry digests, made on first use, readable by its owner only."""
    path = root / ".key"
    try:
        root.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(handle, "wb") as stream:
                stream.write(secrets.token_bytes(32))
        secret = read_input_bytes(path, 1024, "cache key")
    except (OSError, ProjectError):
        secret = b""
    # An unreadable or empty key still checks every entry against damage, not against planting.
    return secret if len(secret) == 32 else b"inkvoice-no-key"


@dataclass(frozen=True)
class CacheUsage:
    """What the feature cache holds: its folder, entries, bytes and size limit.

    ``old_files``/``old_bytes`` count features left by earlier versions, which are never read
    again and go with :func:`clear_cache`.
    """

    folder: Path
    entries: int
    bytes: int
    limit: int
    old_files: int = 0
    old_bytes: int = 0


_HEX = frozenset("0123456789abcdef")
_OLD_MAGIC = b"\x93NUMPY"


def _hex(text, length):
    return len(text) == length and set(text) <= _HEX


def _own_name(relative):
    """The marker an entry at ``relative`` (parts under a features root) begins with, if the name is the cache's.

    The cache's layout: ``<16 hex>/shape.entry``, ``<16 hex>/<2 hex>/<64 hex>.entry`` and
    ``<16 hex>/sets/<64 hex>.entry``, and their temporaries ``.<entry name>.<pid>.part``
    (marker ``b""``: half written); earlier versions kept ``.npy`` files in the same places,
    directly in the cache folder. None for any other name.
    """
    if len(relative) not in (2, 3) or not _hex(relative[0], 16):
        return None
    name, partial = relative[-1], False
    if name.startswith(".") and name.endswith(".part") and name.count(".") >= 3:
        name, partial = name[1:].rsplit(".", 2)[0], True
    stem, _, suffix = name.rpartition(".")
    placed = stem == "shape" if len(relative) == 2 else _hex(stem, 64) and relative[1] in ("sets", stem[:2])
    if not placed or suffix not in ("entry", "npy"):
        return None
    return b"" if partial else _MAGIC if suffix == "entry" else _OLD_MAGIC


def _cache_files(root, prefix=()):
    """(path, size, last use, marker) of every file under ``root`` named and placed as the cache's.

    ``prefix``: the folders between a features root and ``root`` (a parameter set's folder).
    What is deleted is checked for its marker too (:func:`_remove_own`), so a user's files that
    happen to sit in a folder named like the cache's are never counted or deleted.
    """
    found = []
    for folder, _, names in os.walk(root):
        parts = (*prefix, *Path(folder).relative_to(root).parts)
        for name in names:
            marker = _own_name((*parts, name))
            if marker is None:
                continue
            path = os.path.join(folder, name)
            with contextlib.suppress(OSError):
                status = os.lstat(path)
                if stat.S_ISREG(status.st_mode):
                    found.append((path, status.st_size, status.st_mtime, marker))
    return found


def _begins(path, marker):
    """Whether the file ``path`` begins with ``marker``."""
    try:
        with open(path, "rb") as handle:
            return handle.read(len(marker)) == marker
    except OSError:
        return False


def _remove_own(path, marker):
    """Delete the cache file ``path`` if it still begins with ``marker``; whether it was deleted."""
    if not _begins(path, marker):
        return False
    with contextlib.suppress(OSError):
        os.unlink(path)
        return True
    return False


def _old_feature_folders(base):
    # Earlier versions kept features directly in the cache folder, one 16-hex-digit folder per parameter set.
    try:
        return [child for child in Path(base).iterdir() if child.is_dir() and not child.is_symlink()
                and _hex(child.name, 16)]
    except OSError:
        return []


def _remove_emptied_folders(paths, root):
    """Remove the folders of the deleted ``paths`` that are now empty, up to and including ``root``."""
    folders = {Path(path).parent for path in paths}
    folders |= {parent for folder in folders for parent in folder.parents if parent.is_relative_to(root)}
    for folder in sorted(folders, key=lambda folder: -len(folder.parts)):
        with contextlib.suppress(OSError):
            folder.rmdir()  # only when empty: whatever else is there stays


def cache_usage(cache_dir=None):
    """Entries and bytes of the feature cache in ``cache_dir`` (default: :func:`default_cache_dir`)."""
    base = Path(cache_dir if cache_dir is not None else default_cache_dir())
    files = [(path, size) for path, size, _, marker in _cache_files(base / FEATURES_FOLDER)
             if path.endswith(_ENTRY_SUFFIX) and _begins(path, marker)]
    old = [(path, size) for folder in _old_feature_folders(base)
           for path, size, _, marker in _cache_files(folder, (folder.name,)) if _begins(path, marker)]
    return CacheUsage(base / FEATURES_FOLDER, len(files), sum(item[1] for item in files), cache_limit(),
                      len(old), sum(item[1] for item in old))


def clear_cache(cache_dir=None):
    """Delete every cached feature in ``cache_dir``; returns (files removed, bytes freed).

    Only what the cache made is deleted (files of its layout that begin with its own marker),
    and then the folders this leaves empty: a user's files that happen to sit in a folder
    named like the cache's stay, as do downloaded data sets and the cache's key.
    """
    base = Path(cache_dir if cache_dir is not None else default_cache_dir())
    removed = freed = 0
    for root in [base / FEATURES_FOLDER, *_old_feature_folders(base)]:
        prefix = () if root == base / FEATURES_FOLDER else (root.name,)
        deleted = []
        for path, size, _, marker in _cache_files(root, prefix):
            if _remove_own(path, marker):
                deleted.append(path)
                freed += size
        removed += len(deleted)
        _remove_emptied_folders(deleted, root)
    return removed, freed


def enforce_cache_limit(cache_dir, limit=None):
    """Remove the least recently used feature entries until the cache is under ``limit`` bytes.

    The cache is trimmed to 90% of the limit, so that it is not scanned again at every run.
    Only the cache's own files count and go. Returns the bytes freed.
    """
    limit = cache_limit() if limit is None else limit
    files = _cache_files(Path(cache_dir) / FEATURES_FOLDER)
    total = sum(item[1] for item in files)
    if total <= limit:
        return 0
    freed = 0
    for path, size, _, marker in sorted(files, key=lambda item: item[2]):
        if total - freed <= 0.9 * limit:
            break
        if _remove_own(path, marker):
            freed += size
    return freed


def _run_one(job):
    function, path, parameters = job
    try:
        features = function(path, **parameters)
    except ProjectError as error:
        return error
    if isinstance(features, np.ndarray) and features.dtype.kind in "fc" and not np.all(np.isfinite(features)):
        # Caught here, where the file is known, rather than as "X contains NaN" in a batch.
        return DataError(f"{path}: its features hold NaN or infinite values, so the file cannot be used")
    return features


def _run_chunk(jobs):
    return [_run_one(job) for job in jobs]


def _run_chunk_in_worker(jobs):
    """:func:`_run_chunk` in a worker process, with one BLAS thread: the workers already hold
    every core, and BLAS threads on top of them spin waiting for a core (see core.threads)."""
    from inkvoice.core.threads import blas_threads

    with blas_threads(1):
        return _run_chunk(jobs)


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
    results = [None] * len(paths)
    keys = [None] * len(paths)
    limit = cache_limit() if cache.folder is not None else None  # a bad setting fails before the work
    if cache.folder is not None:
        for index, path in enumerate(paths):
            try:
                keys[index] = cache.key(path)
            except ProjectError as error:
                results[index] = error  # not a regular file, or too large: refused without reading
        if all(keys):
            stacked = cache.get_set(keys)
            if stacked is not None:
                if progress is not None:
                    progress(len(paths))
                return list(stacked)
        for index, key in enumerate(keys):
            if key is not None:
                results[index] = cache.get(key)
    pending = [index for index, result in enumerate(results) if result is None]
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
            outputs = pool.map(_run_chunk_in_worker, [[(function, paths[i], parameters) for i in chunk] for chunk in chunks])
            _collect(zip(chunks, outputs), results, keys, cache, progress)
    if not any(isinstance(result, ProjectError) for result in results):
        cache.put_set(keys, results)
    if cache.written:
        enforce_cache_limit(cache_dir, limit)
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
