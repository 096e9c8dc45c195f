"""Scoring a query against a writer's references, and deciding: the one path from features to verdict.

A query is compared with all of a writer's references at once (``signature.comparison``); the
networks learnt on development writers (``signature.training``) turn that comparison into a
score, the mean logit of "genuine". Per-writer calibration then moves the score by how
consistent the writer's own references are: each reference is scored against the others (leave
one out), and the score is lowered by part of how far the median of those scores lies above the
development writers' typical median (raised when below). A writer whose references agree closely
is held to a tighter standard than one whose references vary. The stored threshold turns the
calibrated score into a verdict (writer-independent mode: in the writer-dependent mode, which
centres its per-writer part on held-out references itself, calibration left the k-fold EER
where it was and raised FAR on skilled forgeries, so that mode combines uncalibrated scores).
In the writer-dependent mode a small network learnt from the writer's references
(``signature.writer_model``) adds its opinion first.
"""

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from inkvoice.core.errors import DataError, ModelFileError, ParameterError, check_choice, check_number
from inkvoice.signature.comparison import (
    DEFAULT_GRID,
    DEFAULT_SPREAD_FLOOR,
    DEFAULT_STATISTICS,
    Comparison,
    feature_groups,
    feature_length,
    keypoint_columns,
)
from inkvoice.signature.domain import Domain

#: Verification modes: the writer-independent verifier alone, or with a per-writer network added.
MODES = ("independent", "dependent")
#: The mode used when none is asked for.
DEFAULT_MODE = "independent"
#: Share of a writer's departure from the typical leave-one-out median that calibration removes
#: (0 turns calibration off). Chosen on development writers' held-out scores of the CEDAR k-fold:
#: their equal error rate was lowest, and flat, from 0.5 to 0.75.
DEFAULT_CALIBRATION_WEIGHT = 0.65
# Bounds of the settings a model file brings: far beyond any useful value, small enough that a
# damaged or crafted file cannot make verification run for days, take gigabytes or overflow.
MAX_WRITER_UNITS = 1024
MAX_WRITER_LAYERS = 4
MAX_WRITER_EPOCHS = 5000
MAX_WEIGHT = 1000.0
MAX_SCORE = 1e6
#: Fewest references for calibration: below it each leave-one-out score would compare a
#: reference with a single other one, whose spread is unknown, and such scores misled (see the
#: README's figures); those writers' scores are left as they are.
MIN_CALIBRATION_REFERENCES = 3
#: Fewest references for keypoint evidence: with two, the references' own level of matching
#: rests on one pair, and CEDAR-trained weights took the Dutch writers' EER (2 references) from
#: 18.6% to 27.9%; such writers are scored without it.
MIN_KEYPOINT_REFERENCES = 3


@dataclass(frozen=True)
class WriterModelSettings:
    """How the writer-dependent mode's per-writer network is learnt (stored in the model file).

    ``weight`` is the weight of the per-writer score added to the writer-independent one (0.5
    gave the lowest EER on CEDAR development runs among 0, 0.5, 1, 2 and 4).
    """

    hidden_sizes: tuple = (16,)
    l2: float = 1e-3
    max_epochs: int = 300
    weight: float = 0.5

    def __post_init__(self):
        sizes = tuple(self.hidden_sizes)
        if not sizes or len(sizes) > MAX_WRITER_LAYERS or not all(
                isinstance(s, int) and not isinstance(s, bool) and 0 < s <= MAX_WRITER_UNITS for s in sizes):
            raise ParameterError(f"writer_model.hidden_sizes must be 1 to {MAX_WRITER_LAYERS} integers in "
                                 f"[1, {MAX_WRITER_UNITS}]; got {str(self.hidden_sizes)[:80]}")
        object.__setattr__(self, "hidden_sizes", sizes)
        check_number("writer_model.l2", self.l2, low=0, high=MAX_WEIGHT)
        check_number("writer_model.max_epochs", self.max_epochs, low=1, high=MAX_WRITER_EPOCHS, integer=True)
        check_number("writer_model.weight", self.weight, low=0, high=MAX_WEIGHT)


