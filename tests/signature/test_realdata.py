"""CEDAR accuracy floors: train on writers 1-35, test on the unseen writers 36-45 (12 references each).

Measured with seed 0 (bench/signature_accuracy.py): writer-independent EER 0.069, FRR 0.117 and
FAR (skilled) 0.046 at the stored threshold; writer-dependent EER 0.058, FRR 0.150 and FAR
(skilled) 0.021 at its own stored threshold. The floors sit a little below those figures.
"""

import numpy as np
import pytest

from inkvoice.core.extraction import default_cache_dir, extract_many
from inkvoice.signature.dataset import load_signatures
from inkvoice.signature.evaluation import figures, protocol_queries
from inkvoice.signature.features import check_parameters, extract
from inkvoice.signature.training import train_verifier
from inkvoice.signature.writer_model import WriterModel

pytestmark = pytest.mark.realdata

TRAIN = [str(w) for w in range(1, 36)]
TEST = [str(w) for w in range(36, 46)]


@pytest.fixture(scope="session")
def cedar(cedar_dir):
    """(features, writers, genuine) of every CEDAR signature."""
    signatures = load_signatures(cedar_dir)
    results = extract_many(extract, [s.path for s in signatures], check_parameters({}),
                           cache_dir=default_cache_dir(), n_jobs=2)
    assert not [r for r in results if not isinstance(r, np.ndarray)]
    return np.stack(results), np.array([s.writer for s in signatures]), np.array([s.genuine for s in signatures])


@pytest.fixture(scope="session")
def cedar_verifier(cedar):
    X, writers, genuine = cedar
    train = np.isin(writers, TRAIN)
    verifier, _, _ = train_verifier(X[train], writers[train], genuine[train], check_parameters({}), None,
                                    np.random.default_rng(0))
    return verifier


def _evaluate(cedar, score):
    X, writers, genuine = cedar
    scores, kinds = [], []
    for _, references, queries, query_kinds in protocol_queries(writers, genuine, TEST, 12):
        scores.append(score(X[queries], X[references]))
        kinds.append(query_kinds)
    return np.concatenate(scores), np.concatenate(kinds)


def test_cedar_has_the_documented_size(cedar):
    X, writers, genuine = cedar
    assert len(X) == 2160 and genuine.sum() == 1080 and len(set(writers)) == 45


def test_writer_independent_on_unseen_writers(cedar, cedar_verifier):
    scores, kinds = _evaluate(cedar, cedar_verifier.scores)
    result = figures(scores, kinds, cedar_verifier.threshold)
    assert result["eer"] <= 0.09
    assert result["frr"] <= 0.14
    assert result["far_skilled"] <= 0.08
    assert result["far_random"] <= 0.02
    assert result["auc"] >= 0.95


def test_writer_dependent_on_unseen_writers(cedar, cedar_verifier):
    scores, kinds = _evaluate(
        cedar, lambda queries, references: WriterModel(cedar_verifier, references).scores(queries)
    )
    result = figures(scores, kinds, cedar_verifier.threshold_for("dependent"))
    assert result["eer"] <= 0.08
    assert result["frr"] <= 0.18
    assert result["far_skilled"] <= 0.05
