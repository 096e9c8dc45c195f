"""Make the speech demo recordings with the espeak-ng synthesiser: digits, other words, digit strings.

- ``data/speech/<digit>/``: the ten digits (the demo's training data);
- ``data/speech_oov/<word>/``: words outside the digit vocabulary, which a digit model must
  answer "unknown" to (rejection benchmark and tests);
- ``data/speech_strings/``: digit strings read at speaking pace, without pauses, named
  ``<voice>_<digits>.wav`` (transcription benchmark).

Every digit is spoken by several voices (accents and voice variants) at several speaking rates
and pitches, then resampled to 8 kHz mono 16-bit wav and trimmed, like the recordings of the
Free Spoken Digit Dataset. A file is named ``<voice>_<rate>_<pitch>.wav``, so the part before
the first underscore is its "speaker" for leave-one-speaker-out splits.

Run from the repository's root:  python data/make_speech_samples.py
Needs the espeak-ng program (e.g. ``apt-get install espeak-ng``), numpy, soundfile and librosa.
"""

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
# espeak-ng voice name -> file-name tag (no underscores: the tag is the speaker).
VOICES = {
    "en-us": "us",
    "en-gb": "gb",
    "en-gb-scotland": "scotland",
    "en-029": "caribbean",
    "en-us+f3": "us-f3",
    "en-gb+m3": "gb-m3",
    "en-us+klatt": "us-klatt",
    "en-gb-x-rp+f2": "rp-f2",
}
# (words per minute, pitch 0-99) pairs: slow/low, middle, fast/high.
STYLES = [(130, 35), (165, 50), (200, 65)]
SAMPLE_RATE = 8000
OOV_WORDS = ["hello", "yes", "no", "stop", "go", "left", "right", "up", "down", "cat", "dog", "house", "water",
             "people", "morning", "ten", "twenty", "hundred", "thanks", "please"]
OOV_STYLE = (165, 50)
# Digit strings: a PIN, phone numbers, an account number; each voice reads each of them.
STRINGS = ["4071", "5551234", "90210", "3141592653", "8675309", "246", "70395", "16180339"]
STRING_VOICES = ["en-us", "en-gb", "en-us+f3", "en-gb-scotland"]


def synthesise(word, voice, rate, pitch, folder):
    """The samples espeak-ng makes for ``word`` and its sample rate."""
    target = Path(folder) / "word.wav"
    subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(rate), "-p", str(pitch), "-w", str(target), word],
        check=True,
        capture_output=True,
    )
    samples, rate_hz = soundfile.read(target, dtype="float32")
    return samples, rate_hz


def finish(samples, rate_hz):
    """Resample to 8 kHz, trim leading/trailing silence (40 dB below peak) and set a -3 dBFS peak."""
    import librosa

    samples = librosa.resample(samples, orig_sr=rate_hz, target_sr=SAMPLE_RATE, res_type="soxr_hq")
    loud = np.flatnonzero(np.abs(samples) > np.abs(samples).max() * 0.01)
    margin = SAMPLE_RATE // 50
    samples = samples[max(0, loud[0] - margin) : loud[-1] + margin]
    return 0.7 * samples / np.abs(samples).max()


def make(items, output, folder):
    """Write ``(relative path, text, voice, rate, pitch)`` items as 8 kHz 16-bit wavs under ``output``."""
    for relative, text, voice, rate, pitch in items:
        target = output / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(target, finish(*synthesise(text, voice, rate, pitch, folder)), SAMPLE_RATE, subtype="PCM_16")
    size = sum(p.stat().st_size for p in output.rglob("*.wav"))
    print(f"{len(items)} recordings, {size / 1e6:.2f} MB in {output}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path(__file__).parent, help="Folder holding the three sets.")
    arguments = parser.parse_args()
    if shutil.which("espeak-ng") is None:
        parser.error("espeak-ng is not installed")
    digits = [(f"{digit}/{tag}_{rate}_{pitch}.wav", word, voice, rate, pitch)
              for digit, word in enumerate(WORDS) for voice, tag in VOICES.items() for rate, pitch in STYLES]
    oov = [(f"{word}/{tag}_{OOV_STYLE[0]}_{OOV_STYLE[1]}.wav", word, voice, *OOV_STYLE)
           for word in OOV_WORDS for voice, tag in VOICES.items()]
    strings = [(f"{VOICES[voice]}_{text}.wav", " ".join(text), voice, *OOV_STYLE) for voice in STRING_VOICES for text in STRINGS]
    with tempfile.TemporaryDirectory() as folder:
        make(digits, arguments.output / "speech", folder)
        make(oov, arguments.output / "speech_oov", folder)
        make(strings, arguments.output / "speech_strings", folder)


if __name__ == "__main__":
    main()
