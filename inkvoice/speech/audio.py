"""Audio in: read any soundfile format, mix to mono, resample, trim silence, normalise level."""

from pathlib import Path

import numpy as np

from inkvoice.core.errors import DataError, check_number

DEFAULT_SAMPLE_RATE = 8000
DEFAULT_MAX_SECONDS = 10.0
DEFAULT_TOP_DB = 30.0
# Below this peak amplitude (about -66 dBFS) a clip holds no speech, only silence or hiss.
SILENCE_PEAK = 5e-4


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
        The file is missing, empty, not audio, truncated, too long, or holds NaN/inf samples.
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
            if seconds > max_seconds:
                raise DataError(
                    f"{name}: the clip lasts {seconds:.1f} s, longer than the limit of {max_seconds:g} s "
                    "(raise it with --max-seconds)"
                )
            samples = handle.read(dtype="float32", always_2d=True)
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
    mono = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
    return np.ascontiguousarray(mono, dtype=np.float32), sample_rate


def resample(samples, source_rate, target_rate):
    """Resample ``samples`` from ``source_rate`` to ``target_rate`` Hz (no-op when equal)."""
    if source_rate == target_rate:
        return samples
    import librosa

    return librosa.resample(samples, orig_sr=source_rate, target_sr=target_rate, res_type="soxr_hq").astype(
        np.float32
    )


def trim_silence(samples, sample_rate, *, top_db=DEFAULT_TOP_DB, frame_ms=20.0):
    """Cut leading and trailing frames more than ``top_db`` below the loudest frame.

    Frames are ``frame_ms`` long with half overlap; the kept span runs from the first to the
    last loud frame, so pauses inside the word stay.
    """
    frame = max(1, int(round(sample_rate * frame_ms / 1000)))
    hop = max(1, frame // 2)
    if samples.size <= frame:
        return samples
    n_frames = 1 + (samples.size - frame) // hop
    strided = np.lib.stride_tricks.as_strided(
        samples, shape=(n_frames, frame), strides=(samples.strides[0] * hop, samples.strides[0])
    )
    energy = np.einsum("ij,ij->i", strided, strided, dtype=np.float64) / frame
    loud = np.flatnonzero(energy >= energy.max() * 10.0 ** (-top_db / 10.0))
    start = loud[0] * hop
    stop = min(samples.size, loud[-1] * hop + frame)
    return samples[start:stop]


def normalise_level(samples):
    """Scale to a peak of 1 so the level of the recording does not change the features."""
    peak = float(np.max(np.abs(samples)))
    return samples / peak if peak > 0 else samples


def load_audio(
    path,
    *,
    sample_rate=DEFAULT_SAMPLE_RATE,
    max_seconds=DEFAULT_MAX_SECONDS,
    trim=True,
    top_db=DEFAULT_TOP_DB,
):
    """Read, mix to mono, resample to ``sample_rate``, trim silence and normalise a clip.

    Raises
    ------
    DataError
        As :func:`read_audio`, and when the clip is silent (holds no speech).
    """
    check_number("sample_rate", sample_rate, low=1000, high=192000, integer=True)
    check_number("max_seconds", max_seconds, low=0, low_open=True)
    samples, source_rate = read_audio(path, max_seconds=max_seconds)
    if float(np.max(np.abs(samples))) < SILENCE_PEAK:
        raise DataError(f"{path}: the clip is silent (no speech found)")
    samples = resample(samples, source_rate, int(sample_rate))
    if trim:
        samples = trim_silence(samples, int(sample_rate), top_db=top_db)
    return normalise_level(samples).astype(np.float32, copy=False)
