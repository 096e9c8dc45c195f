"""MFCC features: agreement with librosa, fixed length, normalisation, parameters, augmentation."""

import numpy as np
import pytest

from inkvoice.core.errors import ParameterError
from inkvoice.speech import sounds
from inkvoice.speech.augment import augmentation_parameters, change_speed, negative, perturb
from inkvoice.speech.features import (
    analyse,
    deltas,
    extract,
    extract_augmented,
    feature_length,
    feature_parameters,
    mfcc,
    segment_means,
)
from inkvoice.speech.frontend import speech_span, word_boundaries
from tests.speech.conftest import RATE, tone, write


def test_mfcc_matches_librosa_with_the_same_settings():
    import librosa

    clip = tone(300.0, seconds=0.4, vibrato=2.0)
    parameters = feature_parameters(pre_emphasis=0.0, n_mfcc=20)
    reference = librosa.feature.mfcc(
        y=clip, sr=RATE, n_mfcc=parameters["n_mfcc"], n_fft=256, win_length=200, hop_length=80, n_mels=40, fmin=50.0, fmax=4000.0,
        center=True, pad_mode="constant",
    ).T
    ours = mfcc(clip, parameters)
    assert ours.shape == reference.shape
    np.testing.assert_allclose(ours, reference, atol=1e-2 * np.abs(reference).max())


def test_the_vector_has_the_announced_length_for_any_clip_length(tmp_path):
    parameters = feature_parameters()
    for seconds in (0.1, 0.3, 2.0):
        vector = extract(write(tmp_path / f"{seconds}.wav", tone(400.0, seconds)), **parameters)
        assert vector.shape == (feature_length(parameters),)
        assert np.all(np.isfinite(vector))


def test_level_does_not_change_the_features(tmp_path):
    parameters = feature_parameters()
    # Float samples, so that 16-bit rounding of the quiet clip does not add a noise floor.
    loud = extract(write(tmp_path / "loud.wav", tone(400.0, amplitude=0.9), subtype="FLOAT"), **parameters)
    quiet = extract(write(tmp_path / "quiet.wav", tone(400.0, amplitude=0.05), subtype="FLOAT"), **parameters)
    np.testing.assert_allclose(loud, quiet, atol=2e-2)


def test_different_sounds_give_different_features(tmp_path):
    parameters = feature_parameters()
    low = extract(write(tmp_path / "low.wav", tone(200.0)), **parameters)
    high = extract(write(tmp_path / "high.wav", tone(1500.0)), **parameters)
    assert np.linalg.norm(low - high) > 1.0


def test_cepstral_mean_normalisation_removes_a_fixed_channel():
    clip = tone(300.0, vibrato=3.0)
    filtered = np.convolve(clip, [1.0, 0.6], mode="same").astype(np.float32)
    parameters = feature_parameters(pre_emphasis=0.0)
    plain = mfcc(clip, parameters)
    coloured = mfcc(filtered, parameters)
    raw_gap = np.abs(plain.mean(0) - coloured.mean(0))[1:].max()
    normalised_gap = np.abs((plain - plain.mean(0)) - (coloured - coloured.mean(0)))[5:-5, 1:].mean()
    assert normalised_gap < raw_gap / 3


def test_segment_means_cover_short_and_long_inputs():
    frames = np.arange(10, dtype=np.float32)[:, None]
    np.testing.assert_allclose(segment_means(frames, 5)[:, 0], [0.5, 2.5, 4.5, 6.5, 8.5])
    np.testing.assert_allclose(segment_means(frames[:2], 4)[:, 0], [0, 0, 1, 1])


def test_deltas_of_a_ramp_are_its_slope():
    ramp = np.arange(20, dtype=np.float32)[:, None] * 2.0
    np.testing.assert_allclose(deltas(ramp, 2)[3:-3, 0], 2.0)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"n_mfcc": 0}, "n_mfcc"),
        ({"n_mfcc": 50}, "n_mfcc"),
        ({"hop_ms": 40.0}, "hop_ms"),
        ({"n_fft": 64}, "n_fft"),
        ({"fmax": 9000.0}, "fmax"),
        ({"cmvn": "sometimes"}, "cmvn must be one of"),
        ({"vad_passes": 3}, "vad_passes"),
        ({"window": 3}, "unknown feature parameter"),
    ],
)
def test_bad_parameters_are_refused_by_name(overrides, message):
    with pytest.raises(ParameterError, match=message):
        feature_parameters(**overrides)


def test_augmented_copies_are_repeatable_and_differ_from_the_clean_clip(tmp_path):
    path = write(tmp_path / "word.wav", tone(350.0, vibrato=2.0))
    parameters = feature_parameters()
    settings = augmentation_parameters(copies=3, negatives=2)
    first = extract_augmented(path, augmentation=settings, seed=7, **parameters)
    again = extract_augmented(path, augmentation=settings, seed=7, **parameters)
    other = extract_augmented(path, augmentation=settings, seed=8, **parameters)
    assert first.shape == (6, feature_length(parameters))
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(np.nan_to_num(first[1:]), np.nan_to_num(other[1:]))
    np.testing.assert_allclose(first[0], extract(path, **parameters), atol=1e-5)
    assert all(np.linalg.norm(first[k] - first[0]) > 1e-3 for k in range(1, 4) if np.all(np.isfinite(first[k])))


