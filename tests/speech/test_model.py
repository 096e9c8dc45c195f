"""Training, saving, loading and fine-tuning speech models through the library."""

import numpy as np
import pytest

from inkvoice.core.bundle import save_model
from inkvoice.core.errors import DataError, ModelFileError, ParameterError, ProjectError
from inkvoice.core.estimator import MlpClassifier
from inkvoice.core.extraction import ExtractionSettings
from inkvoice.speech.dataset import load_dataset, split_indices
from inkvoice.speech.evaluation import evaluate
from inkvoice.speech.model import SpeechModel, train, train_folder
from tests.speech.conftest import word, write

FAST = {"epochs": 30, "hidden_sizes": [32], "seed": 0}
ONE = ExtractionSettings(n_jobs=1)


@pytest.fixture
def tone_model(tone_folders):
    dataset = load_dataset(tone_folders)
    model, failures = train(dataset, np.arange(len(dataset)), training=FAST, extraction=ONE)
    assert failures == []
    return model, dataset


def test_a_small_vocabulary_is_learnt(tone_model):
    model, dataset = tone_model
    records = model.predict_files(dataset.paths, extraction=ONE)
    assert len(records) == len(dataset) and not any("error" in r for r in records)
    assert np.mean(np.array([r["label"] for r in records]) == dataset.labels) == 1.0


def test_save_and_load_give_identical_predictions(tone_model, tmp_path):
    model, dataset = tone_model
    model.save(tmp_path / "words.npz")
    loaded = SpeechModel.load(tmp_path / "words.npz")
    assert loaded.labels == model.labels
    assert loaded.features == model.features
    before, _ = model.predict_proba_files(dataset.paths)
    after, _ = loaded.predict_proba_files(dataset.paths)
    np.testing.assert_allclose(np.stack(before), np.stack(after), atol=1e-6)


def test_training_skips_bad_files_and_reports_them(tone_folders):
    (tone_folders / "low" / "anna_broken.wav").write_text("not audio")
    dataset = load_dataset(tone_folders)
    model, failures = train(dataset, np.arange(len(dataset)), training=FAST, extraction=ONE)
    assert [path.name for path, _ in failures] == ["anna_broken.wav"]
    assert "anna_broken.wav" in str(failures[0][1])
    assert model.metadata["training"]["n_clips"] == len(dataset) - 1


def test_same_seed_same_model(tone_folders):
    dataset = load_dataset(tone_folders)
    first, _ = train(dataset, np.arange(len(dataset)), training=FAST, extraction=ONE)
    second, _ = train(dataset, np.arange(len(dataset)), training=FAST, extraction=ONE)
    np.testing.assert_array_equal(
        first.networks[0].network_.dense_layers[0].weights, second.networks[0].network_.dense_layers[0].weights
    )


def test_fine_tuning_learns_a_new_voice_without_forgetting(demo_dir):
    dataset = load_dataset(demo_dir)
    train_indices, new_voice = split_indices(dataset, "speaker", test_speaker="us-klatt")
    base, _ = train(dataset, train_indices, augmentation={"copies": 2}, training={"epochs": 30, "seed": 0, "test_copies": 2})
    old = dataset.subset(train_indices)

    def accuracy(model, data):
        return np.mean(np.array([r["label"] for r in model.predict_files(data.paths)]) == data.labels)

    old_before = accuracy(base, old)
    new_before = accuracy(base, dataset.subset(new_voice))
    tuned, _ = train(dataset, new_voice, augmentation={"copies": 2}, init=base)  # FINE_TUNING's epochs and step
    assert new_before < 1.0
    assert accuracy(tuned, dataset.subset(new_voice)) == 1.0
    assert accuracy(tuned, old) >= old_before - 0.02
    assert tuned.metadata["training"]["fine_tuned"] is True


def test_fine_tuning_cannot_add_labels(tone_model, demo_dir):
    model, _ = tone_model
    digits = load_dataset(demo_dir)
    with pytest.raises(ParameterError, match="fine-tuning cannot add labels"):
        train(digits, np.arange(5), training=FAST, init=model, extraction=ONE)


