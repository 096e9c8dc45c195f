"""Fixtures of the speech tests: synthetic clips written in temporary folders, the demo samples."""

from pathlib import Path

import numpy as np
import pytest
import soundfile

SAMPLES_DIR = Path(__file__).resolve().parents[2] / "data" / "speech"
RATE = 8000


def tone(frequency, seconds=0.5, rate=RATE, amplitude=0.5, harmonics=3, vibrato=0.0):
    """A voiced-like clip: a fundamental with decaying harmonics, faded in and out."""
    t = np.arange(int(seconds * rate)) / rate
    phase = 2 * np.pi * frequency * t + vibrato * np.sin(2 * np.pi * 5 * t)
    wave = sum(np.sin(k * phase) / k for k in range(1, harmonics + 1))
    envelope = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.05)
    return (amplitude * wave * envelope / np.abs(wave).max()).astype(np.float32)


def write(path, samples, rate=RATE, subtype="PCM_16"):
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, samples, rate, subtype=subtype)
    return path


# Each synthetic "word" is two tones in a row: features are normalised per utterance, so what
# tells words apart is how the sound changes, as in speech.
WORDS = {"low": (220.0, 660.0), "mid": (660.0, 220.0), "high": (1500.0, 700.0)}


def word(label, scale=1.0, seconds=0.4, vibrato=0.0):
    """The synthetic word ``label``, its pitch scaled by ``scale``."""
    first, second = WORDS[label]
    return np.concatenate(
        [tone(first * scale, seconds / 2, vibrato=vibrato), tone(second * scale, seconds / 2, vibrato=vibrato)]
    )


@pytest.fixture
def tone_folders(tmp_path):
    """A folder-per-label set of three synthetic words (low, mid, high), 8 clips each, 2 speakers."""
    root = tmp_path / "words"
    generator = np.random.default_rng(0)
    for label in WORDS:
        for take in range(8):
            speaker = "anna" if take % 2 else "ben"
            clip = word(label, 1 + 0.03 * generator.standard_normal(), seconds=0.3 + 0.05 * take, vibrato=take % 3)
            clip += 0.01 * generator.standard_normal(clip.size).astype(np.float32)
            write(root / label / f"{speaker}_{take}.wav", clip)
    return root


@pytest.fixture(scope="session")
def demo_dir():
    """The repository's synthesised spoken digits (data/speech)."""
    assert SAMPLES_DIR.is_dir(), "data/speech is missing: run python data/make_speech_samples.py"
    return SAMPLES_DIR
