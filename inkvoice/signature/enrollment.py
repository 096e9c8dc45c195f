"""The enrolment store: writers and the features of their reference signatures.

One interface, two engines, chosen by the location given to :func:`open_store`: a path is
an SQLite file (the default, beside the model), a ``postgresql://`` URL a PostgreSQL
database that several processes or machines share. Both hold the same three tables and
behave alike:

- A store belongs to one model's feature settings: references are kept as feature vectors,
  so they are only comparable with queries made the same way. The store records the digest
  of those settings and refuses a model that would read them differently.
- Adding references is one transaction that holds the writer's lock: all of them or none,
  and concurrent enrolments and verifications from several processes see either the whole
  enrolment or none of it.
- Each reference may keep a small picture of the cleaned signature (a PNG thumbnail, see
  :func:`reference_thumbnail`), for people to see what a writer's references look like.
- Each writer's row keeps a SHA-256 digest over its references (source name, image digest,
  fingerprint of the model that computed them, feature bytes, thumbnail), checked on every read and
  before every addition, so references altered, added or removed by anything but this
  module are reported as damage instead of silently changing verdicts. (The digest is not
  keyed: it detects damage and edits made without this module, not someone who recomputes
  it; keep write access to the store to the service.)
- A store locked by another process for longer than ``busy_seconds``, a damaged file or
  table and an unreachable server each end in one clear :class:`DataError`.
"""

import contextlib
import hashlib
import json
import math
import sqlite3
import threading
import unicodedata
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from inkvoice.core.errors import DataError, DependencyError, ParameterError, ProjectError
from inkvoice.core.files import read_input_bytes

#: Fewest references a writer may have after an enrolment.
DEFAULT_MIN_REFERENCES = 3
#: Seconds to wait for a lock another process holds before reporting the store as busy.
DEFAULT_BUSY_SECONDS = 10.0
#: Longest writer name, in characters.
MAX_WRITER_NAME = 200
#: Version of the tables: version 1 had no per-writer digest and is upgraded on opening; version 2
#: had no thumbnails, is read as it is and upgraded by the first enrolment.
SCHEMA_VERSION = 3
READABLE_SCHEMAS = ("2", "3")
# The version in the text every references digest starts with: digests made before thumbnails
# existed stay valid (a reference without a thumbnail adds nothing to it).
DIGEST_VERSION = 2
#: Largest thumbnail, in pixels (width, height), and in bytes.
THUMBNAIL_SIZE = (200, 100)
MAX_THUMBNAIL_BYTES = 64 * 1024
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
URL_SCHEMES = ("postgresql://", "postgres://")


class StoreBusyError(DataError):
    """Another process held the store's lock for longer than the wait allowed."""


class StoreDamagedError(DataError):
    """The store's file or tables are damaged, or its contents fail the integrity check."""


#: Feature settings added after stores existed, with the value that leaves the features as they
#: were: a setting at that value is left out of the digest, so older stores stay readable.
LATER_SETTINGS = {"keypoints": 0}


def settings_digest(feature_parameters):
    """A short digest of feature settings: stores and models that share it are compatible."""
    settings = {key: value for key, value in feature_parameters.items()
                if not (key in LATER_SETTINGS and value == LATER_SETTINGS[key])}
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def file_digest(path):
    """SHA-256 of a file's bytes (hex); special files are refused and the read is bounded."""
    return hashlib.sha256(read_input_bytes(path, what="image file")).hexdigest()


