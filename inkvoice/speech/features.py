"""MFCC features for short utterances at 8 kHz and their fixed-length summary.

Stages, in the order the code follows them:

1. load: read, mono, resample, normalise level (:mod:`speech.audio`);
2. the front end (:mod:`speech.frontend`): pre-emphasis, Hann-windowed power spectra, the
   noise floor, voice activity detection to find the word, spectral subtraction;
3. mel filterbank, log (dB), DCT-II -> MFCCs over the word's frames (librosa's filters and
   conventions, computed once per process and applied with numpy, because librosa's per-call
   overhead dominates on clips of a fraction of a second);
4. per-utterance cepstral mean and variance normalisation (``cmvn``), which removes the
   recording channel and much of the speaker's timbre;
5. deltas and delta-deltas (regression over +-``delta_width`` frames);
6. a fixed-length summary: the means of ``n_segments`` equal time spans of the normalised
   MFCCs (and of their deltas with ``segment_deltas``), pooled standard deviations of MFCCs,
   deltas and delta-deltas, and the log duration.
"""

import numpy as np

from inkvoice.core.errors import ParameterError, check_number, with_defaults
from inkvoice.speech.audio import DEFAULT_MAX_SECONDS, NoSpeechError, load_audio
from inkvoice.speech.frontend import (
    hop_length,
    noise_spectra,
    noise_spectrum,
    power_spectra,
    power_spectrogram,
    span_of_speech,
    speech_of_clips,
    subtract_noise,
)

# 2: voice activity detection and spectral subtraction replace the fixed trim below the peak.
# 3: the DC offset is removed on loading; variants are seeded by the clip's content, not its name.
FEATURE_VERSION = 3
# Shortest and longest word (seconds) when a long stretch of speech is cut into words.
WORD_SECONDS = (0.15, 0.9)

DEFAULT_PARAMETERS = {
    "sample_rate": 8000,
    "window_ms": 25.0,
    "hop_ms": 10.0,
    "n_fft": 256,
    "n_mels": 40,
    "n_mfcc": 13,
    "fmin": 50.0,
    "fmax": 4000.0,
    "pre_emphasis": 0.97,
    "top_db": 30.0,
    "vad_snr_db": 3.0,
    "vad_passes": 2,
    "noise_subtraction": 0.0,
    "cmvn": "mean_variance",
    "delta_width": 2,
    "n_segments": 8,
    "segment_deltas": True,
}

CMVN_CHOICES = ("none", "mean", "mean_variance")


def feature_parameters(**overrides):
    """The default feature parameters updated with ``overrides``, validated.

    Raises
    ------
    ParameterError
        An unknown name or a value out of range (the message names both).
    """
    parameters = with_defaults(DEFAULT_PARAMETERS, overrides, "feature parameter")
    check_number("sample_rate", parameters["sample_rate"], low=1000, high=192000, integer=True)
    check_number("window_ms", parameters["window_ms"], low=1, high=200)
    check_number("hop_ms", parameters["hop_ms"], low=1, high=parameters["window_ms"])
    check_number("n_mels", parameters["n_mels"], low=4, high=256, integer=True)
    check_number("n_mfcc", parameters["n_mfcc"], low=2, high=parameters["n_mels"], integer=True)
    check_number("fmin", parameters["fmin"], low=0)
    check_number("fmax", parameters["fmax"], low=parameters["fmin"], low_open=True, high=parameters["sample_rate"] / 2)
    check_number("pre_emphasis", parameters["pre_emphasis"], low=0, high=1, high_open=True)
    check_number("top_db", parameters["top_db"], low=0, low_open=True, high=120)
    check_number("vad_snr_db", parameters["vad_snr_db"], low=-20, high=40)
    check_number("vad_passes", parameters["vad_passes"], low=1, high=2, integer=True)
    check_number("noise_subtraction", parameters["noise_subtraction"], low=0, high=4)
    check_number("delta_width", parameters["delta_width"], low=1, high=10, integer=True)
    check_number("n_segments", parameters["n_segments"], low=1, high=50, integer=True)
    window = int(round(parameters["sample_rate"] * parameters["window_ms"] / 1000))
    check_number("n_fft", parameters["n_fft"], low=window, integer=True)
    if not isinstance(parameters["segment_deltas"], bool):
        raise ParameterError(f"segment_deltas must be true or false; got {parameters['segment_deltas']!r}")
    if parameters["cmvn"] not in CMVN_CHOICES:
        raise ParameterError(f"cmvn must be one of {', '.join(CMVN_CHOICES)}; got {parameters['cmvn']!r}")
    return parameters


