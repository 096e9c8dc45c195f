"""The enrolment store on both engines: atomic adds, minimum references, names, integrity checks.

Every behaviour test runs on an SQLite file and on a real PostgreSQL server; the faults
particular to SQLite (a lock held elsewhere, damaged pages, a lost column, an old store) follow.
"""

import sqlite3
import time

import numpy as np
import pytest

from inkvoice.core.errors import DataError, ParameterError
from inkvoice.signature.enrollment import (
    MAX_WRITER_NAME,
    StoreBusyError,
    StoreDamagedError,
    open_store,
    references_digest,
    settings_digest,
)
from inkvoice.signature.features import check_parameters

PARAMETERS = check_parameters({})


def _entries(n, start=0, size=5):
    return [(f"s{i}.png", f"digest{i}", np.full(size, i, dtype=np.float32)) for i in range(start, start + n)]


def _alter(store_location, statement):
    """Run ``statement`` on the store behind inkvoice's back, as a person with database access could."""
    if str(store_location).startswith("postgresql://"):
        import psycopg

        with psycopg.connect(str(store_location), autocommit=True) as connection:
            connection.execute(statement)
    else:
        with sqlite3.connect(store_location) as connection:
            connection.execute(statement)
        connection.close()


def test_add_and_read_back(store_location):
    with open_store(store_location, PARAMETERS) as store:
        assert store.add("ann", _entries(3), "model1") == (3, 3, [])
        assert store.add("ann", _entries(2, start=3), "model1") == (2, 5, [])
        assert store.writers() == [("ann", 5)]
    with open_store(store_location, PARAMETERS, create=False) as store:
        references = store.references("ann")
        assert store.check() == []
    assert references.shape == (5, 5) and references[:, 0].tolist() == [0, 1, 2, 3, 4]


def test_same_image_is_not_enrolled_twice(store_location):
    with open_store(store_location, PARAMETERS) as store:
        store.add("ann", _entries(3), "model1")
        assert store.add("ann", _entries(3), "model1") == (0, 3, ["s0.png", "s1.png", "s2.png"])
        # which images were already there is said, also when some are new
        assert store.add("ann", _entries(2, start=2), "model1") == (1, 4, ["s2.png"])


def test_a_check_that_refuses_rolls_the_whole_add_back(store_location):
    seen = []

    def refuse(sources, vectors):
        seen.append((sources, vectors.shape))
        raise DataError("refused")

    with open_store(store_location, PARAMETERS) as store:
        store.add("ann", _entries(3), "model1")
        with pytest.raises(DataError, match="refused"):
            store.add("ann", _entries(2, start=3), "model1", check=refuse)
        assert store.writers() == [("ann", 3)]
        with pytest.raises(DataError, match="refused"):
            store.add("bob", _entries(3), "model1", check=refuse)
        assert store.writers() == [("ann", 3)]
    assert seen[0] == (["s0.png", "s1.png", "s2.png", "s3.png", "s4.png"], (5, 5))


def test_too_few_references_enrols_nothing(store_location):
    with open_store(store_location, PARAMETERS) as store:
        with pytest.raises(DataError, match="'bob' would have 2 reference.*at least 3.*nothing was enrolled"):
            store.add("bob", _entries(2), "model1")
        assert store.writers() == []
        with pytest.raises(DataError, match="'bob' is not enrolled"):
            store.references("bob")


def test_a_failed_addition_leaves_the_writer_as_they_were(store_location):
    with open_store(store_location, PARAMETERS) as store:
        store.add("ann", _entries(3), "model1")
        bad = [*_entries(2, start=3), ("nan.png", "digest-nan", np.full(5, np.nan, dtype=np.float32))]
        with pytest.raises(DataError, match="nan.png: its features are not a finite vector"):
            store.add("ann", bad, "model1")
        with pytest.raises(DataError, match="have 5 features; the new ones have 7"):
            store.add("ann", _entries(3, start=10, size=7), "model1")
        assert store.writers() == [("ann", 3)] and store.check() == []


def test_unknown_writer_and_missing_store(store_location):
    with pytest.raises(DataError, match="enrol a writer first"):
        open_store(store_location, PARAMETERS, create=False)
    with open_store(store_location, PARAMETERS) as store:
        store.add("ann", _entries(3), "model1")
        with pytest.raises(DataError, match="writer 'zoe' is not enrolled .*enrolled: 'ann'"):
            store.references("zoe")