def _finite(name, value, optional=False):
    """``value`` as a float if it is a number in [-MAX_SCORE, MAX_SCORE] (a score's scale), else ParameterError."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
            or not math.isfinite(float(value)) or abs(float(value)) > MAX_SCORE:
        raise ParameterError(f"{name} must be a finite number in [-{MAX_SCORE:g}, {MAX_SCORE:g}]; got {value!r}")
    return float(value)


@dataclass(frozen=True)
class CalibrationSettings:
    """Per-writer score calibration from the references' leave-one-out scores (stored in the model file).

    Parameters
    ----------
    weight : float >= 0
        Share of ``median(leave-one-out scores) - centre`` subtracted from a query's score
        (0: no calibration).
    centre : float
        The development writers' mean leave-one-out median, measured at training (the level
        a typical writer's references reach, so calibration leaves that writer's scores as
        they are).
    min_references : int >= 3
        Writers with fewer references are not calibrated.
    """

    weight: float = DEFAULT_CALIBRATION_WEIGHT
    centre: float = 0.0
    min_references: int = MIN_CALIBRATION_REFERENCES

    def __post_init__(self):
        check_number("calibration.weight", self.weight, low=0, high=MAX_WEIGHT)
        object.__setattr__(self, "centre", _finite("calibration.centre", self.centre))
        check_number("calibration.min_references", self.min_references, low=3, high=10**6, integer=True)

    def offset(self, median):
        """What is subtracted from the scores of a writer whose references' leave-one-out median is ``median``."""
        return float(self.weight * (median - self.centre))


def calibration_offset(networks, compare, references, settings):
    """What per-writer calibration subtracts from the scores of queries against standardised ``references``.

    Parameters
    ----------
    networks : list of networks deciding together (mean logit)
    compare : Comparison
    references : ndarray (n_references, n_features), standardised
    settings : CalibrationSettings or None (no calibration)

    Returns
    -------
    float: ``weight * (median of each reference's score against the others - centre)``, or 0
    with no settings, weight 0 or fewer than ``min_references`` references.
    """
    references = np.atleast_2d(references)
    if settings is None or settings.weight == 0 or len(references) < settings.min_references:
        return 0.0
    return settings.offset(leave_one_out_median(networks, compare, references))


def leave_one_out_median(networks, compare, references):
    """The median score of each standardised reference against the others: how consistent a writer is."""
    return float(np.median(_decision(networks, compare.leave_one_out(references))))


