"""Safe files: inputs that are regular files of bounded size, outputs checked before the work
and written to a temporary name beside the target, then renamed into place."""

import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path

from inkvoice.core.errors import DataError, OutputError

# The largest input file read (audio clip, signature image, model file): far above any real one,
# small enough that a wrong or hostile file cannot fill memory or take minutes to hash.
DEFAULT_MAX_INPUT_BYTES = 256 * 2**20
# Free space and file-size limit an output needs before the work that produces it starts.
DEFAULT_OUTPUT_HEADROOM = 2**20


_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISREG, "a regular file"))


def describe_kind(mode):
    """What a ``st_mode`` is, in words ("a folder", "a named pipe (FIFO)", ...)."""
    return next((words for test, words in _KINDS if test(mode)), "a special file")


def _a(what):
    return f"{'an' if what[:1] in 'aeiou' else 'a'} {what}"


def _stat_or_explain(path, what):
    """``os.stat(path)``, or a DataError that says why the file cannot be reached."""
    try:
        return os.stat(path)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise DataError(f"{path}: a loop of symbolic links, not {_a(what)}") from None
        if error.errno == errno.ENOENT and os.path.lexists(path):
            raise DataError(f"{path}: a symbolic link to {os.readlink(path)!r}, which does not exist") from None
        if error.errno in (errno.ENOENT, errno.ENOTDIR):
            raise DataError(f"{path}: no such {what}") from None
        if error.errno == errno.ENAMETOOLONG:
            raise DataError(f"{str(path)[:80]}...: the name is too long for {_a(what)}") from None
        raise DataError(f"{path}: cannot read the {what} ({error.strerror or error})") from None


def check_input_file(path, max_bytes=DEFAULT_MAX_INPUT_BYTES, what="file"):
    """Return ``path`` as a Path if it is a regular file of at most ``max_bytes``, else raise.

    Anything else (a folder, FIFO, device, socket, a symbolic link to one of these, a link
    loop) is refused before it is opened, so reading can neither hang nor run forever, and
    the message says what the path is.

    Parameters
    ----------
    path : path-like
    max_bytes : int > 0
    what : str
        What the file should be ("audio file", "image file", "model file"), for the messages.

    Raises
    ------
    DataError
    """
    path = Path(path)
    status = _stat_or_explain(path, what)
    if not stat.S_ISREG(status.st_mode):
        raise DataError(f"{path}: {describe_kind(status.st_mode)}, not {_a(what)}")
    if status.st_size > max_bytes:
        raise DataError(
            f"{path}: {status.st_size:,} bytes, over the limit of {max_bytes:,} bytes for {_a(what)}"
        )
    return path


