"""Audio in: read any soundfile format (refusing damaged and too short files), mix to mono, resample."""

import io
import re

import numpy as np

from inkvoice.core.errors import DataError, check_number

DEFAULT_SAMPLE_RATE = 8000
DEFAULT_MAX_SECONDS = 10.0
# Below this peak amplitude (about -66 dBFS) a clip holds no speech, only silence or hiss.
SILENCE_PEAK = 5e-4
# The peak is the level this share of the samples stays under, so that the odd outlier of a long
# stretch of hiss is not taken for a sound: white noise at -80 dBFS passes 5e-4 once in about 1.7
# million samples, and a 5 s clip at 44.1 kHz holds a 12 % chance of such an outlier.
PEAK_QUANTILE = 0.999
# A clip whose sound, offset and drift removed, stays everywhere within this many steps of its
# encoding holds nothing but the rounding of a constant or slowly changing level.
QUANTISATION_STEPS = 1.5
# The shortest clip that can hold a word (the shortest FSDD recording lasts 144 ms).
MIN_CLIP_SECONDS = 0.1


def read_audio(path, *, max_seconds=DEFAULT_MAX_SECONDS):
    """Read an audio file as float32 mono samples in [-1, 1] and its sample rate.

    Parameters
    ----------
    path : path-like
        Any file libsndfile reads (WAV in any of its encodings, GSM 6.10 included, WAVE_FORMAT_EXTENSIBLE,
        AIFF, AU, W64, RF64, NIST, FLAC, Ogg, ...), whatever its name; any channel count.
    max_seconds : float > 0
        Longest clip accepted; a longer one is refused before it is decoded.

    Returns
    -------
    samples : np.ndarray of float32, shape (n_samples,)
    sample_rate : int

    Raises
    ------
    DataError
        The file is missing, empty, not audio, truncated (its header declares more audio than
        the file holds), too short to hold a word, too long, or holds NaN/inf samples.
    """
    import soundfile

    from inkvoice.core.files import read_input_bytes

    name = str(path)  # as the user gave it, so it can be found among many folders
    # The bytes are read once, by this process, from a regular file of bounded size: what is
    # decoded is what was checked, and a name the file system cannot encode as UTF-8 is read
    # like any other.
    data = read_input_bytes(path, what="audio file")
    if not data:
        raise DataError(f"{name}: the file is empty")
    data = _fmt_before_data(data)
    try:
        with soundfile.SoundFile(io.BytesIO(data)) as handle:
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
            declared = _declared_beyond_file(handle.extra_info, n_frames, data)
            if declared:
                raise DataError(f"{name}: the file is truncated ({declared})")
            # The frame count is given, not left to the end of the file: some encodings (GSM 6.10)
            # cannot seek, and soundfile would not read them at all.
            samples = handle.read(n_frames, dtype="float64", always_2d=True)
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
    mono = _mix_down(samples)
    # Float files may hold values far outside [-1, 1] (up to 3e38); scaling them down in
    # float64 keeps every later sum of squares finite.
    peak = float(np.max(np.abs(mono)))
    if peak > 1.0:
        mono = mono / peak
    return np.ascontiguousarray(mono, dtype=np.float32), sample_rate


# A mix holding less than this share of the channels' mean energy has cancelled itself out.
_CANCELLED_MIX = 0.25


def _mix_down(samples):
    """One channel from ``samples`` (frames x channels): their mean, or the loudest channel where
    the mean cancels out.

    Channels in opposite phase (a balanced microphone taken on two inputs, a wire swapped) add up
    to near silence, and the word would be lost to a mix that is right for every other file.
    """
    if samples.shape[1] == 1:
        return samples[:, 0]
    mono = samples.mean(axis=1)
    channel_energy = np.einsum("ij,ij->j", samples, samples)
    if float(mono @ mono) < _CANCELLED_MIX * float(channel_energy.mean()):
        return samples[:, int(np.argmax(channel_energy))]
    return mono


# Sizes that mean "unknown when the header was written" (a stream), not a length.
_STREAMING_SIZES = (2**32 - 1, 2**64 - 1)
# A container's own size may count its 8-byte chunk header too (a common writer's slip);
# the audio's own size is exact.
_CONTAINER_SLACK = 8
_SIZE_SHOULD_BE = re.compile(r"(\d+)\s*\(?\s*should be\s+(\d+)")
_SIZE_OVER_FILE = re.compile(r"(\d+)\s*>\s*file length\s*(\d+)")
_FRAME_COUNT = re.compile(r"\b(?:frames|samples|cols)\s*:\s*(\d+)", re.IGNORECASE)
_NIST_COUNT = re.compile(rb"\bsample_count\s+-i\s+(\d+)")


