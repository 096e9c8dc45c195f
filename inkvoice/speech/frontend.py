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
   to the vowels ("s", "f", "th") stay (:func:`speech_masks`, :func:`speech_segments`); with
   ``vad_passes`` 2, the floor is taken again from the frames outside the speech found and the
   detection repeated, for noise that comes and goes (:func:`speech_of_clips`);
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
VOICING_BLOCK = 512
MIN_VOICED_SECONDS = 0.03
# The longest unvoiced sound before or after the vowels of a word (the "s" of "six", the "f" of "five").
UNVOICED_EDGE_SECONDS = 0.15
# Stretches of speech at least this long may hold several words said without pauses; their
# possible word boundaries are energy dips this deep (at most this many per stretch); two
# digits read at pace without a pause last about half a second.
LONG_STRETCH_SECONDS = 0.4
BOUNDARY_DIP_DB = 1.5
MAX_BOUNDARIES = 24
# What is kept around the detected speech, so weak onsets and endings stay.
MARGIN_SECONDS = 0.03
# Spectral subtraction never removes more than this share of a bin's power (keeps a floor of 10%).
SUBTRACTION_FLOOR = 0.1


def hop_length(parameters):
    return max(1, int(round(parameters["sample_rate"] * parameters["hop_ms"] / 1000)))


def frames_of(clips, window_length, hop, pre_emphasis, selected=None):
    """The frames of several clips, framed as :func:`power_spectrogram` frames one: ``(frames, counts)``.

    ``frames`` stacks every clip's frames (or, with ``selected``, a list of frame indices per
    clip, only those) in clip order, shape (n, window_length), float32; ``counts[i]`` is the
    number of frames clip ``i`` has (all of them, whatever ``selected`` holds).
    """
    half = window_length // 2
    pieces, starts, counts, offset = [], [], [], 0
    for index, samples in enumerate(clips):
        samples = np.asarray(samples, dtype=np.float32)
        padded = np.zeros(max(samples.size + 2 * half, window_length), dtype=np.float32)
        padded[half : half + samples.size] = samples
        if pre_emphasis:
            padded[half + 1 : half + samples.size] -= np.float32(pre_emphasis) * samples[:-1]
        n_frames = 1 + (padded.size - window_length) // hop
        chosen = np.arange(n_frames) if selected is None else np.asarray(selected[index], dtype=np.intp)
        pieces.append(padded)
        starts.append(offset + hop * chosen)
        counts.append(n_frames)
        offset += padded.size
    signal = np.concatenate(pieces) if pieces else np.zeros(window_length, dtype=np.float32)
    starts = np.concatenate(starts) if starts else np.zeros(0, dtype=np.intp)
    return np.lib.stride_tricks.sliding_window_view(signal, window_length)[starts], np.asarray(counts)


def power_spectra(clips, window, parameters):
    """Power spectrograms of several clips in one pass: ``(power, counts)``.

    ``power`` stacks every clip's frames (see :func:`power_spectrogram`), shape
    (sum(counts), n_fft // 2 + 1), float32; clip ``i`` owns ``counts[i]`` rows, in order.
    """
    frames, counts = frames_of(clips, window.size, hop_length(parameters), parameters["pre_emphasis"])
    # In float64: numpy transforms many float32 rows several times slower, and no less exactly.
    spectrum = np.fft.rfft(frames * window.astype(np.float64), n=int(parameters["n_fft"]), axis=1)
    return (spectrum.real**2 + spectrum.imag**2).astype(np.float32), counts


def power_spectrogram(samples, window, parameters):
    """Pre-emphasised, Hann-windowed power spectra, shape (n_frames, n_fft // 2 + 1), float32.

    The first window is centred on the first sample, as librosa does; a clip shorter than a
    window is zero-padded.
    """
    return power_spectra([samples], window, parameters)[0]


def _band_bins(parameters):
    """The bins of ``VAD_BAND_HZ`` as a slice (a slice is a view, where a mask would copy)."""
    n_bins = int(parameters["n_fft"]) // 2 + 1
    return _band_slice(np.linspace(0.0, parameters["sample_rate"] / 2, n_bins))


