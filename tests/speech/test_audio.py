"""Audio in: formats, channels, rates, trimming, level, and one clear error per bad file."""

import numpy as np
import pytest

from inkvoice.core.errors import DataError
from inkvoice.speech.audio import load_audio, read_audio, trim_silence
from tests.speech.conftest import RATE, tone, write


@pytest.mark.parametrize(
    "suffix, subtype",
    [(".wav", "PCM_U8"), (".wav", "PCM_16"), (".wav", "PCM_24"), (".wav", "PCM_32"), (".wav", "FLOAT"),
     (".flac", "PCM_16"), (".ogg", "VORBIS")],
)
def test_reads_every_supported_format(tmp_path, suffix, subtype):
    clip = tone(440.0)
    path = write(tmp_path / f"clip{suffix}", clip, subtype=subtype)
    samples, rate = read_audio(path)
    assert rate == RATE
    assert samples.dtype == np.float32
    assert abs(samples.size - clip.size) <= 2000  # ogg may pad
    assert np.corrcoef(samples[:3000], clip[:3000])[0, 1] > 0.95


def test_stereo_is_mixed_to_mono(tmp_path):
    left = tone(440.0)
    path = write(tmp_path / "stereo.wav", np.stack([left, np.zeros_like(left)], axis=1))
    samples, _ = read_audio(path)
    assert samples.ndim == 1
    np.testing.assert_allclose(samples, left / 2, atol=1e-3)


def test_other_rates_are_resampled_to_the_model_rate(tmp_path):
    path = write(tmp_path / "wide.wav", tone(440.0, seconds=0.5, rate=44100), rate=44100)
    samples = load_audio(path, sample_rate=8000, trim=False)
    assert abs(samples.size - 4000) <= 2
    spectrum = np.abs(np.fft.rfft(samples))
    assert abs(np.argmax(spectrum) * 8000 / samples.size - 440.0) < 10


def test_silence_is_trimmed_and_level_normalised(tmp_path):
    clip = np.concatenate([np.zeros(4000), 0.05 * tone(300.0, seconds=0.4), np.zeros(4000)]).astype(np.float32)
    samples = load_audio(write(tmp_path / "quiet.wav", clip))
    assert 3000 <= samples.size <= 3600
    assert np.max(np.abs(samples)) == pytest.approx(1.0)


def test_trim_keeps_pauses_inside_the_word():
    word = np.concatenate([tone(300.0, 0.2), np.zeros(1600, np.float32), tone(300.0, 0.2)])
    trimmed = trim_silence(np.concatenate([np.zeros(2000, np.float32), word]), RATE)
    assert abs(trimmed.size - word.size) < 200


def test_a_clip_shorter_than_a_window_loads(tmp_path):
    samples = load_audio(write(tmp_path / "click.wav", tone(500.0, seconds=0.01)))
    assert 0 < samples.size <= 80


def write_bytes(path, payload):
    path.write_bytes(payload)
    return path


def truncated(tmp_path):
    full = write(tmp_path / "full.wav", tone(440.0)).read_bytes()
    return write_bytes(tmp_path / "truncated.wav", full[:30])


def nan_file(tmp_path):
    clip = tone(440.0)
    clip[100] = np.nan
    return write(tmp_path / "nan.wav", clip, subtype="FLOAT")


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: write_bytes(d / "empty.wav", b""), "empty.wav: the file is empty"),
        (lambda d: write_bytes(d / "notes.wav", b"this is text, not sound\n" * 20), "notes.wav: not a readable audio file"),
        (truncated, "truncated.wav: .*(not a readable audio file|no audio samples)"),
        (nan_file, "nan.wav: the audio holds NaN or infinite samples"),
        (lambda d: write(d / "long.wav", np.full(11 * RATE, 0.1, np.float32)), "long.wav: the clip lasts 11.0 s"),
        (lambda d: write(d / "silent.wav", np.zeros(RATE, np.float32)), "silent.wav: the clip is silent"),
        (lambda d: d / "missing.wav", "missing.wav: no such audio file"),
    ],
)
def test_bad_files_raise_one_clear_error_naming_the_file(tmp_path, make, message):
    with pytest.raises(DataError, match=message):
        load_audio(make(tmp_path))


def test_the_length_limit_can_be_raised(tmp_path):
    path = write(tmp_path / "long.wav", np.tile(tone(300.0, 1.0), 11))
    assert load_audio(path, max_seconds=12).size > 10 * RATE
