"""Signature verification accuracy on writers never seen in training: k-fold by writer and across data sets.

Reports, for each requested evaluation, per fold and as the mean over folds and seeds:
pooled EER (all the fold's queries together, genuine against skilled forgeries), the mean of
per-writer EERs, and FRR, FAR on skilled and on random forgeries at the threshold stored in
the model (chosen on the development writers only).

Evaluations (``--runs``, comma-separated):
- ``kfold``: 5 fixed folds over CEDAR 1-45 (writers 1-9, 10-18, 19-27, 28-36, 37-45); each
  fold's model learns from the other 36 writers (plus ``--extra`` sets), 12 references.
- ``cross``: trained on CEDAR alone, tested on each other set; and trained on all sets but
  one, tested on it. References per test writer: CEDAR 12, Dutch 2, Hindi 4.
- ``union``: 5 folds over the union of the three sets (each set's writers cut into 5 runs),
  each set's writers tested with its own reference count.

    python bench/signature_accuracy.py [--runs kfold,cross,union] [--seeds 0,1,2]
        [--modes independent,dependent] [--extra dutch,hindi] [--features JSON] [--training JSON]
        [--cedar-only] [--references 2,3,4,6,12]

Data: $INKVOICE_DATA/cedar and $INKVOICE_DATA/more_signatures/{sigcomp2011_dutch,bhsig260_hindi}.
"""

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from inkvoice.core.extraction import ExtractionSettings
from inkvoice.signature.dataset import load_signatures
from inkvoice.signature.evaluation import cross_validate, evaluate_writers, writer_folds
from inkvoice.signature.features import FeatureTable, check_parameters, load_features
from inkvoice.signature.training import train_verifier

SETS = {
    "cedar": ("cedar", 12),
    "dutch": ("more_signatures/sigcomp2011_dutch", 2),
    "hindi": ("more_signatures/bhsig260_hindi", 4),
}
#: Most references per test writer evaluated for each set (CEDAR has 24 genuine signatures per
#: writer, Dutch 3, Hindi 8: the issue's counts, which leave at least two genuine queries where
#: the set allows).
MOST_REFERENCES = {"cedar": 12, "dutch": 2, "hindi": 6}
METRICS = ("eer", "eer_per_writer_mean", "frr", "far_skilled", "far_random")
HEADER = ("EER", "EER/writer", "FRR@thr", "FAR skilled@thr", "FAR random@thr")


def load_set(name, parameters, jobs):
    root = os.environ.get("INKVOICE_DATA")
    if not root:
        sys.exit("set INKVOICE_DATA to the folder holding cedar/ and more_signatures/")
    folder, _ = SETS[name]
    # writers of different sets never merge
    signatures = [replace(s, writer=f"{name}/{s.writer}") for s in load_signatures(Path(root) / folder)]
    table = load_features(signatures, parameters, ExtractionSettings(n_jobs=jobs))
    if table.failures:
        print(f"{name}: {len(table.failures)} unusable files, e.g. {table.failures[0][1]}")
    return table


def concat(tables):
    return FeatureTable(np.concatenate([t.X for t in tables]), np.concatenate([t.writers for t in tables]),
                        np.concatenate([t.genuine for t in tables]), sum((t.paths for t in tables), []), [])


def row(result):
    overall = result["overall"]
    return [overall[key] for key in METRICS]


def print_table(title, rows):
    """rows: list of (label, seed, values)."""
    print(f"\n### {title}\n")
    print("| fold | seed | " + " | ".join(HEADER) + " |")
    print("|---|---|" + "---|" * len(HEADER))
    for label, seed, values in rows:
        print(f"| {label} | {seed} | " + " | ".join("-" if v is None else f"{100 * v:.1f}%" for v in values) + " |")


def summary(rows):
    """Mean over folds per seed, then mean and spread over seeds; and the worst fold's mean over seeds."""
    values = np.array([[np.nan if v is None else v for v in r[2]] for r in rows], dtype=float)
    seeds = sorted({r[1] for r in rows})
    folds = list(dict.fromkeys(r[0] for r in rows))
    per_seed = np.array([np.nanmean(values[[r[1] == s for r in rows]], axis=0) for s in seeds])
    per_fold = np.array([np.nanmean(values[[r[0] == f for r in rows]], axis=0) for f in folds])
    return per_seed.mean(axis=0), per_seed.std(axis=0), per_fold.max(axis=0), folds[int(np.argmax(per_fold[:, 0]))]


def print_summary(title, rows):
    mean, spread, worst, worst_fold = summary(rows)
    cells = " | ".join(f"{100 * m:.1f}% ± {100 * s:.1f}" for m, s in zip(mean, spread))
    print(f"| **{title}: mean over folds, mean ± sd over seeds** | | {cells} |")
    print(f"| highest fold per column, mean over seeds (EER highest on {worst_fold}) | | "
          + " | ".join(f"{100 * w:.1f}%" for w in worst) + " |")


