"""Accuracy on FSDD: the official split and leave-one-speaker-out, with the product's defaults.

    python bench/speech_accuracy.py [--data FOLDER] [--speakers george,theo] [--copies 8] [--epochs 40]

FOLDER defaults to $INKVOICE_DATA/fsdd. Prints a markdown table: one row per split, the
held-out accuracy (never measured on training clips) and the training time.
"""

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from speech.dataset import load_dataset, split_indices  # noqa: E402
from speech.model import DEFAULT_AUGMENTATION_COPIES, DEFAULT_TRAINING, train  # noqa: E402


def data_folder(option):
    if option is not None:
        return Path(option)
    root = os.environ.get("INKVOICE_DATA")
    if not root:
        sys.exit("set INKVOICE_DATA to the folder holding fsdd/, or pass --data")
    return Path(root) / "fsdd"


def held_out_accuracy(dataset, train_indices, test_indices, arguments):
    started = time.perf_counter()
    augmentation = {"copies": arguments.copies} if arguments.copies > 0 else None
    training = {"epochs": arguments.epochs, "seed": arguments.seed, "ensemble": arguments.ensemble}
    model, failures = train(dataset, train_indices, augmentation=augmentation, training=training, n_jobs=arguments.jobs)
    seconds = time.perf_counter() - started
    test = dataset.subset(test_indices)
    probabilities, test_failures = model.predict_proba_files(test.paths, n_jobs=arguments.jobs, cache=True)
    assert not failures and not test_failures, "FSDD files failed to load"
    predicted = np.array([model.labels[int(p.argmax())] for p in probabilities])
    return float(np.mean(predicted == test.labels)), seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="FSDD folder (default: $INKVOICE_DATA/fsdd).")
    parser.add_argument("--speakers", help="Comma-separated speakers to leave out (default: every speaker).")
    parser.add_argument("--skip-official", action="store_true", help="Only run leave-one-speaker-out.")
    parser.add_argument("--copies", type=int, default=DEFAULT_AUGMENTATION_COPIES, help="Augmented copies per clip (0: none).")
    parser.add_argument("--epochs", type=int, default=DEFAULT_TRAINING["epochs"], help="Training epochs.")
    parser.add_argument("--ensemble", type=int, default=DEFAULT_TRAINING["ensemble"], help="Networks averaged.")
    parser.add_argument("--seed", type=int, default=0, help="Seed.")
    parser.add_argument("--jobs", type=int, default=None, help="Worker processes for extraction.")
    arguments = parser.parse_args()
    dataset = load_dataset(data_folder(arguments.data))
    speakers = arguments.speakers.split(",") if arguments.speakers else sorted(set(dataset.speakers.tolist()))
    rows = []
    if not arguments.skip_official:
        rows.append(("official split (takes 0-4 held out)", *held_out_accuracy(dataset, *split_indices(dataset, "official"), arguments)))
        print(f"{rows[-1][0]}: {rows[-1][1]:.4f}", file=sys.stderr, flush=True)
    speaker_scores = []
    for speaker in speakers:
        accuracy, seconds = held_out_accuracy(dataset, *split_indices(dataset, "speaker", test_speaker=speaker), arguments)
        speaker_scores.append(accuracy)
        rows.append((f"leave out {speaker}", accuracy, seconds))
        print(f"{rows[-1][0]}: {accuracy:.4f}", file=sys.stderr, flush=True)
    print(f"FSDD, {len(dataset)} clips; augmentation copies={arguments.copies}, epochs={arguments.epochs}, "
          f"ensemble={arguments.ensemble}, seed={arguments.seed}")
    print()
    print("| evaluation | accuracy | training s |")
    print("|---|---:|---:|")
    for name, accuracy, seconds in rows:
        print(f"| {name} | {100 * accuracy:.1f}% | {seconds:.0f} |")
    if speaker_scores:
        print(f"| **leave-one-speaker-out mean ({len(speaker_scores)} speakers)** | **{100 * np.mean(speaker_scores):.1f}%** | |")


if __name__ == "__main__":
    main()