@dataclass(frozen=True)
class VerifierConfig:
    """Everything but the learnt arrays that a verifier needs: stored in the model file's metadata.

    Parameters
    ----------
    feature_parameters : dict
        Complete feature settings (``features.check_parameters``).
    threshold : float
        Writer-independent decision threshold on the score (at or above = genuine).
    dependent_threshold : float or None
        Threshold of the writer-dependent mode (None: not measured, the independent one is used).
    spread_floor : float > 0
        Added to the references' per-feature spread (see ``comparison``).
    grid : (rows, columns)
        Regions of each HOG scale compared separately.
    statistics : tuple of str
        What the comparison measures per feature group (``comparison.STATISTICS``).
    writer_model : WriterModelSettings
    calibration : CalibrationSettings or None
        Per-writer calibration (None: scores are not calibrated, as in model files written
        before it existed, whose thresholds were chosen on uncalibrated scores).
    domain : Domain or None
        What training covered (``signature.domain``). None only while training: a verifier
        without it refuses to score, since it could not tell what it was not taught to judge.
    keypoint_weight : float >= 0
        Weight of the keypoint evidence (``keypoints.evidence``) added to the networks' score,
        chosen on held-out development writers (0: none, as without keypoint features).
    """

    feature_parameters: dict
    threshold: float = 0.0
    dependent_threshold: float | None = None
    spread_floor: float = DEFAULT_SPREAD_FLOOR
    grid: tuple = DEFAULT_GRID
    statistics: tuple = DEFAULT_STATISTICS
    writer_model: WriterModelSettings = field(default_factory=WriterModelSettings)
    calibration: CalibrationSettings | None = None
    domain: Domain | None = None
    keypoint_weight: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "threshold", _finite("threshold", self.threshold))
        check_number("keypoint_weight", self.keypoint_weight, low=0)
        object.__setattr__(self, "dependent_threshold",
                           _finite("dependent_threshold", self.dependent_threshold, optional=True))
        check_number("spread_floor", self.spread_floor, low=0, low_open=True, high=MAX_SCORE)
        grid = tuple(self.grid)
        if len(grid) != 2 or not all(isinstance(g, int) and not isinstance(g, bool) and 1 <= g <= 64 for g in grid):
            raise ParameterError(f"grid must be two integers in [1, 64]; got {str(self.grid)[:80]}")
        object.__setattr__(self, "grid", grid)
        object.__setattr__(self, "statistics", tuple(self.statistics))
        if isinstance(self.writer_model, dict):
            object.__setattr__(self, "writer_model", WriterModelSettings(**self.writer_model))
        if isinstance(self.calibration, dict):
            object.__setattr__(self, "calibration", CalibrationSettings(**self.calibration))
        if isinstance(self.domain, dict):
            object.__setattr__(self, "domain", Domain(**self.domain))

    def to_dict(self):
        """JSON-able form (feature parameters are stored apart, under "features")."""
        document = asdict(self)
        del document["feature_parameters"]
        document["grid"] = list(self.grid)
        document["statistics"] = list(self.statistics)
        document["writer_model"]["hidden_sizes"] = list(self.writer_model.hidden_sizes)
        document["domain"] = None if self.domain is None else self.domain.to_dict()
        return document

    @classmethod
    def from_dict(cls, feature_parameters, document):
        """The config stored by ``to_dict``; unknown or missing keys raise KeyError/TypeError."""
        document = dict(document)
        # files written before score normalisation was removed say "none"; any other value
        # would score differently than this version can
        normalisation = document.pop("normalisation", "none")
        if normalisation != "none":
            raise ValueError(f"score normalisation {normalisation!r} is no longer supported: train the model again")
        writer_model = dict(document.pop("writer_model", None) or {})
        if "hidden_sizes" in writer_model:
            writer_model["hidden_sizes"] = tuple(writer_model["hidden_sizes"])
        # Files written before calibration existed have none (None): their threshold is on raw scores.
        return cls(feature_parameters, writer_model=WriterModelSettings(**writer_model), **document)


def _decision(networks, features):
    """Mean logit of a list of networks (an ensemble)."""
    return np.mean([network.decision_function(features).reshape(-1) for network in networks], axis=0)


