"""The model file: exact round trip, atomic saving, and a clear refusal of every bad file."""

import io
import json
import zipfile

import numpy as np
import pytest

from inkvoice.core import bundle
from inkvoice.core.bundle import dumps, load_model, loads, save_model
from inkvoice.core.errors import ModelFileError
from inkvoice.core.estimator import MlpClassifier


@pytest.fixture(scope="module")
def trained():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 6))
    y = np.where(X[:, 0] + X[:, 1] > 0, "yes", "no")
    model = MlpClassifier(hidden_sizes=(16, 8), max_epochs=20, class_weight={"yes": 2.0}, random_state=0)
    return model.fit(X, y), X


def test_save_then_load_gives_identical_probabilities(trained, tmp_path):
    model, X = trained
    path = tmp_path / "model.npz"
    save_model(path, "speech", {"main": model}, {"features": {"n_mfcc": 13}}, {"extra": np.arange(3.0)})
    loaded = load_model(path, "speech")
    np.testing.assert_array_equal(loaded.models["main"].predict_proba(X), model.predict_proba(X))
    assert loaded.models["main"].classes_.tolist() == ["no", "yes"]
    assert loaded.models["main"].class_weight == {"yes": 2.0}
    assert loaded.metadata == {"features": {"n_mfcc": 13}}
    np.testing.assert_array_equal(loaded.arrays["extra"], np.arange(3.0))
    assert loaded.models["main"].history_.records == model.history_.records


def test_interrupted_save_keeps_the_previous_file(trained, tmp_path, monkeypatch):
    model, X = trained
    path = tmp_path / "model.npz"
    save_model(path, "speech", {"main": model})
    good = path.read_bytes()

    def half_write_then_die(self, data):
        with open(self, "wb") as handle:
            handle.write(data[: len(data) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(type(path), "write_bytes", half_write_then_die)
    with pytest.raises(KeyboardInterrupt):
        save_model(path, "speech", {"main": model})
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]


def rewrite(payload, change):
    """Re-pack a model file's entries after ``change(entries)`` edited them."""
    with np.load(io.BytesIO(payload), allow_pickle=False) as archive:
        entries = {key: archive[key] for key in archive.files}
    change(entries)
    buffer = io.BytesIO()
    np.savez(buffer, **entries)
    return buffer.getvalue()


def edit_metadata(**changes):
    def change(entries):
        document = json.loads(str(entries["metadata"]))
        document.update(changes)
        entries["metadata"] = np.array(json.dumps(document))

    return change


def set_entry(name, value):
    def change(entries):
        entries[name] = value

    return change


def object_array_file():
    buffer = io.BytesIO()
    np.savez(buffer, metadata=np.array(["x", None], dtype=object))
    return buffer.getvalue()


BAD_FILES = {
    "truncated": (lambda good: good[: len(good) // 2], "damaged or not an .npz model file"),
    "text renamed .npz": (lambda good: b"hello, I am not a model\n", "damaged or not an .npz model file"),
    "plain .npy": (lambda good: _npy_bytes(), "holds a single array"),
    "object arrays": (lambda good: object_array_file(), "object arrays, which are refused"),
    "no metadata": (lambda good: rewrite(good, lambda e: e.pop("metadata")), "has no metadata"),
    "newer format": (lambda good: rewrite(good, edit_metadata(format_version=99)), "newer than this version reads"),
    "other pipeline": (lambda good: rewrite(good, edit_metadata(pipeline="signature")), "is a 'signature' model, not a 'speech' model"),
    "wrong shape": (
        lambda good: rewrite(good, set_entry("model/main/layer1.weights", np.zeros((3, 3), np.float32))),
        "array 'layer1.weights' has shape",
    ),
    "missing array": (lambda good: rewrite(good, lambda e: e.pop("model/main/layer0.bias")), "'layer0.bias' is missing"),
    "non-finite weights": (
        lambda good: rewrite(good, set_entry("model/main/layer0.bias", np.full(16, np.nan, np.float32))),
        "non-finite or non-numeric weights",
    ),
}


def _npy_bytes():
    buffer = io.BytesIO()
    np.save(buffer, np.arange(4))
    return buffer.getvalue()


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_model_files_are_refused_with_a_clear_message(trained, tmp_path, case):
    model, _ = trained
    make, message = BAD_FILES[case]
    path = tmp_path / "bad.npz"
    path.write_bytes(make(dumps("speech", {"main": model})))
    with pytest.raises(ModelFileError, match=message) as caught:
        load_model(path, "speech")
    assert "\n" not in str(caught.value)
    assert "allow_pickle" not in str(caught.value)  # never advise loading a bad file unsafely


def test_missing_model_file(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        load_model(tmp_path / "nothing.npz", "speech")


def test_bytes_round_trip_and_reserved_metadata(trained):
    model, X = trained
    restored = loads(dumps("signature", {"w": model}), "signature")
    np.testing.assert_array_equal(restored.models["w"].predict(X), model.predict(X))
    with pytest.raises(ValueError, match="reserved"):
        dumps("speech", {"w": model}, {"pipeline": "other"})
    assert bundle.FORMAT_VERSION == 1
    assert zipfile.is_zipfile(io.BytesIO(dumps("speech", {"w": model})))
