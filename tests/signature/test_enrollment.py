"""The SQLite enrolment store: atomic adds, minimum references, unknown writers, settings checks."""

import numpy as np
import pytest

from inkvoice.core.errors import DataError
from inkvoice.signature.enrollment import EnrollmentStore
from inkvoice.signature.features import check_parameters

PARAMETERS = check_parameters({})


def _entries(n, start=0):
    return [(f"s{i}.png", f"digest{i}", np.full(5, i, dtype=np.float32)) for i in range(start, start + n)]


def test_add_and_read_back(tmp_path):
    with EnrollmentStore(tmp_path / "store.sqlite", PARAMETERS) as store:
        assert store.add("ann", _entries(3), "model1") == (3, 3)
        assert store.add("ann", _entries(2, start=3), "model1") == (2, 5)
        assert store.writers() == [("ann", 5)]
    with EnrollmentStore(tmp_path / "store.sqlite", PARAMETERS, create=False) as store:
        references = store.references("ann")
    assert references.shape == (5, 5) and references[:, 0].tolist() == [0, 1, 2, 3, 4]


def test_same_image_is_not_enrolled_twice(tmp_path):
    with EnrollmentStore(tmp_path / "store.sqlite", PARAMETERS) as store:
        store.add("ann", _entries(3), "model1")
        assert store.add("ann", _entries(3), "model1") == (0, 3)


def test_too_few_references_enrols_nothing(tmp_path):
    with EnrollmentStore(tmp_path / "store.sqlite", PARAMETERS) as store:
        with pytest.raises(DataError, match="'bob' would have 2 reference.*at least 3.*nothing was enrolled"):
            store.add("bob", _entries(2), "model1")
        assert store.writers() == []
        with pytest.raises(DataError, match="'bob' is not enrolled"):
            store.references("bob")


def test_unknown_writer_and_missing_store(tmp_path):
    with pytest.raises(DataError, match="does not exist: enrol a writer first"):
        EnrollmentStore(tmp_path / "absent.sqlite", PARAMETERS, create=False)
    with EnrollmentStore(tmp_path / "store.sqlite", PARAMETERS) as store:
        store.add("ann", _entries(3), "model1")
        with pytest.raises(DataError, match="writer 'zoe' is not enrolled .*enrolled: ann"):
            store.references("zoe")


def test_store_of_other_feature_settings_is_refused(tmp_path):
    with EnrollmentStore(tmp_path / "store.sqlite", PARAMETERS) as store:
        store.add("ann", _entries(3), "model1")
    with pytest.raises(DataError, match="other feature settings"):
        EnrollmentStore(tmp_path / "store.sqlite", check_parameters({"cells": [8]}))


def test_not_a_database(tmp_path):
    path = tmp_path / "store.sqlite"
    path.write_text("plain text, not SQLite " * 100)
    with pytest.raises(DataError, match="not a usable enrolment store"):
        EnrollmentStore(path, PARAMETERS)


def test_remove_writer(tmp_path):
    with EnrollmentStore(tmp_path / "store.sqlite", PARAMETERS) as store:
        store.add("ann", _entries(3), "model1")
        assert store.remove("ann") == 3
        assert store.writers() == []