def reference_thumbnail(path, max_pixels=None):
    """A small PNG of the cleaned signature in an image file: its ink, cropped, dark on white.

    At most ``THUMBNAIL_SIZE`` pixels (the aspect ratio kept; never enlarged), grey levels for
    the edges of strokes; a few kilobytes.

    Raises
    ------
    DataError
        The file is not a usable signature image (as feature extraction reports it).
    """
    import io

    from PIL import Image

    from inkvoice.signature.images import DEFAULT_MAX_PIXELS, read_grey
    from inkvoice.signature.preprocess import crop_to_ink, ink_mask

    grey = read_grey(path, max_pixels=DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels)
    ink = crop_to_ink(ink_mask(grey, name=str(path)))
    scale = min(1.0, THUMBNAIL_SIZE[0] / ink.shape[1], THUMBNAIL_SIZE[1] / ink.shape[0])
    size = (max(1, round(ink.shape[1] * scale)), max(1, round(ink.shape[0] * scale)))
    # Ink as white on black, shrunk with area averaging so thin strokes stay visible, then inverted.
    picture = Image.fromarray(np.where(ink, 255, 0).astype(np.uint8)).resize(size, Image.Resampling.BOX)
    picture = Image.fromarray((255 - np.asarray(picture, dtype=np.float32) * (235 / 255)).astype(np.uint8))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def check_thumbnail(thumbnail, source):
    """``thumbnail`` (bytes or None) if it is a PNG within ``MAX_THUMBNAIL_BYTES``; DataError otherwise."""
    if thumbnail is None:
        return None
    thumbnail = bytes(thumbnail)
    if not thumbnail.startswith(PNG_SIGNATURE) or len(thumbnail) > MAX_THUMBNAIL_BYTES:
        raise DataError(f"{source}: its thumbnail is not a PNG of at most {MAX_THUMBNAIL_BYTES // 1024} KB; "
                        "nothing was enrolled")
    return thumbnail


def is_store_url(location):
    """Whether ``location`` names a PostgreSQL store rather than an SQLite file."""
    return str(location).startswith(URL_SCHEMES)


def writer_name(name):
    """``name`` as stored: surrounding spaces removed, checked to be a sensible name.

    Enrolment, verification and removal all pass names through here, so " ann " and "ann"
    are one writer everywhere.

    Raises
    ------
    ParameterError
        An empty name, one longer than ``MAX_WRITER_NAME`` characters, or one holding
        control characters.
    """
    text = str(name).strip()
    if not text:
        raise ParameterError("writer must be a non-empty name")
    if len(text) > MAX_WRITER_NAME:
        raise ParameterError(f"writer name must be at most {MAX_WRITER_NAME} characters; got {len(text)} "
                             f"({text[:40]!r}...)")
    if any(unicodedata.category(character).startswith("C") for character in text):
        raise ParameterError(f"writer name must not hold control characters; got {text[:60]!r}")
    return text


# Names a web address cannot carry in one of its steps: every client reads them as "this folder"
# and "the folder above", so the service could never reach such a writer.
_DOT_SEGMENTS = (".", "..")


def new_writer_name(name):
    """``name`` checked as :func:`writer_name` does, and fit to enrol: usable by every command and endpoint.

    Any text a writer name may hold works in the service's web addresses (``team/alice``,
    spaces, any script) except "." and "..", which browsers and HTTP clients remove from an
    address; they are refused here, at enrolment, so that no writer is enrolled whom the
    service cannot reach.

    Raises
    ------
    ParameterError
        What :func:`writer_name` refuses, and the names "." and "..".
    """
    text = writer_name(name)
    if text in _DOT_SEGMENTS:
        raise ParameterError(f"writer name {text!r} cannot be enrolled: web addresses read '.' and '..' as steps "
                             "between folders, so the service could not reach this writer; choose another name")
    return text


