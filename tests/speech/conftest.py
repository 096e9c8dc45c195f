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


@pytest.fixture
def tone_folders(tmp_path):
    """A folder-per-label set of three "words" (low, mid, high tones), 8 clips each, 2 speakers."""
    root = tmp_path / "words"
    generator = np.random.default_rng(0)
    for label, base in (("low", 220.0), ("mid", 600.0), ("high", 1500.0)):
        for take in range(8):
            speaker = "anna" if take % 2 else "ben"
            frequency = base * (1 + 0.03 * generator.standard_normal())
            clip = tone(frequency, seconds=0.3 + 0.05 * take, vibrato=take % 3)
            clip += 0.01 * generator.standard_normal(clip.size).astype(np.float32)
            write(root / label / f"{speaker}_{take}.wav", clip)
    return root


@pytest.fixture(scope="session")
def demo_dir():
    """The repository's synthesised spoken digits (data/speech)."""
    assert SAMPLES_DIR.is_dir(), "data/speech is missing: run python data/make_speech_samples.py"
    return SAMPLES_DIR