class Verifier:
    """A trained verifier: feature standardisation, comparison groups, networks and thresholds.

    Parameters
    ----------
    config : VerifierConfig
    standardizer : inkvoice.core.scaling.Standardizer
        Fitted on the development writers' raw features.
    networks : list of MlpClassifier
        Decide together (mean logit).
    background : ndarray (n, n_features) or None
        Raw features of development writers' genuine signatures: the negatives of the
        writer-dependent mode (None: that mode is unavailable).
    """

    def __init__(self, config, standardizer, networks, background=None):
        self.config = config
        self.standardizer = standardizer
        self.networks = list(networks)
        if not self.networks:
            raise ParameterError("a verifier needs at least one network")
        self.background = None if background is None else np.asarray(background, dtype=np.float32)
        self.groups = feature_groups(config.feature_parameters, config.grid)
        self.compare = Comparison(self.groups, feature_length(config.feature_parameters), config.spread_floor,
                                  config.statistics)
        self.keypoint_columns = keypoint_columns(config.feature_parameters)

    @property
    def feature_parameters(self):
        return self.config.feature_parameters

    @property
    def threshold(self):
        return self.config.threshold

    @property
    def dependent_threshold(self):
        return self.config.dependent_threshold

    @property
    def n_features(self):
        """Length of the raw feature vectors this verifier takes."""
        return self.compare.averaging.shape[0]

    def standardize(self, X):
        """Raw feature vectors (n, n_features) -> standardised with the development writers' statistics."""
        X = np.atleast_2d(np.asarray(X, dtype=np.float32))
        if X.shape[1] != self.n_features:
            raise ParameterError(
                f"feature vectors have {X.shape[1]} values; this model takes {self.n_features} "
                "(were they made with another model's feature settings?)"
            )
        if not np.all(np.isfinite(X)):
            raise DataError("feature vectors hold NaN or infinite values")
        return self.standardizer.transform(X)

    def comparison(self, queries, references):
        """The networks' inputs (n_queries, n_inputs) for raw ``queries`` against raw ``references``.

        Each input is clipped to the largest value training held (``domain.Domain.clip``), so
        the networks are never asked to extrapolate; ``assess`` accounts for what lay beyond.
        """
        references = np.atleast_2d(references)
        if len(references) < 1:
            raise DataError("at least one reference signature is needed")
        inputs = self.compare(self.standardize(queries), self.standardize(references))
        return inputs if self.config.domain is None else self.config.domain.clip(inputs)

    def _domain(self):
        if self.config.domain is None:
            raise ModelFileError("this verifier holds no record of what its training covered, so it cannot tell a "
                                 "signature it was not taught to judge: train the model again")
        return self.config.domain

    def calibration_offset(self, references):
        """What calibration subtracts from every score against raw ``references`` (0 when it does not apply).

        Positive for a writer whose references score one another higher than the development
        writers' typically do (a consistent writer: the bar is raised), negative for one whose
        references vary more.
        """
        references = np.atleast_2d(references)
        if len(references) < 1:
            raise DataError("at least one reference signature is needed")
        return calibration_offset(self.networks, self.compare, self.standardize(references), self.config.calibration)

    def keypoint_scores(self, queries, references):
        """What keypoint evidence adds to the scores of raw ``queries`` against raw ``references`` (n_queries,).

        ``keypoint_weight`` times how well each query's keypoints match the references over how
        well the references match one another (``keypoints.evidence``); 0 for a model without
        keypoint features or with fewer than ``MIN_KEYPOINT_REFERENCES`` references.
        """
        queries = np.atleast_2d(queries)
        if (self.keypoint_columns is None or self.config.keypoint_weight == 0
                or len(np.atleast_2d(references)) < MIN_KEYPOINT_REFERENCES):
            return np.zeros(len(queries))
        from inkvoice.signature.keypoints import KEYPOINT_EVIDENCE, evidence

        columns = self.keypoint_columns
        local = evidence(queries[:, columns], np.atleast_2d(references)[:, columns])[:, KEYPOINT_EVIDENCE]
        return self.config.keypoint_weight * local

    def independent_scores(self, queries, references, calibrated=True):
        """Writer-independent scores (n_queries,) of raw ``queries`` against raw ``references``.

        ``calibrated=False`` leaves out per-writer calibration (the writer-dependent mode's input).
        """
        raw = _decision(self.networks, self.comparison(queries, references)) + self.keypoint_scores(queries, references)
        return raw - self.calibration_offset(references) if calibrated else raw

    def assess(self, queries, references, mode=DEFAULT_MODE, rng=None):
        """Scores (n_queries,) of raw ``queries`` against raw ``references`` and why any query is outside.

        The networks see inputs clipped to what training held; what lies beyond is subtracted
        from the score (``Domain.judge``), so past it a larger departure never scores higher.
        Returns (scores, reasons): ``reasons[i]`` is None for a query inside what training covered,
        else a sentence saying how it lies outside; such a query is scored below every score
        training gave (at most ``Domain.outside_score``) and is forged at any threshold.
        """
        check_choice("mode", mode, MODES)
        domain = self._domain()
        if mode == "dependent":
            from inkvoice.signature.writer_model import WriterModel

            scores = WriterModel(self, references, rng=rng).scores(queries)
        else:
            scores = self.independent_scores(queries, references)
        standard = self.standardize(queries)
        inputs = self.compare(standard, self.standardize(np.atleast_2d(references)))
        penalty, reasons = domain.judge(standard, inputs, self.compare.averaging)
        outside = np.array([reason is not None for reason in reasons], dtype=bool)
        scores = scores - penalty
        scores = np.where(outside, np.minimum(scores, domain.outside_score(penalty)), scores)
        return scores, reasons

    def scores(self, queries, references, mode=DEFAULT_MODE, rng=None):
        """Scores (n_queries,) of raw ``queries`` against raw ``references``; higher = more genuine.

        ``mode="dependent"`` learns a per-writer network from the references first (``rng``
        seeds it; the same references and seed give the same scores). A query outside what
        training covered scores below anything training scored (see ``assess``).
        """
        return self.assess(queries, references, mode, rng)[0]

    def reference_problems(self, references, scored=True):
        """Why any of raw ``references`` cannot be trusted as one writer's references: [(index, reason)].

        In order, the first test that finds a problem: a reference not like any signature
        training saw; one departing from the writer's other references further than genuine
        signatures of training departed from as many of their writers' others (times
        ``reference_margin``); one that the others score lower than any genuine signature of a
        held-out development writer scored (``genuine_floor``), less ``score_margin``, since
        fewer references than in training score lower. A poisoned set would accept what it
        should refuse. With fewer than ``MIN_CALIBRATION_REFERENCES`` only the first test
        applies (one reference's spread is unknown, as for calibration). ``scored=False``
        leaves out the last test, which scores every reference against the others (for each
        verification of enrolled references, which were scored when enrolled).
        """
        domain = self._domain()
        references = np.atleast_2d(references)
        standard = self.standardize(references)
        signature = domain.signature_departure(standard, self.compare.averaging)
        problems = [(int(i), f"not like any signature the model was trained on ({signature[i]:.1f} times the largest "
                             "departure training saw)") for i in np.flatnonzero(signature > domain.margin)]
        if problems or len(standard) < MIN_CALIBRATION_REFERENCES:
            return problems
        departure = domain.reference_ratios(self.compare.leave_one_out(standard))
        problems = [(int(i), f"departs from the writer's other references {departure[i]:.1f} times further than "
                             "genuine signatures did in training")
                    for i in np.flatnonzero(departure > domain.reference_margin)]
        if problems or not scored:
            return problems
        scores = self.leave_one_out_scores(references)
        floor = domain.genuine_floor - domain.score_margin
        return [(int(i), f"scores {scores[i]:.2f} against the writer's other references, far below any genuine "
                         f"signature in training ({domain.genuine_floor:.2f})")
                for i in np.flatnonzero(scores < floor)]

    def leave_one_out_scores(self, references):
        """The score (n_references,) of each of raw ``references`` against the others, as a query would get."""
        references = np.atleast_2d(references)
        return np.array([self.scores(references[i : i + 1], np.delete(references, i, axis=0))[0]
                         for i in range(len(references))])

    def threshold_for(self, mode=DEFAULT_MODE):
        """The stored threshold of ``mode`` ("independent" or "dependent")."""
        check_choice("mode", mode, MODES)
        if mode == "dependent" and self.dependent_threshold is not None:
            return self.dependent_threshold
        return self.threshold

    def decide(self, scores, threshold=None, mode=DEFAULT_MODE, reasons=None):
        """Boolean verdicts (True = genuine) at ``threshold`` (default: the one stored for ``mode``).

        A query with a reason (outside what training covered, see ``assess``) is never genuine.
        """
        threshold = self.threshold_for(mode) if threshold is None else _finite("threshold", threshold)
        accepted = np.asarray(scores) >= threshold
        if reasons is not None:
            accepted &= np.array([reason is None for reason in reasons], dtype=bool)
        return accepted

    def verify(self, queries, references, mode=DEFAULT_MODE, threshold=None, rng=None):
        """Verdicts of raw ``queries`` against raw ``references``: one plain dict per query.

        Each dict holds ``verdict`` ("genuine" or "forged"), ``score`` and ``threshold``, and
        ``reason`` for a query forged because it lies outside what training covered.
        """
        threshold = self.threshold_for(mode) if threshold is None else _finite("threshold", threshold)
        scores, reasons = self.assess(queries, references, mode, rng=rng)
        records = []
        for score, accepted, reason in zip(scores, self.decide(scores, threshold, reasons=reasons), reasons):
            record = {"verdict": "genuine" if accepted else "forged", "score": round(float(score), 4),
                      "threshold": round(float(threshold), 4)}
            if reason is not None:
                record["reason"] = reason
            records.append(record)
        return records
