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
    # Finite yet far outside anything training makes: a scale of 1e-300 is 0 in float32, and
    # answers would be NaN.
    "a standardiser scale of 1e-300": (
        lambda good: rewrite(good, set_entry("model/main/standardizer.scale", np.full(6, 1e-300))),
        r"standardizer.scale holds values from 1e-300 .* outside \[1e-12, 1e\+12\]",
    ),
    "a negative standardiser scale": (
        lambda good: rewrite(good, set_entry("model/main/standardizer.scale", np.full(6, -1.0))),
        "standardizer.scale holds values from -1",
    ),
    "a standardiser mean of 1e300": (
        lambda good: rewrite(good, set_entry("model/main/standardizer.mean", np.full(6, 1e300))),
        "standardizer.mean holds values",
    ),
    "a weight of 1e30": (
        lambda good: rewrite(good, set_entry("model/main/layer0.weights", np.full((6, 16), 1e30, np.float32))),
        r"layer0.weights holds values from 1e\+30",
    ),
    "a bias of -1e20": (
        lambda good: rewrite(good, set_entry("model/main/layer2.bias", np.full(1, -1e20, np.float32))),
        "layer2.bias holds values from -1e\\+20",
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


def _npy_member(shape, dtype="<f4", payload=b""):
    """An .npy member whose header declares ``shape`` and whose data is ``payload``."""
    header = repr({"descr": dtype, "fortran_order": False, "shape": shape}).encode()
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + payload


def with_member(good, member, data, compress=zipfile.ZIP_STORED):
    """``good`` with one member added or replaced, bytes as given."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(good)) as source, zipfile.ZipFile(buffer, "w") as target:
        for info in source.infolist():
            if info.filename != member:
                target.writestr(info, source.read(info))
        target.writestr(zipfile.ZipInfo(member), data, compress_type=compress)
    return buffer.getvalue()


def declare_size(payload, member, size):
    """Make the zip directory declare ``size`` uncompressed bytes for ``member``."""
    data = bytearray(payload)
    position = 0
    while True:
        position = payload.index(b"PK\x01\x02", position)
        name_length = int.from_bytes(data[position + 28 : position + 30], "little")
        if payload[position + 46 : position + 46 + name_length] == member.encode():
            data[position + 24 : position + 28] = size.to_bytes(4, "little")
            return bytes(data)
        position += 4


CRAFTED = {
    "a 10^12 shape in an npy header": (
        lambda good: with_member(good, "model/main/layer0.bias.npy", _npy_member((10**12,))),
        "array 'layer0.bias' has shape",
    ),
    "a huge extra array declared": (
        lambda good: with_member(good, "array/big.npy", _npy_member((10**12,))), "declares shape",
    ),
    "a zip bomb (600 MB declared)": (
        lambda good: declare_size(with_member(good, "array/bomb.npy", b"\0" * 1000, zipfile.ZIP_DEFLATED),
                                  "array/bomb.npy", 600 * 2**20),
        "over the limit",
    ),
    "object dtype in a weight's header": (
        lambda good: with_member(good, "model/main/layer0.bias.npy", _npy_member((16,), "|O")), "object arrays",
    ),
    "an extra member": (lambda good: with_member(good, "model/other/x.npy", _npy_member((1,), payload=b"\0" * 4)),
                        "unexpected member 'model/other/x'"),
    "a stray file in the archive": (lambda good: with_member(good, "readme.txt", b"hello"), "unexpected member"),
    "100,000-deep metadata": (
        lambda good: rewrite(good, set_entry("metadata", np.array("[" * 100_000 + "]" * 100_000))),
        "nested deeper than",
    ),
    "'models' is a list": (lambda good: rewrite(good, edit_metadata(models=[])), "'models' must name at least one network"),
    "string numbers in the layer sizes": (
        lambda good: rewrite(good, _edit_description(layer_sizes=["6", "16", "8", "1"])), "layer_sizes must be a list",
    ),
    "a string format version": (lambda good: rewrite(good, edit_metadata(format_version="1")), "format_version must be a whole number"),
    "NaN in the metadata": (lambda good: rewrite(good, edit_metadata(extra=float("nan"))), "metadata field extra must be a finite number; got nan"),
    "huge described layers with small arrays": (
        lambda good: rewrite(good, _edit_description(layer_sizes=[10**6, 10**6, 8, 1], n_features=10**6)),
        "array 'layer0.weights' has shape",
    ),
    "classes not a list": (lambda good: rewrite(good, _edit_description(classes="yes")), "classes must be a list"),
}


def _edit_description(**changes):
    def change(entries):
        document = json.loads(str(entries["metadata"]))
        document["models"]["main"].update(changes)
        entries["metadata"] = np.array(json.dumps(document))

    return change


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_model_files_are_refused_within_a_small_budget(trained, tmp_path, case):
    import time
    import tracemalloc

    model, _ = trained
    make, message = CRAFTED[case]
    path = tmp_path / "crafted.npz"
    path.write_bytes(make(dumps("speech", {"main": model}, {"extra": 1})))
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(ModelFileError, match=message) as caught:
            load_model(path, "speech")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 2.0
    assert peak < 20 * 2**20
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_format_version_written_as_a_float_is_read(trained):
    model, X = trained
    payload = rewrite(dumps("speech", {"main": model}), edit_metadata(format_version=1.0))
    np.testing.assert_array_equal(loads(payload, "speech").models["main"].predict(X), model.predict(X))


SCHEMA = bundle.ModelSchema(
    fields={"settings": {"threshold": bundle.NUMBER, "grid": [int], "mode": bundle.OptionalField(str)}},
    arrays={"filterbank": bundle.ArraySpec(ndim=2, not_all_zero=True, non_negative=True),
            "labels": bundle.ArraySpec(ndim=1, kinds="U", required=False)},
)


@pytest.mark.parametrize("metadata, arrays, message", [
    ({"settings": {"threshold": "0.5", "grid": [2]}}, None, "field settings.threshold must be a finite number; got '0.5'"),
    ({"settings": {"threshold": True, "grid": [2]}}, None, "settings.threshold must be a finite number"),
    ({"settings": {"threshold": 0.5, "grid": [2.5]}}, None, r"settings.grid\[0\] must be a whole number"),
    ({"settings": {"threshold": 0.5, "grid": [2], "mode": 3}}, None, "settings.mode must be a string; got 3"),
    ({"settings": {"grid": [2]}}, None, "not a complete speech model: metadata field settings.threshold is missing"),
    ({"settings": {"threshold": 0.5, "grid": [2]}}, {"filterbank": np.zeros((4, 3))}, "'filterbank' is all zeros"),
    ({"settings": {"threshold": 0.5, "grid": [2]}}, {"filterbank": -np.ones((4, 3))}, "negative values"),
    ({"settings": {"threshold": 0.5, "grid": [2]}}, {"filterbank": np.ones(3)}, "has 1 dimensions; expected 2"),
    ({"settings": {"threshold": 0.5, "grid": [2]}}, {"filterbank": np.full((2, 2), np.inf)}, "NaN or infinite"),
    ({"settings": {"threshold": 0.5, "grid": [2]}}, {}, "array 'filterbank' is missing"),
    ({"settings": {"threshold": 0.5, "grid": [2]}}, {"filterbank": np.ones((2, 2)), "x": np.ones(2)},
     "unexpected member 'array/x'"),
])
def test_a_pipeline_schema_refuses_wrong_fields_and_arrays(trained, metadata, arrays, message):
    model, _ = trained
    arrays = {"filterbank": np.ones((4, 3))} if arrays is None else arrays
    payload = dumps("speech", {"main": model}, metadata, arrays)
    with pytest.raises(ModelFileError, match=message):
        loads(payload, "speech", name="m.npz", schema=SCHEMA)


def test_a_pipeline_schema_accepts_a_good_file(trained):
    model, _ = trained
    payload = dumps("speech", {"main": model}, {"settings": {"threshold": 0.5, "grid": [2, 4]}},
                    {"filterbank": np.ones((4, 3)), "labels": np.array(["a", "b"])})
    loaded = loads(payload, "speech", schema=SCHEMA)
    assert loaded.metadata["settings"]["threshold"] == 0.5 and loaded.arrays["labels"].tolist() == ["a", "b"]


@pytest.mark.parametrize("special", ["fifo", "device", "folder", "loop"])
def test_special_files_are_refused_as_what_they_are(tmp_path, special):
    import os

    path = tmp_path / "model.npz"
    if special == "fifo":
        os.mkfifo(path)
    elif special == "device":
        path.symlink_to("/dev/zero")
    elif special == "folder":
        path.mkdir()
    else:
        path.symlink_to(path)
    expected = {"fifo": "named pipe", "device": "character device", "folder": "a folder", "loop": "loop of symbolic links"}
    with pytest.raises(ModelFileError, match=expected[special]):
        load_model(path, "speech")


def test_a_network_that_overflows_gives_no_probabilities():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4))
    model = MlpClassifier(hidden_sizes=(8,), max_epochs=2, random_state=0).fit(X, np.arange(60) % 3)
    arrays, description = model.to_arrays()
    arrays = {name: array.copy() for name, array in arrays.items()}
    for name in arrays:
        if name.endswith("weights"):
            arrays[name][...] = 1e4  # each number within range; together they overflow float32
    arrays["standardizer.scale"][...] = 1e-12
    broken = MlpClassifier.from_arrays(arrays, description)
    with pytest.raises(ModelFileError, match="NaN or infinite probabilities"), np.errstate(all="ignore"):
        broken.predict_proba(X * 1e20)