def open_store(location, feature_parameters, create=True, busy_seconds=DEFAULT_BUSY_SECONDS):
    """The enrolment store at ``location``: an SQLite file path or a ``postgresql://`` URL.

    Parameters
    ----------
    location : path-like or str
        ``postgresql://user[:password]@host[:port]/database`` (libpq's URL syntax, e.g.
        ``?options=-csearch_path%3Dstores`` to keep the tables in a schema of their own), or
        the path of an SQLite file, created on first enrolment.
    feature_parameters : dict
        The feature settings of the model in use; a store made with other settings is refused.
    create : bool
        Whether a missing store may be created (False for verification).
    busy_seconds : float > 0
        How long to wait for a lock held by another process before raising StoreBusyError.

    Raises
    ------
    DataError
        The store is missing (with ``create=False``), made with other feature settings,
        unreachable, busy (StoreBusyError) or damaged (StoreDamagedError).
    """
    if is_store_url(location):
        try:
            _ = urlsplit(str(location)).port  # reading the port parses it: out of range or not a number raises
        except ValueError as error:
            scheme = str(location).split("://", 1)[0]
            raise ParameterError(f"enrolment store URL {scheme}://... is malformed ({error}); expected "
                                 f"{scheme}://user[:password]@host[:port]/database") from None
        return PostgresStore(str(location), feature_parameters, create, busy_seconds)
    return SqliteStore(Path(location), feature_parameters, create, busy_seconds)


