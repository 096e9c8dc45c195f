"""Front end: the power spectrogram of a recording, its noise floor, and where the speech is.

Stages, in the order the code follows them:

1. pre-emphasis, framing with a periodic Hann window, power spectrum (:func:`power_spectrogram`);
2. the noise floor: the mean spectrum of the quietest frames, which in a recording with
   steady noise (fan, hiss, hum) are noise alone (:func:`noise_spectrum`);
3. voice activity: a frame is loud when its energy in the speech band, after removing twice
   the noise floor bin by bin, stands out both from the noise (``vad_snr_db``) and from the
   loudest frame (within ``top_db``); a frame is voiced when its noise-free spectrum repeats at
   a pitch period (70-400 Hz). A run of loud frames is speech when it holds voiced frames, so
   clicks, rain and swelling band noise are not taken for words, while the unvoiced sounds next
   to the vowels ("s", "f", "th") stay (:func:`speech_mask`, :func:`speech_segments`); with
   ``vad_passes`` 2, the floor is taken again from the frames outside the speech found and the
   detection repeated, for noise that comes and goes (:func:`find_segments`);
4. spectral subtraction of the noise floor before the mel filterbank (:func:`subtract_noise`).

Steady noise and mains hum sit in the noise floor, so they neither count as speech nor shape the
features; a fixed trim "30 dB below the peak" would keep them all.
"""

import numpy as np

from inkvoice.speech.audio import NoSpeechError

# The speech band the detector listens to: above mains hum and its strongest harmonics.
VAD_BAND_HZ = (300.0, 3500.0)
# Share of the quietest frames that estimate the noise floor, and the fewest frames used.
NOISE_SHARE = 0.1
MIN_NOISE_FRAMES = 5
# The noise floor is never taken closer than this below the loudest frame (see noise_spectrum).
NOISE_CAP_DB = 10.0
# Bin-by-bin over-subtraction in the detector: a steady noise's power rarely exceeds twice its mean.
VAD_OVER_SUBTRACTION = 2.0
# Speech runs shorter than this (clicks) are dropped; gaps shorter than this inside a run are filled.
MIN_RUN_SECONDS = 0.04
MAX_GAP_SECONDS = 0.06
# Pitch range of voices, and the autocorrelation (share of the frame's energy) that marks a voiced frame.
PITCH_HZ = (70.0, 400.0)
VOICING = 0.45
VOICING_WINDOW_MS = 40.0
MIN_VOICED_SECONDS = 0.03
# The longest unvoiced sound before or after the vowels of a word (the "s" of "six", the "f" of "five").
UNVOICED_EDGE_SECONDS = 0.15
# Stretches of speech at least this long may hold several words said without pauses; their
# possible word boundaries are energy dips this deep (at most this many per stretch).
LONG_STRETCH_SECONDS = 0.6
BOUNDARY_DIP_DB = 1.5
MAX_BOUNDARIES = 24
# What is kept around the detected speech, so weak onsets and endings stay.
MARGIN_SECONDS = 0.03
# Spectral subtraction never removes more than this share of a bin's power (keeps a floor of 10%).
SUBTRACTION_FLOOR = 0.1


def hop_length(parameters):
    return max(1, int(round(parameters["sample_rate"] * parameters["hop_ms"] / 1000)))


def power_spectrogram(samples, window, parameters):
    """Pre-emphasised, Hann-windowed power spectra, shape (n_frames, n_fft // 2 + 1), float32.

    The first window is centred on the first sample, as librosa does; a clip shorter than a
    window is zero-padded.
    """
    window_length = window.size
    hop = hop_length(parameters)
    samples = np.asarray(samples, dtype=np.float32)
    emphasised = np.empty_like(samples)
    emphasised[:1] = samples[:1]
    emphasised[1:] = samples[1:] - np.float32(parameters["pre_emphasis"]) * samples[:-1]
    half = window_length // 2
    padded = np.zeros(max(emphasised.size + 2 * half, window_length), dtype=np.float32)
    padded[half : half + emphasised.size] = emphasised
    n_frames = 1 + (padded.size - window_length) // hop
    frames = np.lib.stride_tricks.as_strided(
        padded, shape=(n_frames, window_length), strides=(padded.strides[0] * hop, padded.strides[0])
    )
    spectrum = np.fft.rfft(frames * window, n=int(parameters["n_fft"]), axis=1)
    return (spectrum.real**2 + spectrum.imag**2).astype(np.float32)


