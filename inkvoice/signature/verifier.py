"""Writer-independent verification: scoring a query against a writer's references, and deciding.

A query is compared with all of a writer's references at once (``signature.comparison``); the
networks learnt on development writers (``signature.training``) turn that comparison into a
score, the mean logit of "genuine", and the stored threshold turns the score into a verdict.
"""

import numpy as np

from inkvoice.core.errors import DataError, ParameterError, check_choice
from inkvoice.signature.comparison import (
    DEFAULT_GRID,
    DEFAULT_SPREAD_FLOOR,
    deviation_features,
    feature_groups,
    feature_length,
    group_matrix,
    leave_one_out_features,
)


class Verifier:
    """A trained writer-independent verifier: feature standardisation, groups, MLP and threshold.

    Scores are the MLP's logit of "genuine": at or above ``threshold`` is accepted. Writer-dependent
    scores (``writer_model.WriterModel``) lie on another scale and have their own
    ``dependent_threshold`` (None when it was not measured: the writer-independent one is used).
    """

    def __init__(self, feature_parameters, feature_mean, feature_scale, network, threshold,
                 spread_floor=DEFAULT_SPREAD_FLOOR, grid=DEFAULT_GRID, background=None, normalisation="none",
                 dependent_threshold=None):
        self.feature_parameters = feature_parameters
        self.feature_mean = np.asarray(feature_mean, dtype=np.float32)
        self.feature_scale = np.asarray(feature_scale, dtype=np.float32)
        self.network = network
        self.threshold = float(threshold)
        self.dependent_threshold = None if dependent_threshold is None else float(dependent_threshold)
        self.spread_floor = float(spread_floor)
        self.normalisation = check_choice("normalisation", normalisation, NORMALISATIONS)
        self.grid = tuple(int(g) for g in grid)
        self.background = None if background is None else np.asarray(background, dtype=np.float32)
        self.groups = feature_groups(feature_parameters, self.grid)
        self.averaging = group_matrix(self.groups, feature_length(feature_parameters))

    @property
    def n_features(self):
        """Length of the raw feature vectors this verifier takes."""
        return self.averaging.shape[0]

    def standardise(self, X):
        """Raw feature vectors (n, n_features) -> standardised with the development writers' statistics."""
        X = np.atleast_2d(np.asarray(X, dtype=np.float32))
        if X.shape[1] != self.n_features:
            raise ParameterError(
                f"feature vectors have {X.shape[1]} values; this model takes {self.n_features} "
                "(were they made with another model's feature settings?)"
            )
        return (X - self.feature_mean) / self.feature_scale

    def comparison(self, queries, references):
        """Deviation features of raw ``queries`` against raw ``references``."""
        references = np.atleast_2d(references)
        if len(references) < 1:
            raise DataError("at least one reference signature is needed")
        return deviation_features(self.standardise(queries), self.standardise(references), self.averaging,
                                  self.spread_floor)

    def scores(self, queries, references):
        """Scores (n_queries,) of raw ``queries`` against raw ``references``; higher = more genuine."""
        references = np.atleast_2d(references)
        if len(references) < 1:
            raise DataError("at least one reference signature is needed")
        return writer_scores(self.network, self.standardise(queries), self.standardise(references), self.averaging,
                             self.spread_floor, self.normalisation)

    def threshold_for(self, mode):
        """The stored threshold of ``mode`` ("independent" or "dependent")."""
        check_choice("mode", mode, MODES)
        if mode == "dependent" and self.dependent_threshold is not None:
            return self.dependent_threshold
        return self.threshold

    def decide(self, scores, threshold=None, mode="independent"):
        """Boolean verdicts (True = genuine) at ``threshold`` (default: the one stored for ``mode``)."""
        threshold = self.threshold_for(mode) if threshold is None else float(threshold)
        return np.asarray(scores) >= threshold


#: Verification modes: the writer-independent verifier alone, or with a per-writer network added.
MODES = ("independent", "dependent")
#: Ways to put a writer's scores on a common scale before the one threshold is applied.
NORMALISATIONS = ("none", "median")


def _decision(networks, features):
    """Mean logit of one network or a list of networks (an ensemble)."""
    if not isinstance(networks, (list, tuple)):
        networks = [networks]
    return np.mean([network.decision_function(features).reshape(-1) for network in networks], axis=0)


def writer_scores(network, queries, references, averaging, spread_floor, normalisation):
    """Scores of standardised ``queries`` against standardised ``references`` of one writer.

    With ``normalisation="median"`` the score is shifted by the median score of the references
    themselves (each against the others), so a writer whose signatures vary a lot is not
    rejected more often than a steady one: the one threshold then means the same for everyone.
    """
    scores = _decision(network, deviation_features(queries, references, averaging, spread_floor))
    if normalisation == "median" and len(np.atleast_2d(references)) >= 2:
        own = _decision(network, leave_one_out_features(references, averaging, spread_floor))
        scores = scores - np.median(own)
    return scores
