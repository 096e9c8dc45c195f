"""Audio in: formats, channels, rates, level, and one clear error per bad file (truncated, too short, ...)."""

import numpy as np
import pytest

from inkvoice.core.errors import DataError
import struct

from inkvoice.speech.audio import NoSpeechError, load_audio, read_audio
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
    samples = load_audio(path, sample_rate=8000)
    assert abs(samples.size - 4000) <= 2
    spectrum = np.abs(np.fft.rfft(samples))
    assert abs(np.argmax(spectrum) * 8000 / samples.size - 440.0) < 10


def test_level_is_normalised(tmp_path):
    samples = load_audio(write(tmp_path / "quiet.wav", 0.05 * tone(300.0, seconds=0.4)))
    assert np.max(np.abs(samples)) == pytest.approx(1.0)


def test_float_samples_far_out_of_range_are_scaled_not_overflowed(tmp_path):
    clip = (tone(300.0, seconds=0.4).astype(np.float64) * 6e38).astype(np.float32)  # peaks near 3e38
    samples, _ = read_audio(write(tmp_path / "huge.wav", clip, subtype="FLOAT"))
    assert np.all(np.isfinite(samples)) and np.max(np.abs(samples)) == pytest.approx(1.0)


def write_bytes(path, payload):
    path.write_bytes(payload)
    return path


def truncated(tmp_path):
    full = write(tmp_path / "full.wav", tone(440.0)).read_bytes()
    return write_bytes(tmp_path / "truncated.wav", full[:30])


def cut_in_data(tmp_path):
    full = write(tmp_path / "full.wav", tone(440.0)).read_bytes()
    return write_bytes(tmp_path / "cut.wav", full[: len(full) // 2])


def header_claims_more(tmp_path):
    payload = bytearray(write(tmp_path / "full.wav", tone(440.0)).read_bytes())
    position = payload.find(b"data")
    struct.pack_into("<I", payload, position + 4, 10 * len(payload))
    return write_bytes(tmp_path / "claims.wav", bytes(payload))


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
        (cut_in_data, "cut.wav: the file is truncated"),
        (header_claims_more, "claims.wav: the file is truncated"),
        (lambda d: write(d / "one.wav", np.array([0.5], np.float32)), "one.wav: the clip lasts 0.1 ms, too short to hold a word"),
        (lambda d: write(d / "fast.wav", tone(440.0, 0.0028, rate=1_000_000), rate=1_000_000), "fast.wav: .*too short to hold a word"),
        (nan_file, "nan.wav: the audio holds NaN or infinite samples"),
        (lambda d: write(d / "long.wav", np.full(11 * RATE, 0.1, np.float32)), "long.wav: the clip lasts 11.0 s"),
        (lambda d: write(d / "silent.wav", np.zeros(RATE, np.float32)), "silent.wav: the clip is silent"),
        (lambda d: d / "missing.wav", "missing.wav: no such audio file"),
    ],
)
def test_bad_files_raise_one_clear_error_naming_the_file(tmp_path, make, message):
    with pytest.raises(DataError, match=message):
        load_audio(make(tmp_path))


def test_a_silent_clip_is_no_speech(tmp_path):
    with pytest.raises(NoSpeechError, match="silent"):
        load_audio(write(tmp_path / "silent.wav", np.zeros(RATE, np.float32)))


def test_the_length_limit_can_be_raised(tmp_path):
    path = write(tmp_path / "long.wav", np.tile(tone(300.0, 1.0), 11))
    assert load_audio(path, max_seconds=12).size > 10 * RATE
