"""Signature verification accuracy on CEDAR: train on development writers, test on unseen ones.

Protocol: learn on writers 1-35; test on writers 36-45, each with its first 12 genuine
signatures as references and its other 12 genuine signatures and 24 skilled forgeries as
queries (plus 12 genuine signatures of other test writers as random forgeries); each mode's
threshold is chosen on the development writers only. Prints one row per seed and mode; the
training time includes choosing the writer-dependent threshold.

    python bench/signature_accuracy.py [--data CEDAR_FOLDER] [--seeds 0,1,2] [--features JSON] [--training JSON]

The data folder defaults to $INKVOICE_DATA/cedar.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np

from inkvoice.core.extraction import default_cache_dir, extract_many
from inkvoice.signature.dataset import load_signatures, parse_writer_range, select_writers
from inkvoice.signature.evaluation import figures, protocol_queries
from inkvoice.signature.features import check_parameters, extract
from inkvoice.signature.training import train_verifier
from inkvoice.signature.writer_model import WriterModel
from real_data import data_folder


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="CEDAR folder (default: $INKVOICE_DATA/cedar)")
    parser.add_argument("--train-writers", default="1-35", help="development writers (default 1-35)")
    parser.add_argument("--test-writers", default="36-45", help="test writers (default 36-45)")
    parser.add_argument("--refs", type=int, default=12, help="references per test writer (default 12)")
    parser.add_argument("--seeds", default="0,1,2", help="training seeds, comma-separated (default 0,1,2)")
    parser.add_argument("--jobs", type=int, default=2, help="extraction processes (default 2)")
    parser.add_argument("--features", default="{}",
                        help='feature parameters to change, as JSON (e.g. \'{"cells": [8, 16, 32]}\')')
    parser.add_argument("--training", default="{}",
                        help='training settings to change, as JSON (e.g. \'{"n_draws": 10}\')')
    args = parser.parse_args()
    data = data_folder(args.data, "cedar")

    parameters = check_parameters(json.loads(args.features))
    settings = json.loads(args.training)
    train_names = parse_writer_range(args.train_writers)
    test_names = parse_writer_range(args.test_writers)
    signatures = select_writers(load_signatures(data), train_names + test_names)
    start = time.perf_counter()
    X = np.stack(extract_many(extract, [s.path for s in signatures], parameters, cache_dir=default_cache_dir(),
                              n_jobs=args.jobs))
    print(f"features: {len(signatures)} images in {time.perf_counter() - start:.1f} s (cache {default_cache_dir()})")
    writers = np.array([s.writer for s in signatures])
    genuine = np.array([s.genuine for s in signatures])
    train = np.isin(writers, train_names)

    header = ["mode", "seed", "EER", "EER/writer", "FRR@thr", "FAR skilled@thr", "FAR random@thr", "AUC", "train s"]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    totals = {}
    for seed in [int(s) for s in args.seeds.split(",")]:
        start = time.perf_counter()
        verifier, _, _ = train_verifier(X[train], writers[train], genuine[train], parameters, settings,
                                        np.random.default_rng(seed))
        seconds = time.perf_counter() - start
        plan = protocol_queries(writers, genuine, test_names, args.refs)
        for mode in ("independent", "dependent"):
            scores, kinds = [], []
            for _, references, queries, query_kinds in plan:
                if mode == "independent":
                    scores.append(verifier.scores(X[queries], X[references]))
                else:
                    model = WriterModel(verifier, X[references], rng=np.random.default_rng(seed))
                    scores.append(model.scores(X[queries]))
                kinds.append(query_kinds)
            threshold = verifier.threshold_for(mode)
            result = figures(np.concatenate(scores), np.concatenate(kinds), threshold)
            per_writer = float(np.mean([figures(s, k, threshold)["eer"] for s, k in zip(scores, kinds)]))
            row = [result["eer"], per_writer, result["frr"], result["far_skilled"], result["far_random"], result["auc"]]
            totals.setdefault(mode, []).append(row)
            print(f"| {mode} | {seed} | " + " | ".join(f"{v:.3f}" for v in row) + f" | {seconds:.0f} |")
    for mode, rows in totals.items():
        mean = np.mean(rows, axis=0)
        print(f"| {mode} | mean | " + " | ".join(f"{v:.3f}" for v in mean) + " | |")


if __name__ == "__main__":
    main()