class EnrollmentStore:
    """Writers' reference features, tied to one set of feature settings (see :func:`open_store`).

    Subclasses supply the connection, transactions, the tables' SQL types and how the
    engine's errors read; everything else, including the integrity checks, is here.
    """

    #: How a write transaction locks the writer's row until it ends ("" where the whole
    #: store is locked instead).
    lock_row = ""
    #: The engine's type for bytes.
    blob_type = None
    #: The tables, with ``{id}`` and ``{blob}`` for the engine's column types.
    schema = """
        CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS writers (name TEXT PRIMARY KEY, enrolled TEXT NOT NULL, digest TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS refs (
            id {id},
            writer TEXT NOT NULL REFERENCES writers(name),
            source TEXT NOT NULL,
            image_digest TEXT NOT NULL,
            model_digest TEXT NOT NULL,
            features {blob} NOT NULL,
            added TEXT NOT NULL,
            thumbnail {blob},
            UNIQUE (writer, image_digest)
        )
    """

    def __init__(self, location, feature_parameters, create=True, busy_seconds=DEFAULT_BUSY_SECONDS):
        if type(self) is EnrollmentStore:
            raise TypeError("EnrollmentStore is the interface of the engines: open a store with "
                            "open_store(location, feature_parameters)")
        if not (isinstance(busy_seconds, (int, float)) and math.isfinite(busy_seconds) and busy_seconds > 0):
            raise ParameterError(f"busy_seconds must be a positive number; got {busy_seconds!r}")
        self.location = location
        self.busy_seconds = float(busy_seconds)
        self.digest = settings_digest(feature_parameters)
        self._lock = threading.RLock()
        self.connection = None
        self.thumbnails = False
        with self._errors():
            self.connection = self._connect(create)
            try:
                self._prepare(feature_parameters, create)
            except BaseException:
                self.close()
                self._discard_unprepared()
                raise

    # -- what an engine supplies -------------------------------------------------------------

    def _connect(self, create):
        raise NotImplementedError

    def _transaction(self, write):
        """A context manager around one transaction; ``write`` takes the engine's write lock."""
        raise NotImplementedError

    def _translate(self, error):
        """The DataError that an engine's exception means, or None for a bug to re-raise."""
        raise NotImplementedError

    def _has_tables(self):
        raise NotImplementedError

    def _discard_unprepared(self):
        """Remove what opening created if its tables could not be made (a new store on a full disk)."""

    def _upgrade(self):
        """Bring tables of schema version 1 up to version 2 (inside a transaction)."""

    def _columns(self, table):
        """The names of the columns of ``table``."""
        raise NotImplementedError

    def _sql(self, statement):
        return statement

    # -- shared behaviour --------------------------------------------------------------------

    @property
    def name(self):
        """The store's location as shown in messages (a URL without its password)."""
        return str(self.location)

    def close(self):
        """Close the connection to the store."""
        if self.connection is not None:
            with contextlib.suppress(Exception):
                self.connection.close()
            self.connection = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"{type(self).__name__}({self.name!r})"

    @contextlib.contextmanager
    def _errors(self):
        try:
            yield
        except ProjectError:
            raise
        except Exception as error:  # the engine's errors, translated; anything else is a bug
            translated = self._translate(error)
            if translated is None:
                raise
            raise translated from None

    def _execute(self, statement, parameters=()):
        return self.connection.execute(self._sql(statement), parameters)

    def _execute_many(self, statement, rows):
        self.connection.executemany(self._sql(statement), rows)

    def _prepare(self, feature_parameters, create):
        if not create and not self._has_tables():
            raise DataError(f"enrolment store {self.name} holds no enrolments yet: enrol a writer first")
        with self._transaction(write=create):
            if create:
                for statement in self.schema.split(";"):
                    if statement.strip():
                        self._execute(statement)
            self._upgrade()
            rows = dict(self._execute("SELECT key, value FROM settings").fetchall())
            if "features" not in rows:
                if not create:
                    raise StoreDamagedError(f"enrolment store {self.name} is damaged: it records no feature settings")
                self._execute("INSERT INTO settings VALUES (?, ?)", ("features", self.digest))
                self._execute("INSERT INTO settings VALUES (?, ?)",
                              ("feature_parameters", json.dumps(feature_parameters, sort_keys=True)))
                self._execute("INSERT INTO settings VALUES (?, ?)", ("schema", str(SCHEMA_VERSION)))
            elif rows["features"] != self.digest:
                raise DataError(
                    f"enrolment store {self.name} was made with other feature settings (digest {rows['features']}) "
                    f"than this model (digest {self.digest}): enrol the writers again in a new store"
                )
            elif rows.get("schema", "1") not in READABLE_SCHEMAS:
                raise DataError(f"enrolment store {self.name} has tables of version {rows.get('schema')}, which this "
                                f"inkvoice (version {SCHEMA_VERSION}) cannot read")
            #: Whether the store keeps thumbnails (stores of version 2 do not, until an enrolment upgrades them).
            self.thumbnails = "thumbnail" in self._columns("refs")
            if create and not self.thumbnails:
                self._execute(f"ALTER TABLE refs ADD COLUMN thumbnail {self.blob_type}")
                self._execute("UPDATE settings SET value = ? WHERE key = 'schema'", (str(SCHEMA_VERSION),))
                self.thumbnails = True
            # Every column the store uses: a table that lost one is damaged.
            self._execute("SELECT name, enrolled, digest FROM writers WHERE 1 = 0").fetchall()
            self._execute(f"SELECT id, writer, source, image_digest, model_digest, features, added, {self._thumbnail} "
                          "FROM refs WHERE 1 = 0").fetchall()

    @property
    def _thumbnail(self):
        """The thumbnail column in a query, or NULL in a store that keeps none."""
        return "thumbnail" if self.thumbnails else "NULL"

    def writers(self):
        """Enrolled writers with their reference counts, as a list of (name, count)."""
        with self._lock, self._errors(), self._transaction(write=False):
            rows = self._execute(
                "SELECT w.name, COUNT(r.id) FROM writers w LEFT JOIN refs r ON r.writer = w.name "
                "GROUP BY w.name ORDER BY w.name"
            ).fetchall()
        return self._typed(rows, (str, int))

    def add(self, writer, entries, model_digest, min_references=DEFAULT_MIN_REFERENCES, check=None):
        """Add references to ``writer`` in one transaction (creating the writer if new).

        Parameters
        ----------
        writer : str, non-empty (surrounding spaces are dropped)
        entries : list of (source name, image digest, feature vector[, thumbnail])
            The thumbnail, PNG bytes (see :func:`reference_thumbnail`) or None, is kept with
            the reference.
        model_digest : str
            Fingerprint of the model file that computed the features.
        min_references : int >= 1
            The writer must have at least this many references afterwards, else nothing is added.
        check : callable or None
            Called inside the transaction with the sources and feature vectors (n, n_features)
            of the writer's references afterwards; an exception it raises rolls everything back.

        Returns
        -------
        (added, total, already) : number of new references, the writer's total afterwards, and
        the source names of the entries skipped because the same image was already enrolled
        for the writer (or given twice).

        Raises
        ------
        DataError
            Too few references (nothing is added), vectors that are not finite or not of one
            length, or the writer's existing references fail the integrity check.
        ParameterError
            A name :func:`new_writer_name` refuses.
        """
        writer = new_writer_name(writer)
        vectors = [_vector(entry[2], entry[0]) for entry in entries]
        thumbnails = [check_thumbnail(entry[3] if len(entry) > 3 else None, entry[0]) for entry in entries]
        if len({vector.size for vector in vectors}) > 1:
            raise DataError(f"references of writer {writer!r} have feature vectors of different lengths")
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        with self._lock, self._errors(), self._transaction(write=True):
            new = self._execute("INSERT INTO writers (name, enrolled, digest) VALUES (?, ?, '') "
                                "ON CONFLICT DO NOTHING", (writer, now)).rowcount == 1
            stored = self._execute("SELECT digest FROM writers WHERE name = ?" + self.lock_row, (writer,)).fetchone()[0]
            existing = self._rows(writer)
            if not new:
                self._check(writer, stored, existing)
            if existing and vectors and vectors[0].size * 4 != len(existing[0][3]):
                raise DataError(f"references of writer {writer!r} have {len(existing[0][3]) // 4} features; the new "
                                f"ones have {vectors[0].size}: they were made by another model")
            if entries:
                self._execute_many(
                    "INSERT INTO refs (writer, source, image_digest, model_digest, features, added, thumbnail) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    [(writer, str(entry[0]), str(entry[1]), str(model_digest), vector.tobytes(), now, thumbnail)
                     for entry, vector, thumbnail in zip(entries, vectors, thumbnails)],
                )
            rows = self._rows(writer)
            added = len(rows) - len(existing)
            if len(rows) < min_references:
                # Raised inside the transaction, which rolls back: nothing is enrolled.
                raise DataError(f"writer {writer!r} would have {len(rows)} reference(s); at least {min_references} "
                                "are needed (nothing was enrolled)")
            if check is not None:
                check([row[0] for row in rows], np.stack([np.frombuffer(row[3], dtype=np.float32) for row in rows]))
            self._execute("UPDATE writers SET digest = ? WHERE name = ?", (references_digest(writer, self.digest, rows),
                                                                          writer))
        seen = {row[1] for row in existing}
        already = []
        for entry in entries:
            if str(entry[1]) in seen:
                already.append(str(entry[0]))
            seen.add(str(entry[1]))
        return added, len(rows), already

    def references(self, writer):
        """The feature vectors of ``writer``'s references, shape (n_references, n_features).

        Raises
        ------
        DataError
            The writer is not enrolled.
        StoreDamagedError
            The references fail the integrity check.
        """
        rows = self._checked_rows(writer)
        return np.stack([np.frombuffer(row[3], dtype=np.float32) for row in rows])

    def thumbnails_of(self, writer):
        """``writer``'s references as ``[(source name, thumbnail PNG bytes or None), ...]``, in enrolment order.

        Raises as :meth:`references` does: the thumbnails pass the same integrity check.
        """
        return [(row[0], row[4]) for row in self._checked_rows(writer)]

    def _checked_rows(self, writer):
        """``writer``'s (source, image digest, model digest, features, thumbnail) rows, integrity checked."""
        writer = writer_name(writer)
        with self._lock, self._errors(), self._transaction(write=False):
            # One statement, so the digest and the references come from one snapshot.
            joined = self._execute(
                "SELECT w.digest, r.source, r.image_digest, r.model_digest, r.features, "
                f"{'r.' if self.thumbnails else ''}{self._thumbnail} FROM writers w "
                "LEFT JOIN refs r ON r.writer = w.name WHERE w.name = ? ORDER BY r.id", (writer,)
            ).fetchall()
        if not joined:
            known = ", ".join(_shown(name) for name, _ in self.writers()[:10]) or "none"
            raise DataError(f"writer {writer!r} is not enrolled in {self.name} (enrolled: {known})")
        [(stored,)] = self._typed([joined[0][:1]], (str,))
        rows = self._typed([row[1:] for row in joined if row[1] is not None], _ROW_TYPES)
        self._check(writer, stored, rows)
        return rows

    def check(self):
        """The integrity check of the whole store: the names of writers whose references fail it."""
        damaged = []
        for name, _ in self.writers():
            try:
                self.references(name)
            except StoreDamagedError:
                damaged.append(name)
        return damaged

    def remove(self, writer):
        """Forget ``writer`` and their references; returns how many references were removed."""
        writer = writer_name(writer)
        with self._lock, self._errors(), self._transaction(write=True):
            removed = self._execute("DELETE FROM refs WHERE writer = ?", (writer,)).rowcount
            self._execute("DELETE FROM writers WHERE name = ?", (writer,))
        return removed

    def _rows(self, writer):
        return self._typed(self._execute(
            f"SELECT source, image_digest, model_digest, features, {self._thumbnail} FROM refs WHERE writer = ? "
            "ORDER BY id", (writer,)
        ).fetchall(), _ROW_TYPES)

    def _typed(self, rows, types):
        """``rows`` as tuples whose values are of ``types`` (bytes-like as bytes); other values mean damage."""
        checked = []
        for row in rows:
            row = tuple(bytes(value) if isinstance(value, memoryview) else value for value in row)
            if len(row) != len(types) or not all(type(value) in (kind if isinstance(kind, tuple) else (kind,))
                                                 for value, kind in zip(row, types)):
                raise StoreDamagedError(f"enrolment store {self.name} is damaged: a row holds values of the wrong "
                                        "types; restore it from a backup or enrol the writers again in a new store")
            checked.append(row)
        return checked

    def _check(self, writer, stored, rows):
        if not rows or stored != references_digest(writer, self.digest, rows):
            raise StoreDamagedError(
                f"enrolment store {self.name} is damaged: the references of writer {writer!r} do not match their "
                "digest (changed outside inkvoice); enrol the writer again"
            )
        lengths = {len(row[3]) for row in rows}
        vectors = [np.frombuffer(row[3], dtype=np.float32) for row in rows if len(row[3]) % 4 == 0]
        if len(lengths) != 1 or len(vectors) != len(rows) or not all(np.isfinite(v).all() for v in vectors):
            raise StoreDamagedError(f"enrolment store {self.name} is damaged: the references of writer {writer!r} "
                                    "are not finite vectors of one length; enrol the writer again")