def test_store_of_other_feature_settings_is_refused(store_location):
    with open_store(store_location, PARAMETERS) as store:
        store.add("ann", _entries(3), "model1")
    with pytest.raises(DataError, match="other feature settings"):
        open_store(store_location, check_parameters({"cells": [8]}))


def test_remove_writer(store_location):
    with open_store(store_location, PARAMETERS) as store:
        store.add("ann", _entries(3), "model1")
        assert store.remove(" ann ") == 3
        assert store.writers() == []


def test_writer_names_are_one_writer_with_or_without_spaces(store_location):
    with open_store(store_location, PARAMETERS) as store:
        store.add("  ann ", _entries(3), "model1")
        assert store.writers() == [("ann", 3)]
        assert store.references("ann ").shape == (3, 5)
        with pytest.raises(ParameterError, match=f"at most {MAX_WRITER_NAME} characters; got 10000"):
            store.add("x" * 10_000, _entries(3), "model1")
        with pytest.raises(ParameterError, match="control characters"):
            store.references("ann\x00")
        with pytest.raises(ParameterError, match="non-empty"):
            store.add("   ", _entries(3), "model1")


@pytest.mark.parametrize("statement", [
    "UPDATE refs SET features = {doubled} WHERE source = 's1.png'",  # a longer vector
    "UPDATE refs SET model_digest = 'other' WHERE source = 's1.png'",  # said to come from another model
    "DELETE FROM refs WHERE source = 's2.png'",  # a reference taken away
    "UPDATE refs SET source = 'planted.png' WHERE source = 's0.png'",
])
def test_references_changed_outside_inkvoice_are_detected(store_location, statement):
    with open_store(store_location, PARAMETERS) as store:
        store.add("ann", _entries(4), "model1")
        store.add("bob", _entries(3), "model1")
    postgres = str(store_location).startswith("postgresql")
    doubled = "features || features" if postgres else "CAST(features || features AS BLOB)"
    _alter(store_location, statement.format(doubled=doubled).replace("WHERE", "WHERE writer = 'ann' AND"))
    with open_store(store_location, PARAMETERS, create=False) as store:
        with pytest.raises(StoreDamagedError, match="is damaged: the references of writer 'ann' do not match"):
            store.references("ann")
        assert store.references("bob").shape == (3, 5)
        assert store.check() == ["ann"]
        # Adding to damaged references would vouch for them: refused, and nothing changes.
        with pytest.raises(StoreDamagedError):
            store.add("ann", _entries(1, start=9), "model1")


def test_feature_values_flipped_in_place_are_detected(store_location):
    with open_store(store_location, PARAMETERS) as store:
        store.add("ann", _entries(3), "model1")
    # The same length, other values: what a flipped byte or a planted vector looks like.
    forged = np.full(5, 7, dtype=np.float32).tobytes().hex()
    literal = f"'\\x{forged}'::bytea" if str(store_location).startswith("postgresql") else f"X'{forged}'"
    _alter(store_location, f"UPDATE refs SET features = {literal} WHERE source = 's0.png'")
    with open_store(store_location, PARAMETERS, create=False) as store:
        with pytest.raises(StoreDamagedError, match="writer 'ann' do not match their digest"):
            store.references("ann")


def test_not_a_database(tmp_path):
    path = tmp_path / "store.sqlite"
    path.write_text("plain text, not SQLite " * 100)
    with pytest.raises(StoreDamagedError, match=f"enrolment store {path} is damaged"):
        open_store(path, PARAMETERS)


def test_a_lock_held_elsewhere_ends_as_busy_after_the_wait(tmp_path):
    path = tmp_path / "store.sqlite"
    with open_store(path, PARAMETERS) as store:
        store.add("ann", _entries(3), "model1")
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process in the middle of an enrolment
    try:
        with open_store(path, PARAMETERS, create=False, busy_seconds=0.3) as store:
            assert store.references("ann").shape == (3, 5)  # readers go on
            started = time.monotonic()
            with pytest.raises(StoreBusyError, match="is busy: another process has held it for more than 0.3 s"):
                store.add("ann", _entries(1, start=5), "model1")
            assert time.monotonic() - started < 5
        other.execute("COMMIT")
        other.execute("BEGIN EXCLUSIVE")  # a writer committing: nobody may read for a moment
        with pytest.raises(StoreBusyError, match="is busy"):
            open_store(path, PARAMETERS, create=False, busy_seconds=0.3)
    finally:
        other.execute("ROLLBACK")
        other.close()
    with open_store(path, PARAMETERS) as store:
        assert store.add("ann", _entries(1, start=5), "model1") == (1, 4, [])


