"""The enrolment store: writers and the features of their reference signatures, in one SQLite file.

Each store belongs to one model's feature settings: references are kept as feature vectors,
so they are only comparable with queries made the same way. The store records the digest of
those settings (and of the model file that enrolled them) and refuses a model that would read
them differently. Adding references is one transaction: all of them or none.
"""

import hashlib
import json
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from inkvoice.core.errors import DataError, ParameterError

#: Fewest references a writer may have after an enrolment.
DEFAULT_MIN_REFERENCES = 3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS writers (name TEXT PRIMARY KEY, enrolled TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS refs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    writer TEXT NOT NULL REFERENCES writers(name),
    source TEXT NOT NULL,
    image_digest TEXT NOT NULL,
    model_digest TEXT NOT NULL,
    features BLOB NOT NULL,
    added TEXT NOT NULL,
    UNIQUE (writer, image_digest)
);
"""


def settings_digest(feature_parameters):
    """A short digest of feature settings: stores and models that share it are compatible."""
    text = json.dumps(feature_parameters, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def file_digest(path):
    """SHA-256 of a file's bytes (hex)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class EnrollmentStore:
    """Writers' reference features in a SQLite file, tied to one set of feature settings.

    Parameters
    ----------
    path : path-like
        The SQLite file; created on first enrolment.
    feature_parameters : dict
        The feature settings of the model in use; a store made with other settings is refused.
    create : bool
        Whether a missing file may be created (False for verification).
    """

    def __init__(self, path, feature_parameters, create=True):
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise DataError(f"enrolment store {self.path} does not exist: enrol a writer first")
        self.digest = settings_digest(feature_parameters)
        try:
            self.connection = sqlite3.connect(self.path)
            with self.connection:
                self.connection.executescript(_SCHEMA)
                row = self.connection.execute("SELECT value FROM settings WHERE key = 'features'").fetchone()
                if row is None:
                    self.connection.execute("INSERT INTO settings VALUES ('features', ?)", (self.digest,))
                    self.connection.execute(
                        "INSERT INTO settings VALUES ('feature_parameters', ?)",
                        (json.dumps(feature_parameters, sort_keys=True),),
                    )
                elif row[0] != self.digest:
                    raise DataError(
                        f"enrolment store {self.path} was made with other feature settings (digest {row[0]}) "
                        f"than this model (digest {self.digest}): enrol the writers again in a new store"
                    )
        except sqlite3.DatabaseError as error:
            raise DataError(f"{self.path} is not a usable enrolment store: {error}") from None

    def close(self):
        """Close the database connection."""
        self.connection.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def writers(self):
        """Enrolled writers with their reference counts, as a list of (name, count)."""
        return self.connection.execute(
            "SELECT w.name, COUNT(r.id) FROM writers w LEFT JOIN refs r ON r.writer = w.name "
            "GROUP BY w.name ORDER BY w.name"
        ).fetchall()

    def add(self, writer, entries, model_digest, min_references=DEFAULT_MIN_REFERENCES):
        """Add references to ``writer`` in one transaction (creating the writer if new).

        Parameters
        ----------
        writer : str, non-empty
        entries : list of (source name, image digest, feature vector)
        model_digest : str
            Digest of the model file that computed the features.
        min_references : int >= 1
            The writer must have at least this many references afterwards, else nothing is added.

        Returns
        -------
        (added, total) : number of new references (an image already enrolled is skipped) and
        the writer's total afterwards.
        """
        writer = str(writer).strip()
        if not writer:
            raise ParameterError("writer must be a non-empty name")
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        try:
            with self.connection:
                self.connection.execute("INSERT OR IGNORE INTO writers VALUES (?, ?)", (writer, now))
                added = 0
                for source, image_digest, vector in entries:
                    vector = np.asarray(vector, dtype=np.float32)
                    cursor = self.connection.execute(
                        "INSERT OR IGNORE INTO refs (writer, source, image_digest, model_digest, features, added) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        (writer, str(source), image_digest, model_digest, vector.tobytes(), now),
                    )
                    added += cursor.rowcount
                total = self.connection.execute("SELECT COUNT(*) FROM refs WHERE writer = ?", (writer,)).fetchone()[0]
                if total < min_references:
                    raise _TooFew(total)
        except _TooFew as few:
            raise DataError(
                f"writer {writer!r} would have {few.total} reference(s); at least {min_references} are needed "
                "(nothing was enrolled)"
            ) from None
        return added, total

    def references(self, writer):
        """The feature vectors of ``writer``'s references, shape (n_references, n_features).

        Raises DataError for a writer who is not enrolled.
        """
        rows = self.connection.execute(
            "SELECT features FROM refs WHERE writer = ? ORDER BY id", (str(writer),)
        ).fetchall()
        if not rows:
            known = ", ".join(name for name, _ in self.writers()[:10]) or "none"
            raise DataError(f"writer {writer!r} is not enrolled in {self.path} (enrolled: {known})")
        return np.stack([np.frombuffer(row[0], dtype=np.float32) for row in rows])

    def remove(self, writer):
        """Forget ``writer`` and their references; returns how many references were removed."""
        with self.connection:
            removed = self.connection.execute("DELETE FROM refs WHERE writer = ?", (str(writer),)).rowcount
            self.connection.execute("DELETE FROM writers WHERE name = ?", (str(writer),))
        return removed


class _TooFew(Exception):
    def __init__(self, total):
        super().__init__(total)
        self.total = total
