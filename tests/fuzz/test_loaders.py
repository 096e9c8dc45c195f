"""Fuzzing the loaders: damaged audio, images, model files and enrolment stores give an answer
that is right or one clear refusal (the project's own error), never another exception.

Seeded (derandomised) and bounded, so each test takes a few seconds and fails the same way twice.
"""

import io
import json
import sqlite3

import numpy as np
import pytest
import soundfile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from inkvoice.core.bundle import dumps, loads
from inkvoice.core.errors import DataError, ModelFileError, ProjectError
from inkvoice.core.estimator import MlpClassifier
from tests.fuzz.mutations import damaged
from tests.signature.helpers import page, stroke_mask
from tests.speech.conftest import word

FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _wav(subtype):
    buffer = io.BytesIO()
    soundfile.write(buffer, word("low"), 8000, format="WAV", subtype=subtype)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def speech_parameters():
    from inkvoice.speech.features import feature_parameters

    return feature_parameters()


@pytest.mark.parametrize("subtype", ["PCM_16", "FLOAT"])
def test_damaged_audio_gives_finite_features_or_one_clear_refusal(tmp_path, speech_parameters, subtype):
    from inkvoice.speech.features import extract

    path = tmp_path / "clip.wav"

    @FUZZ
    @given(damaged(_wav(subtype)))
    def check(data):
        path.write_bytes(data)
        try:
            features = extract(path, **speech_parameters)
        except DataError as error:
            assert str(path) in str(error) and "\n" not in str(error)
        else:
            assert np.all(np.isfinite(features))

    check()


def _image(fmt, mode="L"):
    grey = page(stroke_mask(60, 150))
    buffer = io.BytesIO()
    if mode == "F":
        Image.fromarray(grey.astype(np.float32), "F").save(buffer, format=fmt)
    else:
        Image.fromarray((grey * 255).astype(np.uint8), mode).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt, mode", [("PNG", "L"), ("TIFF", "F"), ("JPEG", "L")])
def test_damaged_images_give_finite_features_or_one_clear_refusal(tmp_path, fmt, mode):
    from inkvoice.signature.features import check_parameters, extract

    parameters = check_parameters({})
    path = tmp_path / f"signature.{fmt.lower()}"

    @FUZZ
    @given(damaged(_image(fmt, mode)))
    def check(data):
        path.write_bytes(data)
        try:
            features = extract(path, **parameters)
        except DataError as error:
            assert str(path) in str(error) and "\n" not in str(error)
        else:
            assert np.all(np.isfinite(features))

    check()


@pytest.fixture(scope="module")
def small_model():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 5))
    y = np.where(X[:, 0] > 0, "yes", "no")
    model = MlpClassifier(hidden_sizes=(6,), max_epochs=5, random_state=0).fit(X, y)
    payload = dumps("speech", {"main": model}, {"features": {"n": 5}, "threshold": 0.5}, {"extra": np.arange(4.0)})
    return model, X, payload


def test_damaged_model_files_load_identically_or_are_refused(small_model):
    model, X, payload = small_model
    expected = model.predict_proba(X)

    @FUZZ
    @given(damaged(payload))
    def check(data):
        try:
            loaded = loads(data, "speech", name="fuzzed.npz")
        except ModelFileError as error:
            assert "fuzzed.npz" in str(error) and "\n" not in str(error)
        else:  # the zip's checksums leave only harmless edits (dates, comments) undetected
            np.testing.assert_array_equal(loaded.models["main"].predict_proba(X), expected)

    check()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _paths(child, (*prefix, index))


def test_any_metadata_field_of_any_type_is_loaded_or_refused_cleanly(small_model):
    _, X, payload = small_model
    with np.load(io.BytesIO(payload), allow_pickle=False) as archive:
        entries = {key: archive[key] for key in archive.files}
    document = json.loads(str(entries["metadata"]))
    places = [path for path in _paths(document) if path and path[-1] != "records"]

    @FUZZ
    @given(st.sampled_from(places), json_values)
    def check(place, value):
        edited = json.loads(json.dumps(document))
        target = edited
        for key in place[:-1]:
            target = target[key]
        target[place[-1]] = value
        buffer = io.BytesIO()
        np.savez(buffer, **{**entries, "metadata": np.array(json.dumps(edited))})
        try:
            loaded = loads(buffer.getvalue(), "speech", name="fuzzed.npz")
        except ModelFileError as error:
            assert "fuzzed.npz" in str(error) and "\n" not in str(error)
        else:
            assert np.all(np.isfinite(loaded.models["main"].predict_proba(X)))

    check()


