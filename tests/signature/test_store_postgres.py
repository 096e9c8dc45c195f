"""The enrolment store on a real PostgreSQL server: faults, the signature command, and no psycopg."""

import json
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

from inkvoice.core.errors import DataError, DependencyError
from inkvoice.signature.cli import main
from inkvoice.signature.enrollment import StoreBusyError, StoreDamagedError, open_store
from inkvoice.signature.features import check_parameters
from tests.servers import _free_port

PARAMETERS = check_parameters({})


def _entries(n, start=0):
    return [(f"s{i}.png", f"digest{i}", np.full(5, i, dtype=np.float32)) for i in range(start, start + n)]


def test_a_writer_locked_elsewhere_ends_as_busy_after_the_wait(postgres_url):
    import psycopg

    with open_store(postgres_url, PARAMETERS) as store:
        store.add("ann", _entries(3), "model1")
    with psycopg.connect(postgres_url) as other:  # a transaction left open by another process
        other.execute("SELECT * FROM writers WHERE name = 'ann' FOR UPDATE")
        with open_store(postgres_url, PARAMETERS, busy_seconds=0.5) as store:
            assert store.references("ann").shape == (3, 5)  # readers go on
            started = time.monotonic()
            with pytest.raises(StoreBusyError, match="is busy: another process has held it for more than 0.5 s"):
                store.add("ann", _entries(1, start=3), "model1")
            assert time.monotonic() - started < 5
            assert store.add("bob", _entries(3), "model1") == (3, 3, [])  # other writers are not held up
        other.rollback()
    with open_store(postgres_url, PARAMETERS) as store:
        assert store.add("ann", _entries(1, start=3), "model1") == (1, 4, [])


def test_an_unreachable_server_is_one_clear_error_without_the_password():
    url = f"postgresql://inkvoice:s3cret@127.0.0.1:{_free_port()}/enrolments"
    with pytest.raises(DataError, match="cannot be reached") as caught:
        open_store(url, PARAMETERS, busy_seconds=2)
    assert "s3cret" not in str(caught.value) and "inkvoice:***@127.0.0.1" in str(caught.value)


def test_a_lost_column_ends_as_damaged(postgres_url):
    import psycopg

    with open_store(postgres_url, PARAMETERS) as store:
        store.add("ann", _entries(3), "model1")
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute("ALTER TABLE refs DROP COLUMN model_digest")
    with pytest.raises(StoreDamagedError, match="is damaged .*model_digest"):
        open_store(postgres_url, PARAMETERS, create=False)


def test_an_empty_database_holds_no_enrolments(postgres_url):
    with pytest.raises(DataError, match="holds no enrolments yet: enrol a writer first"):
        open_store(postgres_url, PARAMETERS, create=False)


def test_without_psycopg_the_message_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(DependencyError, match=r"pip install 'inkvoice\[postgres\]'"):
        open_store("postgresql://nobody@127.0.0.1:1/none", PARAMETERS)


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_the_signature_command_gives_the_same_answers_on_both_engines(sample_model, samples_dir, tmp_path,
                                                                      postgres_url):
    model, _ = sample_model
    references = sorted((samples_dir / "writer5" / "genuine").iterdir())[:6]
    queries = [*sorted((samples_dir / "writer5" / "genuine").iterdir())[6:],
               *sorted((samples_dir / "writer5" / "forged").iterdir())]
    answers = {}
    for location in (tmp_path / "store.sqlite", postgres_url):
        enrolled = _run("enroll", model, "--writer", "writer5", "--store", location, "--no-cache", *references)
        assert enrolled.exit_code == 0, enrolled.output
        assert "6 reference(s) added, 6 in total" in enrolled.output
        verified = _run("verify", model, "--writer", "writer5", "--store", location, "--json", *queries)
        assert verified.exit_code == 0, verified.output
        answers[str(location)] = [json.loads(line) for line in verified.output.splitlines()]
        assert len(answers[str(location)]) == len(queries)
        info = _run("info", model, "--store", location, "--json")
        assert json.loads(info.output)["enrolled"] == {"writer5": 6}
    first, second = answers.values()
    assert first == second


def test_a_damaged_store_is_one_error_line_in_the_command(sample_model, samples_dir, postgres_url):
    import psycopg

    model, _ = sample_model
    references = sorted((samples_dir / "writer5" / "genuine").iterdir())[:6]
    enrolled = _run("enroll", model, "--writer", "writer5", "--store", postgres_url, "--no-cache", *references)
    assert enrolled.exit_code == 0, enrolled.output
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute("UPDATE refs SET features = features || features WHERE source = '03.png'")
    result = _run("verify", model, "--writer", "writer5", "--store", postgres_url, references[0])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.count("Error: ") == 1 and "is damaged: the references of writer 'writer5'" in result.output
