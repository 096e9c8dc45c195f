"""Accuracy on FSDD: the official split and leave-one-speaker-out, with the product's defaults.

    python bench/speech_accuracy.py [--data FOLDER] [--speakers george,theo] [--copies 8] [--epochs 40]
                                    [--extra data/speech]

FOLDER defaults to $INKVOICE_DATA/fsdd. Prints a markdown table: one row per split, the
held-out accuracy (never measured on training clips) and the training time.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inkvoice.speech.dataset import load_dataset, split_indices  # noqa: E402
from inkvoice.speech.model import DEFAULT_AUGMENTATION_COPIES, DEFAULT_TEST_COPIES, DEFAULT_TRAINING, train  # noqa: E402
from real_data import data_folder  # noqa: E402


def accuracy(model, dataset, arguments):
    probabilities, failures = model.predict_proba_files(dataset.paths, n_jobs=arguments.jobs, cache=True)
    assert not failures, "FSDD files failed to load"
    predicted = np.array([model.labels[int(p.argmax())] for p in probabilities])
    return float(np.mean(predicted == dataset.labels))


def held_out_accuracy(dataset, train_indices, test_indices, arguments, extra=None):
    """Accuracy on the test clips, training seconds, and the model (``extra`` clips only train)."""
    started = time.perf_counter()
    test_set = dataset.subset(test_indices)
    if extra is not None:
        dataset, train_indices = dataset.with_extra(extra, train_indices)
    augmentation = {"copies": arguments.copies} if arguments.copies > 0 else None
    training = {"epochs": arguments.epochs, "seed": arguments.seed, "ensemble": arguments.ensemble,
                "test_copies": arguments.test_copies}
    model, failures = train(dataset, train_indices, augmentation=augmentation, training=training, n_jobs=arguments.jobs)
    assert not failures, "FSDD files failed to load"
    seconds = time.perf_counter() - started
    return accuracy(model, test_set, arguments), seconds, model


def fine_tuned_accuracy(model, dataset, test_indices, arguments):
    """Fine-tune on the first takes of the left-out speaker; accuracy on that speaker's other takes."""
    takes = dataset.takes[test_indices]
    adapt, rest = test_indices[takes < arguments.fine_tune_takes], test_indices[takes >= arguments.fine_tune_takes]
    augmentation = {"copies": arguments.copies} if arguments.copies > 0 else None
    before = accuracy(model, dataset.subset(rest), arguments)
    tuned, _ = train(dataset, adapt, init=model, augmentation=augmentation,
                     training={"epochs": 15, "learning_rate": 3e-4, "seed": arguments.seed}, n_jobs=arguments.jobs)
    return before, accuracy(tuned, dataset.subset(rest), arguments)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="FSDD folder (default: $INKVOICE_DATA/fsdd).")
    parser.add_argument("--speakers", help="Comma-separated speakers to leave out (default: every speaker).")
    parser.add_argument("--skip-official", action="store_true", help="Only run leave-one-speaker-out.")
    parser.add_argument("--copies", type=int, default=DEFAULT_AUGMENTATION_COPIES, help="Augmented copies per clip (0: none).")
    parser.add_argument("--epochs", type=int, default=DEFAULT_TRAINING["epochs"], help="Training epochs.")
    parser.add_argument("--ensemble", type=int, default=DEFAULT_TRAINING["ensemble"], help="Networks averaged.")
    parser.add_argument("--test-copies", type=int, default=DEFAULT_TEST_COPIES, help="Test-time augmentation copies.")
    parser.add_argument("--seed", type=int, default=0, help="Seed.")
    parser.add_argument("--fine-tune-takes", type=int, default=0,
                        help="Also fine-tune each leave-one-out model on this many takes per digit of the left-out "
                             "speaker and report accuracy on the remaining takes before and after.")
    parser.add_argument("--jobs", type=int, default=None, help="Worker processes for extraction.")
    parser.add_argument("--extra", help="A folder of more labelled clips added to every training set (never tested).")
    arguments = parser.parse_args()
    dataset = load_dataset(data_folder(arguments.data, "fsdd"))
    extra = load_dataset(arguments.extra) if arguments.extra else None
    speakers = arguments.speakers.split(",") if arguments.speakers else sorted(set(dataset.speakers.tolist()))
    rows = []
    if not arguments.skip_official:
        score, seconds, _ = held_out_accuracy(dataset, *split_indices(dataset, "official"), arguments, extra)
        rows.append(("official split (takes 0-4 held out)", score, seconds))
        print(f"{rows[-1][0]}: {score:.4f}", file=sys.stderr, flush=True)
    speaker_scores = []
    tuned_rows = []
    for speaker in speakers:
        train_indices, test_indices = split_indices(dataset, "speaker", test_speaker=speaker)
        score, seconds, model = held_out_accuracy(dataset, train_indices, test_indices, arguments, extra)
        speaker_scores.append(score)
        rows.append((f"leave out {speaker}", score, seconds))
        print(f"{rows[-1][0]}: {score:.4f}", file=sys.stderr, flush=True)
        if arguments.fine_tune_takes > 0:
            tuned_rows.append((speaker, *fine_tuned_accuracy(model, dataset, test_indices, arguments)))
            print(f"  fine-tuned: {tuned_rows[-1][1]:.4f} -> {tuned_rows[-1][2]:.4f}", file=sys.stderr, flush=True)
    extra_note = f"; {len(extra)} extra training clips from {arguments.extra}" if extra is not None else ""
    print(f"FSDD, {len(dataset)} clips{extra_note}; augmentation copies={arguments.copies}, test-time copies={arguments.test_copies}, "
          f"epochs={arguments.epochs}, ensemble={arguments.ensemble}, seed={arguments.seed}")
    print()
    print("| evaluation | accuracy | training s |")
    print("|---|---:|---:|")
    for name, accuracy, seconds in rows:
        print(f"| {name} | {100 * accuracy:.1f}% | {seconds:.0f} |")
    if speaker_scores:
        print(f"| **leave-one-speaker-out mean ({len(speaker_scores)} speakers)** | **{100 * np.mean(speaker_scores):.1f}%** | |")
    if tuned_rows:
        print()
        print(f"Fine-tuning on takes 0-{arguments.fine_tune_takes - 1} of each digit of the left-out speaker "
              f"(tested on that speaker's other takes):")
        print()
        print("| left-out speaker | before | after fine-tuning |")
        print("|---|---:|---:|")
        for speaker, before, after in tuned_rows:
            print(f"| {speaker} | {100 * before:.1f}% | {100 * after:.1f}% |")
        print(f"| **mean** | **{100 * np.mean([r[1] for r in tuned_rows]):.1f}%** | "
              f"**{100 * np.mean([r[2] for r in tuned_rows]):.1f}%** |")


if __name__ == "__main__":
    main()