def _band_slice(frequencies):
    inside = np.flatnonzero((frequencies >= VAD_BAND_HZ[0]) & (frequencies <= VAD_BAND_HZ[1]))
    return slice(int(inside[0]), int(inside[-1]) + 1)


def _starts(counts):
    return np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.intp)


def noise_spectra(power, counts, parameters):
    """:func:`noise_spectrum` of each clip of stacked spectrograms (see :func:`power_spectra`), shape (n_clips, n_bins)."""
    band = _band_bins(parameters)
    energy = power[:, band].sum(axis=1, dtype=np.float64)
    noises = np.empty((len(counts), power.shape[1]), dtype=np.float32)
    for clip, (start, n_frames) in enumerate(zip(_starts(counts), counts)):
        clip_energy = energy[start : start + n_frames]
        count = min(n_frames, max(MIN_NOISE_FRAMES, int(NOISE_SHARE * n_frames)))
        quietest = np.argsort(clip_energy, kind="stable")[:count]
        noises[clip] = _capped(power[start + quietest].mean(axis=0), float(clip_energy.max()), band)
    return noises


def _capped(noise, loudest, band):
    """``noise`` scaled down, if need be, to ``NOISE_CAP_DB`` below the loudest frame's band energy ``loudest``."""
    cap = loudest * 10.0 ** (-NOISE_CAP_DB / 10.0)
    noise_energy = float(noise[band].sum(dtype=np.float64))
    return noise * np.float32(cap / noise_energy) if noise_energy > cap else noise


def noise_spectrum(power, parameters):
    """The mean power spectrum of the quietest ``NOISE_SHARE`` of the frames (shape (n_bins,)).

    A clip cut tightly around its word has no frame of noise alone, and its quietest frames
    are speech; so the floor is never put closer than ``NOISE_CAP_DB`` below the loudest frame.
    """
    return noise_spectra(power, [power.shape[0]], parameters)[0]