def feature_length(parameters):
    """Length of the vector :func:`summarise` makes with these parameters."""
    n_mfcc = parameters["n_mfcc"]
    per_segment = 2 * n_mfcc if parameters["segment_deltas"] else n_mfcc
    return per_segment * parameters["n_segments"] + 3 * n_mfcc + 1


_MATRICES = {}


def matrices_key(parameters):
    """The settings that determine the analysis matrices, as a hashable tuple."""
    rate = int(parameters["sample_rate"])
    return (
        rate,
        int(parameters["n_fft"]),
        int(round(rate * parameters["window_ms"] / 1000)),
        int(parameters["n_mels"]),
        int(parameters["n_mfcc"]),
        float(parameters["fmin"]),
        float(parameters["fmax"]),
    )


def mel_filterbank(parameters):
    """librosa's Slaney-normalised mel filters, shape (n_fft // 2 + 1, n_mels), float32."""
    import librosa

    rate, n_fft, _, n_mels, _, fmin, fmax = matrices_key(parameters)
    basis = librosa.filters.mel(sr=rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    return np.ascontiguousarray(basis.T, dtype=np.float32)


def use_mel_filterbank(parameters, mel_basis):
    """Use ``mel_basis`` (e.g. stored in a model file) for ``parameters`` instead of building it.

    Building it imports librosa and scipy, which costs more than a second in a fresh process.
    """
    key = matrices_key(parameters)
    expected = (key[1] // 2 + 1, key[3])
    if mel_basis.shape != expected:
        raise ParameterError(f"mel filterbank has shape {mel_basis.shape}; expected {expected}")
    if not np.all(np.isfinite(mel_basis)) or np.any(mel_basis < 0) or not np.all(mel_basis.max(axis=0) > 0):
        raise ParameterError("mel filterbank is damaged: every filter must be finite, non-negative and not all zero")
    _MATRICES[key] = _assemble(key, np.ascontiguousarray(mel_basis, dtype=np.float32))


def _assemble(key, mel_basis):
    _, _, window_length, n_mels, n_mfcc, _, _ = key
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(window_length) / window_length)
    # Orthonormal DCT-II, as scipy.fft.dct(norm="ortho") and librosa.feature.mfcc use.
    bands = np.arange(n_mels)
    dct_basis = np.cos(np.pi / n_mels * (bands[:, None] + 0.5) * np.arange(n_mfcc)[None, :]) * np.sqrt(2.0 / n_mels)
    dct_basis[:, 0] /= np.sqrt(2.0)
    return window.astype(np.float32), mel_basis, dct_basis.astype(np.float32)


def analysis_matrices(parameters):
    """The Hann window, mel filterbank and DCT matrix for ``parameters`` (built once per process).

    Returns
    -------
    window : (window_length,) float32, periodic Hann
    mel_basis : (n_fft // 2 + 1, n_mels) float32
    dct_basis : (n_mels, n_mfcc) float32
    """
    key = matrices_key(parameters)
    if key not in _MATRICES:
        _MATRICES[key] = _assemble(key, mel_filterbank(parameters))
    return _MATRICES[key]


def mfcc(samples, parameters):
    """MFCCs of a whole clip, shape (n_frames, n_mfcc); a clip shorter than a window is zero-padded."""
    window = analysis_matrices(parameters)[0]
    return cepstra(power_spectrogram(samples, window, parameters), parameters)


def cepstra(power, parameters, counts=None):
    """MFCCs of power spectra (n_frames, n_fft // 2 + 1) -> (n_frames, n_mfcc).

    With ``counts``, ``power`` stacks several clips' frames (``counts[i]`` rows each, none
    empty), and each clip's log mel energies are floored below its own loudest band.
    """
    _, mel_basis, dct_basis = analysis_matrices(parameters)
    mel_power = power @ mel_basis
    log_mel = 10.0 * np.log10(np.maximum(mel_power, 1e-10))
    # librosa's power_to_db floor: nothing more than 80 dB below the loudest band.
    if counts is None:
        np.maximum(log_mel, log_mel.max() - 80.0, out=log_mel)
    else:
        loudest = np.maximum.reduceat(log_mel.max(axis=1), np.concatenate([[0], np.cumsum(counts)[:-1]]))
        np.maximum(log_mel, np.repeat(loudest - 80.0, counts)[:, None], out=log_mel)
    return log_mel @ dct_basis


def deltas(coefficients, width):
    """Regression deltas over +-``width`` frames (edges repeat the first and last frame)."""
    return _deltas_many(coefficients[None], np.array([coefficients.shape[0]]), width)[0]


def segment_means(frames, n_segments):
    """Means of ``frames`` over ``n_segments`` equal time spans, shape (n_segments, n_columns).

    Spans may cut frames in part (each frame counts in proportion), so a clip with fewer
    frames than segments still gets a well-defined value for every segment.
    """
    return _segment_means_many(frames[None], np.array([frames.shape[0]]), n_segments)[0]


def summarise(coefficients, parameters, duration_seconds):
    """The fixed-length vector of one utterance from its MFCC frames (see the module stages)."""
    return summarise_many(coefficients, [coefficients.shape[0]], parameters, [duration_seconds])[0]


def summarise_many(coefficients, counts, parameters, durations):
    """:func:`summarise` of several utterances at once: shape (n_utterances, feature length).

    ``coefficients`` stacks their MFCC frames, ``counts[i]`` rows for utterance ``i`` (at least
    one each); ``durations`` are their lengths in seconds. The utterances are padded to the
    longest and every statistic is taken over each one's own frames only.
    """
    counts = np.asarray(counts, dtype=np.intp)
    n_utterances, longest, n_mfcc = len(counts), int(counts.max()), coefficients.shape[1]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    # Row j of utterance i is frame min(j, counts[i] - 1): the padding repeats the last frame,
    # which is also how deltas extend an utterance past its edges.
    positions = np.arange(longest)
    valid = positions[None, :] < counts[:, None]
    frames = coefficients[starts[:, None] + np.minimum(positions[None, :], counts[:, None] - 1)]
    if parameters["cmvn"] != "none":
        frames = frames - _masked_mean(frames, valid, counts)[:, None, :]
        if parameters["cmvn"] == "mean_variance":
            frames = frames / (_masked_std(frames, valid, counts) + 1e-3)[:, None, :]
    width = parameters["delta_width"]
    first = _deltas_many(frames, counts, width)
    second = _deltas_many(first, counts, width)
    trajectory = np.concatenate([frames, first], axis=2) if parameters["segment_deltas"] else frames
    every = np.concatenate([frames, first, second], axis=2)
    return np.concatenate(
        [
            _segment_means_many(trajectory, counts, parameters["n_segments"]).reshape(n_utterances, -1),
            _masked_std(every, valid, counts),
            np.log(np.maximum(np.asarray(durations, dtype=np.float64), 1e-3))[:, None],
        ],
        axis=1,
    ).astype(np.float32)


def _masked_mean(frames, valid, counts):
    return np.where(valid[:, :, None], frames, 0).sum(axis=1) / counts[:, None].astype(frames.dtype)


def _masked_std(frames, valid, counts):
    centred = np.where(valid[:, :, None], frames - _masked_mean(frames, valid, counts)[:, None, :], 0)
    return np.sqrt((centred * centred).sum(axis=1) / counts[:, None].astype(frames.dtype))


def _deltas_many(frames, counts, width):
    """:func:`deltas` of padded utterances (n, longest, columns); rows past an utterance's end are not meaningful."""
    longest = frames.shape[1]
    index = np.clip(np.arange(-width, longest + width)[None, :], 0, counts[:, None] - 1)
    padded = np.take_along_axis(frames, index[:, :, None], axis=1)
    result = np.zeros_like(frames)
    for offset in range(1, width + 1):
        result += offset * (padded[:, width + offset : width + offset + longest]
                            - padded[:, width - offset : width - offset + longest])
    return result / (2 * sum(k * k for k in range(1, width + 1)))


def _segment_means_many(frames, counts, n_segments):
    """:func:`segment_means` of padded utterances: shape (n, n_segments, columns)."""
    n_utterances = frames.shape[0]
    cumulative = np.concatenate([np.zeros((n_utterances, 1, frames.shape[2])),
                                 np.cumsum(frames, axis=1, dtype=np.float64)], axis=1)
    # As np.linspace(0, count, n_segments + 1) computes it, row by row.
    edges = np.arange(n_segments + 1)[None, :] * (counts[:, None] / n_segments)
    edges[:, -1] = counts
    whole = np.minimum(np.floor(edges).astype(np.intp), counts[:, None] - 1)
    fraction = (edges - whole)[:, :, None]
    rows = np.arange(n_utterances)[:, None]
    integral = cumulative[rows, whole] + fraction * frames[rows, whole]
    return ((integral[:, 1:] - integral[:, :-1]) / np.diff(edges, axis=1)[:, :, None]).astype(np.float32)


def analyse(samples, parameters):
    """The power spectrogram of a clip and its noise floor: ``(power, noise)``."""
    window = analysis_matrices(parameters)[0]
    power = power_spectrogram(samples, window, parameters)
    return power, noise_spectrum(power, parameters)


def features_of_frames(power, noise, parameters):
    """The summary vector of the word in the frames ``power`` (noise floor ``noise`` removed)."""
    coefficients = cepstra(subtract_noise(power, noise, parameters["noise_subtraction"]), parameters)
    seconds = power.shape[0] * hop_length(parameters) / parameters["sample_rate"]
    return summarise(coefficients, parameters, seconds)


def features_from_samples(samples, parameters, name="the clip"):
    """The summary vector of the word in a loaded clip at ``parameters['sample_rate']``.

    Raises
    ------
    NoSpeechError
        The voice activity detector finds no speech in the clip.
    """
    (row,) = features_of_clips([samples], parameters)
    if np.isnan(row[0]):
        raise NoSpeechError(f"{name}: no speech found (only silence or steady noise)")
    return row


def features_of_clips(clips, parameters):
    """The summary vectors of several loaded clips in one vectorised pass: shape (n_clips, feature length).

    What :func:`features_from_samples` gives each clip, computed together (one spectrogram
    over all their frames, one voicing pass, one mel and DCT product, statistics over padded
    arrays), which costs a fraction of clip-by-clip calls for the many short variants of
    test-time augmentation. The row of a clip in which no speech is found is NaN.
    """
    window = analysis_matrices(parameters)[0]
    power, counts = power_spectra(clips, window, parameters)
    noises = noise_spectra(power, counts, parameters)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    spans = [span_of_speech(segments, mask, parameters)
             for segments, mask in speech_of_clips(clips, power, counts, noises, parameters)]
    found = [i for i, span in enumerate(spans) if span is not None]
    rows = np.full((len(clips), feature_length(parameters)), np.nan, dtype=np.float32)
    if found:
        lengths = np.array([spans[i][1] - spans[i][0] for i in found])
        chosen = np.concatenate([starts[i] + np.arange(*spans[i]) for i in found])
        owner = np.repeat(np.arange(len(found)), lengths)
        frames = subtract_noise(power[chosen], noises[found][owner], parameters["noise_subtraction"])
        seconds = lengths * hop_length(parameters) / parameters["sample_rate"]
        rows[found] = summarise_many(cepstra(frames, parameters, lengths), lengths, parameters, seconds)
    return rows


def extract(path, *, max_seconds=DEFAULT_MAX_SECONDS, feature_version=FEATURE_VERSION, **parameters):
    """Feature vector of one audio file (module level, for :func:`core.extraction.extract_many`).

    ``feature_version`` only keys the cache, so that features cached by an older version of
    this code are not reused.

    Raises
    ------
    DataError
        The file cannot be used (the message names it).
    """
    samples = load_audio(path, sample_rate=parameters["sample_rate"], max_seconds=max_seconds)
    return features_from_samples(samples, parameters, str(path))


def extract_augmented(path, *, augmentation, seed, max_seconds=DEFAULT_MAX_SECONDS, feature_version=FEATURE_VERSION,
                      **parameters):
    """Feature vectors of a file, of perturbed variants of it, and of rejection examples made from it.

    Module level, for :func:`core.extraction.extract_many`; the variants depend only on
    ``seed``, the clip's samples and the settings (never on the file's name), so the cache,
    keyed by content, can hold them.

    Returns
    -------
    np.ndarray, shape (1 + copies + negatives, n_features)
        The clean clip's vector first, then ``augmentation['copies']`` variants, then
        ``augmentation['negatives']`` examples of what is not a word (see
        :func:`speech.augment.negative`). A variant in which no speech is found is a row of NaN.
    """
    from inkvoice.speech.augment import clip_generator, negative, perturb

    rate = parameters["sample_rate"]
    raw = load_audio(path, sample_rate=rate, max_seconds=max_seconds)
    generator = clip_generator(seed, raw)
    variants = [perturb(raw, rate, augmentation, generator) for _ in range(augmentation["copies"])]
    variants += [negative(raw, rate, augmentation, generator) for _ in range(augmentation.get("negatives", 0))]
    rows = features_of_clips([raw, *variants], parameters)
    if np.isnan(rows[0, 0]):
        raise NoSpeechError(f"{path}: no speech found (only silence or steady noise)")
    return rows


def extract_segments(path, *, test_copies, seed, max_seconds=DEFAULT_MAX_SECONDS, feature_version=FEATURE_VERSION,
                     **parameters):
    """Feature rows of the possible words in a recording of several words.

    Module level, for :func:`core.extraction.extract_many`. Each stretch of speech found by the
    voice activity detector is a word, unless it is long enough to hold several said without
    pauses: then every stretch between two of its possible word boundaries
    (:func:`speech.frontend.word_boundaries`) of a word's length gets rows too, and the model
    chooses the best sequence. Each candidate gives 1 + ``test_copies`` rows: the recording as
    it is, then variants of the whole recording at other speeds
    (:data:`speech.augment.TEST_AUGMENTATION`), the candidate's frames mapped onto each.

    Returns
    -------
    np.ndarray, shape (n_rows, 5 + n_features)
        ``[stretch number, first boundary, last boundary, start seconds, end seconds, features...]``
        per row; boundaries number the stretch's possible word boundaries from 0.

    Raises
    ------
    NoSpeechError
        No speech is found anywhere in the recording.
    """
    from inkvoice.speech.augment import TEST_AUGMENTATION, augmentation_parameters, clip_generator, perturb
    from inkvoice.speech.frontend import MARGIN_SECONDS, find_segments, word_boundaries

    rate = parameters["sample_rate"]
    samples = load_audio(path, sample_rate=rate, max_seconds=max_seconds)
    power, noise = analyse(samples, parameters)
    segments = find_segments(samples, power, noise, parameters)
    if not segments:
        raise NoSpeechError(f"{path}: no speech found (only silence or steady noise)")
    hop = hop_length(parameters)
    frames_per_second = rate / hop
    margin = int(round(MARGIN_SECONDS * frames_per_second))
    versions = [(power, noise, 1.0)]
    if test_copies:
        settings = augmentation_parameters(**{**TEST_AUGMENTATION, "copies": int(test_copies)})
        generator = clip_generator(seed, samples)
        for _ in range(int(test_copies)):
            variant = perturb(samples, rate, settings, generator)
            versions.append((*analyse(variant, parameters), variant.size / samples.size))
    rows = []
    for number, (first, last) in enumerate(segments):
        first, last = max(0, first - margin), min(power.shape[0], last + margin)
        cuts = [first + offset for offset in word_boundaries(power[first:last], parameters)]
        pairs = [(0, len(cuts) - 1)] + [
            (a, b) for a in range(len(cuts) - 1) for b in range(a + 1, len(cuts))
            if (a, b) != (0, len(cuts) - 1) and WORD_SECONDS[0] <= (cuts[b] - cuts[a]) / frames_per_second <= WORD_SECONDS[1]
        ]
        for a, b in pairs:
            start, stop = cuts[a], cuts[b]
            head = [number, a, b, start / frames_per_second, stop / frames_per_second]
            for version_power, version_noise, stretch in versions:
                low = int(round(start * stretch))
                high = max(low + 1, min(version_power.shape[0], int(round(stop * stretch))))
                rows.append(np.concatenate([head, features_of_frames(version_power[low:high], version_noise, parameters)]))
    return np.asarray(rows, dtype=np.float32)
