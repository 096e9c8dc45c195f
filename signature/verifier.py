"""Writer-independent verification: MLPs learnt on development writers judge how a query departs
from a writer's references.

Comparing a query with a set of references: every feature is standardised with statistics of
the development writers; then, per feature, the query's distance to the references' mean is
divided by the references' own spread (plus a floor), so a writer whose signatures vary a lot
in some region is forgiven more there. These per-feature deviations are averaged within groups
(each HOG scale as a whole and in a 2 x 4 grid of regions, the row and column ink profiles,
each shape measure), giving a short vector that means the same thing for every writer. The
MLP learns from development writers which departures betray a forgery; a new writer needs
only references, no retraining. The networks of a cross-validation over the development
writers, each trained without one fifth of them, decide together (mean logit), and the
threshold is the equal-error point of their scores on the writers each did not see. The
writer-dependent mode gets its own threshold the same way: per-writer models are learnt for the
held-out writers on top of the fold network that did not see them.
"""

import numpy as np

from core.errors import DataError, ParameterError, check_choice

#: Added to the references' per-feature spread (in standard deviations of the development
#: writers) so that a feature on which a few references happen to agree cannot dominate.
DEFAULT_SPREAD_FLOOR = 0.5
#: Regions (rows, columns) of each HOG scale that are compared separately.
DEFAULT_GRID = (2, 4)


