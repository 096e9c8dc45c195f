"""Shared fixtures: where the real data sets are, and a fresh feature cache per test."""

import os
from pathlib import Path

import pytest

DATA_VARIABLE = "INKVOICE_DATA"


def real_data_dir(name):
    """The folder ``$INKVOICE_DATA/<name>``, or a pytest skip explaining how to provide it."""
    root = os.environ.get(DATA_VARIABLE)
    if not root:
        pytest.skip(f"real data not configured: set {DATA_VARIABLE} to the folder holding {name}/")
    folder = Path(root) / name
    if not folder.is_dir():
        pytest.skip(f"real data set missing: {folder} does not exist")
    return folder


@pytest.fixture(scope="session")
def fsdd_dir():
    """The Free Spoken Digit Dataset's folder (holding recordings/)."""
    return real_data_dir("fsdd")


@pytest.fixture(scope="session")
def cedar_dir():
    """The CEDAR signature database's folder (holding full_org/ and full_forg/)."""
    return real_data_dir("cedar")


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Keep every test's feature cache out of the user's home folder."""
    monkeypatch.setenv("INKVOICE_CACHE", str(tmp_path_factory.getbasetemp() / "feature-cache"))


@pytest.fixture(scope="session")
def postgres_server():
    """The URL of a throw-away PostgreSQL server for this test session (skips where none can run)."""
    from tests.servers import postgres_server as start

    with start() as url:
        yield url


@pytest.fixture
def postgres_url(postgres_server):
    """A store URL on the test server whose tables live in a schema of this test's own."""
    import uuid

    import psycopg

    schema = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    return f"{postgres_server}?options=-csearch_path%3D{schema}"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_location(request, tmp_path):
    """Where a new enrolment store goes: an SQLite file, or a fresh schema on the test PostgreSQL server."""
    if request.param == "sqlite":
        return tmp_path / "store.sqlite"
    return request.getfixturevalue("postgres_url")


@pytest.fixture(scope="session")
def dask_scheduler():
    """The address of a real local Dask cluster of two one-thread workers (skips without the extra)."""
    from tests.servers import dask_cluster

    with dask_cluster(n_workers=2) as address:
        yield address
