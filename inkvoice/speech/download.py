"""Fetch a public data set archive into the cache, check its SHA-256 and unpack it safely."""

import hashlib
import json
import shutil
import tarfile
import tempfile
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

from inkvoice.core.errors import DataError, ParameterError
from inkvoice.core.extraction import default_cache_dir

# The archive of the FSDD repository's v1.0.9 tag: 2,500 recordings of 5 speakers (george,
# jackson, nicolas, theo, yweweler), the release the README's figures were measured on. Its
# SHA-256 is the one TensorFlow Datasets publishes for the same archive.
SOURCES = {
    "fsdd": {
        "url": "https://github.com/Jakobovski/free-spoken-digit-dataset/archive/v1.0.9.tar.gz",
        "sha256": "8bc44cde129d505cbbb6b365c09f80c663f2aa77578afc634e6141a2f87100c0",
        "licence": "CC BY-SA 4.0",
    }
}
CHUNK = 1 << 20
MARKER = "source.json"


def recorded_source(folder):
    """What ``folder/source.json`` says of a downloaded data set (url, sha256, licence), or None
    when it is missing or damaged (then the data set is downloaded again)."""
    try:
        recorded = json.loads((Path(folder) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(recorded, dict) or not isinstance(recorded.get("sha256"), str):
        return None
    return recorded


def datasets_dir(cache_dir=None):
    """Where downloaded data sets live: ``<cache>/datasets``."""
    return Path(cache_dir) if cache_dir is not None else default_cache_dir() / "datasets"


def _open(url):
    """A readable binary stream for an http(s) or file URL, or a local path."""
    parsed = urllib.parse.urlparse(str(url))
    if parsed.scheme in ("", "file") or (len(parsed.scheme) == 1 and str(url)[1:2] == ":"):
        path = Path(urllib.request.url2pathname(parsed.path)) if parsed.scheme == "file" else Path(str(url))
        if not path.is_file():
            raise DataError(f"{path}: no such archive")
        return open(path, "rb")
    if parsed.scheme not in ("http", "https"):
        raise ParameterError(f"url must be http(s)://, file:// or a local path; got {url!r}")
    try:
        return urllib.request.urlopen(str(url), timeout=60)
    except OSError as error:
        raise DataError(f"cannot download {url}: {error}") from None


def fetch(url, target, *, progress=None):
    """Copy ``url`` to the file ``target`` and return the SHA-256 of its bytes."""
    digest = hashlib.sha256()
    try:
        with _open(url) as source, open(target, "wb") as sink:
            while True:
                block = source.read(CHUNK)
                if not block:
                    break
                digest.update(block)
                sink.write(block)
                if progress is not None:
                    progress(len(block))
    except OSError as error:
        raise DataError(f"cannot download {url}: {error}") from None
    return digest.hexdigest()


def _safe_members(archive, destination):
    destination = destination.resolve()
    for member in archive.getmembers():
        if member.issym() or member.islnk() or member.isdev():
            continue
        if not (destination / member.name).resolve().is_relative_to(destination):
            raise DataError(f"the archive holds a path outside its folder: {member.name}")
        yield member


def unpack(archive_path, destination):
    """Unpack a .tar(.gz) or .zip archive into ``destination``, refusing paths that escape it."""
    destination = Path(destination)
    try:
        if zipfile.is_zipfile(archive_path):
            with zipfile.ZipFile(archive_path) as archive:
                for name in archive.namelist():
                    if not (destination / name).resolve().is_relative_to(destination.resolve()):
                        raise DataError(f"the archive holds a path outside its folder: {name}")
                archive.extractall(destination)
        else:
            with tarfile.open(archive_path) as archive:
                archive.extractall(destination, members=list(_safe_members(archive, destination)))
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as error:
        raise DataError(f"the downloaded file is not a readable archive: {error}") from None


def download(name="fsdd", *, url=None, sha256=None, cache_dir=None, force=False, progress=None):
    """Download and unpack a data set once; return the folder that holds its ``recordings/``.

    Parameters
    ----------
    name : {"fsdd"}
    url : str or None
        Another location of the archive (http(s)://, file:// or a local path).
    sha256 : str or None
        Expected SHA-256 of the archive (hex). Without it, the archive from the default
        location must have the pinned digest; one from ``url`` is taken as it is.
    cache_dir : path-like or None
        Folder for data sets; defaults to ``datasets/`` in the feature cache folder.
    force : bool
        Download again even when the data set is already there (it is, too, when its
        ``source.json`` is missing or damaged).

    Raises
    ------
    DataError
        Download failed, checksum mismatch, unreadable archive, or no recordings inside.
    """
    if name not in SOURCES:
        raise ParameterError(f"data set must be one of {', '.join(SOURCES)}; got {name!r}")
    source = SOURCES[name]
    expected = (sha256 or (source["sha256"] if url is None else None) or "").lower() or None
    url = url or source["url"]
    if expected is not None and (len(expected) != 64 or any(c not in "0123456789abcdef" for c in expected)):
        raise ParameterError(f"sha256 must be 64 hexadecimal digits; got {sha256!r}")
    root = datasets_dir(cache_dir)
    target = root / name
    recorded = recorded_source(target) if target.is_dir() and not force else None
    if recorded is not None and (expected is None or recorded["sha256"] == expected):
        return target
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
    try:
        archive = work / "archive"
        digest = fetch(url, archive, progress=progress)
        if expected is not None and digest != expected:
            raise DataError(f"checksum mismatch for {url}: SHA-256 {digest}, expected {expected}")
        unpacked = work / "unpacked"
        unpack(archive, unpacked)
        recordings = sorted(p for p in unpacked.rglob("recordings") if p.is_dir())
        if not recordings:
            raise DataError(f"the archive from {url} holds no recordings/ folder")
        staged = work / name
        staged.mkdir()
        shutil.move(str(recordings[0]), staged / "recordings")
        (staged / MARKER).write_text(json.dumps({"url": url, "sha256": digest, "licence": source["licence"]}))
        if target.exists():
            shutil.rmtree(target)
        staged.rename(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target