def _band_bins(parameters):
    n_bins = int(parameters["n_fft"]) // 2 + 1
    frequencies = np.linspace(0.0, parameters["sample_rate"] / 2, n_bins)
    return (frequencies >= VAD_BAND_HZ[0]) & (frequencies <= VAD_BAND_HZ[1])


def noise_spectrum(power, parameters):
    """The mean power spectrum of the quietest ``NOISE_SHARE`` of the frames (shape (n_bins,)).

    A clip cut tightly around its word has no frame of noise alone, and its quietest frames
    are speech; so the floor is never put closer than ``NOISE_CAP_DB`` below the loudest frame.
    """
    band = _band_bins(parameters)
    energy = power[:, band].sum(axis=1, dtype=np.float64)
    count = min(power.shape[0], max(MIN_NOISE_FRAMES, int(NOISE_SHARE * power.shape[0])))
    quietest = np.argsort(energy, kind="stable")[:count]
    return _capped(power[quietest].mean(axis=0), float(energy.max()), band)


def _capped(noise, loudest, band):
    """``noise`` scaled down, if need be, to ``NOISE_CAP_DB`` below the loudest frame's band energy."""
    cap = loudest * 10.0 ** (-NOISE_CAP_DB / 10.0)
    noise_energy = float(noise[band].sum(dtype=np.float64))
    return noise * np.float32(cap / noise_energy) if noise_energy > cap else noise


def voiced_frames(samples, parameters):
    """Which frames repeat at a pitch period (bool, shape (n_frames,), the frames of :func:`power_spectrogram`).

    Each frame's autocorrelation is the inverse transform of its power spectrum in the speech
    band (``VAD_BAND_HZ``, which leaves out rumble and hum), over a longer window
    (``VOICING_WINDOW_MS``, so that a low voice's period fits in it twice). A voiced frame's
    autocorrelation within the pitch range reaches ``VOICING`` of its energy; white, rain and
    traffic noise stay below. Steady periodic sounds (hum, fans, engines) may pass: the
    loudness test, which removes the noise floor, keeps them out.
    """
    rate = parameters["sample_rate"]
    length = int(round(rate * VOICING_WINDOW_MS / 1000))
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(length) / length)).astype(np.float32)
    n_fft = 1 << (2 * length - 1).bit_length()
    power = power_spectrogram(samples, window, {**parameters, "n_fft": n_fft, "pre_emphasis": 0.0})
    frequencies = np.linspace(0.0, rate / 2, power.shape[1])
    power[:, (frequencies < VAD_BAND_HZ[0]) | (frequencies > VAD_BAND_HZ[1])] = 0.0
    correlation = np.fft.irfft(power, axis=1)
    low, high = int(rate / PITCH_HZ[1]), int(rate / PITCH_HZ[0])
    peaks = correlation[:, low : high + 1].max(axis=1) / np.maximum(correlation[:, 0], 1e-20)
    return peaks >= VOICING


def speech_mask(power, noise, parameters):
    """Which frames are loud enough to be speech (bool, shape (n_frames,)), before the voicing check."""
    band = _band_bins(parameters)
    excess = np.maximum(power[:, band] - VAD_OVER_SUBTRACTION * noise[band], 0.0).sum(axis=1, dtype=np.float64)
    noise_energy = float(noise[band].sum(dtype=np.float64))
    peak = float(excess.max()) if excess.size else 0.0
    if peak <= 0.0:
        return np.zeros(power.shape[0], dtype=bool)
    return (excess >= peak * 10.0 ** (-parameters["top_db"] / 10.0)) & (
        excess > noise_energy * 10.0 ** (parameters["vad_snr_db"] / 10.0)
    )


def speech_segments(mask, parameters, voiced=None, max_gap_seconds=MAX_GAP_SECONDS):
    """Runs of speech frames as ``[(start_frame, stop_frame), ...]``.

    Short gaps are filled; runs shorter than ``MIN_RUN_SECONDS``, or (when ``voiced`` is given)
    holding fewer than ``MIN_VOICED_SECONDS`` of voiced frames, are dropped, and a run reaches
    at most ``UNVOICED_EDGE_SECONDS`` before its first and after its last voiced frame.
    """
    frames_per_second = parameters["sample_rate"] / hop_length(parameters)
    runs = []
    for start, stop in _runs(mask):
        if runs and start - runs[-1][1] <= max_gap_seconds * frames_per_second:
            runs[-1] = (runs[-1][0], stop)
        else:
            runs.append((start, stop))
    shortest = MIN_RUN_SECONDS * frames_per_second
    runs = [(start, stop) for start, stop in runs if stop - start >= shortest]
    if voiced is not None:
        least = MIN_VOICED_SECONDS * frames_per_second
        allowance = int(round(UNVOICED_EDGE_SECONDS * frames_per_second))
        kept = []
        for start, stop in runs:
            inside = np.flatnonzero(voiced[start:stop] & mask[start:stop])
            if inside.size >= least:
                kept.append((max(start, start + inside[0] - allowance), min(stop, start + inside[-1] + 1 + allowance)))
        runs = kept
    return runs