def test_damaged_pages_end_as_damaged(tmp_path):
    path = tmp_path / "store.sqlite"
    with open_store(path, PARAMETERS) as store:
        for number in range(6):
            store.add(f"writer{number}", _entries(3, start=10 * number, size=2000), "model1")
    content = bytearray(path.read_bytes())
    assert len(content) > 16 * 4096
    content[3 * 4096 : len(content) - 4096] = b"\xa5" * (len(content) - 4 * 4096)
    path.write_bytes(bytes(content))
    with pytest.raises(StoreDamagedError, match="is damaged"):
        with open_store(path, PARAMETERS, create=False) as store:
            for number in range(6):
                store.references(f"writer{number}")


def test_a_lost_column_ends_as_damaged(tmp_path):
    path = tmp_path / "store.sqlite"
    with open_store(path, PARAMETERS) as store:
        store.add("ann", _entries(3), "model1")
    _alter(path, "ALTER TABLE refs DROP COLUMN model_digest")
    with pytest.raises(StoreDamagedError, match="is damaged \\(no such column"):
        open_store(path, PARAMETERS, create=False)


def test_a_store_of_the_first_version_is_upgraded_and_then_protected(tmp_path):
    path = tmp_path / "store.sqlite"
    with sqlite3.connect(path) as connection:
        connection.executescript("""
            CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE writers (name TEXT PRIMARY KEY, enrolled TEXT NOT NULL);
            CREATE TABLE refs (id INTEGER PRIMARY KEY AUTOINCREMENT, writer TEXT NOT NULL REFERENCES writers(name),
                source TEXT NOT NULL, image_digest TEXT NOT NULL, model_digest TEXT NOT NULL, features BLOB NOT NULL,
                added TEXT NOT NULL, UNIQUE (writer, image_digest));
        """)
        connection.execute("INSERT INTO settings VALUES ('features', ?)", (settings_digest(PARAMETERS),))
        connection.execute("INSERT INTO writers VALUES ('ann', 'then')")
        for source, digest, vector in _entries(3):
            connection.execute("INSERT INTO refs (writer, source, image_digest, model_digest, features, added) "
                               "VALUES ('ann', ?, ?, 'model1', ?, 'then')", (source, digest, vector.tobytes()))
    connection.close()
    with open_store(path, PARAMETERS, create=False) as store:
        assert store.references("ann")[:, 0].tolist() == [0, 1, 2]
    _alter(path, "DELETE FROM refs WHERE source = 's1.png'")
    with open_store(path, PARAMETERS, create=False) as store:
        with pytest.raises(StoreDamagedError):
            store.references("ann")


def test_the_digest_does_not_depend_on_row_order():
    rows = [(f"s{i}.png", f"d{i}", "m", bytes([i]) * 4) for i in range(3)]
    assert references_digest("ann", "x", rows) == references_digest("ann", "x", rows[::-1])
    assert references_digest("ann", "x", rows) != references_digest("bob", "x", rows)


def _client(store_location, number, rounds=6):
    """One process of the concurrency test: enrols its own writer and adds to a shared one, reading all along."""
    import traceback

    try:
        with open_store(store_location, PARAMETERS) as store:
            store.add(f"own{number}", _entries(3, start=100 * number), "model1")
            seen = []
            for round_ in range(rounds):
                images = [(f"shared{number}-{round_}-{k}.png", f"shared{number}-{round_}-{k}",
                           np.full(5, number, dtype=np.float32)) for k in range(2)]
                store.add("shared", images, "model1", min_references=1)
                seen.append(len(store.references("shared")))
                assert store.references(f"own{number}").shape == (3, 5)
        return seen
    except Exception:
        return traceback.format_exc()