def test_bad_model_files_are_refused(tmp_path, tone_model):
    text = tmp_path / "notes.npz"
    text.write_text("hello")
    with pytest.raises(ModelFileError):
        SpeechModel.load(text)
    other = MlpClassifier(hidden_sizes=(4,), max_epochs=2, random_state=0).fit(np.eye(4), [0, 1, 0, 1])
    save_model(tmp_path / "other.npz", "signature", {"network0": other}, {})
    with pytest.raises(ModelFileError, match="'signature' model, not a 'speech' model"):
        SpeechModel.load(tmp_path / "other.npz")
    save_model(tmp_path / "short.npz", "speech", {"network0": other}, {"features": {}})
    with pytest.raises(ModelFileError, match="expects 4 features"):
        SpeechModel.load(tmp_path / "short.npz")


def test_prediction_reuses_the_stored_feature_parameters(tone_folders, tmp_path):
    dataset = load_dataset(tone_folders)
    model, _ = train(dataset, np.arange(len(dataset)), features={"n_mfcc": 12, "n_segments": 4}, training=FAST, extraction=ONE)
    model.save(tmp_path / "custom.npz")
    loaded = SpeechModel.load(tmp_path / "custom.npz")
    assert loaded.features["n_mfcc"] == 12 and loaded.features["n_segments"] == 4
    predicted = np.array([r["label"] for r in loaded.predict_files(dataset.paths, extraction=ONE)])
    assert np.mean(predicted == dataset.labels) == 1.0


def test_a_model_file_from_before_the_second_detector_pass_keeps_one_pass(tone_model, tmp_path):
    model, _ = tone_model
    older = SpeechModel(model.networks, {k: v for k, v in model.features.items() if k != "vad_passes"}, model.metadata)
    older.save(tmp_path / "older.npz")
    assert SpeechModel.load(tmp_path / "older.npz").features["vad_passes"] == 1
    model.save(tmp_path / "today.npz")
    assert SpeechModel.load(tmp_path / "today.npz").features == model.features


def test_a_rerun_reads_the_cache_and_a_changed_file_is_extracted_again(tone_folders, tmp_path, monkeypatch):
    import inkvoice.speech.model as model_module
    from inkvoice.speech.features import feature_parameters

    monkeypatch.setenv("INKVOICE_CACHE", str(tmp_path / "cache"))
    paths = load_dataset(tone_folders).paths
    parameters = feature_parameters()
    first, _ = model_module.extract_features(paths, parameters, extraction=ONE)
    assert any((tmp_path / "cache").rglob("sets/*.entry"))  # the whole list is kept for a re-run
    second, _ = model_module.extract_features(paths, parameters, extraction=ONE)
    np.testing.assert_array_equal(np.stack(first), np.stack(second))
    write(paths[0], word("high", 1.2))
    third, _ = model_module.extract_features(paths, parameters, extraction=ONE)
    assert not np.allclose(third[0], first[0])
    np.testing.assert_array_equal(np.stack(third[1:]), np.stack(first[1:]))


def test_fine_tuning_leaves_the_initial_model_unchanged(tone_model, tone_folders):
    model, dataset = tone_model
    weights = model.networks[0].network_.dense_layers[0].weights.copy()
    tuned, _ = train(dataset, np.arange(6), training={"epochs": 3, "seed": 1}, init=model, extraction=ONE)
    np.testing.assert_array_equal(model.networks[0].network_.dense_layers[0].weights, weights)
    assert not np.array_equal(tuned.networks[0].network_.dense_layers[0].weights, weights)


def test_predict_files_gives_plain_records_one_per_path(tone_model, tmp_path):
    model, dataset = tone_model
    missing = tmp_path / "missing.wav"
    silent = write(tmp_path / "silent.wav", np.zeros(4000, np.float32))
    records = model.predict_files([dataset.paths[0], missing, silent], top_k=2)
    assert [r["file"] for r in records] == [str(dataset.paths[0]), str(missing), str(silent)]
    assert records[0]["label"] == dataset.labels[0] and len(records[0]["top"]) == 2
    assert 0.5 < records[0]["confidence"] <= 1.0 and "reason" not in records[0]
    assert "no such" in records[1]["error"] and "missing.wav" in records[1]["error"]
    assert records[2]["label"] == "unknown" and records[2]["reason"] == "no speech found"