def run_kfold(tables, args, parameters, settings):
    cedar = tables["cedar"]
    extra = concat([tables[name] for name in args.extra]) if args.extra else None
    folds = writer_folds(cedar.writers)
    rows = {mode: [] for mode in args.modes}
    counts = [n for n in reference_counts("cedar", args) if n != SETS["cedar"][1]]
    by_count = {(mode, n): [] for mode in args.modes for n in counts}
    for seed in args.seeds:
        for fold in folds:
            start = time.perf_counter()
            result = cross_validate(cedar, fold, parameters, settings, seed, SETS["cedar"][1], args.modes, extra)
            label = f"{fold[0].split('/')[-1]}-{fold[-1].split('/')[-1]}"
            for mode in args.modes:
                rows[mode].append((label, seed, row(result[mode])))
                for n in counts:
                    if mode == "dependent" and n < 4:
                        continue
                    other = evaluate_writers(result["verifier"], cedar.X, cedar.writers, cedar.genuine, fold, n,
                                             mode, rng=np.random.default_rng(seed))
                    by_count[mode, n].append((label, seed, row(other)))
            print(f"  fold {label} seed {seed}: {time.perf_counter() - start:.0f} s", file=sys.stderr)
    for mode in args.modes:
        print_table(f"k-fold over CEDAR 1-45, {mode}" + (f", + {'+'.join(args.extra)}" if args.extra else ""),
                    rows[mode])
        print_summary("CEDAR k-fold", rows[mode])
        for n in counts:
            if by_count[mode, n]:
                print_table(f"k-fold over CEDAR 1-45, {mode}, {n} references per test writer", by_count[mode, n])
                print_summary(f"CEDAR k-fold, {n} references", by_count[mode, n])


def reference_counts(name, args):
    """References per test writer of set ``name``: its usual count, or those of ``--references`` it allows."""
    if not args.references:
        return [SETS[name][1]]
    return [n for n in args.references if n <= MOST_REFERENCES[name]]


def run_cross(tables, args, parameters, settings):
    names = list(SETS)
    plans = [(["cedar"], other) for other in names if other != "cedar"]
    if not args.cedar_only:
        plans += [([n for n in names if n != held], held) for held in names]
    for mode in args.modes:
        rows = []
        for train_sets, test_set in plans:
            for seed in args.seeds:
                train = concat([tables[n] for n in train_sets])
                test = tables[test_set]
                verifier, _, _ = train_verifier(train.X, train.writers, train.genuine, parameters, settings,
                                                np.random.default_rng(seed))
                for count in reference_counts(test_set, args):
                    if mode == "dependent" and count < 4:
                        continue  # the writer-dependent mode needs 4 references
                    result = evaluate_writers(verifier, test.X, test.writers, test.genuine, None, count, mode,
                                              rng=np.random.default_rng(seed))
                    rows.append((f"{'+'.join(train_sets)} -> {test_set}, {count} refs", seed, row(result)))
        print_table(f"across data sets, {mode}", rows)
        for label in dict.fromkeys(r[0] for r in rows):
            mean = np.mean([r[2] for r in rows if r[0] == label], axis=0)
            print(f"| **{label}, mean over seeds** | | " + " | ".join(f"{100 * m:.1f}%" for m in mean) + " |")


def run_union(tables, args, parameters, settings):
    per_set = {name: writer_folds(table.writers) for name, table in tables.items()}
    union = concat(list(tables.values()))
    for mode in args.modes:
        rows = []
        for seed in args.seeds:
            for k in range(5):
                fold = sum((per_set[name][k] for name in tables), [])
                inside = ~np.isin(union.writers, fold)
                verifier, _, _ = train_verifier(union.X[inside], union.writers[inside], union.genuine[inside],
                                                parameters, settings, np.random.default_rng(seed))
                for name, table in tables.items():
                    if mode == "dependent" and SETS[name][1] < 4:
                        continue
                    result = evaluate_writers(verifier, table.X, table.writers, table.genuine, per_set[name][k],
                                              SETS[name][1], mode, rng=np.random.default_rng(seed))
                    rows.append((f"{name} fold {k + 1}", seed, row(result)))
        print_table(f"k-fold over the union of the three sets, {mode}", rows)
        for name in tables:
            subset = [r for r in rows if r[0].startswith(name)]
            if subset:
                print_summary(name, subset)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="kfold", help="kfold, cross and/or union, comma-separated (default kfold)")
    parser.add_argument("--seeds", default="0,1,2", help="training seeds, comma-separated (default 0,1,2)")
    parser.add_argument("--modes", default="independent,dependent", help="modes to evaluate (default both)")
    parser.add_argument("--extra", default="", help="sets added to the k-fold's training writers: dutch,hindi")
    parser.add_argument("--jobs", type=int, default=2, help="extraction processes (default 2)")
    parser.add_argument("--references", default="",
                        help="references per test writer to evaluate, comma-separated (default: CEDAR 12, Dutch 2, "
                             "Hindi 4); each set is evaluated with the counts it allows")
    parser.add_argument("--cedar-only", action="store_true",
                        help="cross: only the models trained on CEDAR (tested on Dutch and Hindi)")
    parser.add_argument("--features", default="{}",
                        help='feature parameters to change, as JSON (e.g. \'{"cells": [8, 16, 32]}\')')
    parser.add_argument("--training", default="{}",
                        help='training settings to change, as JSON (e.g. \'{"n_draws": 10}\')')
    args = parser.parse_args()
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.modes = [m for m in args.modes.split(",") if m]
    args.extra = [e for e in args.extra.split(",") if e]
    args.references = [int(n) for n in args.references.split(",") if n]
    runs = [r for r in args.runs.split(",") if r]
    parameters = check_parameters(json.loads(args.features))
    settings = json.loads(args.training)
    if "dependent" not in args.modes:
        settings.setdefault("dependent_threshold", False)
    needed = {"cedar"} | set(args.extra) | (set(SETS) if {"cross", "union"} & set(runs) else set())
    start = time.perf_counter()
    tables = {name: load_set(name, parameters, args.jobs) for name in SETS if name in needed}
    print(f"features of {sum(len(t.X) for t in tables.values())} images in {time.perf_counter() - start:.0f} s; "
          f"features {json.dumps(args.features and json.loads(args.features))}, training {json.dumps(settings)}")
    for run in runs:
        {"kfold": run_kfold, "cross": run_cross, "union": run_union}[run](tables, args, parameters, settings)


if __name__ == "__main__":
    main()
