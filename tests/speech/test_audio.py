"""Audio in: formats, channels, rates, level, and one clear error per bad file (truncated, too short, ...)."""

import struct
import subprocess
import sys

import numpy as np
import pytest

from inkvoice.core.errors import DataError
from inkvoice.speech.audio import NoSpeechError, load_audio, read_audio, resample
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


def test_channels_in_opposite_phase_are_not_cancelled_out(tmp_path):
    """A balanced microphone taken on two inputs, or a swapped wire: the mean of the channels is silence."""
    left = tone(440.0)
    right = -0.9 * left
    path = write(tmp_path / "opposite.wav", np.stack([left, right], axis=1))
    samples, _ = read_audio(path)
    np.testing.assert_allclose(samples, left, atol=1e-3)


@pytest.mark.parametrize("rate", [4000, 11025, 22050, 44100, 48000, 96000])
def test_resampling_gives_librosas_samples(rate):
    """The same samples as librosa's soxr_hq route, so that features cached before stay valid."""
    import librosa

    clip = np.random.default_rng(rate).normal(0, 0.3, rate // 3 + 7).astype(np.float32)
    expected = librosa.resample(clip, orig_sr=rate, target_sr=8000, res_type="soxr_hq").astype(np.float32)
    np.testing.assert_array_equal(resample(clip, rate, 8000), expected)


def test_resampling_does_not_import_scipy_signal():
    """Importing scipy.signal is over a second of a one-file prediction of a 44.1 kHz recording."""
    code = ("import sys, numpy as np; from inkvoice.speech.audio import resample; "
            "resample(np.zeros(4410, np.float32), 44100, 8000); print('scipy.signal' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


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


# Every container libsndfile writes whose header says how long its audio is.
CONTAINERS = [("WAV", "PCM_16"), ("WAV", "GSM610"), ("WAV", "IMA_ADPCM"), ("WAV", "ULAW"), ("WAVEX", "PCM_16"),
              ("WAVEX", "FLOAT"), ("AIFF", "PCM_16"), ("AU", "PCM_16"), ("W64", "PCM_16"), ("RF64", "PCM_16"),
              ("NIST", "PCM_16"), ("CAF", "PCM_16"), ("VOC", "PCM_16"), ("SVX", "PCM_16"), ("MAT4", "PCM_16"),
              ("MAT5", "PCM_16"), ("AVR", "PCM_16"), ("WVE", "ALAW"), ("MPC2K", "PCM_16")]


def container_bytes(samples, container, subtype):
    import io

    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, samples, RATE, format=container, subtype=subtype)
    return buffer.getvalue()


@pytest.mark.parametrize("container, subtype", CONTAINERS)
def test_a_truncated_file_is_refused_in_every_container_named_wav(tmp_path, container, subtype):
    clip = tone(300.0, seconds=0.8)
    payload = container_bytes(clip, container, subtype)
    whole, _ = read_audio(write_bytes(tmp_path / "whole.wav", payload))
    assert abs(whole.size - clip.size) < 400  # GSM 6.10 rounds up to whole blocks
    for share in (0.55, 0.8, 0.95):
        with pytest.raises(DataError, match="cut.wav: (the file is truncated|not a readable audio file)"):
            read_audio(write_bytes(tmp_path / "cut.wav", payload[: int(len(payload) * share)]))


def test_stereo_files_in_every_container_are_read_whole(tmp_path):
    clip = tone(300.0, seconds=0.5)
    import soundfile

    read = 0
    for container, subtype in CONTAINERS:
        try:
            payload = container_bytes(np.stack([clip, clip / 2], axis=1), container, subtype)
        except soundfile.LibsndfileError:
            continue  # mono-only encodings (GSM 6.10, A-law .wve, MPC2K)
        path = write_bytes(tmp_path / "stereo.wav", payload)
        read += 1
        assert abs(read_audio(path)[0].size - clip.size) < 400, container  # ADPCM rounds up to whole blocks
    assert read >= 14


def test_a_header_whose_container_size_counts_its_own_header_is_read(tmp_path):
    payload = bytearray(write(tmp_path / "full.wav", tone(440.0)).read_bytes())
    struct.pack_into("<I", payload, 4, len(payload))  # RIFF size = file size, 8 bytes too many
    assert read_audio(write_bytes(tmp_path / "riff.wav", bytes(payload)))[0].size == tone(440.0).size


def test_gsm_and_data_before_fmt_wavs_are_read(tmp_path):
    clip = tone(300.0, seconds=0.8)
    samples, rate = read_audio(write(tmp_path / "gsm.wav", clip, subtype="GSM610"))
    assert rate == RATE and abs(samples.size - clip.size) < 320
    assert np.corrcoef(samples[: clip.size], clip[: samples.size])[0, 1] > 0.9
    payload = write(tmp_path / "plain.wav", clip).read_bytes()
    fmt_end = 12 + 8 + int.from_bytes(payload[16:20], "little")
    assert payload[12:16] == b"fmt " and payload[fmt_end : fmt_end + 4] == b"data"
    body = b"WAVE" + payload[fmt_end:] + payload[12:fmt_end]  # data, then fmt
    reordered = write_bytes(tmp_path / "data-first.wav", b"RIFF" + struct.pack("<I", len(body)) + body)
    np.testing.assert_array_equal(read_audio(reordered)[0], read_audio(tmp_path / "plain.wav")[0])


def test_a_file_name_that_is_not_utf8_is_read(tmp_path):
    import os

    path = write_bytes(tmp_path / os.fsdecode(b"caf\xe9-\xff.wav"), write(tmp_path / "plain.wav", tone(300.0)).read_bytes())
    assert read_audio(path)[0].size == tone(300.0).size


@pytest.mark.parametrize(
    "samples",
    [np.full(RATE, 0.3), np.full(RATE, -1.0), np.full(5 * RATE, 0.99), 0.3 + 1e-5 * np.random.default_rng(0).standard_normal(RATE),
     np.linspace(0.2, 0.4, RATE), np.linspace(-1.0, 1.0, 2 * RATE)],
    ids=["0.3", "-1.0", "0.99 for 5 s", "0.3 with faint hiss", "a slow drift", "a full-scale ramp"],
)
def test_a_constant_or_drifting_signal_is_silence(tmp_path, samples):
    path = write(tmp_path / "dc.wav", samples.astype(np.float32), subtype="FLOAT")
    with pytest.raises(NoSpeechError, match="dc.wav: the clip is silent"):
        load_audio(path)


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "ULAW"])
def test_a_ramp_rounded_to_a_coarse_encoding_is_silence(tmp_path, subtype):
    for start, end in ((0.3, 0.26), (0.001, 0.323), (-0.3, -0.733)):
        path = write(tmp_path / "ramp.wav", np.linspace(start, end, 3 * RATE).astype(np.float32), subtype=subtype)
        with pytest.raises(NoSpeechError, match="silent"):
            load_audio(path)


def test_speech_in_an_8_bit_file_is_not_silence(tmp_path):
    samples = load_audio(write(tmp_path / "low.wav", 0.1 * tone(300.0), subtype="PCM_U8"))
    assert np.max(np.abs(samples)) == pytest.approx(1.0)


def test_a_level_under_faint_hiss_is_silence_whatever_the_hiss_draws(tmp_path):
    """Hiss at -80 dBFS now and then draws a sample past the silence level; that sample is no sound."""
    rate = 44100
    for seed in (31, 32, 58, 63, 77):  # draws whose loudest sample passes the silence level
        hiss = 1e-4 * np.random.default_rng(seed).standard_normal(5 * rate)
        path = write(tmp_path / f"hiss{seed}.wav", (0.774 + hiss).astype(np.float32), rate=rate, subtype="PCM_24")
        with pytest.raises(NoSpeechError, match="silent"):
            load_audio(path)