@pytest.fixture(scope="module")
def enrolled_store(tmp_path_factory):
    from inkvoice.signature.enrollment import open_store

    path = tmp_path_factory.mktemp("store") / "store.sqlite"
    rng = np.random.default_rng(0)
    references = rng.normal(size=(4, 12)).astype(np.float32)
    with open_store(path, {"features": 1}) as store:
        store.add("alice", [(f"ref{i}.png", f"digest{i}", vector) for i, vector in enumerate(references)], "model")
    return path, references


@pytest.mark.xfail(strict=False, reason=(
    "known bug in the enrolment store: a damaged page of the writers table gives a writer named NULL, and "
    "references() of a writer not found then raises TypeError joining the names instead of StoreDamagedError"))
def test_damaged_enrolment_stores_give_the_references_or_one_clear_refusal(enrolled_store, tmp_path):
    from inkvoice.signature.enrollment import open_store

    source, references = enrolled_store
    path = tmp_path / "store.sqlite"

    @FUZZ
    @given(damaged(source.read_bytes(), header=100))
    def check(data):
        path.write_bytes(data)
        try:
            with open_store(path, {"features": 1}, create=False, busy_seconds=0.5) as store:
                found = store.references("alice")
        except DataError as error:
            assert "\n" not in str(error)
        else:
            np.testing.assert_array_equal(found, references)  # never other references

    check()


def test_edited_enrolment_rows_are_detected(enrolled_store, tmp_path):
    from inkvoice.signature.enrollment import open_store

    source, references = enrolled_store
    path = tmp_path / "store.sqlite"

    @FUZZ
    @given(st.integers(0, 3), st.integers(0, 47), st.integers(1, 255))
    def check(row, byte, flip):
        path.write_bytes(source.read_bytes())
        with sqlite3.connect(path) as connection:
            ids = [r[0] for r in connection.execute("SELECT id FROM refs ORDER BY id")]
            blob = bytearray(connection.execute("SELECT features FROM refs WHERE id = ?", (ids[row],)).fetchone()[0])
            blob[byte] ^= flip
            connection.execute("UPDATE refs SET features = ? WHERE id = ?", (bytes(blob), ids[row]))
        connection.close()
        with pytest.raises(ProjectError, match="damaged"):
            with open_store(path, {"features": 1}, create=False) as store:
                store.references("alice")

    check()


def _features_of(path, scale):
    """A stand-in feature function for the cache test: the bytes' mean and length, scaled."""
    data = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    return np.array([data.mean() * scale, data.size, scale], dtype=np.float32)


def test_damaged_cache_entries_never_change_an_answer(tmp_path):
    from inkvoice.core.extraction import extract_many

    files = []
    for index in range(6):
        files.append(tmp_path / f"{index}.bin")
        files[-1].write_bytes(bytes(range(index, index + 40)))
    truth = np.stack(extract_many(_features_of, files, {"scale": 2.0}, n_jobs=1))
    cache = tmp_path / "cache"
    extract_many(_features_of, files, {"scale": 2.0}, cache_dir=cache, n_jobs=1)
    entries = sorted(path for path in (cache / "features").rglob("*") if path.is_file())
    originals = {path: path.read_bytes() for path in entries}

    @FUZZ
    @given(st.sampled_from(entries), st.sampled_from(entries), st.integers(0, 2))
    def check(victim, other, how):
        for path, data in originals.items():
            path.write_bytes(data)
        data = originals[victim]
        victim.write_bytes({0: data[:-3], 1: data[:-4] + b"\x00\x00\xc0\x7f", 2: originals[other]}[how])
        found = extract_many(_features_of, files, {"scale": 2.0}, cache_dir=cache, n_jobs=1)
        np.testing.assert_array_equal(np.stack(found), truth)

    check()