def read_input_bytes(path, max_bytes=DEFAULT_MAX_INPUT_BYTES, what="file"):
    """The bytes of the regular file ``path``, never more than ``max_bytes`` of them.

    The file is opened without blocking and checked once open (the checks of
    :func:`check_input_file`), so a FIFO or a device can neither hang nor flood the reader,
    even one swapped in after an earlier check.

    Raises
    ------
    DataError
    """
    path = Path(path)
    try:
        handle = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError:
        check_input_file(path, max_bytes, what)  # explains a missing file, a loop, a folder ...
        raise DataError(f"{path}: cannot open the {what}") from None
    try:
        status = os.fstat(handle)
        if not stat.S_ISREG(status.st_mode):
            raise DataError(f"{path}: {describe_kind(status.st_mode)}, not {_a(what)}")
        if status.st_size > max_bytes:
            raise DataError(f"{path}: {status.st_size:,} bytes, over the limit of {max_bytes:,} bytes for {_a(what)}")
        chunks, total = [], 0
        while True:
            # One read of the whole file in the usual case; a file growing meanwhile stays bounded.
            chunk = os.read(handle, max(1, min(status.st_size + 1, max_bytes + 1) - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise DataError(f"{path}: over the limit of {max_bytes:,} bytes for {_a(what)}")
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    except OSError as error:
        raise DataError(f"{path}: cannot read the {what} ({error.strerror or error})") from None
    finally:
        os.close(handle)


def check_output_path(path, headroom=DEFAULT_OUTPUT_HEADROOM):
    """Return ``path`` as a Path if a file can be written there, else raise OutputError.

    Only a regular file or a new name is accepted: an existing folder, device, FIFO or socket
    (``/dev/full``, ``/dev/null``) is refused, since the atomic rename would replace it. The
    folder must be reachable and writable (tried by creating a file in it), and the disk and
    the process's file-size limit must leave at least ``headroom`` bytes, so that a long run
    does not end with an output it cannot write.
    """
    path = Path(path)
    try:
        status = os.stat(path)
    except FileNotFoundError:
        status = None
        if os.path.lexists(path):
            raise OutputError(f"{path} is a symbolic link to {os.readlink(path)!r}, which does not exist") from None
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise OutputError(f"{path} is a loop of symbolic links") from None
        if error.errno == errno.ENOTDIR:
            raise OutputError(f"{path}: cannot be written: {_blocking_file(path)} is a file, not a folder") from None
        raise OutputError(f"{path}: cannot be written ({error.strerror or error})") from None
    if status is not None and not stat.S_ISREG(status.st_mode):
        raise OutputError(f"{path} is {describe_kind(status.st_mode)}; only a regular file or a new name can be written")
    folder = _existing_folder(_write_target(path).parent)
    if not folder.is_dir():
        raise OutputError(f"{path}: cannot be written: {folder} is {describe_kind(folder.stat().st_mode)}, not a folder")
    try:
        handle, probe = tempfile.mkstemp(prefix=".inkvoice-write-test.", dir=folder)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise OutputError(f"{path}: cannot be written in {folder} ({error.strerror or error})") from None
    try:
        space = os.statvfs(folder)
        free = space.f_bavail * space.f_frsize
    except (OSError, AttributeError):
        free = None
    if free is not None and free < headroom:
        raise OutputError(f"{path}: cannot be written: {free:,} bytes free in {folder}, under {headroom:,}")
    limit = _file_size_limit()
    if limit is not None and limit < headroom:
        raise OutputError(f"{path}: cannot be written: the file-size limit of this process is {limit:,} bytes")
    return path


def check_not_an_input(path, inputs):
    """Raise OutputError if writing ``path`` would replace one of ``inputs`` or a file inside one.

    ``inputs`` are the files and folders a command reads (a model, recordings, a data folder);
    an output that is one of them (by any name: a link, a hard link) or an existing file
    inside one of the folders would destroy what the command is reading. A new name inside a
    data folder replaces nothing and is allowed.
    """
    target = _write_target(path)
    if not os.path.lexists(target):
        return
    resolved = os.path.realpath(target)
    for item in inputs:
        if item is None or not os.path.exists(item):
            continue
        with contextlib.suppress(OSError):
            if os.path.samefile(target, item):
                raise OutputError(f"{path} is {item}, which this command reads; write the output elsewhere")
        folder = os.path.realpath(item)
        if os.path.isdir(folder) and os.path.commonpath([resolved, folder]) == folder:
            raise OutputError(f"{path} is a file inside {item}, which this command reads; write the output elsewhere")


def _file_size_limit():
    try:
        import resource
    except ImportError:  # not on every platform
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    return None if soft == resource.RLIM_INFINITY else soft


def _existing_folder(folder):
    """The nearest existing ancestor of ``folder`` (the one a new file's folders start from)."""
    folder = Path(os.path.abspath(folder))
    while not os.path.lexists(folder) and folder != folder.parent:
        folder = folder.parent
    return folder


def _blocking_file(path):
    for ancestor in Path(os.path.abspath(path)).parents:
        if ancestor.exists() and not ancestor.is_dir():
            return ancestor
    return path.parent


def _write_target(path):
    """The file a write to ``path`` replaces: a symbolic link's target, so the link stays a link."""
    return Path(os.path.realpath(path)) if os.path.islink(path) else Path(path)


@contextlib.contextmanager
def atomic_path(path, suffix=""):
    """Yield a temporary path next to ``path``; on success rename it onto ``path``.

    An exception or an interruption leaves ``path`` exactly as it was, so a good model or
    plot is never replaced by half a file. ``suffix`` keeps an extension that writers
    such as ``numpy.savez`` or matplotlib look at. ``path`` must be a regular file or a new
    name (:func:`check_output_path`); an error while writing (a full disk, a file-size limit)
    becomes an OutputError naming the file.
    """
    path = Path(path)
    check_output_path(path, headroom=0)
    target = _write_target(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix or ".part", dir=target.parent)
        os.close(handle)
    except OSError as error:
        raise OutputError(f"{path}: cannot be written ({error.strerror or error})") from None
    temporary = Path(temporary)
    try:
        try:
            yield temporary
            # mkstemp makes the file private (0600); give it the mode a plain open() would.
            os.chmod(temporary, 0o666 & ~_current_umask())
            os.replace(temporary, target)
        except OSError as error:
            raise OutputError(
                f"{path}: could not be written ({error.strerror or error}); any previous file there is unchanged"
            ) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


def write_bytes_atomic(path, payload, suffix=""):
    """Write ``payload`` to ``path`` through :func:`atomic_path`, flushed to disk before the rename."""
    with atomic_path(path, suffix=suffix) as temporary:
        with open(temporary, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())


def _current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask
