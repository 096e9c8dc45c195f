"""Training, saving, loading and fine-tuning speech models through the library."""

import numpy as np
import pytest

from inkvoice.core.bundle import save_model
from inkvoice.core.errors import ModelFileError, ParameterError
from inkvoice.core.estimator import MlpClassifier
from inkvoice.speech.dataset import load_dataset, split_indices
from inkvoice.speech.model import SpeechModel, train
from tests.speech.conftest import word, write

FAST = {"epochs": 30, "hidden_sizes": [32], "seed": 0}


@pytest.fixture
def tone_model(tone_folders):
    dataset = load_dataset(tone_folders)
    model, failures = train(dataset, np.arange(len(dataset)), training=FAST, n_jobs=1)
    assert failures == []
    return model, dataset


def test_a_small_vocabulary_is_learnt(tone_model):
    model, dataset = tone_model
    probabilities, failures = model.predict_proba_files(dataset.paths)
    predicted = [model.labels[int(p.argmax())] for p in probabilities]
    assert failures == []
    assert np.mean(np.array(predicted) == dataset.labels) == 1.0


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
    model, failures = train(dataset, np.arange(len(dataset)), training=FAST, n_jobs=1)
    assert [path.name for path, _ in failures] == ["anna_broken.wav"]
    assert "anna_broken.wav" in str(failures[0][1])
    assert model.metadata["training"]["n_clips"] == len(dataset) - 1


def test_same_seed_same_model(tone_folders):
    dataset = load_dataset(tone_folders)
    first, _ = train(dataset, np.arange(len(dataset)), training=FAST, n_jobs=1)
    second, _ = train(dataset, np.arange(len(dataset)), training=FAST, n_jobs=1)
    np.testing.assert_array_equal(
        first.networks[0].network_.dense_layers[0].weights, second.networks[0].network_.dense_layers[0].weights
    )


def test_fine_tuning_learns_a_new_voice_without_forgetting(demo_dir):
    dataset = load_dataset(demo_dir)
    train_indices, new_voice = split_indices(dataset, "speaker", test_speaker="us-klatt")
    base, _ = train(dataset, train_indices, augmentation={"copies": 2}, training={"epochs": 30, "seed": 0, "test_copies": 2})
    old = dataset.subset(train_indices)

    def accuracy(model, data):
        probabilities, _ = model.predict_proba_files(data.paths)
        return np.mean(np.array([model.labels[int(p.argmax())] for p in probabilities]) == data.labels)

    old_before = accuracy(base, old)
    new_before = accuracy(base, dataset.subset(new_voice))
    tuned, _ = train(
        dataset, new_voice, augmentation={"copies": 2}, training={"epochs": 15, "learning_rate": 3e-4, "seed": 0}, init=base
    )
    assert new_before < 1.0
    assert accuracy(tuned, dataset.subset(new_voice)) == 1.0
    assert accuracy(tuned, old) >= old_before - 0.02
    assert tuned.metadata["training"]["fine_tuned"] is True


def test_fine_tuning_cannot_add_labels(tone_model, demo_dir):
    model, _ = tone_model
    digits = load_dataset(demo_dir)
    with pytest.raises(ParameterError, match="fine-tuning cannot add labels"):
        train(digits, np.arange(5), training=FAST, init=model, n_jobs=1)


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
    model, _ = train(dataset, np.arange(len(dataset)), features={"n_mfcc": 12, "n_segments": 4}, training=FAST, n_jobs=1)
    model.save(tmp_path / "custom.npz")
    loaded = SpeechModel.load(tmp_path / "custom.npz")
    assert loaded.features["n_mfcc"] == 12 and loaded.features["n_segments"] == 4
    probabilities, failures = loaded.predict_proba_files(dataset.paths)
    predicted = np.array([loaded.labels[int(p.argmax())] for p in probabilities])
    assert failures == [] and np.mean(predicted == dataset.labels) == 1.0


def test_a_rerun_reads_the_cache_and_a_changed_file_is_extracted_again(tone_folders, tmp_path, monkeypatch):
    import inkvoice.speech.model as model_module
    from inkvoice.speech.features import feature_parameters

    monkeypatch.setenv("INKVOICE_CACHE", str(tmp_path / "cache"))
    paths = load_dataset(tone_folders).paths
    parameters = feature_parameters()
    first, _ = model_module.extract_features(paths, parameters, n_jobs=1)
    assert any((tmp_path / "cache").rglob("sets/*.entry"))  # the whole list is kept for a re-run
    second, _ = model_module.extract_features(paths, parameters, n_jobs=1)
    np.testing.assert_array_equal(np.stack(first), np.stack(second))
    write(paths[0], word("high", 1.2))
    third, _ = model_module.extract_features(paths, parameters, n_jobs=1)
    assert not np.allclose(third[0], first[0])
    np.testing.assert_array_equal(np.stack(third[1:]), np.stack(first[1:]))


def test_fine_tuning_leaves_the_initial_model_unchanged(tone_model, tone_folders):
    model, dataset = tone_model
    weights = model.networks[0].network_.dense_layers[0].weights.copy()
    tuned, _ = train(dataset, np.arange(6), training={"epochs": 3, "seed": 1}, init=model, n_jobs=1)
    np.testing.assert_array_equal(model.networks[0].network_.dense_layers[0].weights, weights)
    assert not np.array_equal(tuned.networks[0].network_.dense_layers[0].weights, weights)
