"""Parallel cached extraction: order, per-file errors, cache hits, invalidation, checked entries,
the size limit and the `inkvoice cache` command."""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from inkvoice.core.errors import DataError, ParameterError
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


def _entries(cache):
    return sorted(path for path in (cache / "features").rglob("*.entry") if path.parent.name != "sets"
                  and path.name != "shape.entry")


def _damage_every_entry(cache, change):
    for path in (cache / "features").rglob("*.entry"):
        data = bytearray(path.read_bytes())
        change(data)
        path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [
    lambda data: data.__setitem__(-1, data[-1] ^ 0x40),          # a flipped bit in the values
    lambda data: data.__setitem__(slice(-8, None), b"\0" * 8),   # zeroed values
    lambda data: data.__delitem__(slice(-4, None)),              # truncated
    lambda data: data.__setitem__(slice(0, 5), b"\x93NUMP"),     # another format
])
def test_damaged_entries_are_recomputed_never_believed(files, tmp_path, damage):
    cache = tmp_path / "cache"
    truth = extract_many(measure, files, {"scale": 1.0}, n_jobs=1)
    extract_many(measure, files, {"scale": 1.0}, cache_dir=cache, n_jobs=1)
    _damage_every_entry(cache, damage)
    CALLS.clear()
    again = extract_many(measure, files, {"scale": 1.0}, cache_dir=cache, n_jobs=1)
    np.testing.assert_array_equal(np.stack(again), np.stack(truth))
    assert len(CALLS) == len(files)  # every damaged entry was a miss ...
    CALLS.clear()
    extract_many(measure, files[::-1], {"scale": 1.0}, cache_dir=cache, n_jobs=1)
    assert CALLS == []  # ... and was overwritten with a good one


def test_planted_entries_of_the_right_form_are_refused(files, tmp_path):
    """An entry made without the cache's key, or with the wrong shape or NaN, is a miss."""
    from inkvoice.core.extraction import FeatureCache

    cache_dir = tmp_path / "cache"
    parameters = {"function": f"{measure.__module__}.{measure.__qualname__}", "scale": 1.0}
    extract_many(measure, files, {"scale": 1.0}, cache_dir=cache_dir, n_jobs=1)
    cache = FeatureCache(cache_dir, parameters)
    key = cache.key(files[7])
    for forged in (np.array([1e6, 1.0]), np.arange(10.0), np.array([np.nan, 1.0])):
        cache._write(cache._entry(key), forged, key)  # with the real key: shape and values still checked
        if forged.shape == (2,) and np.isfinite(forged).all():
            stranger = FeatureCache(cache_dir, parameters)
            stranger._secret = b"x" * 32  # someone without the cache's key
            stranger._write(stranger._entry(key), forged, key)
        shutil.rmtree(cache.folder / "sets")  # so the lookup goes to the planted entry
        CALLS.clear()
        result = extract_many(measure, files[7:8], {"scale": 1.0}, cache_dir=cache_dir, n_jobs=1)
        assert result[0].tolist() == [7.0, 1.0] and CALLS == ["07.txt"]


def test_whole_list_cache_is_keyed_by_content_not_by_name_size_or_time(files, tmp_path):
    cache = tmp_path / "cache"
    extract_many(measure, files, {"scale": 1.0}, cache_dir=cache, n_jobs=1)
    status = files[12].stat()
    files[12].write_text("21")  # same size, other content, modification time put back
    os.utime(files[12], ns=(status.st_atime_ns, status.st_mtime_ns))
    results = extract_many(measure, files, {"scale": 1.0}, cache_dir=cache, n_jobs=1)
    assert results[12][0] == 21.0


def test_special_files_are_refused_without_reading_them(files, tmp_path):
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    loop = tmp_path / "loop.txt"
    loop.symlink_to(loop)
    zero = tmp_path / "zero.txt"
    zero.symlink_to("/dev/zero")
    CALLS.clear()
    results = extract_many(measure, [files[0], fifo, loop, zero, tmp_path], {"scale": 1.0},
                           cache_dir=tmp_path / "cache", n_jobs=1)
    assert results[0][0] == 0.0 and CALLS == ["00.txt"]
    assert "named pipe (FIFO)" in str(results[1])
    assert "loop of symbolic links" in str(results[2])
    assert "character device" in str(results[3])
    assert "a folder" in str(results[4])


def test_the_cache_keeps_under_its_limit_dropping_the_least_recently_used(files, tmp_path, monkeypatch):
    from inkvoice.core.extraction import cache_usage

    cache = tmp_path / "cache"
    extract_many(measure, files[:10], {"scale": 1.0}, cache_dir=cache, n_jobs=1)
    entry_size = max(path.stat().st_size for path in _entries(cache))
    limit = 25 * entry_size
    monkeypatch.setenv("INKVOICE_CACHE_LIMIT", str(limit))
    for start in range(10, 40, 10):
        extract_many(measure, files[start : start + 10], {"scale": 1.0}, cache_dir=cache, n_jobs=1)
    usage = cache_usage(cache)
    assert 0 < usage.bytes <= limit and usage.limit == limit
    CALLS.clear()
    extract_many(measure, files[30:40], {"scale": 1.0}, cache_dir=cache, n_jobs=1)
    assert CALLS == []  # the latest entries stayed
    extract_many(measure, files[:10], {"scale": 1.0}, cache_dir=cache, n_jobs=1)
    assert len(CALLS) == 10  # the oldest went


@pytest.mark.parametrize("setting, expected", [("500M", 500 * 10**6), ("2G", 2 * 10**9), ("123", 123),
                                               ("1.5gb", 15 * 10**8)])
