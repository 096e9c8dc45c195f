"""Augmentation for unseen voices: speed/pitch, time shift, gain, noise and spectral warping.

Applied to training clips only, after reading and resampling and before trimming, so a shifted
clip keeps its added lead-in when noise fills it. The frequency warp (vocal tract length
perturbation, ``warp``) is applied by the feature extractor. Every draw comes from the
generator passed in.
"""

import zlib

import numpy as np

from inkvoice.core.errors import ParameterError, check_number

DEFAULT_AUGMENTATION = {
    "copies": 24,
    "speed": [0.7, 1.3],
    "shift_ms": 80.0,
    "gain_db": 6.0,
    "snr_db": [10.0, 40.0],
    "noise_probability": 0.7,
    "warp": [1.0, 1.0],
}


def augmentation_parameters(**overrides):
    """The default augmentation settings updated with ``overrides``, validated."""
    unknown = sorted(set(overrides) - set(DEFAULT_AUGMENTATION))
    if unknown:
        raise ParameterError(f"unknown augmentation setting(s) {', '.join(unknown)}; known: {', '.join(DEFAULT_AUGMENTATION)}")
    settings = {**DEFAULT_AUGMENTATION, **overrides}
    check_number("copies", settings["copies"], low=0, high=50, integer=True)
    low, high = _pair("speed", settings["speed"])
    check_number("speed", low, low=0.5, high=high)
    check_number("speed", high, low=low, high=2.0)
    check_number("shift_ms", settings["shift_ms"], low=0, high=1000)
    check_number("gain_db", settings["gain_db"], low=0, high=40)
    low, high = _pair("snr_db", settings["snr_db"])
    check_number("snr_db", low, low=-10, high=high)
    check_number("noise_probability", settings["noise_probability"], low=0, high=1)
    low, high = _pair("warp", settings["warp"])
    check_number("warp", low, low=0.5, high=high)
    check_number("warp", high, low=low, high=2.0)
    settings["speed"] = [float(v) for v in settings["speed"]]
    settings["snr_db"] = [float(v) for v in settings["snr_db"]]
    settings["warp"] = [float(v) for v in settings["warp"]]
    return settings


def _pair(name, value):
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ParameterError(f"{name} must be a [low, high] pair; got {value!r}")
    return value


def change_speed(samples, factor):
    """Play ``samples`` ``factor`` times faster (pitch and formants move with it), by interpolation."""
    if factor == 1.0 or samples.size < 2:
        return samples
    n_out = max(2, int(round(samples.size / factor)))
    positions = np.linspace(0.0, samples.size - 1, n_out)
    return np.interp(positions, np.arange(samples.size), samples).astype(np.float32)


def shift(samples, sample_rate, milliseconds):
    """Delay (positive) or advance (negative) the clip by ``milliseconds``, keeping its length > 0."""
    amount = int(round(abs(milliseconds) * sample_rate / 1000))
    if amount == 0:
        return samples
    if milliseconds > 0:
        return np.concatenate([np.zeros(amount, dtype=samples.dtype), samples])
    return samples[min(amount, samples.size // 4) :]


def add_noise(samples, snr_db, generator):
    """Add white noise ``snr_db`` below the clip's mean power."""
    power = float(np.mean(samples.astype(np.float64) ** 2))
    noise = generator.standard_normal(samples.size).astype(np.float32)
    return samples + noise * np.float32(np.sqrt(power / 10.0 ** (snr_db / 10.0)))


def perturb(samples, sample_rate, settings, generator):
    """One random variant of ``samples`` drawn with ``generator`` under ``settings``."""
    result = change_speed(samples, float(generator.uniform(*settings["speed"])))
    if settings["shift_ms"] > 0:
        result = shift(result, sample_rate, float(generator.uniform(-settings["shift_ms"], settings["shift_ms"])))
    if settings["gain_db"] > 0:
        result = result * np.float32(10.0 ** (generator.uniform(-settings["gain_db"], settings["gain_db"]) / 20.0))
    if generator.random() < settings["noise_probability"]:
        result = add_noise(result, float(generator.uniform(*settings["snr_db"])), generator)
    return np.clip(result, -1.0, 1.0).astype(np.float32)


def file_generator(seed, name):
    """A generator for one file: the same seed and file name always give the same draws."""
    return np.random.default_rng([int(seed), zlib.crc32(str(name).encode())])
