"""Peer baselines on the same CEDAR protocol and features, with scikit-learn (bench only).

- pairs: a scikit-learn MLP on |difference| of standardised feature vectors of (reference,
  query) pairs from writers 1-35; a query's score is its mean probability over the references.
- per-writer SVM: an RBF support vector machine per test writer on its 12 references against
  genuine signatures of writers 1-35.

Prints EER (genuine against skilled forgeries) over the test writers, for comparison with
bench/signature_accuracy.py.

    python bench/signature_peer.py [--data CEDAR_FOLDER]
"""

import argparse
from pathlib import Path

import numpy as np
from sklearn.neural_network import MLPClassifier
from sklearn.svm import SVC

from inkvoice.core.extraction import ExtractionSettings
from inkvoice.signature.dataset import load_signatures, parse_writer_range
from inkvoice.signature.evaluation import figures, protocol_queries
from inkvoice.signature.features import check_parameters, load_features
from real_data import data_folder


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="CEDAR folder (default: $INKVOICE_DATA/cedar)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = parser.parse_args()
    data = data_folder(args.data, "cedar")
    table = load_features(load_signatures(data), check_parameters({}), ExtractionSettings(n_jobs=2))
    X, writers, genuine = table.X, table.writers, table.genuine
    train_names, test_names = parse_writer_range("1-35"), parse_writer_range("36-45")
    train = np.isin(writers, train_names)
    mean, scale = X[train].mean(axis=0), X[train].std(axis=0) + 1e-6
    X = ((X - mean) / scale).astype(np.float32)
    rng = np.random.default_rng(args.seed)

    first, second, labels = [], [], []
    for writer in train_names:
        own = np.flatnonzero((writers == writer) & genuine)
        forged = np.flatnonzero((writers == writer) & ~genuine)
        others = np.flatnonzero(train & genuine & (writers != writer))
        for i in range(len(own)):
            for j in range(i + 1, len(own)):
                first.append(own[i]), second.append(own[j]), labels.append(1)
        for i in own:
            for j in rng.choice(forged, 6, replace=False):
                first.append(i), second.append(j), labels.append(0)
            for j in rng.choice(others, 6, replace=False):
                first.append(i), second.append(j), labels.append(0)
    pairs = np.abs(X[first] - X[second])
    network = MLPClassifier((100,), alpha=0.1, early_stopping=True, max_iter=200, random_state=args.seed)
    network.fit(pairs, labels)

    plan = protocol_queries(writers, genuine, test_names, 12)
    results = {}
    for name in ("pairs MLP on abs(a - b)", "per-writer SVM"):
        scores, kinds = [], []
        for writer, references, queries, query_kinds in plan:
            if name.startswith("pairs"):
                probabilities = [network.predict_proba(np.abs(X[queries] - X[r]))[:, 1] for r in references]
                scores.append(np.mean(probabilities, axis=0))
            else:
                negatives = np.flatnonzero(train & genuine)
                model = SVC(kernel="rbf", class_weight="balanced", gamma="scale")
                model.fit(np.concatenate([X[references], X[negatives]]),
                          np.r_[np.ones(len(references)), np.zeros(len(negatives))])
                scores.append(model.decision_function(X[queries]))
            kinds.append(query_kinds)
        results[name] = figures(np.concatenate(scores), np.concatenate(kinds), 0.0)
    print("| peer | EER (skilled) | EER (random) | AUC |")
    print("|---|---|---|---|")
    for name, result in results.items():
        print(f"| {name} | {result['eer']:.3f} | {result['eer_random']:.3f} | {result['auc']:.3f} |")


if __name__ == "__main__":
    main()
