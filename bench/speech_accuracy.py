"""Accuracy on FSDD in real conditions: leave-one-speaker-out, noise, windows, phone band, rejection, digit strings.

    python bench/speech_accuracy.py [--data FOLDER] [--speakers george,theo] [--copies 8] [--test-copies 8]
                                    [--epochs 40] [--extra data/speech] [--oov data/speech_oov]
                                    [--sentences data/speech_strings] [--voices data/speech] [--official]
                                    [--fine-tune-takes 5]

FOLDER defaults to $INKVOICE_DATA/fsdd. For every left-out speaker, a model trained on the
others (with the product's defaults unless told otherwise) is tested on that speaker's clips:

- clean; at a random offset in a 1.0 s window; with car, rain or street noise (never used in
  training) at 20, 10 and 5 dB SNR; through a 300-3400 Hz phone band;
- rejection: the share of clean digit clips answered ``unknown`` (should be tiny), of made
  non-speech sounds (every family of ``speech.sounds.NON_SPEECH``, with other seeds than
  training's) and of spoken words outside the vocabulary (``--oov``, e.g. the project's
  synthetic voices saying other words) answered ``unknown``; ``--voices``: digits said by voices
  that never train (e.g. the project's synthetic voices, when ``--extra`` is not given): their
  accuracy and the share answered ``unknown`` (should be tiny too);
- digit strings: 3-10 of the speaker's clips with 100-500 ms pauses, clean and with test noise
  at 10 dB, through ``transcribe``: digit error rate (edit distance / length) and the share of
  strings with the right number of digits; ``--sentences``: synthetic voices reading digit
  strings (files named ``<voice>_<digits>.wav``).

Prints markdown tables; every figure is measured on speakers the model never heard.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inkvoice.core.extraction import ExtractionSettings  # noqa: E402
from inkvoice.speech.audio import read_audio  # noqa: E402
from inkvoice.speech.dataset import is_audio, load_dataset, split_indices  # noqa: E402
from inkvoice.speech.model import (  # noqa: E402
    DEFAULT_AUGMENTATION_COPIES, DEFAULT_TEST_COPIES, DEFAULT_TRAINING, FINE_TUNING, REJECT_CLASS, UNKNOWN, train,
)
from inkvoice.speech.sounds import CONDITIONS, NON_SPEECH, apply_condition, digit_string, non_speech  # noqa: E402
from real_data import data_folder  # noqa: E402

RATE = 8000
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98)


def edit_distance(a, b):
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        previous, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (x != y))
    return row[-1]


def write_conditions(dataset, indices, folder, seed):
    """Each clip under each condition as a wav in ``folder/<condition>/``: {condition: (paths, labels)}."""
    generator = np.random.default_rng(seed)
    made = {condition: ([], []) for condition in CONDITIONS}
    for index in indices:
        samples, rate = read_audio(dataset.paths[index])
        for condition in CONDITIONS:
            target = folder / condition / Path(dataset.paths[index]).name
            target.parent.mkdir(parents=True, exist_ok=True)
            soundfile.write(target, apply_condition(samples, rate, condition, generator), rate, subtype="FLOAT")
            made[condition][0].append(target)
            made[condition][1].append(str(dataset.labels[index]))
    return made


def write_strings(dataset, indices, folder, count, seed):
    """``count`` digit strings of the clips at ``indices``, half of them with 10 dB test noise: (paths, truths)."""
    generator = np.random.default_rng(seed)
    paths, truths = [], []
    for number in range(count):
        chosen = generator.choice(indices, size=int(generator.integers(3, 11)), replace=False)
        samples, _ = digit_string([read_audio(dataset.paths[i])[0] for i in chosen], RATE, generator)
        noisy = number % 2 == 1
        if noisy:
            samples = apply_condition(samples, RATE, "snr10", generator)
        target = folder / "strings" / f"{'noisy' if noisy else 'clean'}_{number}.wav"
        target.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(target, samples, RATE, subtype="FLOAT")
        paths.append(target)
        truths.append("".join(str(dataset.labels[i]) for i in chosen))
    return paths, truths


def write_non_speech(folder, per_family, seed):
    generator = np.random.default_rng(seed)
    paths = []
    for kind in NON_SPEECH:
        for number in range(per_family):
            target = folder / "non_speech" / f"{kind}_{number}.wav"
            target.parent.mkdir(parents=True, exist_ok=True)
            soundfile.write(target, non_speech(kind, RATE, generator), RATE, subtype="FLOAT")
            paths.append(target)
    return paths


def string_scores(model, paths, truths, extraction):
    records = model.transcribe_files(paths, extraction=extraction)
    errors = [edit_distance(r.get("digits", ""), truth) for r, truth in zip(records, truths)]
    return {
        "der": sum(errors) / sum(len(t) for t in truths),
        "count": float(np.mean([len(r.get("digits", "")) == len(t) for r, t in zip(records, truths)])),
        "exact": float(np.mean([e == 0 for e in errors])),
        "n": len(truths),
    }


def reject_share(model, probabilities, threshold):
    column = model.classes.index(REJECT_CLASS) if REJECT_CLASS in model.classes else None
    rejected = [p is None or (column is not None and p[column] >= threshold) for p in probabilities]
    return float(np.mean(rejected)) if rejected else float("nan")


def accuracy(model, probabilities, labels):
    answers = [UNKNOWN if p is None else model.decide(p)["label"] for p in probabilities]
    return float(np.mean([a == t for a, t in zip(answers, labels)]))


def accuracy_by_threshold(model, probabilities, labels):
    """{threshold: accuracy} had the rejection threshold been each of ``THRESHOLDS``."""
    classes = model.classes
    words = [i for i, label in enumerate(classes) if label != REJECT_CLASS]
    column = classes.index(REJECT_CLASS) if REJECT_CLASS in classes else None
    result = {}
    for threshold in THRESHOLDS:
        right = [p is not None and classes[words[int(np.argmax(p[words]))]] == str(t)
                 and (column is None or p[column] < threshold) for p, t in zip(probabilities, labels)]
        result[threshold] = float(np.mean(right))
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="FSDD folder (default: $INKVOICE_DATA/fsdd).")
    parser.add_argument("--speakers", help="Comma-separated speakers to leave out (default: every speaker).")
    parser.add_argument("--official", action="store_true", help="Also train and test on FSDD's official split.")
    parser.add_argument("--copies", type=int, default=DEFAULT_AUGMENTATION_COPIES, help="Augmented copies per clip (0: none).")
    parser.add_argument("--epochs", type=int, default=DEFAULT_TRAINING["epochs"], help="Training epochs.")
    parser.add_argument("--ensemble", type=int, default=DEFAULT_TRAINING["ensemble"], help="Networks averaged.")
    parser.add_argument("--test-copies", type=int, default=DEFAULT_TEST_COPIES, help="Test-time augmentation copies.")
    parser.add_argument("--seed", type=int, default=DEFAULT_TRAINING["seed"], help="Seed.")
    parser.add_argument("--features", default="{}", help="Feature parameter overrides as JSON (experiments).")
    parser.add_argument("--augmentation", default="{}", help="Augmentation setting overrides as JSON (experiments).")
    parser.add_argument("--fine-tune-takes", type=int, default=0,
                        help="Also fine-tune each leave-one-out model on this many takes per digit of the left-out "
                             "speaker and report accuracy on the remaining takes before and after.")
    parser.add_argument("--strings", type=int, default=40, help="Digit strings made per left-out speaker (0: none).")
    parser.add_argument("--non-speech", type=int, default=20, help="Non-speech sounds per family.")
    parser.add_argument("--oov", help="A folder of out-of-vocabulary words (any audio files) that must be rejected.")
    parser.add_argument("--sentences", help="A folder of digit strings read without pauses, named <voice>_<digits>.wav.")
    parser.add_argument("--voices", help="A labelled folder of digits by voices that never train (accuracy and "
                        "share rejected).")
    parser.add_argument("--jobs", type=int, default=None, help="Worker processes for extraction.")
    parser.add_argument("--extra", help="A folder of more labelled clips added to every training set (never tested).")
    arguments = parser.parse_args()
    import json

    extraction = ExtractionSettings(n_jobs=arguments.jobs)
    dataset = load_dataset(data_folder(arguments.data, "fsdd"))
    extra = load_dataset(arguments.extra) if arguments.extra else None
    speakers = arguments.speakers.split(",") if arguments.speakers else sorted(set(dataset.speakers.tolist()))
    augmentation = {"copies": arguments.copies, **json.loads(arguments.augmentation)} if arguments.copies > 0 else None
    training = {"epochs": arguments.epochs, "seed": arguments.seed, "ensemble": arguments.ensemble,
                "test_copies": arguments.test_copies}
    features = json.loads(arguments.features)
    oov = sorted(p for p in Path(arguments.oov).rglob("*") if is_audio(p)) if arguments.oov else []
    sentences = sorted(p for p in Path(arguments.sentences).rglob("*") if is_audio(p)) if arguments.sentences else []
    sentence_truths = [p.stem.rsplit("_", 1)[1] for p in sentences]
    voices = load_dataset(arguments.voices) if arguments.voices else None

    def fit(train_indices, init=None, settings=None):
        data, indices = dataset, train_indices
        if extra is not None and init is None:
            data, indices = dataset.with_extra(extra, train_indices)
        model, failures = train(data, indices, features=features, augmentation=augmentation, training=settings or training,
                                init=init, extraction=extraction)
        assert not failures, f"training files failed: {failures[:3]}"
        return model

    rows, official = [], None
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        non_speech_paths = write_non_speech(folder, arguments.non_speech, arguments.seed + 1000)
        if arguments.official:
            train_indices, test_indices = split_indices(dataset, "official")
            model = fit(train_indices)
            official = accuracy(model, model.predict_proba_files([dataset.paths[i] for i in test_indices],
                                                                  extraction=extraction)[0], dataset.labels[test_indices])
            print(f"official split: {official:.4f}", file=sys.stderr, flush=True)
        for number, speaker in enumerate(speakers):
            started = time.perf_counter()
            train_indices, test_indices = split_indices(dataset, "speaker", test_speaker=speaker)
            model = fit(train_indices)
            seconds = time.perf_counter() - started
            made = write_conditions(dataset, test_indices, folder / speaker, arguments.seed + number)
            row = {"speaker": speaker, "seconds": seconds}
            for condition, (paths, labels) in made.items():
                probabilities, _ = model.predict_proba_files(paths, extraction=extraction)
                row[condition] = accuracy(model, probabilities, labels)
                row.setdefault("by_threshold", {})[condition] = accuracy_by_threshold(model, probabilities, labels)
                if condition == "clean":
                    row["digit_rejects"] = {t: reject_share(model, probabilities, t) for t in THRESHOLDS}
            probabilities, _ = model.predict_proba_files(non_speech_paths, extraction=extraction)
            row["non_speech"] = {t: reject_share(model, probabilities, t) for t in THRESHOLDS}
            if oov:
                probabilities, _ = model.predict_proba_files(oov, extraction=extraction)
                row["oov"] = {t: reject_share(model, probabilities, t) for t in THRESHOLDS}
            if voices is not None:
                probabilities, _ = model.predict_proba_files(voices.paths, extraction=extraction)
                row["voices"] = accuracy(model, probabilities, voices.labels)
                row.setdefault("by_threshold", {})["voices"] = accuracy_by_threshold(model, probabilities, voices.labels)
                row["voice_rejects"] = {t: reject_share(model, probabilities, t) for t in THRESHOLDS}
            if arguments.strings:
                paths, truths = write_strings(dataset, test_indices, folder / speaker, arguments.strings, arguments.seed + number)
                row["strings_clean"] = string_scores(model, paths[0::2], truths[0::2], extraction)
                row["strings_noisy"] = string_scores(model, paths[1::2], truths[1::2], extraction)
            if sentences:
                row["sentences"] = string_scores(model, sentences, sentence_truths, extraction)
            if arguments.fine_tune_takes > 0:
                takes = dataset.takes[test_indices]
                adapt = test_indices[takes < arguments.fine_tune_takes]
                rest = test_indices[takes >= arguments.fine_tune_takes]
                rest_paths = [dataset.paths[i] for i in rest]
                before = accuracy(model, model.predict_proba_files(rest_paths, extraction=extraction)[0], dataset.labels[rest])
                tuned = fit(adapt, init=model, settings={**FINE_TUNING, "seed": arguments.seed})
                after = accuracy(tuned, tuned.predict_proba_files(rest_paths, extraction=extraction)[0], dataset.labels[rest])
                row["fine_tuning"] = (before, after)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    report(rows, official, arguments, dataset, extra, oov, sentences, voices)


def report(rows, official, arguments, dataset, extra, oov, sentences, voices=None):
    extra_note = f"; {len(extra)} extra training clips from {arguments.extra}" if extra is not None else ""
    print(f"FSDD, {len(dataset)} clips{extra_note}; augmentation copies={arguments.copies}, test-time copies="
          f"{arguments.test_copies}, epochs={arguments.epochs}, ensemble={arguments.ensemble}, seed={arguments.seed}")
    if official is not None:
        print(f"\nofficial split (takes 0-4 held out): {100 * official:.1f}%")
    print("\n| left-out speaker | " + " | ".join(CONDITIONS) + " | training s |")
    print("|---|" + "---:|" * (len(CONDITIONS) + 1))
    for row in rows:
        print(f"| {row['speaker']} | " + " | ".join(f"{100 * row[c]:.1f}%" for c in CONDITIONS) + f" | {row['seconds']:.0f} |")
    print(f"| **mean ({len(rows)} speakers)** | " + " | ".join(f"**{100 * np.mean([r[c] for r in rows]):.1f}%**" for c in CONDITIONS) + " | |")

    # The threshold for each fold is chosen on the other folds: the lowest that rejects at most 1% of their digits.
    kinds = ["digit_rejects"] + (["voice_rejects"] if voices is not None else []) + ["non_speech"] + (["oov"] if oov else [])
    print("\nRejection (share answered unknown) by threshold on the rejection class's probability, mean over folds:")
    print("\n| threshold | " + " | ".join(kinds) + " |")
    print("|---:|" + "---:|" * len(kinds))
    for t in THRESHOLDS:
        print(f"| {t} | " + " | ".join(f"{100 * np.mean([r[k][t] for r in rows]):.1f}%" for k in kinds) + " |")
    if len(rows) > 1:
        chosen = []
        for index, row in enumerate(rows):
            others = [r for j, r in enumerate(rows) if j != index]
            fitting = [t for t in THRESHOLDS if all(np.mean([r[k][t] for r in others]) <= 0.01
                                                    for k in ("digit_rejects", "voice_rejects") if k in row)]
            chosen.append((min(fitting) if fitting else max(THRESHOLDS), row))
        print("\nWith each fold's threshold chosen on the other folds (lowest rejecting <= 1% of their digits, "
              "and of the held-out voices' digits with --voices): "
              + ", ".join(f"{k} {100 * np.mean([row[k][t] for t, row in chosen]):.1f}%" for k in kinds)
              + f" (thresholds {', '.join(str(t) for t, _ in chosen)})")

    conditions = list(CONDITIONS) + (["voices"] if voices is not None else [])
    print("\nAccuracy (unknown counts as an error) by rejection threshold, mean over folds:")
    print("\n| threshold | " + " | ".join(conditions) + " |")
    print("|---:|" + "---:|" * len(conditions))
    for t in THRESHOLDS:
        print(f"| {t} | " + " | ".join(f"{100 * np.mean([r['by_threshold'][c][t] for r in rows]):.1f}%" for c in conditions) + " |")
    if voices is not None:
        print(f"\nDigits by voices that never trained ({arguments.voices}, {len(voices)} clips): accuracy "
              f"{100 * np.mean([r['voices'] for r in rows]):.1f}% (mean over folds; unknown counts as an error)")

    if "strings_clean" in rows[0]:
        single = 1 - np.mean([r["clean"] for r in rows])
        print(f"\nDigit strings (3-10 of the left-out speaker's clips, 100-500 ms pauses); single-clip error rate "
              f"of the same speakers {100 * single:.1f}%:")
        print("\n| strings | digit error rate | ratio to single-clip | digit count right | all digits right | n |")
        print("|---|---:|---:|---:|---:|---:|")
        for key, name in (("strings_clean", "paused, clean"), ("strings_noisy", "paused, test noise at 10 dB"),
                          ("sentences", "synthetic voices, no pauses")):
            if key in rows[0]:
                der = np.mean([r[key]["der"] for r in rows])
                print(f"| {name} | {100 * der:.1f}% | {der / single:.2f} | {100 * np.mean([r[key]['count'] for r in rows]):.1f}% | "
                      f"{100 * np.mean([r[key]['exact'] for r in rows]):.1f}% | {sum(r[key]['n'] for r in rows)} |")
    if "fine_tuning" in rows[0]:
        print(f"\nFine-tuning on takes 0-{arguments.fine_tune_takes - 1} of each digit of the left-out speaker "
              "(tested on that speaker's other takes):\n")
        print("| left-out speaker | before | after fine-tuning |")
        print("|---|---:|---:|")
        for row in rows:
            print(f"| {row['speaker']} | {100 * row['fine_tuning'][0]:.1f}% | {100 * row['fine_tuning'][1]:.1f}% |")
        print(f"| **mean** | **{100 * np.mean([r['fine_tuning'][0] for r in rows]):.1f}%** | "
              f"**{100 * np.mean([r['fine_tuning'][1] for r in rows]):.1f}%** |")


if __name__ == "__main__":
    main()