def hog_shape(height, width, cell, block, orientations):
    """Shape (block rows, block columns, block, block, orientations) of one HOG scale's features."""
    return (height // cell - block + 1, width // cell - block + 1, block, block, orientations)


def feature_groups(parameters, grid=DEFAULT_GRID):
    """Index arrays of the feature groups compared separately, for complete feature ``parameters``.

    Returns a list of (name, indices) in feature order; indices cover every feature once per
    level of detail (each HOG scale appears whole and by region).
    """
    groups = []
    offset = 0
    for cell in parameters["cells"]:
        shape = hog_shape(parameters["height"], parameters["width"], cell, parameters["block"],
                          parameters["orientations"])
        size = int(np.prod(shape))
        indices = np.arange(offset, offset + size).reshape(shape[0], shape[1], -1)
        groups.append((f"hog{cell}", indices.ravel()))
        for r, rows in enumerate(np.array_split(np.arange(shape[0]), min(grid[0], shape[0]))):
            for c, columns in enumerate(np.array_split(np.arange(shape[1]), min(grid[1], shape[1]))):
                groups.append((f"hog{cell}[{r},{c}]", indices[np.ix_(rows, columns)].ravel()))
        offset += size
    for axis in ("rows", "columns"):
        if parameters["profile_bins"]:
            groups.append((f"profile_{axis}", np.arange(offset, offset + parameters["profile_bins"])))
            offset += parameters["profile_bins"]
    for name in ("aspect", "density", "coverage", "centre_row", "centre_column"):
        groups.append((name, np.array([offset])))
        offset += 1
    return groups


def feature_length(parameters):
    """Length of the feature vector that ``features.extract`` gives for ``parameters``."""
    return int(max(indices.max() for _, indices in feature_groups(parameters))) + 1


def group_matrix(groups, n_features):
    """A (n_features, n_groups) matrix whose product with per-feature values averages each group."""
    matrix = np.zeros((n_features, len(groups)), dtype=np.float32)
    for column, (_, indices) in enumerate(groups):
        matrix[indices, column] = 1.0 / len(indices)
    return matrix


def deviation_features(queries, references, averaging, spread_floor=DEFAULT_SPREAD_FLOOR):
    """How each query departs from a set of references, averaged per feature group.

    Parameters
    ----------
    queries : ndarray (n_queries, n_features), standardised features
    references : ndarray (n_references, n_features), standardised features, n_references >= 1
    averaging : ndarray (n_features, n_groups), from ``group_matrix``
    spread_floor : float > 0

    Returns
    -------
    ndarray (n_queries, n_groups), float32
    """
    queries = np.atleast_2d(queries)
    references = np.atleast_2d(references)
    centre = references.mean(axis=0)
    spread = references.std(axis=0) + spread_floor
    return ((np.abs(queries - centre) / spread) @ averaging).astype(np.float32)


def leave_one_out_features(references, averaging, spread_floor=DEFAULT_SPREAD_FLOOR):
    """Deviation features of each reference against the others (n_references >= 2)."""
    references = np.atleast_2d(references)
    rows = [
        deviation_features(references[i], np.delete(references, i, axis=0), averaging, spread_floor)[0]
        for i in range(len(references))
    ]
    return np.stack(rows)


def draw_training_set(X, writers, genuine, n_references, n_draws, rng, averaging, spread_floor, n_random=12):
    """Training samples from development writers: (features, labels, kinds).

    For each writer and each of ``n_draws`` draws, ``n_references`` of its genuine signatures
    are references; its other genuine signatures are positives (label 1), its skilled forgeries
    and ``n_random`` genuine signatures of other writers are negatives (label 0). ``kinds``
    says which: "genuine", "skilled" or "random".
    """
    features, labels, kinds, owners = [], [], [], []
    all_writers = np.unique(writers)
    for writer in all_writers:
        own = np.flatnonzero((writers == writer) & genuine)
        forged = np.flatnonzero((writers == writer) & ~genuine)
        others = np.flatnonzero((writers != writer) & genuine)
        count = min(n_references, len(own) - 1)
        if count < 1:
            continue
        for _ in range(n_draws):
            order = rng.permutation(own)
            references, positives = order[:count], order[count:]
            randoms = rng.choice(others, size=min(n_random, len(others)), replace=False) if len(others) else others
            queries = np.concatenate([positives, forged, randoms])
            features.append(deviation_features(X[queries], X[references], averaging, spread_floor))
            labels.append(np.r_[np.ones(len(positives)), np.zeros(len(forged) + len(randoms))])
            kinds.extend(["genuine"] * len(positives) + ["skilled"] * len(forged) + ["random"] * len(randoms))
            owners.extend([writer] * len(queries))
    if not features:
        raise DataError("no development writer has at least 2 genuine signatures: nothing to learn from")
    return np.concatenate(features), np.concatenate(labels).astype(int), np.array(kinds), np.array(owners)


def equal_error_threshold(genuine_scores, forgery_scores):
    """The threshold where the share of genuine scores below it equals the share of forgery scores at or above it."""
    genuine_scores = np.asarray(genuine_scores, dtype=float)
    forgery_scores = np.asarray(forgery_scores, dtype=float)
    if not len(genuine_scores) or not len(forgery_scores):
        raise DataError("a threshold needs both genuine and forged scores")
    candidates = np.unique(np.concatenate([genuine_scores, forgery_scores]))
    frr = np.searchsorted(np.sort(genuine_scores), candidates, side="left") / len(genuine_scores)
    far = 1.0 - np.searchsorted(np.sort(forgery_scores), candidates, side="left") / len(forgery_scores)
    best = int(np.argmin(np.abs(frr - far)))
    return float(candidates[best])


class Verifier:
    """A trained writer-independent verifier: feature standardisation, groups, MLP and threshold.

    Scores are the MLP's logit of "genuine": at or above ``threshold`` is accepted. Writer-dependent
    scores (``writer_model.WriterModel``) lie on another scale and have their own
    ``dependent_threshold`` (None when it was not measured: the writer-independent one is used).
    """

    def __init__(self, feature_parameters, feature_mean, feature_scale, network, threshold,
                 spread_floor=DEFAULT_SPREAD_FLOOR, grid=DEFAULT_GRID, background=None, normalisation="median",
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


#: Training settings of the writer-independent MLP (stored in the model file).
DEFAULT_TRAINING = {
    "n_references": 12,
    "n_draws": 5,
    "n_random": 12,
    "hidden_sizes": [64],
    "l2": 5e-3,
    "batch_size": 200,
    "learning_rate": 1e-3,
    "max_epochs": 200,
    "patience": 10,
    "n_folds": 5,
    "spread_floor": DEFAULT_SPREAD_FLOOR,
    "grid": list(DEFAULT_GRID),
    "normalisation": "none",
    "ensemble": True,
    "threshold_rule": "all",
    "n_background": 8,
    "dependent_threshold": True,
    "dependent_writers": None,
}

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


def _network(settings, seed):
    from core.estimator import MlpClassifier

    return MlpClassifier(
        hidden_sizes=tuple(settings["hidden_sizes"]),
        l2=settings["l2"],
        learning_rate=settings["learning_rate"],
        batch_size=settings["batch_size"],
        max_epochs=settings["max_epochs"],
        patience=settings["patience"],
        early_stopping=True,
        standardize=False,  # deviation features already share one scale across writers
        random_state=seed,
    )


def _fit_network(X, writers, genuine, settings, rng, averaging):
    features, labels, _, _ = draw_training_set(
        X, writers, genuine, settings["n_references"], settings["n_draws"], rng, averaging,
        settings["spread_floor"], settings["n_random"],
    )
    return _network(settings, int(rng.integers(2**31))).fit(features, labels)


def train_verifier(X, writers, genuine, feature_parameters, settings=None, rng=None, progress=None):
    """Learn a writer-independent verifier and its threshold from development writers.

    The threshold is the equal-error point between genuine scores and forgery scores (with
    ``threshold_rule="all"`` skilled and random forgeries together, as the evaluation protocol
    mixes them; with "skilled" the skilled ones only) of writers held out in a cross-validation over
    the development writers, so it reflects writers the network has not seen; the final
    network is then trained on every development writer. With ``dependent_threshold`` the
    writer-dependent mode is simulated on the held-out writers (at most ``dependent_writers``
    per fold, or all) and its equal-error point by the same rule is stored as well.

    Parameters
    ----------
    X : ndarray (n_signatures, n_features), raw features
    writers : ndarray (n_signatures,) of str
    genuine : ndarray (n_signatures,) of bool
    feature_parameters : dict, complete (see ``features.check_parameters``)
    settings : dict or None, overrides of ``DEFAULT_TRAINING``
    rng : numpy.random.Generator or None
    progress : callable or None, called with 1 after each fold trained and after each fold's
        writer-dependent simulation

    Returns
    -------
    verifier : Verifier
    figures : dict, cross-validated development figures (EER, FAR, FRR at the threshold)
    """
    settings = {**DEFAULT_TRAINING, **(settings or {})}
    unknown = set(settings) - set(DEFAULT_TRAINING)
    if unknown:
        raise ParameterError(f"unknown training setting(s) {sorted(unknown)}; known: {sorted(DEFAULT_TRAINING)}")
    rng = np.random.default_rng() if rng is None else rng
    X = np.asarray(X, dtype=np.float32)
    writers = np.asarray(writers).astype(str)
    genuine = np.asarray(genuine, dtype=bool)
    names = np.unique(writers)
    if len(names) < 2:
        raise DataError(f"training needs at least 2 writers; got {len(names)}")
    mean = X.mean(axis=0)
    scale = X.std(axis=0)
    scale = np.where(scale > 1e-6, scale, 1.0)
    X_std = (X - mean) / scale
    averaging = group_matrix(feature_groups(feature_parameters, tuple(settings["grid"])), X.shape[1])

    n_folds = int(min(settings["n_folds"], len(names)))
    held_scores = {"genuine": [], "skilled": [], "random": []}
    members, folds = [], []
    if n_folds >= 2:
        folds = np.array_split(rng.permutation(names), n_folds)
        for fold in folds:
            inside = ~np.isin(writers, fold)
            network = _fit_network(X_std[inside], writers[inside], genuine[inside], settings, rng, averaging)
            members.append(network)
            for writer in fold:
                plan = _held_out_queries(writers, genuine, writer, settings["n_references"], settings["n_random"])
                if plan is None:
                    continue
                references, queries, kinds = plan
                scores = writer_scores(network, X_std[queries], X_std[references], averaging,
                                       settings["spread_floor"], settings["normalisation"])
                for kind in held_scores:
                    held_scores[kind].append(scores[kinds == kind])
            if progress:
                progress(1)
    if settings["ensemble"] and len(members) >= 2:
        # The networks that chose the threshold on their held-out writers decide together, so
        # the threshold was measured on exactly the kind of scores it will be applied to.
        network = members
    else:
        network = _fit_network(X_std, writers, genuine, settings, rng, averaging)
        if progress:
            progress(1)
    threshold, figures = choose_threshold(held_scores, settings["threshold_rule"], "development")
    threshold = 0.0 if threshold is None else threshold
    if figures:
        figures["development_folds"] = n_folds
    # A few genuine signatures per development writer: negatives for writer-dependent models.
    background_rows = [
        rng.permutation(np.flatnonzero((writers == name) & genuine))[: settings["n_background"]] for name in names
    ]
    background_rows = np.sort(np.concatenate(background_rows))
    background = X[background_rows]
    dependent_threshold = None
    if settings["dependent_threshold"] and members:
        dependent_scores = _dependent_held_scores(
            X, writers, genuine, feature_parameters, mean, scale, folds, members, background_rows, settings,
            np.random.default_rng(int(rng.integers(2**31))), progress,
        )
        dependent_threshold, dependent_figures = choose_threshold(
            dependent_scores, settings["threshold_rule"], "development_dependent"
        )
        figures.update(dependent_figures)
    verifier = Verifier(feature_parameters, mean, scale, network, threshold, settings["spread_floor"],
                        tuple(settings["grid"]), background=background, normalisation=settings["normalisation"],
                        dependent_threshold=dependent_threshold)
    return verifier, figures, settings


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
    randoms = others[:: max(1, len(others) // n_random)][:n_random]
    queries = np.concatenate([own[count:], forged, randoms])
    kinds = np.array(["genuine"] * (len(own) - count) + ["skilled"] * len(forged) + ["random"] * len(randoms))
    return own[:count], queries, kinds


def _dependent_held_scores(X, writers, genuine, feature_parameters, mean, scale, folds, members, background_rows,
                           settings, rng, progress=None):
    """Writer-dependent scores of held-out development writers, as the mode will score unseen writers.

    Each held-out writer gets a per-writer model on top of the fold network that never saw it,
    with development signatures of the fold's other writers only as its negatives, so the
    threshold chosen on these scores is measured on writers unseen in every part of the model.
    ``settings["dependent_writers"]`` caps the writers simulated per fold (for speed).
    """
    from signature.writer_model import MIN_REFERENCES, WriterModel

    held_scores = {"genuine": [], "skilled": [], "random": []}
    limit = settings["dependent_writers"]
    for fold, network in zip(folds, members):
        rows = background_rows[~np.isin(writers[background_rows], fold)]
        verifier = Verifier(feature_parameters, mean, scale, network, 0.0, settings["spread_floor"],
                            tuple(settings["grid"]), background=X[rows], normalisation=settings["normalisation"])
        simulated = fold if limit is None else rng.permutation(fold)[:limit]
        for writer in simulated:
            plan = _held_out_queries(writers, genuine, writer, settings["n_references"], settings["n_random"])
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


PIPELINE = "signature"


def save_verifier(path, verifier, training=None, figures=None):
    """Write ``verifier`` to one model file (weights, statistics, feature parameters, threshold)."""
    from core.bundle import save_model

    metadata = {
        "features": verifier.feature_parameters,
        "verifier": {"threshold": verifier.threshold, "dependent_threshold": verifier.dependent_threshold,
                     "spread_floor": verifier.spread_floor,
                     "grid": list(verifier.grid), "normalisation": verifier.normalisation},
        "training": training or {},
        "figures": figures or {},
    }
    arrays = {"feature_mean": verifier.feature_mean, "feature_scale": verifier.feature_scale}
    if verifier.background is not None:
        arrays["background"] = verifier.background
    networks = verifier.network if isinstance(verifier.network, (list, tuple)) else [verifier.network]
    save_model(path, PIPELINE, {f"verifier{i}": network for i, network in enumerate(networks)}, metadata, arrays)


def load_verifier(path):
    """Read a model file written by ``save_verifier``; returns (Verifier, metadata).

    Raises ModelFileError for a missing, damaged or foreign file, or one whose parts disagree.
    """
    from core.bundle import load_model
    from core.errors import ModelFileError
    from signature.features import check_parameters

    bundle = load_model(path, PIPELINE)
    try:
        parameters = check_parameters(bundle.metadata["features"])
        settings = bundle.metadata["verifier"]
        names = sorted((name for name in bundle.models if name.startswith("verifier")), key=lambda n: int(n[8:] or 0))
        if not names:
            raise KeyError("no verifier network")
        network = [bundle.models[name] for name in names]
        mean, scale = bundle.arrays["feature_mean"], bundle.arrays["feature_scale"]
        verifier = Verifier(parameters, mean, scale, network, settings["threshold"], settings["spread_floor"],
                            settings["grid"], background=bundle.arrays.get("background"),
                            normalisation=settings.get("normalisation", "none"),
                            dependent_threshold=settings.get("dependent_threshold"))
    except (KeyError, TypeError, ValueError) as error:
        raise ModelFileError(f"{path} is not a complete signature model: {error}") from None
    n_groups = len(verifier.groups)
    if mean.shape != (verifier.n_features,) or scale.shape != (verifier.n_features,):
        raise ModelFileError(f"{path}: feature statistics do not match its feature settings")
    for member in network:
        if member.n_features_in_ != n_groups:
            raise ModelFileError(
                f"{path}: its network takes {member.n_features_in_} inputs; its settings give {n_groups}"
            )
    return verifier, bundle.metadata