def test_cache_limit_setting(monkeypatch, setting, expected):
    from inkvoice.core.extraction import cache_limit

    monkeypatch.setenv("INKVOICE_CACHE_LIMIT", setting)
    assert cache_limit() == expected


def test_a_bad_cache_limit_is_one_clear_error(monkeypatch, files, tmp_path):
    monkeypatch.setenv("INKVOICE_CACHE_LIMIT", "lots")
    with pytest.raises(ParameterError, match="INKVOICE_CACHE_LIMIT.*'lots'"):
        extract_many(measure, files, {"scale": 1.0}, cache_dir=tmp_path, n_jobs=1)


def test_cache_command_shows_and_clears_features_only(files, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from inkvoice.cli import main

    monkeypatch.setenv("INKVOICE_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache" / "datasets").mkdir(parents=True)
    (tmp_path / "cache" / "datasets" / "kept.txt").write_text("a download")
    extract_many(measure, files, {"scale": 1.0}, cache_dir=tmp_path / "cache", n_jobs=1)
    runner = CliRunner()
    info = runner.invoke(main, ["cache", "info"])
    assert info.exit_code == 0, info.output
    assert f"folder: {tmp_path / 'cache' / 'features'}" in info.output
    assert "entries: 42" in info.output  # 40 files, the whole list and the shape record
    cleared = runner.invoke(main, ["cache", "clear"])
    assert cleared.exit_code == 0 and "removed 42 files" in cleared.output
    assert "entries: 0" in runner.invoke(main, ["cache", "info"]).output
    assert (tmp_path / "cache" / "datasets" / "kept.txt").exists()


def not_finite(path, scale):
    value = float(Path(path).read_text())
    return np.array([value * scale, np.inf if value == 3 else 1.0])


def test_non_finite_features_become_an_error_naming_the_file(files, tmp_path):
    results = extract_many(not_finite, files[:6], {"scale": 1.0}, cache_dir=tmp_path / "cache", n_jobs=1)
    assert isinstance(results[3], DataError) and str(files[3]) in str(results[3]) and "NaN or infinite" in str(results[3])
    assert [r[0] for i, r in enumerate(results) if i != 3] == [0.0, 1.0, 2.0, 4.0, 5.0]


def test_a_full_disk_under_the_cache_costs_speed_not_results(files, tmp_path, monkeypatch):
    import errno

    import inkvoice.core.extraction as extraction

    class FullDisk:
        def __init__(self, *args, **kwargs):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(extraction, "open", FullDisk, raising=False)
    results = extract_many(measure, files, {"scale": 1.0}, cache_dir=tmp_path / "cache", n_jobs=1)
    assert [r[0] for r in results] == [float(i) for i in range(40)]
    assert not any((tmp_path / "cache").rglob("*.part"))  # no half-written entry left behind


def test_cache_clear_deletes_only_what_the_cache_made(files, tmp_path):
    from inkvoice.core.extraction import cache_usage, clear_cache

    cache = tmp_path / "cache"
    extract_many(measure, files[:5], {"scale": 1.0}, cache_dir=cache, n_jobs=1)
    # A user's folders that happen to have 16-hex-digit names, beside and inside the features.
    mine = [cache / "0123456789abcdef", cache / "features" / "fedcba9876543210" / "ab"]
    for folder in mine:
        folder.mkdir(parents=True)
        (folder / "thesis.txt").write_text("years of work")
        (folder / ("ab" + "0" * 62 + ".entry")).write_bytes(b"not the cache's")  # its name, not its marker
    (cache / "0123456789abcdef" / "empty-by-choice").mkdir()
    # An entry of the earlier layout, which clear removes.
    old = cache / "00000000000000aa" / "12" / ("12" + "3" * 62 + ".npy")
    old.parent.mkdir(parents=True)
    np.save(old, np.zeros(3))
    removed, _ = clear_cache(cache)
    assert removed == 5 + 2 + 1  # entries, the whole list, the shape record, the old entry
    for folder in mine:
        assert (folder / "thesis.txt").read_text() == "years of work"
        assert (folder / ("ab" + "0" * 62 + ".entry")).exists()
    assert (cache / "0123456789abcdef" / "empty-by-choice").is_dir()
    assert not (cache / "00000000000000aa").exists() and cache_usage(cache).entries == 0


def test_the_size_limit_trims_only_the_caches_own_files(files, tmp_path):
    from inkvoice.core.extraction import enforce_cache_limit

    cache = tmp_path / "cache"
    extract_many(measure, files, {"scale": 1.0}, cache_dir=cache, n_jobs=1)
    folder = cache / "features" / "fedcba9876543210" / "ab"
    folder.mkdir(parents=True)
    planted = folder / ("ab" + "0" * 62 + ".entry")
    planted.write_bytes(b"x" * 10000)
    os.utime(planted, (0, 0))  # the oldest file there
    enforce_cache_limit(cache, limit=100)
    assert planted.exists()


def blas_threads_in_use(path):
    """A stand-in feature function: the number of threads numpy's BLAS would use here."""
    from threadpoolctl import threadpool_info

    return np.array([min([pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"] or [1])])


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: BLAS has one thread anyway")
def test_worker_processes_use_one_blas_thread_each(files):
    # The workers already hold every core; BLAS threads on top of them spin waiting for one.
    results = extract_many(blas_threads_in_use, files, {}, n_jobs=2, chunk_size=4)
    assert [int(r[0]) for r in results] == [1] * len(files)
