"""Data set layouts and splits."""

import numpy as np
import pytest

from inkvoice.core.errors import DataError, ParameterError
from inkvoice.speech.dataset import load_dataset, parse_fsdd_name, split_indices
from tests.speech.conftest import tone, write


@pytest.fixture
def fsdd_like(tmp_path):
    root = tmp_path / "fsdd"
    for label in "012":
        for speaker in ("ann", "bob"):
            for take in range(8):
                write(root / "recordings" / f"{label}_{speaker}_{take}.wav", tone(300.0, 0.1))
    (root / "recordings" / "README.txt").write_text("not audio")
    (root / "recordings" / "stray.wav").write_bytes(b"")
    return root


def test_fsdd_names_are_parsed():
    assert parse_fsdd_name("7_theo_12.wav") == ("7", "theo", 12)
    assert parse_fsdd_name("notes.wav") is None


def test_fsdd_layout_is_found_in_recordings(fsdd_like):
    dataset = load_dataset(fsdd_like)
    assert dataset.layout == "fsdd"
    assert len(dataset) == 48
    assert sorted(set(dataset.speakers.tolist())) == ["ann", "bob"]
    assert set(dataset.takes.tolist()) == set(range(8))


def test_folder_per_label_layout_takes_any_label_names(tone_folders):
    dataset = load_dataset(tone_folders)
    assert dataset.layout == "folders"
    assert sorted(set(dataset.labels.tolist())) == ["high", "low", "mid"]
    assert sorted(set(dataset.speakers.tolist())) == ["anna", "ben"]


def test_official_split_tests_takes_0_to_4(fsdd_like):
    dataset = load_dataset(fsdd_like)
    train, test = split_indices(dataset, "official")
    assert set(dataset.takes[test].tolist()) == {0, 1, 2, 3, 4}
    assert set(dataset.takes[train].tolist()) == {5, 6, 7}


def test_speaker_split_leaves_the_speaker_out(fsdd_like):
    dataset = load_dataset(fsdd_like)
    train, test = split_indices(dataset, "speaker", test_speaker="bob")
    assert set(dataset.speakers[test].tolist()) == {"bob"}
    assert "bob" not in set(dataset.speakers[train].tolist())


def test_random_split_is_stratified_seeded_and_disjoint(tone_folders):
    dataset = load_dataset(tone_folders)
    train, test = split_indices(dataset, "random", test_fraction=0.25, seed=3)
    again, _ = split_indices(dataset, "random", test_fraction=0.25, seed=3)
    other, _ = split_indices(dataset, "random", test_fraction=0.25, seed=4)
    np.testing.assert_array_equal(train, again)
    assert not np.array_equal(train, other)
    assert not set(train) & set(test)
    assert len(train) + len(test) == len(dataset)
    for label in ("low", "mid", "high"):
        assert np.sum(dataset.labels[test] == label) == 2


@pytest.mark.parametrize(
    "method, options, error, message",
    [
        ("official", {}, ParameterError, "official split needs FSDD file names"),
        ("speaker", {"test_speaker": "zoe"}, ParameterError, "test speaker must be one of anna, ben; got 'zoe'"),
        ("random", {"test_fraction": 1.5}, ParameterError, "test_fraction"),
        ("sideways", {}, ParameterError, "split must be one of"),
    ],
)
def test_bad_splits_are_refused(tone_folders, method, options, error, message):
    with pytest.raises(error, match=message):
        split_indices(load_dataset(tone_folders), method, **options)


def test_a_folder_without_clips_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no labelled clips found"):
        load_dataset(tmp_path / "empty")
    with pytest.raises(DataError, match="no such data folder"):
        load_dataset(tmp_path / "absent")
