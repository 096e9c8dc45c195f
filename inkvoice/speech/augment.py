"""Augmentation for unseen voices and real rooms, and the examples a model learns to reject.

Applied to loaded training clips (and, with ``TEST_AUGMENTATION``, at prediction) before the
front end finds the word, so a variant placed in a longer window or buried in noise tests the
voice activity detector as a real recording would. Every draw comes from the generator passed in.

A variant is the clip, in order: sped up or slowed down (pitch and formants move with it);
played in a synthetic room; placed at a random point of a longer stretch; mixed with noise
(white, pink, mains hum, fan, crackle, or babble made from the clip itself, and with
``more_noises`` brown noise, wind, clatter and music too; its level swelling slowly) at a random
SNR; through a telephone band; at another level.
"""

import hashlib

import numpy as np

from inkvoice.core.errors import ParameterError, check_number, with_defaults
from inkvoice.speech import sounds

# Each setting: (default, check). Ranges are [low, high] pairs; probabilities in [0, 1].
DEFAULT_AUGMENTATION = {
    "copies": 24,
    "speed": [0.7, 1.3],
    "reverb_probability": 0.1,
    "window_probability": 0.3,
    "window_seconds": [0.0, 0.6],
    "noise_probability": 0.3,
    "snr_db": [0.0, 30.0],
    "more_noises": False,
    "babble_share": 0.3,
    "phone_probability": 0.1,
    "gain_db": 6.0,
    "negatives": 3,
    "speech_negatives": 0.5,
}
# Test-time augmentation: speed and pitch only. Adding noise or rooms to a clip that is already
# noisy makes it worse, while other speeds stand in for the voices a model has not heard.
TEST_AUGMENTATION = {"reverb_probability": 0.0, "window_probability": 0.0, "noise_probability": 0.0,
                     "phone_probability": 0.0, "negatives": 0}

_PROBABILITIES = ("reverb_probability", "window_probability", "noise_probability", "babble_share", "phone_probability",
                  "speech_negatives")
_RANGES = {"speed": (0.5, 2.0), "window_seconds": (0.0, 5.0), "snr_db": (-10.0, 60.0)}


def augmentation_parameters(**overrides):
    """The default augmentation settings updated with ``overrides``, validated.

    Raises
    ------
    ParameterError
        An unknown setting or a value out of range (the message names both).
    """
    settings = with_defaults(DEFAULT_AUGMENTATION, overrides, "augmentation setting")
    check_number("copies", settings["copies"], low=0, high=50, integer=True)
    check_number("negatives", settings["negatives"], low=0, high=20, integer=True)
    check_number("gain_db", settings["gain_db"], low=0, high=40)
    for name in _PROBABILITIES:
        check_number(name, settings[name], low=0, high=1)
    for name, (low, high) in _RANGES.items():
        value = settings[name]
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise ParameterError(f"{name} must be a [low, high] pair; got {value!r}")
        check_number(name, value[0], low=low, high=value[1])
        check_number(name, value[1], low=value[0], high=high)
        settings[name] = [float(v) for v in value]
    if not isinstance(settings["more_noises"], bool):
        raise ParameterError(f"more_noises must be true or false; got {settings['more_noises']!r}")
    return settings


def training_noises(settings):
    """The noise families a variant's noise is drawn from under ``settings``, name -> function."""
    more = settings.get("more_noises", DEFAULT_AUGMENTATION["more_noises"])
    return {**sounds.TRAINING_NOISES, **(sounds.MORE_TRAINING_NOISES if more else {})}


def change_speed(samples, factor):
    """Play ``samples`` ``factor`` times faster (pitch and formants move with it), by interpolation."""
    if factor == 1.0 or samples.size < 2:
        return samples
    n_out = max(2, int(round(samples.size / factor)))
    positions = np.linspace(0.0, samples.size - 1, n_out)
    return np.interp(positions, np.arange(samples.size), samples).astype(np.float32)


def perturb(samples, sample_rate, settings, generator):
    """One random variant of ``samples`` drawn with ``generator`` under ``settings``."""
    result = change_speed(samples, float(generator.uniform(*settings["speed"])))
    if generator.random() < settings["reverb_probability"]:
        result = sounds.reverberate(result, sounds.room_impulse(sample_rate, generator))
    if generator.random() < settings["window_probability"]:
        lead, trail = (int(sample_rate * generator.uniform(*settings["window_seconds"])) for _ in range(2))
        result = np.concatenate([np.zeros(lead, np.float32), result, np.zeros(trail, np.float32)])
    if generator.random() < settings["noise_probability"]:
        if generator.random() < settings["babble_share"]:
            noise = sounds.babble_from(samples, result.size, generator)
        else:
            families = training_noises(settings)
            kind = list(families)[int(generator.integers(len(families)))]
            noise = sounds.swell(families[kind](result.size, sample_rate, generator), sample_rate, generator)
        result = sounds.mix_at_snr(result, noise, float(generator.uniform(*settings["snr_db"])))
    if generator.random() < settings["phone_probability"]:
        result = sounds.phone_band(result, sample_rate)
    peak = float(np.max(np.abs(result))) or 1.0
    gain = 10.0 ** (generator.uniform(-settings["gain_db"], settings["gain_db"]) / 20.0)
    return np.clip(result * np.float32(gain / peak * 0.7), -1.0, 1.0).astype(np.float32)


def negative(samples, sample_rate, settings, generator):
    """An example of what is not one of the model's words, made with ``generator``.

    A share ``settings["speech_negatives"]`` is speech-like: seven tenths of it the clip played
    backwards (speech, yet no word), three tenths the word said twice without a pause (so that
    two words are not read as one); the rest synthetic non-speech sounds
    (:data:`speech.sounds.NON_SPEECH`). All then go through :func:`perturb`.
    """
    choice = generator.random()
    share = settings.get("speech_negatives", DEFAULT_AUGMENTATION["speech_negatives"])
    if choice < 0.7 * share:
        source = samples[::-1].copy()
    elif choice < share:
        gap = np.zeros(int(sample_rate * generator.uniform(0.0, 0.08)), dtype=np.float32)
        source = np.concatenate([samples, gap, change_speed(samples, float(generator.uniform(0.8, 1.25)))])
    else:
        kinds = list(sounds.NON_SPEECH)
        source = sounds.non_speech(kinds[int(generator.integers(len(kinds)))], sample_rate, generator)
    return perturb(source, sample_rate, settings, generator)


def clip_generator(seed, samples):
    """A generator for one clip: the same seed and the same samples always give the same draws.

    Seeded by the clip's content, never by its file's name, so that a recording's variants,
    and the answer averaged over them, are a function of its bytes alone (and a feature cache
    keyed by content holds what any name would have computed).
    """
    digest = hashlib.sha256(np.ascontiguousarray(samples, dtype=np.float32).tobytes()).digest()
    return np.random.default_rng([int(seed), *np.frombuffer(digest[:16], dtype="<u4").tolist()])