def _runs(mask):
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def find_segments(samples, power, noise, parameters, max_gap_seconds=MAX_GAP_SECONDS):
    """The stretches of speech in a recording: loud runs holding voiced frames (see the module stages)."""
    voiced = voiced_frames(samples, parameters)[: power.shape[0]]
    segments = speech_segments(speech_mask(power, noise, parameters), parameters, voiced, max_gap_seconds)
    if parameters["vad_passes"] < 2 or not segments:
        return segments
    # Second pass: noise that comes and goes (rain, crackle, traffic) is louder than its quietest
    # frames, so the first pass takes much of it for speech next to the word. The frames outside
    # the speech found are mostly noise: their median (which the word's faint edges, also
    # outside, do not move) is the better floor. Under steady noise it is the first floor again.
    outside = np.ones(power.shape[0], dtype=bool)
    for start, stop in segments:
        outside[start:stop] = False
    if outside.sum() < MIN_NOISE_FRAMES:
        return segments
    band = _band_bins(parameters)
    refined = _capped(np.median(power[outside], axis=0), float(power[:, band].sum(axis=1, dtype=np.float64).max()), band)
    if refined[band].sum(dtype=np.float64) <= noise[band].sum(dtype=np.float64):
        return segments
    return speech_segments(speech_mask(power, refined, parameters), parameters, voiced, max_gap_seconds) or segments


def speech_span(samples, power, noise, parameters, name="the clip"):
    """``(start_frame, stop_frame)`` from the first to the last speech frame, with a margin.

    Pauses inside the word stay. Without a voiced run, the loud runs alone are taken. Raises
    NoSpeechError when no frame is loud enough to be speech.
    """
    segments = find_segments(samples, power, noise, parameters)
    if not segments:
        # A very short word may have its loud frames and its voiced frames apart: take the
        # loud ones, and leave non-speech to the model's rejection class.
        loud = np.flatnonzero(speech_mask(power, noise, parameters))
        segments = [(int(loud[0]), int(loud[-1]) + 1)] if loud.size else []
    if not segments:
        raise NoSpeechError(f"{name}: no speech found (only silence or steady noise)")
    margin = int(round(MARGIN_SECONDS * parameters["sample_rate"] / hop_length(parameters)))
    return max(0, segments[0][0] - margin), min(power.shape[0], segments[-1][1] + margin)


def subtract_noise(power, noise, factor):
    """Spectral subtraction: ``power - factor * noise`` bin by bin, never below 10% of ``power``."""
    if factor <= 0:
        return power
    return np.maximum(power - np.float32(factor) * noise, np.float32(SUBTRACTION_FLOOR) * power)


def word_boundaries(power, parameters):
    """Frame offsets where a stretch of speech may pass from one word to the next, ends included.

    Candidates are the dips of the smoothed speech-band energy at least ``BOUNDARY_DIP_DB``
    below the peaks on both sides; words read without pauses still dip between them. A stretch
    shorter than ``LONG_STRETCH_SECONDS`` is taken as one word: ``[0, n_frames]``.
    """
    n_frames = power.shape[0]
    frames_per_second = parameters["sample_rate"] / hop_length(parameters)
    if n_frames < LONG_STRETCH_SECONDS * frames_per_second:
        return [0, n_frames]
    energy = 10.0 * np.log10(np.maximum(power[:, _band_bins(parameters)].sum(axis=1, dtype=np.float64), 1e-12))
    smooth = np.convolve(energy, np.ones(3) / 3, mode="same")
    reach = int(round(0.15 * frames_per_second))
    dips = []
    for index in range(1, n_frames - 1):
        if smooth[index] <= smooth[index - 1] and smooth[index] <= smooth[index + 1]:
            left = smooth[max(0, index - reach) : index].max()
            right = smooth[index + 1 : index + 1 + reach].max()
            depth = min(left, right) - smooth[index]
            if depth >= BOUNDARY_DIP_DB:
                dips.append((depth, index))
    chosen = sorted(index for _, index in sorted(dips, reverse=True)[:MAX_BOUNDARIES])
    return [0, *chosen, n_frames]
