"""Score-level fusion on CEDAR's k-fold: the writer-independent network, the per-writer model and keypoint evidence.

For each fold of the k-fold by writer (``signature_accuracy.py``'s five fixed folds) and each
seed, a verifier is trained without the fold's writers; every query of the fold's writers (the
same protocol: 12 references, their other genuine signatures, skilled forgeries, random
forgeries) then gets three scores:

- ``independent``: the writer-independent score, calibrated (what ``verify`` gives today);
- ``per-writer``: the writer-dependent mode's per-writer part alone (its network's score
  centred on held-out references; ``writer_model``);
- ``keypoints``: local evidence (``keypoints.evidence``), how well the query's ORB keypoints
  match the references relative to how the references match one another.

Fusions add the independent score and weighted others. Weights and the threshold for a test
fold are chosen on the other folds' writers only (their scores come from models that never saw
them): the weights with the lowest pooled EER over those writers, the threshold at their
equal-error point (genuine against skilled and random forgeries, as training chooses the
stored threshold). The independent score alone is reported at the threshold stored in the
model. Prints per-fold and mean tables (EER, mean per-writer EER, FRR, FAR skilled, FAR random).

    python bench/signature_fusion.py [--seeds 0] [--keypoints JSON]

Data: $INKVOICE_DATA/cedar.
"""

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from inkvoice.core.extraction import ExtractionSettings
from inkvoice.signature import keypoints
from inkvoice.signature.dataset import load_signatures
from inkvoice.signature.evaluation import equal_error_rate, equal_error_threshold, figures, protocol_queries, \
    writer_folds
from inkvoice.signature.features import check_parameters, load_features
from inkvoice.signature.training import train_verifier
from inkvoice.signature.writer_model import WriterModel

N_REFERENCES = 12
#: Weights tried for each added score (chosen on development folds).
WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
FUSIONS = {
    "independent (stored threshold)": (),
    "independent": (),
    "independent + per-writer": ("per-writer",),
    "independent + keypoints": ("keypoints_mean", "keypoints_best"),
    "independent + per-writer + keypoints": ("per-writer", "keypoints_mean", "keypoints_best"),
}
METRICS = ("eer", "eer_per_writer_mean", "frr", "far_skilled", "far_random")


def fold_scores(table, codes, fold, parameters, seed, kp_settings):
    """Scores of every protocol query of the fold's writers: dict name -> array, plus kinds, owners, threshold."""
    inside = ~np.isin(table.writers, fold)
    rng = np.random.default_rng(seed)
    verifier, _, _ = train_verifier(table.X[inside], table.writers[inside], table.genuine[inside], parameters,
                                    {"dependent_threshold": False}, rng)
    parts = {"independent": [], "per-writer": [], "keypoints_mean": [], "keypoints_best": []}
    kinds, owners = [], []
    seeds = np.random.default_rng(seed)
    for writer, references, queries, query_kinds in protocol_queries(table.writers, table.genuine, fold,
                                                                     N_REFERENCES):
        parts["independent"].append(verifier.independent_scores(table.X[queries], table.X[references]))
        model = WriterModel(verifier, table.X[references], rng=np.random.default_rng(int(seeds.integers(2**31))))
        comparison = verifier.comparison(table.X[queries], table.X[references])
        parts["per-writer"].append((model.network.decision_function(comparison).reshape(-1) - model.offset)
                                   / model.scale)
        evidence = keypoints.evidence(codes[queries], codes[references], **kp_settings)
        parts["keypoints_mean"].append(evidence[:, 0])
        parts["keypoints_best"].append(evidence[:, 1])
        kinds.append(query_kinds)
        owners.extend([writer] * len(queries))
    return ({name: np.concatenate(values) for name, values in parts.items()}, np.concatenate(kinds),
            np.array(owners), verifier.threshold)


def fuse(scores, names, weights):
    total = scores["independent"].copy()
    for name, weight in zip(names, weights):
        total += weight * scores[name]
    return total


def pooled_eer(fused, kinds):
    return equal_error_rate(fused[kinds == "genuine"], fused[kinds == "skilled"])


