"""Synthetic sounds: noises, hum, rooms, phone lines and non-speech, for augmentation and tests.

Every function takes its randomness from the ``np.random.Generator`` passed in and returns
float32 samples. Training augmentation (:mod:`inkvoice.speech.augment`) draws from the
``TRAINING_NOISES`` (and ``MORE_TRAINING_NOISES`` when asked) and the rejection class's
``NON_SPEECH`` families; the benchmarks test on ``TEST_NOISES``, which training never uses.
"""

import numpy as np


def _shaped_noise(n_samples, generator, exponent):
    """Noise whose power falls as 1 / f**exponent (0 white, 1 pink, 2 brown), unit RMS."""
    spectrum = generator.standard_normal(n_samples // 2 + 1) + 1j * generator.standard_normal(n_samples // 2 + 1)
    frequencies = np.arange(n_samples // 2 + 1, dtype=np.float64)
    frequencies[0] = 1.0
    noise = np.fft.irfft(spectrum / frequencies ** (exponent / 2.0), n=n_samples)
    return _unit(noise)


def _unit(samples):
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return (samples / rms if rms > 0 else samples).astype(np.float32)


def _band(samples, rate, low, high):
    """``samples`` limited to ``low``-``high`` Hz by zeroing FFT bins (smooth 20 % edges)."""
    spectrum = np.fft.rfft(samples)
    frequencies = np.fft.rfftfreq(samples.size, 1.0 / rate)
    gain = np.clip((frequencies - 0.8 * low) / max(0.2 * low, 1e-9), 0, 1) * np.clip((1.2 * high - frequencies) / (0.2 * high), 0, 1)
    return np.fft.irfft(spectrum * gain, n=samples.size).astype(np.float32)


def white_noise(n_samples, rate, generator):
    return _unit(generator.standard_normal(n_samples))


def pink_noise(n_samples, rate, generator):
    return _shaped_noise(n_samples, generator, 1.0)


def hum(n_samples, rate, generator):
    """Mains hum: 50 or 60 Hz with odd and even harmonics of random strength, a little noise."""
    t = np.arange(n_samples) / rate
    base = generator.choice([50.0, 60.0])
    wave = sum(generator.uniform(0.1, 1.0) / k * np.sin(2 * np.pi * base * k * t + generator.uniform(0, 2 * np.pi))
               for k in range(1, 9) if base * k < rate / 2)
    return _unit(wave + 0.05 * generator.standard_normal(n_samples))


def fan(n_samples, rate, generator):
    """A fan or air conditioner: low-passed noise with a blade tone and its harmonics."""
    noise = _band(_shaped_noise(n_samples, generator, 1.5), rate, 20.0, generator.uniform(800, 2500))
    t = np.arange(n_samples) / rate
    blade = generator.uniform(80, 300)
    tone = sum(np.sin(2 * np.pi * blade * k * t) / k for k in (1, 2, 3))
    return _unit(noise + generator.uniform(0.05, 0.4) * _unit(tone))


def babble_from(speech, n_samples, generator, talkers=None):
    """Babble: several reversed, re-timed copies of ``speech`` summed, as other voices talking.

    Reversed speech keeps the spectrum and rhythm of voices without being any word, so a
    model trained with it does not learn to answer the babble's words.
    """
    talkers = int(generator.integers(3, 7)) if talkers is None else talkers
    result = np.zeros(n_samples, dtype=np.float64)
    source = np.asarray(speech, dtype=np.float64)[::-1]
    if source.size < 2:
        return result.astype(np.float32)
    for _ in range(talkers):
        factor = generator.uniform(0.8, 1.25)
        positions = np.arange(0, source.size - 1, factor)
        voice = np.interp(positions, np.arange(source.size), source)
        voice = np.tile(voice, n_samples // max(voice.size, 1) + 2)
        start = int(generator.integers(0, voice.size - n_samples + 1))
        result += _unit(voice[start : start + n_samples])
    return _unit(result)


def crackle(n_samples, rate, generator):
    """Crackle: sparse clicks of random size over faint hiss (a bad cable, a worn record, a rustle)."""
    clicks_ = np.zeros(n_samples)
    count = int(n_samples / rate * generator.uniform(10, 150))
    clicks_[generator.integers(0, n_samples, count)] = generator.standard_normal(count)
    return _unit(clicks_ + 0.05 * generator.standard_normal(n_samples))


def swell(samples, rate, generator):
    """``samples`` whose level rises and falls slowly (0.1-1.5 Hz, up to +-6 dB), as noise around us does."""
    t = np.arange(samples.size) / rate
    depth = generator.uniform(0.0, 0.5)
    return _unit(samples * (1.0 + depth * np.sin(2 * np.pi * generator.uniform(0.1, 1.5) * t + generator.uniform(0, 6.3))))


def car(n_samples, rate, generator):
    """Car interior (test only): brown noise under 500 Hz and an engine's firing harmonics."""
    t = np.arange(n_samples) / rate
    engine = generator.uniform(25, 45)
    rumble = _band(_shaped_noise(n_samples, generator, 2.0), rate, 20.0, 500.0)
    tone = sum(np.sin(2 * np.pi * engine * k * t + generator.uniform(0, 6.3)) / k for k in range(1, 6))
    return _unit(_unit(rumble) + 0.5 * _unit(tone))


def rain(n_samples, rate, generator):
    """Rain on a window (test only): dense random clicks of random size, high-passed."""
    drops = np.zeros(n_samples)
    count = int(n_samples / rate * generator.uniform(300, 800))
    drops[generator.integers(0, n_samples, count)] = generator.exponential(1.0, count) * generator.choice([-1, 1], count)
    return _unit(_band(drops + 0.1 * generator.standard_normal(n_samples), rate, 1000.0, rate / 2))


def street(n_samples, rate, generator):
    """Street noise (test only): band noise 200-2000 Hz whose level swells slowly, as traffic passes."""
    t = np.arange(n_samples) / rate
    swell = 1.0 + 0.6 * np.sin(2 * np.pi * generator.uniform(0.2, 1.0) * t + generator.uniform(0, 6.3))
    return _unit(_band(generator.standard_normal(n_samples), rate, 200.0, 2000.0) * swell)


def brown_noise(n_samples, rate, generator):
    """Brown (1/f**2) noise: rumble, distant traffic, a ventilation duct."""
    return _shaped_noise(n_samples, generator, 2.0)


def wind(n_samples, rate, generator):
    """Wind on a microphone: low-passed noise in deep, irregular gusts."""
    noise = _band(_shaped_noise(n_samples, generator, 1.0), rate, 20.0, generator.uniform(300, 1200))
    t = np.arange(n_samples) / rate
    gusts = sum(np.sin(2 * np.pi * generator.uniform(0.2, 2.0) * t + generator.uniform(0, 6.3)) for _ in range(3))
    return _unit(noise * np.exp(generator.uniform(0.3, 1.0) * gusts))


def clatter(n_samples, rate, generator):
    """Dishes, keys, a keyboard: short bright hits that ring and fade, a few to many per second."""
    result = np.zeros(n_samples)
    t = np.arange(int(0.06 * rate)) / rate
    for position in generator.integers(0, max(1, n_samples - t.size), int(n_samples / rate * generator.uniform(3, 30))):
        frequency = generator.uniform(1000, 3500)
        hit = np.sin(2 * np.pi * frequency * t) * np.exp(-t / generator.uniform(0.003, 0.02)) * generator.uniform(0.2, 1)
        result[position : position + t.size] += hit[: n_samples - position]
    return _unit(result + 0.02 * generator.standard_normal(n_samples))


def music(n_samples, rate, generator):
    """Background music: a phrase of notes with harmonics, over a soft chord."""
    return _unit(melody(n_samples, rate, generator) + generator.uniform(0.2, 0.8) * chord(n_samples, rate, generator))


TRAINING_NOISES = {"white": white_noise, "pink": pink_noise, "hum": hum, "fan": fan, "crackle": crackle}
# Drawn too with the augmentation setting ``more_noises`` (docs/experiments.md: better in noise,
# fewer other words rejected).
MORE_TRAINING_NOISES = {"brown": brown_noise, "wind": wind, "clatter": clatter, "music": music}
TEST_NOISES = {"car": car, "rain": rain, "street": street}


def mix_at_snr(speech, noise, snr_db):
    """``speech`` plus ``noise`` scaled so the speech's mean power is ``snr_db`` above the noise's."""
    speech_power = float(np.mean(np.square(speech, dtype=np.float64)))
    noise_power = float(np.mean(np.square(noise, dtype=np.float64)))
    if noise_power == 0 or speech_power == 0:
        return speech.astype(np.float32)
    scale = np.sqrt(speech_power / (noise_power * 10.0 ** (snr_db / 10.0)))
    return (speech + scale * noise).astype(np.float32)


def room_impulse(rate, generator, rt60=None):
    """A synthetic room impulse response: a direct path, then exponentially decaying noise.

    ``rt60`` (seconds for a 60 dB decay) defaults to a random 0.15-0.7 s.
    """
    rt60 = generator.uniform(0.15, 0.7) if rt60 is None else rt60
    length = int(rate * min(rt60, 1.0))
    t = np.arange(length) / rate
    tail = generator.standard_normal(length) * np.exp(-6.9 * t / rt60)
    delay = int(rate * generator.uniform(0.002, 0.01))
    tail[:delay] = 0.0
    tail *= generator.uniform(0.2, 0.6) / max(np.sqrt(np.sum(tail**2)), 1e-9)
    tail[0] = 1.0
    return tail.astype(np.float32)


def reverberate(samples, impulse):
    """``samples`` played in the room of ``impulse``, cut to their own length plus the tail."""
    n = samples.size + impulse.size - 1
    size = 1 << (n - 1).bit_length()
    wet = np.fft.irfft(np.fft.rfft(samples, size) * np.fft.rfft(impulse, size), size)[:n]
    return wet.astype(np.float32)


def phone_band(samples, rate, low=300.0, high=3400.0):
    """``samples`` through a telephone channel's pass band."""
    return _band(np.asarray(samples, dtype=np.float64), rate, low, min(high, 0.49 * rate / 1.2))


def place_in_window(samples, rate, seconds, generator, floor_db=-50.0):
    """``samples`` at a random offset in a window ``seconds`` long, over pink room tone ``floor_db`` below the clip's peak.

    A clip longer than the window is returned as it is.
    """
    length = int(round(seconds * rate))
    if samples.size >= length:
        return samples
    peak = float(np.max(np.abs(samples))) or 1.0
    window = pink_noise(length, rate, generator) * np.float32(peak * 10.0 ** (floor_db / 20.0))
    start = int(generator.integers(0, length - samples.size + 1))
    window[start : start + samples.size] += samples
    return window.astype(np.float32)


# Non-speech: sounds a digit model must answer "unknown" to.

def _envelope(n_samples, rate, attack=0.01, release=0.05):
    t = np.arange(n_samples) / rate
    return np.minimum(1.0, np.minimum(t / attack, (t[-1] - t) / release + 1e-9)).clip(0, 1)


def tone_sound(n_samples, rate, generator):
    frequency = np.exp(generator.uniform(np.log(100), np.log(3000)))
    t = np.arange(n_samples) / rate
    return _unit(np.sin(2 * np.pi * frequency * t) * _envelope(n_samples, rate))


def chord(n_samples, rate, generator):
    root = np.exp(generator.uniform(np.log(110), np.log(880)))
    t = np.arange(n_samples) / rate
    chords = ([1, 1.25, 1.5], [1, 1.2, 1.5], [1, 1.335, 1.5, 2.0], [1, 1.5, 2.0])
    ratios = chords[int(generator.integers(len(chords)))]
    wave = sum(np.sin(2 * np.pi * root * r * t) * generator.uniform(0.5, 1.0) for r in ratios)
    return _unit(wave * _envelope(n_samples, rate, release=0.2))


def sweep(n_samples, rate, generator):
    start, stop = np.exp(generator.uniform(np.log(100), np.log(3500), 2))
    t = np.arange(n_samples) / rate
    frequency = start * (stop / start) ** (t / t[-1])
    phase = 2 * np.pi * np.cumsum(frequency) / rate
    return _unit(np.sin(phase) * _envelope(n_samples, rate))


def noise_burst(n_samples, rate, generator):
    exponent = float(generator.choice([0.0, 1.0, 2.0]))
    return _unit(_shaped_noise(n_samples, generator, exponent) * _envelope(n_samples, rate))


def clicks(n_samples, rate, generator):
    result = np.zeros(n_samples)
    for position in generator.integers(0, n_samples, int(generator.integers(1, 8))):
        width = int(rate * generator.uniform(0.0005, 0.003))
        result[position : position + width] += generator.uniform(-1, 1)
    return _unit(result + 1e-3 * generator.standard_normal(n_samples))


def knock(n_samples, rate, generator):
    """Knocks on wood: decaying low resonances, one to four of them."""
    result = np.zeros(n_samples)
    t = np.arange(int(0.15 * rate)) / rate
    for position in np.sort(generator.integers(0, max(1, n_samples - t.size), int(generator.integers(1, 5)))):
        frequency = generator.uniform(120, 500)
        hit = np.sin(2 * np.pi * frequency * t) * np.exp(-t / generator.uniform(0.01, 0.04))
        result[position : position + t.size] += hit[: n_samples - position]
    return _unit(result + 1e-3 * generator.standard_normal(n_samples))


def beeps(n_samples, rate, generator):
    frequency = generator.uniform(400, 2500)
    t = np.arange(n_samples) / rate
    gate = (np.sin(2 * np.pi * generator.uniform(2, 8) * t) > 0).astype(float)
    return _unit(np.sin(2 * np.pi * frequency * t) * gate + 1e-3 * generator.standard_normal(n_samples))


def melody(n_samples, rate, generator):
    """A music-like phrase: notes of a scale with harmonics, each with its own envelope."""
    result = np.zeros(n_samples)
    n_notes = int(generator.integers(3, 9))
    length = n_samples // n_notes
    t = np.arange(length) / rate
    root = generator.uniform(150, 500)
    for index in range(n_notes):
        frequency = root * 2 ** (generator.choice([0, 2, 4, 5, 7, 9, 11, 12]) / 12)
        note = sum(np.sin(2 * np.pi * frequency * k * t) / k**1.5 for k in range(1, 6))
        result[index * length : (index + 1) * length] = note * _envelope(length, rate, release=0.1)
    return _unit(result)


NON_SPEECH = {
    "tone": tone_sound, "chord": chord, "sweep": sweep, "noise": noise_burst, "clicks": clicks,
    "knock": knock, "beeps": beeps, "melody": melody, "hum": hum, "fan": fan,
}


def non_speech(kind, rate, generator, seconds=None):
    """One non-speech sound of family ``kind`` (a key of ``NON_SPEECH``), 0.3-1.5 s by default, peak 0.5."""
    seconds = generator.uniform(0.3, 1.5) if seconds is None else seconds
    samples = NON_SPEECH[kind](int(seconds * rate), rate, generator)
    peak = float(np.max(np.abs(samples))) or 1.0
    return (0.5 * samples / peak).astype(np.float32)


# Test conditions of the benchmarks and tests: how a clean clip would sound elsewhere.

CONDITIONS = ("clean", "window", "snr20", "snr10", "snr5", "phone")


def apply_condition(samples, rate, condition, generator):
    """``samples`` under one of ``CONDITIONS``, with the test-only noises of ``TEST_NOISES``.

    ``window``: at a random offset in a 1.0 s window over faint room tone; ``snrN``: 0.25 s of
    lead-in and tail added, then car, rain or street noise (drawn at random) at N dB below the
    clip's power; ``phone``: through a 300-3400 Hz telephone band.
    """
    samples = np.asarray(samples, dtype=np.float32)
    if condition == "clean":
        return samples
    if condition == "window":
        return place_in_window(samples, rate, 1.0, generator)
    if condition == "phone":
        return phone_band(samples, rate)
    if condition.startswith("snr"):
        pad = np.zeros(rate // 4, dtype=np.float32)
        padded = np.concatenate([pad, samples, pad])
        kinds = list(TEST_NOISES)
        noise = TEST_NOISES[kinds[int(generator.integers(len(kinds)))]](padded.size, rate, generator)
        speech_power = float(np.mean(np.square(samples, dtype=np.float64)))
        noise_power = float(np.mean(np.square(noise, dtype=np.float64)))
        scale = np.sqrt(speech_power / (noise_power * 10.0 ** (float(condition[3:]) / 10.0)))
        mixed = padded + np.float32(scale) * noise
        return (mixed / max(1.0, float(np.max(np.abs(mixed))))).astype(np.float32)
    raise ValueError(f"condition must be one of {', '.join(CONDITIONS)}; got {condition!r}")


def digit_string(clips, rate, generator, pause_seconds=(0.1, 0.5), edge_seconds=0.3):
    """The ``clips`` one after another with random pauses between them, and where each one lies.

    Returns
    -------
    samples : np.ndarray of float32
    spans : list of (start, end) seconds of each clip
    """
    edge = np.zeros(int(edge_seconds * rate), dtype=np.float32)
    pieces, spans, position = [edge], [], edge.size
    for index, clip in enumerate(clips):
        clip = np.asarray(clip, dtype=np.float32)
        clip = clip / (float(np.max(np.abs(clip))) or 1.0) * np.float32(generator.uniform(0.4, 0.9))
        spans.append((position / rate, (position + clip.size) / rate))
        pieces.append(clip)
        position += clip.size
        gap = edge if index == len(clips) - 1 else np.zeros(int(generator.uniform(*pause_seconds) * rate), np.float32)
        pieces.append(gap)
        position += gap.size
    return np.concatenate(pieces), spans