def disk_full_message(name, text):
    """What a write that failed for want of space means: the transaction rolled back, nothing changed."""
    return (f"enrolment store {name}: the disk is full ({text}); nothing was written and the store is as it was: "
            "free some space and enrol again")


def _disk_is_full(folder, least=1 << 20):
    """Whether the file system of ``folder`` has less than ``least`` bytes free (False when unknown)."""
    import shutil

    try:
        return shutil.disk_usage(folder).free < least
    except OSError:
        return False


def _one_line(error, limit=200):
    """An engine's error message on one line (a damaged schema's text can span several), cut when long."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[:limit] + "..."


def _shown(name, limit=40):
    """``name`` for a message: quoted, and cut when long."""
    return repr(name) if len(name) <= limit else repr(name[:limit]) + "..."


# The values of a reference's row: source, image digest, model digest, features, thumbnail (or None).
_ROW_TYPES = (str, str, str, bytes, (bytes, type(None)))


def references_digest(writer, settings, rows):
    """SHA-256 over a writer's references, in an order that does not depend on row ids.

    ``rows`` are (source, image digest, model digest, feature bytes[, thumbnail or None])
    tuples; a reference without a thumbnail counts as it did before thumbnails were kept.
    """
    digest = hashlib.sha256(f"inkvoice enrolment {DIGEST_VERSION}\0{settings}\0{writer}\0".encode())
    for source, image_digest, model_digest, features, *rest in sorted(rows, key=lambda row: row[1]):
        features = bytes(features)
        digest.update(f"{source}\0{image_digest}\0{model_digest}\0{len(features)}\0".encode())
        digest.update(features)
        if rest and rest[0] is not None:
            digest.update(f"\1thumbnail\0{len(rest[0])}\0".encode())
            digest.update(bytes(rest[0]))
    return digest.hexdigest()


def _vector(vector, source):
    array = np.asarray(vector, dtype=np.float32)
    if array.ndim != 1 or array.size == 0 or not np.isfinite(array).all():
        raise DataError(f"{source}: its features are not a finite vector; nothing was enrolled")
    return array


class SqliteStore(EnrollmentStore):
    """The store in one SQLite file (the default)."""

    blob_type = "BLOB"
    schema = EnrollmentStore.schema.format(id="INTEGER PRIMARY KEY AUTOINCREMENT", blob=blob_type)

    def _connect(self, create):
        if not create and not self.location.is_file():
            raise DataError(f"enrolment store {self.location} does not exist: enrol a writer first")
        self._created = create and not self.location.exists()
        if create:
            self.location.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit: transactions are begun explicitly, writes with BEGIN IMMEDIATE.
        return sqlite3.connect(self.location, timeout=self.busy_seconds, isolation_level=None,
                               check_same_thread=False)

    @contextlib.contextmanager
    def _transaction(self, write):
        # IMMEDIATE takes the write lock at once, so two enrolments queue for it (within
        # the busy timeout) instead of both reading and then failing to upgrade their lock.
        self.connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield
        except BaseException:
            # SQLite rolls back by itself after some failures (a full disk): rolling back again
            # would raise, and hide why the transaction failed.
            if self.connection.in_transaction:
                self.connection.execute("ROLLBACK")
            raise
        self.connection.execute("COMMIT")

    def _has_tables(self):
        # An empty file (a first enrolment that failed before making the tables) holds no
        # enrolments; any other content is checked next.
        return self.location.stat().st_size > 0

    def _discard_unprepared(self):
        if getattr(self, "_created", False):
            for path in (self.location, self.location.with_name(self.location.name + "-journal")):
                with contextlib.suppress(OSError):
                    path.unlink()

    def _columns(self, table):
        return [row[1] for row in self._execute(f"PRAGMA table_info({table})").fetchall()]

    def _upgrade(self):
        recorded = dict(self._execute("SELECT key, value FROM settings").fetchall())
        columns = [row[1] for row in self._execute("PRAGMA table_info(writers)").fetchall()]
        if "schema" in recorded or "features" not in recorded or "digest" in columns:
            return  # new, current, or damaged (which the column check then reports)
        # Version 1 (no digest): protect the references from now on, as they are.
        self._execute("ALTER TABLE writers ADD COLUMN digest TEXT NOT NULL DEFAULT ''")
        self.thumbnails = False
        for (name,) in self._execute("SELECT name FROM writers").fetchall():
            self._execute("UPDATE writers SET digest = ? WHERE name = ?",
                          (references_digest(name, recorded["features"], self._rows(name)), name))
        self._execute("INSERT OR REPLACE INTO settings VALUES ('schema', '2')")

    def _translate(self, error):
        if isinstance(error, UnicodeDecodeError):  # text columns whose bytes were damaged
            return StoreDamagedError(f"enrolment store {self.name} is damaged (text that is not UTF-8): restore it "
                                     "from a backup or enrol the writers again in a new store")
        if not isinstance(error, sqlite3.Error):
            return None
        text = _one_line(error)
        if isinstance(error, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
            return StoreBusyError(f"enrolment store {self.name} is busy: another process has held it for more than "
                                  f"{self.busy_seconds:g} s; try again later")
        if isinstance(error, sqlite3.OperationalError) and ("full" in text or (
                "disk I/O" in text and _disk_is_full(self.location.parent))):
            return DataError(disk_full_message(self.name, text))
        if isinstance(error, sqlite3.OperationalError) and any(
                word in text for word in ("unable to open", "readonly", "disk I/O")):
            return DataError(f"enrolment store {self.name} cannot be used: {text}")
        if isinstance(error, sqlite3.DatabaseError):
            return StoreDamagedError(f"enrolment store {self.name} is damaged ({text}): restore it from a backup or "
                                     "enrol the writers again in a new store")
        return None


class PostgresStore(EnrollmentStore):
    """The store in a PostgreSQL database, shared by every process that opens the same URL."""

    blob_type = "BYTEA"
    schema = EnrollmentStore.schema.format(id="BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", blob=blob_type)
    lock_row = " FOR UPDATE"
    # Serialises the creation of the tables by several processes at once.
    _SETUP_LOCK = 0x696E6B766F696365

    @property
    def name(self):
        parts = urlsplit(self.location)
        if parts.password is None:
            return self.location
        host = parts.hostname or ""
        netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))

    def _connect(self, create):
        try:
            import psycopg
        except ImportError:
            raise DependencyError(
                "a PostgreSQL enrolment store needs psycopg: pip install 'inkvoice[postgres]'") from None
        connection = psycopg.connect(self.location, autocommit=True, connect_timeout=max(1, round(self.busy_seconds)),
                                     application_name="inkvoice")
        # Waiting for another transaction's lock ends after busy_seconds, as SQLite's timeout does.
        connection.execute(f"SET lock_timeout = {int(self.busy_seconds * 1000)}")
        return connection

    def _transaction(self, write):
        # A read is one statement, atomic on its own: no BEGIN and COMMIT round trips.
        return self.connection.transaction() if write else contextlib.nullcontext()

    def _sql(self, statement):
        return statement.replace("?", "%s")

    def _execute(self, statement, parameters=()):
        # Binary results: feature vectors arrive as their bytes, not as hexadecimal text.
        return self.connection.execute(self._sql(statement), parameters, binary=True)

    def _execute_many(self, statement, rows):
        # One pipeline of all the rows, not a round trip each.
        with self.connection.cursor() as cursor:
            cursor.executemany(self._sql(statement), rows)

    def _has_tables(self):
        return self.connection.execute("SELECT to_regclass('settings') IS NOT NULL").fetchone()[0]

    def _columns(self, table):
        return [row[0] for row in self.connection.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped",
            (table,)).fetchall()]

    def _prepare(self, feature_parameters, create):
        if create:
            with self._transaction(write=True):
                self.connection.execute("SELECT pg_advisory_xact_lock(%s)", (self._SETUP_LOCK,))
                super()._prepare(feature_parameters, create)
        else:
            super()._prepare(feature_parameters, create)

    def _translate(self, error):
        import psycopg
        from psycopg import errors

        if not isinstance(error, psycopg.Error):
            return None
        text = _one_line(error)
        if isinstance(error, (errors.LockNotAvailable, errors.QueryCanceled, errors.DeadlockDetected)):
            return StoreBusyError(f"enrolment store {self.name} is busy: another process has held it for more than "
                                  f"{self.busy_seconds:g} s; try again later")
        if isinstance(error, errors.DiskFull):
            return DataError(disk_full_message(self.name, text))
        if isinstance(error, errors.InsufficientPrivilege):
            return DataError(f"enrolment store {self.name} cannot be used: {text}")
        if isinstance(error, (psycopg.OperationalError, psycopg.InterfaceError)):
            return DataError(f"enrolment store {self.name} cannot be reached: {text}")
        if isinstance(error, psycopg.DatabaseError):
            return StoreDamagedError(f"enrolment store {self.name} is damaged ({text}): restore it from a backup or "
                                     "enrol the writers again in a new store")
        return None
