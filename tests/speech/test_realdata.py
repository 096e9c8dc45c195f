"""Accuracy floors on the Free Spoken Digit Dataset (set INKVOICE_DATA; see bench/speech_accuracy.py).

The floors sit a little below the figures measured by the benchmark, so a regression fails.
"""

import json

import numpy as np
import pytest
import soundfile
from click.testing import CliRunner

from inkvoice.core.extraction import ExtractionSettings, extract_many
from inkvoice.speech.cli import main
from inkvoice.speech.dataset import load_dataset, split_indices
from inkvoice.speech.features import extract, feature_parameters
from inkvoice.speech.model import train
from inkvoice.speech.sounds import NON_SPEECH, apply_condition, digit_string, non_speech
from tests.speech.conftest import write

pytestmark = pytest.mark.realdata

# Fewer augmented copies than the default (24) keep each training here well under a minute;
# bench/speech_accuracy.py --copies 8 measures this setting.
COPIES = 8
NO_CACHE = ExtractionSettings(cache=False)
OFFICIAL_FLOOR = 0.985  # measured 0.996 (bench/speech_accuracy.py --copies 8)
NEW_SPEAKER = "jackson"
NEW_SPEAKER_FLOOR = 0.88  # measured 0.904 (bench/speech_accuracy.py --copies 8 --speakers jackson)
# measured 0.936 (bench/speech_accuracy.py --copies 8 --speakers jackson --extra data/speech)
WITH_SYNTHETIC_VOICES_FLOOR = 0.91
# The same model on NEW_SPEAKER's clips (every second one) in the benchmark's conditions, on
# made non-speech sounds and synthetic out-of-vocabulary words, and on digit strings of his.
# Floors sit below the figures bench/speech_accuracy.py measured for this speaker (--copies 8
# --test-copies 8 --extra data/speech): window 96.4%, 10 dB 56.4%, phone band 85.2%,
# non-speech rejected 100%, other words 46%, digits rejected 0.4%, paused strings with the
# right digit count 90% clean and 60% at 10 dB, digit error rates 7.9% and 42.4%.
CONDITION_FLOORS = {"window": 0.85, "snr10": 0.35, "phone": 0.70}
NON_SPEECH_REJECTED_FLOOR = 0.90
OTHER_WORDS_REJECTED_FLOOR = 0.25
DIGITS_REJECTED_CEILING = 0.05
STRING_COUNT_FLOOR = 0.5
STRING_DIGIT_FLOOR = 0.6


@pytest.fixture(scope="session")
def fsdd(fsdd_dir):
    return load_dataset(fsdd_dir)


def accuracy(model, dataset):
    records = model.predict_files(dataset.paths)
    assert not any("error" in r for r in records)
    return float(np.mean(np.array([r["label"] for r in records]) == dataset.labels))


@pytest.fixture(scope="session")
def official_model(fsdd, tmp_path_factory):
    train_indices, test_indices = split_indices(fsdd, "official")
    model, failures = train(fsdd, train_indices, augmentation={"copies": COPIES}, extraction=NO_CACHE)
    assert failures == []
    path = tmp_path_factory.mktemp("fsdd") / "digits.npz"
    model.save(path)
    return model, path, fsdd.subset(test_indices)


def test_fsdd_is_complete(fsdd):
    assert len(fsdd) == 2500 and fsdd.layout == "fsdd"
    assert sorted(set(fsdd.speakers.tolist())) == ["george", "jackson", "nicolas", "theo", "yweweler"]


def test_official_split_accuracy(official_model):
    model, _, test = official_model
    assert accuracy(model, test) >= OFFICIAL_FLOOR


