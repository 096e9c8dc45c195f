"""Finding signature images in a data folder: the CEDAR layout, or a folder per writer.

CEDAR: ``full_org/original_{writer}_{n}.png`` (genuine) and ``full_forg/forgeries_{writer}_{n}.png``
(skilled forgeries of that writer). Users' own data: ``<writer>/genuine/*`` and optionally
``<writer>/forged/*`` (skilled forgeries of that writer), one folder per writer.
"""

import re
from dataclasses import dataclass, replace
from pathlib import Path

from inkvoice.core.errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp"}
_CEDAR_NAME = re.compile(r"^(original|forgeries)_(\d+)_(\d+)\.png$", re.IGNORECASE)


@dataclass(frozen=True)
class Signature:
    """One signature image: its file, the writer it claims to be, genuine or not, and its number."""

    path: Path
    writer: str
    genuine: bool
    number: int


def is_image(path):
    """Whether ``path`` has the name of an image file we read."""
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def _natural_key(text):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def load_cedar(folder):
    """Signatures of a CEDAR folder (holding ``full_org/`` and ``full_forg/``), sorted by writer and number."""
    folder = Path(folder)
    found = []
    for sub in ("full_org", "full_forg"):
        for path in sorted((folder / sub).iterdir()):
            match = _CEDAR_NAME.match(path.name)
            if match:
                kind, writer, number = match.groups()
                found.append(Signature(path, writer, kind.lower() == "original", int(number)))
    if not found:
        raise DataError(f"{folder}: no CEDAR signature files (original_W_N.png / forgeries_W_N.png) found")
    return sorted(found, key=lambda s: (_natural_key(s.writer), not s.genuine, s.number))


def load_writer_folders(folder):
    """Signatures of a folder holding one sub-folder per writer with ``genuine/`` and optional ``forged/``."""
    folder = Path(folder)
    found = []
    for writer_dir in sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
                             key=lambda p: _natural_key(p.name)):
        for kind, genuine in (("genuine", True), ("forged", False)):
            sub = writer_dir / kind
            if sub.is_dir():
                images = sorted((p for p in sub.iterdir() if p.is_file() and is_image(p)),
                                key=lambda p: _natural_key(p.name))
                found.extend(Signature(p, writer_dir.name, genuine, n) for n, p in enumerate(images, 1))
    if not found:
        raise DataError(
            f"{folder}: no signatures found; expected CEDAR (full_org/, full_forg/) or one folder per writer "
            "holding genuine/ (and optionally forged/) images"
        )
    return found


def load_signatures(folder):
    """Signatures of ``folder`` in either layout (CEDAR is recognised by its ``full_org/`` folder).

    Raises
    ------
    DataError
        The folder does not exist or holds no signature images.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such data folder")
    if (folder / "full_org").is_dir():
        return load_cedar(folder)
    return load_writer_folders(folder)


def load_data_sets(folders):
    """Signatures of one or more data folders, as one list.

    With several folders, each writer is named ``<folder name>/<writer>`` so that writers of
    different sets never merge (two sets may both have a writer "003").
    """
    folders = [Path(f) for f in folders]
    if len(folders) == 1:
        return load_signatures(folders[0])
    names = [f.resolve().name for f in folders]
    if len(set(names)) < len(names):
        raise DataError(f"data folders must have different names to tell their writers apart; got {names}")
    found = []
    for folder, name in zip(folders, names):
        found.extend(replace(s, writer=f"{name}/{s.writer}") for s in load_signatures(folder))
    return found


def natural_order(names):
    """``names`` sorted so that writer 2 comes before writer 10."""
    return sorted(names, key=_natural_key)


def writers_of(signatures):
    """The writers of ``signatures`` in natural order (writer 2 before writer 10)."""
    return natural_order({s.writer for s in signatures})


def shorten(text, limit=60):
    """``text`` cut to ``limit`` characters for a message (a name can be arbitrarily long)."""
    text = str(text)
    return text if len(text) <= limit else f"{text[: limit - 3]}... ({len(text)} characters)"


def select_writers(signatures, writers):
    """The signatures whose writer is in ``writers``; a writer not in ``signatures`` is refused.

    Raises
    ------
    DataError
        Some of ``writers`` have no signature (a typo would otherwise be dropped silently).
    """
    wanted = [str(w) for w in writers]
    present = {s.writer for s in signatures}
    missing = [w for w in wanted if w not in present]
    if missing:
        shown = ", ".join(shorten(w, 30) for w in missing[:5]) + (", ..." if len(missing) > 5 else "")
        known = natural_order(present)
        hint = ", ".join(shorten(w, 30) for w in known[:8]) + (", ..." if len(known) > 8 else "")
        raise DataError(f"no signatures of {len(missing)} writer(s): {shown} (writers here: {hint})")
    wanted = set(wanted)
    return [s for s in signatures if s.writer in wanted]


def parse_writer_range(text):
    """Writers from text such as ``"1-35"``, ``"36-45,50"`` or ``"cedar/1-35"`` (other names pass through).

    A range may carry a data set's prefix (``set/low-high``), as writers are named when
    several data sets are read together.
    """
    writers = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        prefix, _, last = part.rpartition("/")
        bounds = last.split("-")
        if len(bounds) == 2 and bounds[0].isdigit() and bounds[1].isdigit():
            low, high = int(bounds[0]), int(bounds[1])
            if low > high:
                raise DataError(f"writer range {shorten(part)!r} runs backwards")
            width = len(bounds[0]) if bounds[0].startswith("0") else 0
            writers.extend(f"{prefix}/" * bool(prefix) + str(w).zfill(width) for w in range(low, high + 1))
        else:
            writers.append(part)
    if not writers:
        raise DataError(f"no writers in {shorten(text)!r}")
    return writers