def voicing(clips, parameters, selected):
    """Which of the ``selected`` frames of each clip repeat at a pitch period: one bool array per clip.

    ``selected[i]`` lists frame indices of clip ``i`` (the frames of :func:`power_spectrogram`);
    only those are analysed, the rest are False. Each frame's autocorrelation is the inverse
    transform of its power spectrum in the speech band (``VAD_BAND_HZ``, which leaves out rumble
    and hum), over a longer window (``VOICING_WINDOW_MS``, so that a low voice's period fits in
    it twice). A voiced frame's autocorrelation within the pitch range reaches ``VOICING`` of its
    energy; white, rain and traffic noise stay below. Steady periodic sounds (hum, fans, engines)
    may pass: the loudness test, which removes the noise floor, keeps them out.
    """
    rate = parameters["sample_rate"]
    length = int(round(rate * VOICING_WINDOW_MS / 1000))
    n_fft = 1 << (2 * length - 1).bit_length()
    basis, band = _correlation_basis(rate, length, n_fft)
    hop = hop_length(parameters)
    # A clip's voicing frames may be one fewer than its spectrogram's (an odd window): those stay False.
    n_frames = [1 + (max(np.size(clip) + 2 * (length // 2), length) - length) // hop for clip in clips]
    chosen = [frames[frames < n] for frames, n in zip((np.asarray(f, dtype=np.intp) for f in selected), n_frames)]
    frames, _ = frames_of(clips, length, hop, 0.0, chosen)
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(length) / length)).astype(np.float32).astype(np.float64)
    peaks = np.empty(frames.shape[0], dtype=np.float32)
    # In blocks of frames, so that the long transforms stay in the processor's cache.
    for start in range(0, frames.shape[0], VOICING_BLOCK):
        block = slice(start, start + VOICING_BLOCK)
        spectrum = np.fft.rfft(frames[block] * window, n=n_fft, axis=1)[:, band]
        power = (spectrum.real**2 + spectrum.imag**2).astype(np.float32)
        # The autocorrelation at lag 0 and over the pitch periods only: the inverse transform's
        # cosines at those lags, applied to the band's bins.
        correlation = power @ basis
        peaks[block] = correlation[:, 1:].max(axis=1, initial=-np.inf) / np.maximum(correlation[:, 0], 1e-20)
    voiced, position = [], 0
    for frames_of_clip, n in zip(chosen, n_frames):
        flags = np.zeros(n, dtype=bool)
        flags[frames_of_clip] = peaks[position : position + frames_of_clip.size] >= VOICING
        position += frames_of_clip.size
        voiced.append(flags)
    return voiced


_CORRELATION = {}


def _correlation_basis(rate, length, n_fft):
    """The cosines that turn a band's power spectrum into its autocorrelation at lag 0 and the pitch lags."""
    key = (rate, length, n_fft)
    if key not in _CORRELATION:
        band = _band_slice(np.linspace(0.0, rate / 2, n_fft // 2 + 1))
        bins = np.arange(band.start, band.stop)
        low, high = int(rate / PITCH_HZ[1]), int(rate / PITCH_HZ[0])
        lags = np.concatenate([[0], np.arange(low, min(high, n_fft - 1) + 1)])
        # irfft's weights: the zero and Nyquist bins once, the others twice (their mirror images).
        weights = np.where((bins == 0) | (bins == n_fft // 2), 1.0, 2.0) / n_fft
        basis = weights[:, None] * np.cos(2 * np.pi * np.outer(bins, lags) / n_fft)
        _CORRELATION[key] = (basis.astype(np.float32), band)
    return _CORRELATION[key]


def speech_masks(power, counts, noises, parameters):
    """Which frames of each clip of stacked spectrograms are loud enough to be speech, before the
    voicing check: one bool array over all their frames."""
    band = _band_bins(parameters)
    owner = np.repeat(np.arange(len(counts)), counts)
    floor = (VAD_OVER_SUBTRACTION * noises[:, band])[owner]
    excess = np.maximum(power[:, band] - floor, 0.0).sum(axis=1, dtype=np.float64)
    noise_energy = noises[:, band].sum(axis=1, dtype=np.float64)
    if not excess.size:
        return np.zeros(0, dtype=bool)
    starts = _starts(counts)
    peaks = np.maximum.reduceat(excess, np.minimum(starts, excess.size - 1))
    peaks[np.asarray(counts) == 0] = 0.0
    mask = (excess >= peaks[owner] * 10.0 ** (-parameters["top_db"] / 10.0)) & (
        excess > noise_energy[owner] * 10.0 ** (parameters["vad_snr_db"] / 10.0)
    )
    return mask & (peaks[owner] > 0.0)


def speech_segments(mask, parameters, voiced=None, max_gap_seconds=MAX_GAP_SECONDS):
    """Runs of speech frames as ``[(start_frame, stop_frame), ...]``.

    Short gaps are filled; runs shorter than ``MIN_RUN_SECONDS``, or (when ``voiced`` is given)
    holding fewer than ``MIN_VOICED_SECONDS`` of voiced frames, are dropped, and a run reaches
    at most ``UNVOICED_EDGE_SECONDS`` before its first and after its last voiced frame.
    """
    runs = loud_runs(mask, parameters, max_gap_seconds)
    if voiced is None:
        return runs
    extents = []
    for start, stop in runs:
        inside = start + np.flatnonzero(voiced[start:stop] & mask[start:stop])
        extents.append((int(inside[0]), int(inside[-1])) if inside.size >= _least_voiced(parameters) else None)
    return _trim_to_voiced(runs, extents, parameters)


def loud_runs(mask, parameters, max_gap_seconds=MAX_GAP_SECONDS):
    """Runs of loud frames, short gaps filled, runs shorter than ``MIN_RUN_SECONDS`` dropped."""
    frames_per_second = parameters["sample_rate"] / hop_length(parameters)
    runs = []
    for start, stop in _runs(mask):
        if runs and start - runs[-1][1] <= max_gap_seconds * frames_per_second:
            runs[-1] = (runs[-1][0], stop)
        else:
            runs.append((start, stop))
    shortest = MIN_RUN_SECONDS * frames_per_second
    return [(start, stop) for start, stop in runs if stop - start >= shortest]


def _least_voiced(parameters):
    return MIN_VOICED_SECONDS * parameters["sample_rate"] / hop_length(parameters)


def _trim_to_voiced(runs, extents, parameters):
    """The runs whose extent (first and last voiced loud frame, or None) was found, cut to it plus an allowance."""
    allowance = int(round(UNVOICED_EDGE_SECONDS * parameters["sample_rate"] / hop_length(parameters)))
    return [(max(start, first - allowance), min(stop, last + 1 + allowance))
            for (start, stop), extent in zip(runs, extents) if extent is not None
            for first, last in [extent]]


def _runs(mask):
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def speech_of_clips(clips, power, counts, noises, parameters, max_gap_seconds=MAX_GAP_SECONDS):
    """The stretches of speech in each of several clips, and their loud frames: ``[(segments, mask), ...]``.

    ``power``, ``counts`` and ``noises`` as :func:`power_spectra` and :func:`noise_spectra` give
    them; the answer is :func:`speech_segments` of each clip with its voiced frames, found again
    over a better floor when ``parameters["vad_passes"]`` is 2 (:func:`_second_pass`).
    """
    found = _speech_of_clips_once(clips, power, counts, noises, parameters, max_gap_seconds)
    if parameters["vad_passes"] < 2:
        return found
    return _second_pass(clips, power, counts, noises, parameters, max_gap_seconds, found)


def _second_pass(clips, power, counts, noises, parameters, max_gap_seconds, found):
    """The detection repeated over the floor of the frames outside the speech the first pass found.

    Noise that comes and goes (rain, crackle, traffic) is louder than its quietest frames, so
    the first pass takes much of it for speech next to the word. The frames outside the speech
    found are mostly noise: their median (which the word's faint edges, also outside, do not
    move) is the better floor. Under steady noise it is the first floor again, and the first
    answer stands; so does it when the second pass finds no speech at all.
    """
    band = _band_bins(parameters)
    starts = _starts(counts)
    again, refined = [], []
    for clip, ((segments, _), start, n_frames) in enumerate(zip(found, starts, counts)):
        outside = np.ones(n_frames, dtype=bool)
        for first, stop in segments:
            outside[first:stop] = False
        if not segments or outside.sum() < MIN_NOISE_FRAMES:
            continue
        own = power[start : start + n_frames]
        noise = _capped(np.median(own[outside], axis=0), float(own[:, band].sum(axis=1, dtype=np.float64).max()), band)
        if noise[band].sum(dtype=np.float64) > noises[clip][band].sum(dtype=np.float64):
            again.append(clip)
            refined.append(noise)
    if not again:
        return found
    second = _speech_of_clips_once(
        [clips[clip] for clip in again], np.concatenate([power[starts[c] : starts[c] + counts[c]] for c in again]),
        [counts[clip] for clip in again], np.stack(refined), parameters, max_gap_seconds,
    )
    found = list(found)
    for clip, (segments, mask) in zip(again, second):
        if segments:
            found[clip] = (segments, mask)
    return found


def _speech_of_clips_once(clips, power, counts, noises, parameters, max_gap_seconds):
    """One pass of :func:`speech_of_clips` over the floors ``noises``.

    Voicing, the costliest step, is computed only where it can change the answer: a run needs
    its first and last voiced loud frame and to know that it holds enough of them, so its loud
    frames are examined from both ends, a few more in each round, until those are settled.
    """
    loud = speech_masks(power, counts, noises, parameters)
    masks = np.split(loud, np.cumsum(counts)[:-1])
    runs = [loud_runs(mask, parameters, max_gap_seconds) for mask in masks]
    least = _least_voiced(parameters)
    # One entry per run: its clip, its loud frames, and what is known of their voicing so far.
    searches = []
    for clip, (mask, clip_runs) in enumerate(zip(masks, runs)):
        for start, stop in clip_runs:
            searches.append(_VoicingSearch(clip, (start + np.flatnonzero(mask[start:stop])).tolist(), least))
    # Rounds pay off over many clips; a clip or two is cheaper in one round over all its loud frames.
    batch = 3 if len(clips) > 2 else max([len(search.frames) for search in searches], default=1)
    while True:
        wanted = [[] for _ in clips]
        asked = [(search, search.next_frames(batch)) for search in searches if not search.settled]
        if not asked:
            break
        for search, frames in asked:
            wanted[search.clip].extend(frames)
        voiced = voicing(clips, parameters, wanted)
        for search, frames in asked:
            flags = voiced[search.clip]
            search.learn(frames, [bool(flags[frame]) if frame < flags.size else False for frame in frames])
        batch *= 2
    found, position = [], 0
    for mask, clip_runs in zip(masks, runs):
        extents = [search.extent() for search in searches[position : position + len(clip_runs)]]
        position += len(clip_runs)
        found.append((_trim_to_voiced(clip_runs, extents, parameters), mask))
    return found


class _VoicingSearch:
    """What is known of the voicing of one run's loud frames, examined from both ends."""

    def __init__(self, clip, frames, least):
        self.clip, self.frames, self.least = clip, frames, least
        self.known = {}  # frame -> voiced

    def _first(self, order):
        """The first voiced frame in ``order`` when every frame before it is known (False: not yet settled)."""
        for frame in order:
            if frame not in self.known:
                return False
            if self.known[frame]:
                return frame
        return None  # every frame is known and none is voiced

    @property
    def settled(self):
        first, last = self._first(self.frames), self._first(reversed(self.frames))
        if first is None or len(self.known) == len(self.frames):
            return True
        return first is not False and last is not False and sum(self.known.values()) >= self.least

    def next_frames(self, batch):
        unknown = [frame for frame in self.frames if frame not in self.known]
        chosen = set(unknown[:batch]) if self._first(self.frames) is False else set()
        if self._first(reversed(self.frames)) is False:
            chosen.update(unknown[-batch:])
        if not chosen:  # both ends are settled; more voiced frames are needed
            chosen.update(unknown[:batch])
        return sorted(chosen)

    def learn(self, frames, flags):
        self.known.update(zip(frames, flags))

    def extent(self):
        """(first, last) voiced loud frame when the run holds at least ``least`` of them, else None."""
        if sum(self.known.values()) < self.least:
            return None
        return self._first(self.frames), self._first(reversed(self.frames))


def find_segments(samples, power, noise, parameters, max_gap_seconds=MAX_GAP_SECONDS):
    """The stretches of speech in a recording: loud runs holding voiced frames (see the module stages)."""
    return speech_of_clips([samples], power, [power.shape[0]], noise[None, :], parameters, max_gap_seconds)[0][0]


def span_of_speech(segments, mask, parameters):
    """``(start_frame, stop_frame)`` from the first to the last stretch of speech with a margin, or None.

    Pauses inside the word stay. Without a voiced run, the loud frames of ``mask`` alone are taken.
    """
    if not segments:
        # A very short word may have its loud frames and its voiced frames apart: take the
        # loud ones, and leave non-speech to the model's rejection class.
        loud = np.flatnonzero(mask)
        segments = [(int(loud[0]), int(loud[-1]) + 1)] if loud.size else []
    if not segments:
        return None
    margin = int(round(MARGIN_SECONDS * parameters["sample_rate"] / hop_length(parameters)))
    return max(0, segments[0][0] - margin), min(mask.size, segments[-1][1] + margin)


def speech_span(samples, power, noise, parameters, name="the clip"):
    """``(start_frame, stop_frame)`` from the first to the last speech frame, with a margin (:func:`span_of_speech`).

    Raises NoSpeechError when no frame is loud enough to be speech.
    """
    ((segments, mask),) = speech_of_clips([samples], power, [power.shape[0]], noise[None, :], parameters)
    span = span_of_speech(segments, mask, parameters)
    if span is None:
        raise NoSpeechError(f"{name}: no speech found (only silence or steady noise)")
    return span


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