def test_speed_change_scales_duration_and_pitch():
    clip = tone(400.0, seconds=0.5)
    faster = change_speed(clip, 1.25)
    assert faster.size == pytest.approx(clip.size / 1.25, abs=1)
    peak = np.argmax(np.abs(np.fft.rfft(faster))) * RATE / faster.size
    assert peak == pytest.approx(500.0, rel=0.03)


def test_perturb_stays_in_range():
    settings = augmentation_parameters(snr_db=[0.0, 5.0], noise_probability=1.0, gain_db=20.0)
    variant = perturb(tone(300.0), RATE, settings, np.random.default_rng(0))
    assert np.all(np.abs(variant) <= 1.0)


@pytest.mark.parametrize(
    "overrides, message",
    [({"copies": -1}, "copies"), ({"speed": [1.2, 0.9]}, "speed"), ({"snr_db": 3}, "snr_db"), ({"pitch": 1}, "unknown"),
     ({"noise_probability": 1.5}, "noise_probability"), ({"negatives": -1}, "negatives"),
     ({"speech_negatives": 1.5}, "speech_negatives"), ({"more_noises": 1}, "more_noises")],
)
def test_bad_augmentation_settings_are_refused(overrides, message):
    with pytest.raises(ParameterError, match=message):
        augmentation_parameters(**overrides)


def word_in_noise(kind, snr_db, generator, lead=0.3, seconds=0.4):
    """A voiced word between ``lead`` seconds of noise ``kind`` at ``snr_db``, and where it lies (frames)."""
    clip = tone(140.0, seconds, harmonics=12, vibrato=2.0)
    padded = np.concatenate([np.zeros(int(lead * RATE), np.float32), clip, np.zeros(int(lead * RATE), np.float32)])
    noise = {**sounds.TRAINING_NOISES, **sounds.TEST_NOISES}[kind](padded.size, RATE, generator)
    return sounds.mix_at_snr(padded, noise, snr_db), (int(lead * 100), int((lead + seconds) * 100))


@pytest.mark.parametrize("kind", ["rain", "crackle"])
def test_a_second_pass_keeps_noise_that_comes_and_goes_out_of_the_word(kind):
    # The first pass takes its floor from the quietest frames, under which much of a fluctuating
    # noise counts as speech; the second takes it from the frames outside the speech found.
    generator = np.random.default_rng(5)
    errors = {1: [], 2: []}
    for _ in range(6):
        samples, (start, stop) = word_in_noise(kind, 10.0, generator)
        for passes in errors:
            parameters = feature_parameters(vad_passes=passes)
            power, noise = analyse(samples, parameters)
            found = speech_span(samples, power, noise, parameters)
            errors[passes].append(abs(found[0] - start) + abs(found[1] - stop))  # frames of 10 ms
    assert np.mean(errors[2]) <= 0.75 * np.mean(errors[1])


@pytest.mark.parametrize("kind", ["white", "pink", "hum", "fan"])
def test_the_second_pass_leaves_a_word_in_steady_noise_as_it_was(kind):
    generator = np.random.default_rng(6)
    for _ in range(4):
        samples, (start, stop) = word_in_noise(kind, 20.0, generator)
        spans = []
        for passes in (1, 2):
            parameters = feature_parameters(vad_passes=passes)
            power, noise = analyse(samples, parameters)
            spans.append(speech_span(samples, power, noise, parameters))
        assert abs(spans[1][0] - spans[0][0]) + abs(spans[1][1] - spans[0][1]) <= 2
        assert abs(spans[1][0] - start) + abs(spans[1][1] - stop) <= 10


def test_training_noises_are_unit_level_sounds_the_benchmarks_never_test_on():
    from inkvoice.speech.augment import training_noises

    basic = training_noises(augmentation_parameters())
    every = training_noises(augmentation_parameters(more_noises=True))
    assert set(basic) == set(sounds.TRAINING_NOISES) and set(every) - set(basic) == {"brown", "wind", "clatter", "music"}
    assert not set(every) & set(sounds.TEST_NOISES)
    generator = np.random.default_rng(3)
    for kind, make in every.items():
        noise = make(4000, RATE, generator)
        assert noise.dtype == np.float32 and noise.shape == (4000,), kind
        assert np.all(np.isfinite(noise)) and abs(float(np.sqrt(np.mean(noise.astype(np.float64) ** 2))) - 1.0) < 1e-3, kind


@pytest.mark.parametrize("share, depends_on_the_word", [(0.0, False), (1.0, True)])
def test_speech_negatives_sets_how_many_rejection_examples_are_made_from_the_word(share, depends_on_the_word):
    settings = augmentation_parameters(speech_negatives=share)
    low, high = tone(140.0, 0.4), tone(300.0, 0.4)
    for seed in range(5):
        made = [negative(word, RATE, settings, np.random.default_rng(seed)) for word in (low, high)]
        same = made[0].shape == made[1].shape and np.array_equal(made[0], made[1])
        assert same != depends_on_the_word


def test_two_words_said_without_a_pause_in_half_a_second_may_be_cut():
    # Digits read at pace last 0.2-0.3 s each: a stretch of two of them is shorter than 0.6 s.
    words = np.concatenate([tone(140.0, 0.25, harmonics=8), tone(220.0, 0.25, harmonics=8)])
    parameters = feature_parameters()
    power, _ = analyse(words, parameters)
    cuts = word_boundaries(power, parameters)
    assert len(cuts) >= 3 and any(abs(cut - 25) <= 3 for cut in cuts[1:-1])