def _declared_beyond_file(log, n_frames, data):
    """Why the header declares more audio than the file holds, or "" when it does not.

    libsndfile quietly reads what is there and reports fewer frames, so a file cut short in
    transfer would be classified as if it were whole. Its account of the header (the log of
    every container it reads) says what each header declared and what the file holds: a size
    followed by "(should be N)" with N smaller, a chunk longer than the file, its own
    truncation warnings, or a frame count above the frames it can read. A NIST header, which
    libsndfile does not log, states its sample count in text.

    A header that holds no length at all (IRCAM, PAF, PVF) cannot show a cut made at a frame
    boundary: such a file is, byte for byte, a shorter complete recording.
    """
    lines = [line for line in log.splitlines() if line.strip()]
    sizes = [i for i, line in enumerate(lines) if re.search(r":\s*\d", line) and not line.startswith(("File", "Length"))]
    first_size = sizes[0] if sizes else None
    # A count given in whole blocks (the MIDI sample dump's) may round the last one up.
    block = max([int(n) for n in re.findall(r"samples/block\s*:\s*(\d+)", log, re.IGNORECASE)] or [1])
    for index, line in enumerate(lines):
        for pattern in (_SIZE_SHOULD_BE, _SIZE_OVER_FILE):
            for match in pattern.finditer(line):
                declared, held = int(match.group(1)), int(match.group(2))
                slack = _CONTAINER_SLACK if index == first_size else 0
                if declared not in _STREAMING_SIZES and declared > held + slack:
                    return f"its header declares {declared} where the file holds {held}"
        if "truncated" in line.lower():
            return line.strip(" *").rstrip(".")
        for match in _FRAME_COUNT.finditer(line):
            if int(match.group(1)) > n_frames + block - 1 and int(match.group(1)) not in _STREAMING_SIZES:
                return f"its header declares {int(match.group(1))} frames, the file holds {n_frames}"
    if data.startswith(b"NIST_1A"):
        match = _NIST_COUNT.search(data[:1024])
        if match and int(match.group(1)) > n_frames:
            return f"its header declares {int(match.group(1))} samples, the file holds {n_frames}"
    return ""


def _fmt_before_data(data):
    """A RIFF/WAVE file's bytes with its fmt chunk moved before its data chunk (else unchanged).

    The order of the chunks is free in RIFF, but libsndfile needs the format before the audio.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return data
    chunks, position = [], 12
    while position + 8 <= len(data):
        size = int.from_bytes(data[position + 4 : position + 8], "little")
        end = position + 8 + size + (size & 1)
        if end > len(data) + (size & 1):
            return data  # a chunk runs past the end: left to the checks above
        chunks.append((data[position : position + 4], data[position:end]))
        position = end
    kinds = [kind for kind, _ in chunks]
    if b"fmt " not in kinds or b"data" not in kinds or kinds.index(b"fmt ") < kinds.index(b"data"):
        return data
    fmt = chunks[kinds.index(b"fmt ")]
    body = b"WAVE" + fmt[1] + b"".join(chunk[1] for chunk in chunks if chunk is not fmt)
    return b"RIFF" + len(body).to_bytes(4, "little") + body


def resample(samples, source_rate, target_rate):
    """Resample ``samples`` from ``source_rate`` to ``target_rate`` Hz (no-op when equal).

    SoX's high-quality resampler, called directly: through librosa it would first import
    scipy.signal, a second and more of a one-file prediction. The length is librosa's (the
    input's duration rounded up), so features are the same either way.
    """
    if source_rate == target_rate:
        return samples
    import soxr

    resampled = soxr.resample(samples, source_rate, target_rate, quality="soxr_hq")
    length = int(np.ceil(samples.shape[0] * float(target_rate) / source_rate))
    if resampled.shape[0] < length:
        resampled = np.pad(resampled, (0, length - resampled.shape[0]))
    return np.ascontiguousarray(resampled[:length], dtype=np.float32)


def normalise_level(samples):
    """Scale to a peak of 1 so the level of the recording does not change the features."""
    peak = float(np.max(np.abs(samples)))
    return samples / peak if peak > 0 else samples




def resolution(samples):
    """The encoding's step at each sample's level: the wider gap to the neighbouring values the clip takes.

    8-bit files step by 1/128 everywhere, mu-law and A-law by more the louder the sample; a
    float file's steps are too fine to matter.
    """
    values, where = np.unique(samples, return_inverse=True)
    if values.size < 2:
        return np.zeros_like(samples)
    gaps = np.diff(values)
    return np.maximum(np.append(gaps, gaps[-1]), np.insert(gaps, 0, gaps[0]))[where].astype(samples.dtype)


def remove_offset(samples):
    """``samples`` less their DC offset and linear drift (the least-squares line through them).

    Neither carries sound: what is left of a constant or slowly drifting signal shows it is
    silence, rather than steps at the clip's ends that normalising would make loud enough to
    pass for a word.
    """
    if samples.size < 2:
        return samples
    time = np.linspace(-1.0, 1.0, samples.size)
    values = samples.astype(np.float64)
    slope = float(np.dot(time, values) / np.dot(time, time))
    return (values - values.mean() - slope * time).astype(np.float32)


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
    # What is left once the offset and drift are set aside must stand out from silence and from
    # the encoding's own steps: an 8-bit or mu-law ramp leaves a staircase a step high, which
    # normalising would make loud. (The features keep the recording as it is unless the offset
    # outweighs its sound: removing it from every clip cost accuracy on an unseen FSDD speaker,
    # see docs/experiments.md.)
    residual = remove_offset(samples)
    if float(np.quantile(np.abs(residual), PEAK_QUANTILE)) < SILENCE_PEAK or np.all(np.abs(residual) <= QUANTISATION_STEPS * resolution(samples)):
        raise NoSpeechError(f"{path}: the clip is silent (no speech found)")
    if float(np.max(np.abs(samples))) > 2 * float(np.max(np.abs(residual))):
        samples = residual  # an offset or drift that outweighs the sound would be all normalising saw
    samples = resample(samples, source_rate, int(sample_rate))
    return normalise_level(samples).astype(np.float32, copy=False)
