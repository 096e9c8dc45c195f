"""Audio in: read any soundfile format (refusing damaged and too short files), mix to mono, resample."""

from pathlib import Path

import numpy as np

from inkvoice.core.errors import DataError, check_number

DEFAULT_SAMPLE_RATE = 8000
DEFAULT_MAX_SECONDS = 10.0
# Below this peak amplitude (about -66 dBFS) a clip holds no speech, only silence or hiss.
SILENCE_PEAK = 5e-4
# The shortest clip that can hold a word (the shortest FSDD recording lasts 144 ms).
MIN_CLIP_SECONDS = 0.1


def read_audio(path, *, max_seconds=DEFAULT_MAX_SECONDS):
    """Read an audio file as float32 mono samples in [-1, 1] and its sample rate.

    Parameters
    ----------
    path : path-like
        A wav (PCM 8/16/24/32-bit or float), flac or ogg file; any channel count.
    max_seconds : float > 0
        Longest clip accepted; a longer one is refused before it is read.

    Returns
    -------
    samples : np.ndarray of float32, shape (n_samples,)
    sample_rate : int

    Raises
    ------
    DataError
        The file is missing, empty, not audio, truncated (its data ends before its header
        says), too short to hold a word, too long, or holds NaN/inf samples.
    """
    import soundfile

    from inkvoice.core.files import check_input_file

    path = Path(path)
    name = str(path)  # as the user gave it, so it can be found among many folders
    check_input_file(path, what="audio file")  # not a FIFO, device or link loop; bounded size
    if path.stat().st_size == 0:
        raise DataError(f"{name}: the file is empty")
    try:
        with soundfile.SoundFile(str(path)) as handle:
            sample_rate = int(handle.samplerate)
            n_frames = handle.frames
            if n_frames <= 0:
                raise DataError(f"{name}: the file holds no audio samples")
            seconds = n_frames / sample_rate
            if seconds < MIN_CLIP_SECONDS:
                raise DataError(
                    f"{name}: the clip lasts {1000 * seconds:.1f} ms, too short to hold a word "
                    f"(at least {1000 * MIN_CLIP_SECONDS:.0f} ms)"
                )
            if seconds > max_seconds:
                raise DataError(
                    f"{name}: the clip lasts {seconds:.1f} s, longer than the limit of {max_seconds:g} s "
                    "(raise it with --max-seconds)"
                )
            if handle.format == "WAV":
                _check_wav_length(path, name)
            samples = handle.read(dtype="float64", always_2d=True)
    except DataError:
        raise
    except (RuntimeError, OSError, ValueError, TypeError) as error:
        # soundfile reports unknown formats and damaged headers as LibsndfileError (a RuntimeError).
        reason = str(error).split(":")[-1].strip() or type(error).__name__
        raise DataError(f"{name}: not a readable audio file ({reason})") from None
    if samples.shape[0] == 0:
        raise DataError(f"{name}: the file holds no audio samples (truncated?)")
    if not np.all(np.isfinite(samples)):
        raise DataError(f"{name}: the audio holds NaN or infinite samples")
    if samples.shape[0] < n_frames:
        raise DataError(f"{name}: the file is truncated ({samples.shape[0]} of {n_frames} frames)")
    mono = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
    # Float files may hold values far outside [-1, 1] (up to 3e38); scaling them down in
    # float64 keeps every later sum of squares finite.
    peak = float(np.max(np.abs(mono)))
    if peak > 1.0:
        mono = mono / peak
    return np.ascontiguousarray(mono, dtype=np.float32), sample_rate


def _check_wav_length(path, name):
    """Refuse a RIFF/WAVE file whose data chunk declares more bytes than the file holds.

    libsndfile quietly reads what is there, so a wav cut short in transfer would be
    classified as if it were whole.
    """
    size = path.stat().st_size
    with open(path, "rb") as handle:
        header = handle.read(12)
        if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
            return  # RF64 and other variants: left to libsndfile
        position = 12
        while position + 8 <= size:
            handle.seek(position)
            chunk = handle.read(8)
            declared = int.from_bytes(chunk[4:8], "little")
            if chunk[:4] == b"data":
                # 0 and 0xFFFFFFFF mark a stream whose length was unknown when the header was written.
                if declared not in (0, 0xFFFFFFFF) and position + 8 + declared > size:
                    raise DataError(
                        f"{name}: the file is truncated (its header declares {declared} bytes of audio, "
                        f"the file holds {size - position - 8})"
                    )
                return
            position += 8 + declared + (declared & 1)


def resample(samples, source_rate, target_rate):
    """Resample ``samples`` from ``source_rate`` to ``target_rate`` Hz (no-op when equal)."""
    if source_rate == target_rate:
        return samples
    import librosa

    return librosa.resample(samples, orig_sr=source_rate, target_sr=target_rate, res_type="soxr_hq").astype(
        np.float32
    )


def normalise_level(samples):
    """Scale to a peak of 1 so the level of the recording does not change the features."""
    peak = float(np.max(np.abs(samples)))
    return samples / peak if peak > 0 else samples




class NoSpeechError(DataError):
    """A recording holds no sound that could be speech (silence, or steady noise alone)."""


def load_audio(path, *, sample_rate=DEFAULT_SAMPLE_RATE, max_seconds=DEFAULT_MAX_SECONDS):
    """Read, mix to mono, resample to ``sample_rate`` and normalise a recording (untrimmed).

    Raises
    ------
    DataError
        As :func:`read_audio`; :class:`NoSpeechError` when the recording is silent.
    """
    check_number("sample_rate", sample_rate, low=1000, high=192000, integer=True)
    check_number("max_seconds", max_seconds, low=0, low_open=True)
    samples, source_rate = read_audio(path, max_seconds=max_seconds)
    if float(np.max(np.abs(samples))) < SILENCE_PEAK:
        raise NoSpeechError(f"{path}: the clip is silent (no speech found)")
    samples = resample(samples, source_rate, int(sample_rate))
    return normalise_level(samples).astype(np.float32, copy=False)
