"""Safe file writing: write to a temporary name beside the target, then rename into place."""

import contextlib
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path, suffix=""):
    """Yield a temporary path next to ``path``; on success rename it onto ``path``.

    An exception or an interruption leaves ``path`` exactly as it was, so a good model or
    plot is never replaced by half a file. ``suffix`` keeps an extension that writers
    such as ``numpy.savez`` or matplotlib look at.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or ".part", dir=path.parent)
    os.close(handle)
    temporary = Path(temporary)
    try:
        yield temporary
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        os.chmod(temporary, 0o666 & ~_current_umask())
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


def _current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask
