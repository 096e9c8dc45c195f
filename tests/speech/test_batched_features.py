"""Features of many clips in one vectorised pass: the same vectors as clip by clip."""

import numpy as np
import pytest

from inkvoice.speech.audio import NoSpeechError, load_audio
from inkvoice.speech.augment import TEST_AUGMENTATION, augmentation_parameters, clip_generator, perturb
from inkvoice.speech.features import extract_augmented, feature_parameters, features_from_samples, features_of_clips
from tests.speech.conftest import RATE, SAMPLES_DIR, word


def _mixed_clips():
    """Words of several lengths and levels, one in a long quiet window, one shorter than a window, and silence."""
    generator = np.random.default_rng(3)
    clips = [word(label, scale, seconds, vibrato) for label, scale, seconds, vibrato in
             [("low", 1.0, 0.3, 0.0), ("mid", 1.2, 0.6, 1.0), ("high", 0.8, 0.45, 2.0), ("low", 0.9, 0.18, 0.5)]]
    windowed = np.concatenate([np.zeros(RATE // 2, np.float32), word("mid", 1.1, 0.4), np.zeros(RATE // 3, np.float32)])
    clips.append(windowed + 0.002 * generator.standard_normal(windowed.size).astype(np.float32))
    clips.append(0.3 * word("high", 1.0, 0.02))  # 160 samples, shorter than a 200-sample window
    clips.append(np.zeros(RATE // 2, np.float32))  # no speech: its row is NaN
    return clips


def _one_by_one(clips, parameters):
    rows = []
    for clip in clips:
        try:
            rows.append(features_from_samples(clip, parameters))
        except NoSpeechError:
            rows.append(np.full_like(rows[0], np.nan))
    return np.stack(rows)


@pytest.mark.parametrize("overrides", [{}, {"noise_subtraction": 1.0, "cmvn": "mean", "segment_deltas": False},
                                       {"cmvn": "none", "n_segments": 5, "delta_width": 3}])
def test_a_batch_gives_each_clip_the_vector_it_gets_alone(overrides):
    parameters = feature_parameters(**overrides)
    clips = _mixed_clips()
    batched = features_of_clips(clips, parameters)
    alone = _one_by_one(clips, parameters)
    assert batched.shape == alone.shape == (len(clips), alone.shape[1])
    assert np.isnan(batched[-1]).all() and np.isnan(alone[-1]).all()
    assert np.isfinite(batched[:-1]).all()
    np.testing.assert_allclose(batched[:-1], alone[:-1], rtol=1e-4, atol=1e-4)
    # The order of the clips in a batch changes nothing but the order of the rows.
    np.testing.assert_allclose(features_of_clips(clips[::-1], parameters)[::-1][:-1], batched[:-1], rtol=1e-5,
                               atol=1e-5)


def test_test_time_variants_of_a_recording_match_their_one_by_one_features():
    parameters = feature_parameters()
    path = sorted((SAMPLES_DIR / "7").glob("*.wav"))[0]
    settings = augmentation_parameters(**{**TEST_AUGMENTATION, "copies": 12})
    rows = extract_augmented(path, augmentation=settings, seed=5, **parameters)
    raw = load_audio(path, sample_rate=parameters["sample_rate"])
    generator = clip_generator(5, raw)
    variants = [raw] + [perturb(raw, parameters["sample_rate"], settings, generator) for _ in range(12)]
    assert rows.shape[0] == 13
    np.testing.assert_allclose(rows, _one_by_one(variants, parameters), rtol=1e-4, atol=1e-4)