def test_min_confidence_answers_unknown_with_the_reason(tone_model):
    model, dataset = tone_model
    records = model.predict_files(dataset.paths[:3], min_confidence=1.0)
    assert all(r["label"] == "unknown" and r["reason"].startswith("confidence") for r in records)


def test_an_interrupted_training_returns_no_model(tone_folders):
    dataset = load_dataset(tone_folders)

    def interrupt(record):
        raise KeyboardInterrupt

    with pytest.raises((ProjectError, KeyboardInterrupt), match="interrupted|^$"):
        train(dataset, np.arange(len(dataset)), training=FAST, extraction=ONE, callback=interrupt)


def test_evaluate_refuses_labels_the_model_does_not_know(tone_model, demo_dir):
    model, _ = tone_model
    with pytest.raises(DataError, match="labels .* are not among the model's"):
        evaluate(model, load_dataset(demo_dir), extraction=ONE)


def test_train_folder_records_the_true_number_of_clips(tone_folders):
    (tone_folders / "low" / "anna_broken.wav").write_bytes(b"RIFF not really")
    model, failures = train_folder(tone_folders, split="none", augment=False, training=FAST, extraction=ONE)
    assert len(failures) == 1 and "anna_broken.wav" in str(failures[0][1])
    assert model.metadata["data"]["train"] == 24 == model.metadata["training"]["n_clips"]


def test_a_damaged_mel_filterbank_is_refused(tone_model, tmp_path):
    import zipfile

    model, _ = tone_model
    model.save(tmp_path / "good.npz")
    with zipfile.ZipFile(tmp_path / "good.npz") as source, zipfile.ZipFile(tmp_path / "zero.npz", "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "array/mel_basis.npy":
                import io

                basis = np.load(io.BytesIO(data))
                buffer = io.BytesIO()
                np.save(buffer, np.zeros_like(basis))
                data = buffer.getvalue()
            target.writestr(item, data)
    with pytest.raises(ModelFileError, match="mel_basis.* all zeros"):
        SpeechModel.load(tmp_path / "zero.npz")


def test_describe_gives_the_true_layers_and_activations(tone_folders):
    dataset = load_dataset(tone_folders)
    two = dataset.subset(np.flatnonzero(dataset.labels != "high"))
    model, _ = train(two, np.arange(len(two)), training=FAST, extraction=ONE)
    description = model.describe()
    assert description["layers"] == [model.networks[0].n_features_in_, 32, 1]
    assert (description["activation"], description["output"]) == ("relu", "sigmoid")


def test_a_word_the_rejection_class_only_half_claims_keeps_its_digit():
    # Unfamiliar voices and words in noise give the rejection class 0.5-0.7 where non-speech
    # gives it nearly 1: the default threshold (chosen on leave-one-speaker-out folds) answers them.
    from inkvoice.speech.features import feature_parameters
    from inkvoice.speech.model import DEFAULT_REJECT_THRESHOLD, REJECT_CLASS

    network = MlpClassifier(hidden_sizes=(4,), max_epochs=1, random_state=np.random.default_rng(0))
    network.fit(np.random.default_rng(0).normal(size=(6, 3)), np.array(["0", "1", REJECT_CLASS] * 2))
    model = SpeechModel([network], feature_parameters(), {"prediction": {"reject_threshold": DEFAULT_REJECT_THRESHOLD}})
    column = model.classes.index(REJECT_CLASS)
    half_claimed = np.full(3, 0.0)
    half_claimed[column], half_claimed[model.classes.index("0")] = 0.65, 0.35
    assert model.decide(half_claimed)["label"] == "0"
    claimed = np.full(3, 0.0)
    claimed[column], claimed[model.classes.index("1")] = 0.95, 0.05
    assert model.decide(claimed)["label"] == "unknown"
