"""Learning the writer-independent verifier and its thresholds from development writers.

The MLP learns from development writers which departures from a writer's references betray a
forgery: for each writer, random sets of its genuine signatures are references, and its other
genuine signatures, its skilled forgeries and other writers' signatures are queries. The
networks of a cross-validation over the development writers, each trained without one fifth of
them, decide together (mean logit), and the threshold is the equal-error point of their scores
on the writers each did not see, after per-writer calibration (``verifier.calibration_offset``),
whose centre is the held-out writers' typical leave-one-out median. The writer-dependent mode
gets its own threshold the same way: per-writer models are learnt for the held-out writers on
top of the fold network that did not see them. What the training covered (the largest
departures of its comparisons, the lowest held-out scores) is recorded with the verifier
(``signature.domain``), which refuses to judge beyond it.
"""

from dataclasses import asdict, dataclass, fields

import numpy as np

from inkvoice.core.errors import DataError, ParameterError, check_choice, check_number
from inkvoice.core.scaling import Standardizer
from inkvoice.signature.comparison import (
    DEFAULT_GRID,
    DEFAULT_SPREAD_FLOOR,
    DEFAULT_STATISTICS,
    Comparison,
    feature_groups,
    keypoint_columns,
)
from inkvoice.signature.keypoints import KEYPOINT_EVIDENCE
from inkvoice.signature.evaluation import (
    DEFAULT_RANDOM_FORGERIES,
    DEFAULT_REFERENCES,
    equal_error_rate,
    equal_error_threshold,
)
from inkvoice.signature.domain import Domain
from inkvoice.signature.verifier import (
    DEFAULT_CALIBRATION_WEIGHT,
    MIN_CALIBRATION_REFERENCES,
    MIN_KEYPOINT_REFERENCES,
    CalibrationSettings,
    Verifier,
    VerifierConfig,
    WriterModelSettings,
    leave_one_out_median,
)

#: Ways to choose the threshold: negatives are skilled and random forgeries ("all") or skilled only.
THRESHOLD_RULES = ("all", "skilled")
#: Weights of keypoint evidence tried on held-out development writers (models with keypoint features).
#: Up to 4: on CEDAR's first k-fold fold, 8 (chosen when offered) gave an EER of 16.4% against
#: 14.8% with 4, and let more random forgeries through (7.4% against 4.6%).
KEYPOINT_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0)


