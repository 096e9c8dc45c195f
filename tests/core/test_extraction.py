"""Parallel cached extraction: order, per-file errors, cache hits and invalidation."""

from pathlib import Path

import numpy as np
import pytest

from inkvoice.core.errors import DataError
from inkvoice.core.extraction import extract_many

CALLS = []


def measure(path, scale):
    """A stand-in feature function: the file's number times ``scale``; 'bad' files fail."""
    text = Path(path).read_text()
    CALLS.append(Path(path).name)
    if text == "bad":
        raise DataError(f"{path}: not a number")
    return np.array([float(text) * scale, 1.0])


@pytest.fixture
def files(tmp_path):
    folder = tmp_path / "files"
    folder.mkdir()
    paths = []
    for index in range(40):
        path = folder / f"{index:02d}.txt"
        path.write_text(str(index))
        paths.append(path)
    return paths


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_results_follow_the_input_order(files, n_jobs):
    results = extract_many(measure, files, {"scale": 2.0}, n_jobs=n_jobs, chunk_size=4)
    assert [r[0] for r in results] == [2.0 * i for i in range(40)]


def test_a_bad_file_is_reported_and_the_others_go_through(files):
    files[3].write_text("bad")
    seen = []
    results = extract_many(measure, files, {"scale": 1.0}, n_jobs=1, progress=seen.append)
    assert isinstance(results[3], DataError) and "not a number" in str(results[3])
    assert all(isinstance(r, np.ndarray) for i, r in enumerate(results) if i != 3)
    assert sum(seen) == len(files)


def test_cache_serves_reruns_and_notices_changes(files, tmp_path):
    cache = tmp_path / "cache"
    first = extract_many(measure, files, {"scale": 1.0}, cache_dir=cache, n_jobs=1)
    CALLS.clear()
    again = extract_many(measure, files, {"scale": 1.0}, cache_dir=cache, n_jobs=1)
    assert CALLS == []  # the whole list came from the cache
    np.testing.assert_array_equal(np.stack(first), np.stack(again))

    extract_many(measure, files[::-1], {"scale": 1.0}, cache_dir=cache, n_jobs=1)
    assert CALLS == []  # another list of the same files: one cache entry per file

    files[5].write_text("500")
    changed = extract_many(measure, files, {"scale": 1.0}, cache_dir=cache, n_jobs=1)
    assert CALLS == ["05.txt"] and changed[5][0] == 500.0

    CALLS.clear()
    scaled = extract_many(measure, files, {"scale": 3.0}, cache_dir=cache, n_jobs=1)
    assert len(CALLS) == len(files) and scaled[1][0] == 3.0  # other parameters, other entries


def test_an_unwritable_cache_costs_speed_not_results(files, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    results = extract_many(measure, files, {"scale": 1.0}, cache_dir=blocker, n_jobs=1)
    assert [r[0] for r in results] == [float(i) for i in range(40)]