def test_cli_evaluate_reports_the_same_accuracy(official_model, fsdd_dir):
    model, path, test = official_model
    result = CliRunner().invoke(main, ["evaluate", str(path), str(fsdd_dir), "--split", "official", "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["n_clips"] == 250
    assert report["accuracy"] == pytest.approx(accuracy(model, test))
    assert set(report["per_speaker"]) == {"george", "jackson", "nicolas", "theo", "yweweler"}


def test_an_unseen_speaker(fsdd):
    train_indices, test_indices = split_indices(fsdd, "speaker", test_speaker=NEW_SPEAKER)
    model, _ = train(fsdd, train_indices, augmentation={"copies": COPIES}, extraction=NO_CACHE)
    assert accuracy(model, fsdd.subset(test_indices)) >= NEW_SPEAKER_FLOOR


@pytest.fixture(scope="session")
def unseen_model(fsdd, demo_dir):
    """A model that never heard NEW_SPEAKER, trained with the project's synthetic voices, and his clips."""
    train_indices, test_indices = split_indices(fsdd, "speaker", test_speaker=NEW_SPEAKER)
    combined, train_indices = fsdd.with_extra(load_dataset(demo_dir), train_indices)
    model, _ = train(combined, train_indices, augmentation={"copies": COPIES}, extraction=NO_CACHE)
    return model, fsdd.subset(test_indices)


def test_the_projects_synthetic_voices_help_an_unseen_speaker(unseen_model):
    model, test = unseen_model
    assert accuracy(model, test) >= WITH_SYNTHETIC_VOICES_FLOOR


def conditioned(test, condition, folder, every=2):
    """Every ``every``-th clip of ``test`` under ``condition``, written as wavs: a Dataset-like (paths, labels)."""
    generator = np.random.default_rng(0)
    paths, labels = [], []
    for path, label in list(zip(test.paths, test.labels))[::every]:
        samples, rate = soundfile.read(path, dtype="float32")
        target = folder / condition / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(target, apply_condition(samples, rate, condition, generator), rate, subtype="FLOAT")
        paths.append(target)
        labels.append(label)
    return paths, np.array(labels)


@pytest.mark.parametrize("condition", sorted(CONDITION_FLOORS))
def test_an_unseen_speaker_in_real_conditions(unseen_model, tmp_path, condition):
    model, test = unseen_model
    paths, labels = conditioned(test, condition, tmp_path)
    records = model.predict_files(paths)
    assert len(records) == len(paths) and not any("error" in r for r in records)
    assert np.mean(np.array([r["label"] for r in records]) == labels) >= CONDITION_FLOORS[condition]


def test_non_speech_and_other_words_are_rejected_and_digits_are_not(unseen_model, tmp_path, demo_dir):
    model, test = unseen_model
    generator = np.random.default_rng(3)
    sounds = []
    for kind in NON_SPEECH:
        for number in range(3):
            sounds.append(write(tmp_path / f"{kind}_{number}.wav", non_speech(kind, 8000, generator)))
    other_words = sorted((demo_dir.parent / "speech_oov").rglob("*.wav"))
    assert len(other_words) == 160
    for paths, floor in ((sounds, NON_SPEECH_REJECTED_FLOOR), (other_words, OTHER_WORDS_REJECTED_FLOOR)):
        records = model.predict_files(paths)
        assert np.mean([r["label"] == "unknown" for r in records]) >= floor
    records = model.predict_files(test.paths)
    assert np.mean([r["label"] == "unknown" for r in records]) <= DIGITS_REJECTED_CEILING


def test_transcribe_digit_strings_of_an_unseen_speaker(unseen_model, tmp_path):
    model, test = unseen_model
    generator = np.random.default_rng(4)
    paths, truths = [], []
    for number in range(12):
        chosen = generator.choice(len(test), size=int(generator.integers(3, 11)), replace=False)
        clips = [soundfile.read(test.paths[i], dtype="float32")[0] for i in chosen]
        samples, _ = digit_string(clips, 8000, generator)
        if number % 2:
            samples = apply_condition(samples, 8000, "snr10", generator)
        paths.append(write(tmp_path / f"string_{number}.wav", samples))
        truths.append("".join(test.labels[chosen]))
    records = model.transcribe_files(paths)
    assert len(records) == 12 and not any("error" in r for r in records)
    counts_right = np.mean([len(r["digits"]) == len(t) for r, t in zip(records, truths)])
    digits_right = np.mean([a == b for r, t in zip(records, truths) if len(r["digits"]) == len(t) for a, b in zip(r["digits"], t)])
    assert counts_right >= STRING_COUNT_FLOOR and digits_right >= STRING_DIGIT_FLOOR


def test_the_feature_cache_gives_the_same_vectors_faster(fsdd, tmp_path):
    import time

    paths = fsdd.paths[:600]
    parameters = {**feature_parameters(), "max_seconds": 10.0}
    started = time.perf_counter()
    cold = extract_many(extract, paths, parameters, cache_dir=tmp_path, n_jobs=2)
    cold_seconds = time.perf_counter() - started
    started = time.perf_counter()
    warm = extract_many(extract, paths, parameters, cache_dir=tmp_path, n_jobs=2)
    warm_seconds = time.perf_counter() - started
    np.testing.assert_array_equal(np.stack(cold), np.stack(warm))
    assert warm_seconds < cold_seconds