@dataclass(frozen=True)
class TrainingSettings:
    """Settings of ``train_verifier`` (stored in the model file).

    Parameters
    ----------
    n_references : int >= 1
        References per development writer in each training comparison (fewer when a writer
        has fewer genuine signatures; one is always left as a query).
    min_references : int >= 1 or None
        With a number, each draw takes between this many and ``n_references`` references, so
        the networks learn scores that mean the same for writers enrolled with few or many.
    n_draws : int >= 1
        Random reference sets drawn per development writer.
    n_random : int >= 0
        Other writers' genuine signatures per draw, as random forgeries.
    hidden_sizes : tuple of int > 0
        Hidden layers of the writer-independent networks.
    l2, batch_size, learning_rate, max_epochs, patience
        Their training (early stopping on a validation split).
    n_folds : int >= 2
        Cross-validation folds over the development writers: one network per fold, and the
        threshold from the scores of the writers each did not see.
    spread_floor : float > 0, grid : (rows, columns), statistics : tuple of str
        Comparison settings (see ``comparison``).
    threshold_rule : {"all", "skilled"}
        Negatives of the equal-error threshold.
    n_background : int >= 1
        Genuine signatures kept per development writer for the writer-dependent mode.
    dependent_threshold : bool
        Simulate the writer-dependent mode on held-out writers to choose its own threshold.
    dependent_writers : int or None
        At most this many writers per fold in that simulation (None: all).
    writer_model : WriterModelSettings
    calibration_weight : float >= 0
        Weight of per-writer calibration (``verifier.CalibrationSettings``); 0 turns it off.
    """

    n_references: int = DEFAULT_REFERENCES
    min_references: int | None = None
    n_draws: int = 5
    n_random: int = DEFAULT_RANDOM_FORGERIES
    hidden_sizes: tuple = (64,)
    l2: float = 5e-3
    batch_size: int = 200
    learning_rate: float = 1e-3
    max_epochs: int = 200
    patience: int = 10
    n_folds: int = 5
    spread_floor: float = DEFAULT_SPREAD_FLOOR
    grid: tuple = DEFAULT_GRID
    statistics: tuple = DEFAULT_STATISTICS
    threshold_rule: str = "all"
    n_background: int = 8
    dependent_threshold: bool = True
    dependent_writers: int | None = None
    writer_model: WriterModelSettings = WriterModelSettings()
    calibration_weight: float = DEFAULT_CALIBRATION_WEIGHT

    def __post_init__(self):
        for name in ("n_references", "n_draws", "batch_size", "max_epochs", "patience", "n_background"):
            check_number(name, getattr(self, name), low=1, integer=True)
        check_number("n_random", self.n_random, low=0, integer=True)
        check_number("n_folds", self.n_folds, low=2, integer=True)
        check_number("l2", self.l2, low=0)
        check_number("calibration_weight", self.calibration_weight, low=0)
        check_number("learning_rate", self.learning_rate, low=0, low_open=True)
        check_number("spread_floor", self.spread_floor, low=0, low_open=True)
        check_choice("threshold_rule", self.threshold_rule, THRESHOLD_RULES)
        if self.min_references is not None:
            check_number("min_references", self.min_references, low=1, high=self.n_references, integer=True)
        if self.dependent_writers is not None:
            check_number("dependent_writers", self.dependent_writers, low=1, integer=True)
        sizes = tuple(self.hidden_sizes)
        if not sizes or not all(isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in sizes):
            raise ParameterError(f"hidden_sizes must be positive integers; got {self.hidden_sizes!r}")
        object.__setattr__(self, "hidden_sizes", sizes)
        object.__setattr__(self, "grid", tuple(self.grid))
        object.__setattr__(self, "statistics", tuple(self.statistics))
        if isinstance(self.writer_model, dict):
            object.__setattr__(self, "writer_model", WriterModelSettings(**self.writer_model))

    @classmethod
    def from_dict(cls, overrides):
        """Defaults changed by ``overrides`` (a dict, as JSON gives it); unknown names are refused."""
        known = {f.name for f in fields(cls)}
        unknown = set(overrides or {}) - known
        if unknown:
            raise ParameterError(f"unknown training setting(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**(overrides or {}))

    def to_dict(self):
        """JSON-able form."""
        document = asdict(self)
        document["hidden_sizes"] = list(self.hidden_sizes)
        document["grid"] = list(self.grid)
        document["statistics"] = list(self.statistics)
        document["writer_model"]["hidden_sizes"] = list(self.writer_model.hidden_sizes)
        return document


def draw_training_set(X, writers, genuine, n_references, n_draws, rng, compare, n_random=DEFAULT_RANDOM_FORGERIES,
                      min_references=None):
    """Training samples from development writers: (inputs, labels, kinds, owners).

    For each writer and each of ``n_draws`` draws, ``n_references`` of its genuine signatures
    (a random count from ``min_references`` up, when given) are references; its other genuine signatures are positives (label 1), its skilled forgeries
    and ``n_random`` genuine signatures of other writers are negatives (label 0). ``kinds``
    says which: "genuine", "skilled" or "random".
    """
    features, labels, kinds, owners = [], [], [], []
    all_writers = np.unique(writers)
    for writer in all_writers:
        own = np.flatnonzero((writers == writer) & genuine)
        forged = np.flatnonzero((writers == writer) & ~genuine)
        others = np.flatnonzero((writers != writer) & genuine)
        most = min(n_references, len(own) - 1)
        if most < 1:
            continue
        for _ in range(n_draws):
            count = most if min_references is None else int(rng.integers(min(min_references, most), most + 1))
            order = rng.permutation(own)
            references, positives = order[:count], order[count:]
            randoms = rng.choice(others, size=min(n_random, len(others)), replace=False) if len(others) else others
            queries = np.concatenate([positives, forged, randoms])
            features.append(compare(X[queries], X[references]))
            labels.append(np.r_[np.ones(len(positives)), np.zeros(len(forged) + len(randoms))])
            kinds.extend(["genuine"] * len(positives) + ["skilled"] * len(forged) + ["random"] * len(randoms))
            owners.extend([writer] * len(queries))
    if not features:
        raise DataError("no development writer has at least 2 genuine signatures: nothing to learn from")
    return np.concatenate(features), np.concatenate(labels).astype(int), np.array(kinds), np.array(owners)


def _network(settings, seed):
    from inkvoice.core.estimator import MlpClassifier

    return MlpClassifier(
        hidden_sizes=settings.hidden_sizes,
        l2=settings.l2,
        learning_rate=settings.learning_rate,
        batch_size=settings.batch_size,
        max_epochs=settings.max_epochs,
        patience=settings.patience,
        early_stopping=True,
        standardize=False,  # deviation features already share one scale across writers
        random_state=seed,
    )


def _fit(network, features, labels):
    """Fit ``network``; a Ctrl-C during its training stops the whole training."""
    network.fit(features, labels)
    if getattr(network.history_, "interrupted", False):
        raise KeyboardInterrupt
    return network


def _fit_network(X, writers, genuine, settings, rng, compare):
    """A network learnt from comparisons of ``writers``, with those comparisons: (network, inputs)."""
    features, labels, _, _ = draw_training_set(
        X, writers, genuine, settings.n_references, settings.n_draws, rng, compare, settings.n_random,
        settings.min_references,
    )
    return _fit(_network(settings, int(rng.integers(2**31))), features, labels), features


def train_verifier(X, writers, genuine, feature_parameters, settings=None, rng=None, progress=None):
    """Learn a writer-independent verifier and its thresholds from development writers.

    One network is trained per fold of a cross-validation over the development writers,
    each without that fold's writers; they decide together (mean logit). The threshold is
    the equal-error point between genuine scores and forgery scores (``threshold_rule``) of
    the writers each network did not see, so it is measured on exactly the kind of scores it
    will be applied to. With ``dependent_threshold`` the writer-dependent mode is simulated
    on the held-out writers and its own equal-error point is stored as well.

    Parameters
    ----------
    X : ndarray (n_signatures, n_features), raw features
    writers : ndarray (n_signatures,) of str
    genuine : ndarray (n_signatures,) of bool
    feature_parameters : dict, complete (see ``features.check_parameters``)
    settings : TrainingSettings, dict of overrides, or None (defaults)
    rng : numpy.random.Generator or None
    progress : callable or None, called with 1 after each fold trained and after each fold's
        writer-dependent simulation

    Returns
    -------
    verifier : Verifier
    figures : dict, cross-validated development figures (FRR and FAR at the thresholds)
    settings : TrainingSettings
    """
    if not isinstance(settings, TrainingSettings):
        settings = TrainingSettings.from_dict(settings)
    rng = np.random.default_rng() if rng is None else rng
    X = np.asarray(X, dtype=np.float32)
    writers = np.asarray(writers).astype(str)
    genuine = np.asarray(genuine, dtype=bool)
    names = np.unique(writers)
    if len(names) < 2:
        raise DataError(f"training needs at least 2 writers; got {len(names)}")
    standardizer = Standardizer().fit(X)
    X_std = standardizer.transform(X)
    compare = Comparison(feature_groups(feature_parameters, settings.grid), X.shape[1], settings.spread_floor,
                         settings.statistics)

    n_folds = int(min(settings.n_folds, len(names)))
    columns = keypoint_columns(feature_parameters)
    members = []
    seen_inputs = []  # every training comparison, for the domain
    # (scores, kinds, median of the references' leave-one-out scores or None, keypoint evidence or
    # None) per held-out writer
    held = []
    folds = np.array_split(rng.permutation(names), n_folds)
    for fold in folds:
        inside = ~np.isin(writers, fold)
        network, inputs = _fit_network(X_std[inside], writers[inside], genuine[inside], settings, rng, compare)
        members.append(network)
        seen_inputs.append(inputs)
        for writer in fold:
            plan = _held_out_queries(writers, genuine, writer, settings.n_references, settings.n_random)
            if plan is None:
                continue
            references, queries, kinds = plan
            scores = network.decision_function(compare(X_std[queries], X_std[references])).reshape(-1)
            own = None  # the same leave-one-out median as verifier.calibration_offset, with this fold's network
            if len(references) >= MIN_CALIBRATION_REFERENCES:
                own = leave_one_out_median([network], compare, X_std[references])
            local = None
            if columns is not None and len(references) >= MIN_KEYPOINT_REFERENCES:
                from inkvoice.signature.keypoints import evidence

                local = evidence(X[queries][:, columns], X[references][:, columns])[:, KEYPOINT_EVIDENCE]
            held.append((scores, kinds, own, local))
        if progress:
            progress(1)
    calibration = _calibration(held, settings.calibration_weight)
    keypoint_weight = _keypoint_weight(held, calibration)
    held_scores = {"genuine": [], "skilled": [], "random": []}
    for scores, kinds, own, local in held:
        if calibration is not None and own is not None:
            scores = scores - calibration.offset(own)
        if local is not None:
            scores = scores + keypoint_weight * local
        for kind in held_scores:
            held_scores[kind].append(scores[kinds == kind])
    threshold, figures = choose_threshold(held_scores, settings.threshold_rule, "development")
    held_all = np.concatenate([np.concatenate(parts) for parts in held_scores.values() if parts] or [[]])
    threshold = 0.0 if threshold is None else threshold
    figures["development_folds"] = n_folds
    if columns is not None:
        figures["keypoint_weight"] = keypoint_weight
    # A few genuine signatures per development writer: negatives for writer-dependent models.
    background_rows = [
        rng.permutation(np.flatnonzero((writers == name) & genuine))[: settings.n_background] for name in names
    ]
    background_rows = np.sort(np.concatenate(background_rows))
    dependent_threshold = None
    if settings.dependent_threshold:
        dependent_scores = _dependent_held_scores(
            X, writers, genuine, feature_parameters, standardizer, folds, members, background_rows, settings,
            calibration, np.random.default_rng(int(rng.integers(2**31))), progress, keypoint_weight,
        )
        dependent_threshold, dependent_figures = choose_threshold(
            dependent_scores, settings.threshold_rule, "development_dependent"
        )
        figures.update(dependent_figures)
    # drawn last, from a generator of its own, so that recording it changes nothing else of the training
    domain = Domain.measure(X_std, writers, genuine, compare, np.concatenate(seen_inputs), held_all,
                            np.concatenate(held_scores["genuine"] or [[]]), settings.n_references,
                            np.random.default_rng(int(rng.integers(2**31))))
    config = VerifierConfig(feature_parameters, threshold, dependent_threshold, settings.spread_floor,
                            settings.grid, settings.statistics, settings.writer_model, calibration, domain,
                            keypoint_weight)
    verifier = Verifier(config, standardizer, members, background=X[background_rows])
    return verifier, figures, settings


def _keypoint_weight(held, calibration):
    """The weight of keypoint evidence with the lowest pooled EER (genuine against skilled forgeries) on held-out writers.

    0 without keypoint evidence; ties go to the smaller weight.
    """
    rows = [(scores - (calibration.offset(own) if calibration is not None and own is not None else 0.0), kinds, local)
            for scores, kinds, own, local in held if local is not None]
    if not rows:
        return 0.0
    scores, kinds, local = (np.concatenate(part) for part in zip(*rows))
    if not np.any(kinds == "genuine") or not np.any(kinds == "skilled"):
        return 0.0
    best_weight, best_eer = 0.0, np.inf
    for weight in KEYPOINT_WEIGHTS:
        fused = scores + weight * local
        eer = equal_error_rate(fused[kinds == "genuine"], fused[kinds == "skilled"])
        if eer < best_eer - 1e-9:
            best_weight, best_eer = weight, eer
    return float(best_weight)


def _calibration(held, weight):
    """Calibration settings from held-out writers' leave-one-out medians (None when off or unmeasurable)."""
    medians = [held_writer[2] for held_writer in held if held_writer[2] is not None]
    if weight == 0 or not medians:
        return None
    return CalibrationSettings(weight=float(weight), centre=float(np.mean(medians)))


def _held_out_queries(writers, genuine, writer, n_references, n_random):
    """(references, queries, kinds) of a held-out development writer, or None if it has too few signatures.

    The first ``n_references`` genuine signatures are references (as in the evaluation
    protocol); queries are the writer's other genuine signatures, its forgeries and
    ``n_random`` genuine signatures of other writers spread over the set.
    """
    own = np.flatnonzero((writers == writer) & genuine)
    count = min(n_references, len(own) - 1)
    if count < 1:
        return None
    forged = np.flatnonzero((writers == writer) & ~genuine)
    others = np.flatnonzero((writers != writer) & genuine)
    randoms = others[:: max(1, len(others) // max(n_random, 1))][:n_random]
    queries = np.concatenate([own[count:], forged, randoms])
    kinds = np.array(["genuine"] * (len(own) - count) + ["skilled"] * len(forged) + ["random"] * len(randoms))
    return own[:count], queries, kinds


def _dependent_held_scores(X, writers, genuine, feature_parameters, standardizer, folds, members, background_rows,
                           settings, calibration, rng, progress=None, keypoint_weight=0.0):
    """Writer-dependent scores of held-out development writers, as the mode will score unseen writers.

    Each held-out writer gets a per-writer model on top of the fold network that never saw it,
    with development signatures of the fold's other writers only as its negatives, so the
    threshold chosen on these scores is measured on writers unseen in every part of the model.
    ``settings.dependent_writers`` caps the writers simulated per fold (for speed).
    """
    from inkvoice.signature.writer_model import MIN_REFERENCES, WriterModel

    held_scores = {"genuine": [], "skilled": [], "random": []}
    limit = settings.dependent_writers
    config = VerifierConfig(feature_parameters, 0.0, None, settings.spread_floor, settings.grid,
                            settings.statistics, settings.writer_model, calibration, keypoint_weight=keypoint_weight)
    for fold, network in zip(folds, members):
        rows = background_rows[~np.isin(writers[background_rows], fold)]
        verifier = Verifier(config, standardizer, [network], background=X[rows])
        simulated = fold if limit is None else rng.permutation(fold)[:limit]
        for writer in simulated:
            plan = _held_out_queries(writers, genuine, writer, settings.n_references, settings.n_random)
            if plan is None or len(plan[0]) < MIN_REFERENCES:
                continue
            references, queries, kinds = plan
            scores = WriterModel(verifier, X[references], rng=rng).scores(X[queries])
            for kind in held_scores:
                held_scores[kind].append(scores[kinds == kind])
        if progress:
            progress(1)
    return held_scores


def choose_threshold(held_scores, rule, prefix):
    """The equal-error threshold of held-out development scores and the figures at it.

    ``held_scores`` maps "genuine", "skilled" and "random" to lists of score arrays. With
    ``rule="all"`` skilled and random forgeries together are the negatives (as the evaluation
    protocol mixes them); with "skilled" the skilled ones only. Returns (threshold, figures
    named ``prefix``_frr, ...); with no genuine or no forged scores, (None, {}).
    """
    held = {kind: np.concatenate(parts) if parts else np.array([]) for kind, parts in held_scores.items()}
    if rule == "all":
        negatives = np.concatenate([held["skilled"], held["random"]])
    else:
        negatives = held["skilled"] if len(held["skilled"]) else held["random"]
    if not len(held["genuine"]) or not len(negatives):
        return None, {}
    threshold = equal_error_threshold(held["genuine"], negatives)
    figures = {
        f"{prefix}_frr": float(np.mean(held["genuine"] < threshold)),
        f"{prefix}_far_skilled": float(np.mean(held["skilled"] >= threshold)) if len(held["skilled"]) else None,
        f"{prefix}_far_random": float(np.mean(held["random"] >= threshold)) if len(held["random"]) else None,
    }
    return threshold, figures