def choose(dev_scores, dev_kinds, names):
    """Weights (lowest pooled EER on development writers) and the equal-error threshold there."""
    best = None
    for weights in itertools.product(WEIGHTS, repeat=len(names)):
        eer = pooled_eer(fuse(dev_scores, names, weights), dev_kinds)
        if best is None or eer < best[0] - 1e-9:
            best = (eer, weights)
    fused = fuse(dev_scores, names, best[1])
    threshold = equal_error_threshold(fused[dev_kinds == "genuine"], fused[dev_kinds != "genuine"])
    return best[1], threshold


def evaluate(fused, kinds, owners, threshold):
    overall = figures(fused, kinds, threshold)
    per_writer = [figures(fused[owners == w], kinds[owners == w], threshold)["eer"] for w in np.unique(owners)]
    overall["eer_per_writer_mean"] = float(np.mean(per_writer))
    return [overall[m] for m in METRICS]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0", help="training seeds, comma-separated (default 0)")
    parser.add_argument("--keypoints", default="{}", help="keypoint settings to change, as JSON")
    parser.add_argument("--jobs", type=int, default=2, help="extraction processes (default 2)")
    args = parser.parse_args()
    root = os.environ.get("INKVOICE_DATA")
    if not root:
        sys.exit("set INKVOICE_DATA to the folder holding cedar/")
    kp = {**keypoints.DEFAULT_KEYPOINTS, **json.loads(args.keypoints)}
    parameters = check_parameters({})
    signatures = load_signatures(Path(root) / "cedar")
    start = time.perf_counter()
    table = load_features(signatures, parameters, ExtractionSettings(n_jobs=args.jobs))
    kp_parameters = {"height": parameters["height"], "width": parameters["width"],
                     "pen_radius": parameters["pen_radius"], "n_keypoints": kp["n_keypoints"]}
    codes = ExtractionSettings(n_jobs=args.jobs).extract(keypoints.extract, table.paths, kp_parameters)
    codes = np.stack(codes)
    print(f"features and keypoints of {len(table.X)} images in {time.perf_counter() - start:.0f} s; keypoints {kp}")
    match = {"tolerance": kp["tolerance"], "max_ratio": kp["max_ratio"]}
    folds = writer_folds(table.writers)
    chosen = range(len(folds))
    seeds = [int(s) for s in args.seeds.split(",")]
    # out-of-fold scores: (seed, fold) -> (scores, kinds, owners, stored threshold)
    results = {}
    for seed in seeds:
        for k, fold in enumerate(folds):
            start = time.perf_counter()
            results[seed, k] = fold_scores(table, codes, fold, parameters, seed, match)
            print(f"  seed {seed} fold {k + 1}: {time.perf_counter() - start:.0f} s", file=sys.stderr)
    rows = {name: [] for name in FUSIONS}
    for seed in seeds:
        for k in chosen:
            scores, kinds, owners, stored = results[seed, k]
            dev = [results[seed, j] for j in range(len(folds)) if j != k]
            dev_scores = {name: np.concatenate([d[0][name] for d in dev]) for name in scores}
            dev_kinds = np.concatenate([d[1] for d in dev])
            for label, names in FUSIONS.items():
                if label.endswith("(stored threshold)"):
                    weights, threshold = (), stored
                else:
                    weights, threshold = choose(dev_scores, dev_kinds, names)
                values = evaluate(fuse(scores, names, weights), kinds, owners, threshold)
                rows[label].append((k, seed, values, weights))
    print("\n| scores | fold | seed | weights | EER | EER/writer | FRR@thr | FAR skilled@thr | FAR random@thr |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, entries in rows.items():
        for k, seed, values, weights in entries:
            print(f"| {label} | {k + 1} | {seed} | {weights} | "
                  + " | ".join(f"{100 * v:.1f}%" for v in values) + " |")
    print("\n| scores | mean EER over folds | worst fold | EER/writer | FRR@thr | FAR skilled@thr | FAR random@thr |")
    print("|---|---|---|---|---|---|---|")
    for label, entries in rows.items():
        values = np.array([e[2] for e in entries])
        per_fold = [np.mean([e[2][0] for e in entries if e[0] == k]) for k in chosen]
        mean = values.mean(axis=0)
        print(f"| {label} | {100 * mean[0]:.1f}% | {100 * max(per_fold):.1f}% | "
              + " | ".join(f"{100 * v:.1f}%" for v in mean[1:]) + " |")


if __name__ == "__main__":
    main()
