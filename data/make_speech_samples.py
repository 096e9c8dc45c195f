"""Make the speech demo recordings in data/speech/<digit>/ with the espeak-ng synthesiser.

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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "speech", help="Folder to fill.")
    arguments = parser.parse_args()
    if shutil.which("espeak-ng") is None:
        parser.error("espeak-ng is not installed")
    count = 0
    with tempfile.TemporaryDirectory() as folder:
        for digit, word in enumerate(WORDS):
            label_folder = arguments.output / str(digit)
            label_folder.mkdir(parents=True, exist_ok=True)
            for voice, tag in VOICES.items():
                for rate, pitch in STYLES:
                    samples = finish(*synthesise(word, voice, rate, pitch, folder))
                    soundfile.write(label_folder / f"{tag}_{rate}_{pitch}.wav", samples, SAMPLE_RATE, subtype="PCM_16")
                    count += 1
    size = sum(p.stat().st_size for p in arguments.output.rglob("*.wav"))
    print(f"{count} recordings, {size / 1e6:.2f} MB in {arguments.output}")


if __name__ == "__main__":
    main()