def test_concurrent_enrolments_and_verifications_from_several_processes(store_location):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    n_clients, rounds = 4, 6
    with ProcessPoolExecutor(n_clients, mp_context=multiprocessing.get_context("fork")) as pool:
        answers = list(pool.map(_client, [store_location] * n_clients, range(n_clients), [rounds] * n_clients))
    for answer in answers:
        assert isinstance(answer, list), answer
        # Each read sees whole enrolments only (2 references each), never fewer than its own.
        assert all(count % 2 == 0 for count in answer) and answer == sorted(answer)
    with open_store(store_location, PARAMETERS, create=False) as store:
        counts = dict(store.writers())
        assert counts == {"shared": 2 * n_clients * rounds, **{f"own{n}": 3 for n in range(n_clients)}}
        assert store.check() == []


def test_one_open_store_serves_several_threads(store_location):
    """A service may share one open store between its request threads."""
    from concurrent.futures import ThreadPoolExecutor

    with open_store(store_location, PARAMETERS) as store:
        store.add("ann", _entries(3), "model1")

        def work(number):
            store.add(f"writer{number}", _entries(3, start=10 * number), "model1")
            return [store.references("ann").shape for _ in range(5)]

        with ThreadPoolExecutor(4) as pool:
            shapes = [shape for answer in pool.map(work, range(8)) for shape in answer]
        assert shapes == [(3, 5)] * 40
        assert len(store.writers()) == 9 and store.check() == []


@pytest.mark.parametrize("statement", [
    "INSERT INTO writers VALUES (NULL, 'then', '')",  # a damaged page can read as a NULL name
    "UPDATE refs SET features = 123456789012 WHERE source = 's0.png'",  # not bytes: never bytes(123456789012)
    "UPDATE refs SET source = CAST(X'9bff' AS TEXT) WHERE source = 's0.png'",  # text that is not UTF-8
])
def test_values_of_the_wrong_type_are_damage(tmp_path, statement):
    path = tmp_path / "store.sqlite"
    with open_store(path, PARAMETERS) as store:
        store.add("ann", _entries(3), "model1")
    _alter(path, statement)
    with open_store(path, PARAMETERS, create=False) as store:
        with pytest.raises(StoreDamagedError, match="is damaged"):
            store.references("ann")
            store.references("zoe")


def test_a_full_disk_says_so_and_leaves_the_store_as_it_was(tmp_path, monkeypatch):
    location = tmp_path / "store.sqlite"
    with open_store(location, PARAMETERS) as store:
        store.add("ann", _entries(3, size=64), "model1")
    big = [(f"b{i}.png", f"big{i}", np.full(20_000, i, dtype=np.float32)) for i in range(8)]
    with open_store(location, PARAMETERS) as store:
        pages = store.connection.execute("PRAGMA page_count").fetchone()[0]
        store.connection.execute(f"PRAGMA max_page_count = {pages + 2}")  # the disk fills up during the add
        with pytest.raises(DataError, match="the disk is full .*nothing was written and the store is as it was"):
            store.add("bob", big, "model1")

        def rolled_back_by_sqlite(sources, vectors):  # what SQLite does itself after some failed writes
            store.connection.execute("ROLLBACK")
            raise sqlite3.OperationalError("database or disk is full")

        with pytest.raises(DataError, match="the disk is full"):
            store.add("bob", _entries(3, start=10, size=64), "model1", check=rolled_back_by_sqlite)
    with open_store(location, PARAMETERS, create=False) as store:
        assert store.writers() == [("ann", 3)] and store.check() == []


def test_a_first_enrolment_on_a_full_disk_leaves_no_store_behind(tmp_path, monkeypatch):
    location = tmp_path / "new.sqlite"
    connect = sqlite3.connect

    def full(*args, **kwargs):
        connection = connect(*args, **kwargs)
        connection.execute("PRAGMA max_page_count = 1")
        return connection

    monkeypatch.setattr(sqlite3, "connect", full)
    with pytest.raises(DataError, match="the disk is full"):
        open_store(location, PARAMETERS)
    monkeypatch.setattr(sqlite3, "connect", connect)
    assert not location.exists()
    location.write_bytes(b"")  # as an earlier version left it
    with pytest.raises(DataError, match="holds no enrolments yet"):
        open_store(location, PARAMETERS, create=False)
