"""Learning the writer-independent verifier and its thresholds from development writers.

The MLP learns from development writers which departures from a writer's references betray a
forgery: for each writer, random sets of its genuine signatures are references, and its other
genuine signatures, its skilled forgeries and other writers' signatures are queries. The
networks of a cross-validation over the development writers, each trained without one fifth of
them, decide together (mean logit), and the threshold is the equal-error point of their scores
on the writers each did not see. The writer-dependent mode gets its own threshold the same way:
per-writer models are learnt for the held-out writers on top of the fold network that did not
see them.
"""

import numpy as np

from inkvoice.core.errors import DataError, ParameterError
from inkvoice.signature.comparison import DEFAULT_GRID, DEFAULT_SPREAD_FLOOR, deviation_features, feature_groups, group_matrix
from inkvoice.signature.evaluation import equal_error_threshold
from inkvoice.signature.verifier import Verifier, writer_scores

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


def _network(settings, seed):
    from inkvoice.core.estimator import MlpClassifier

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
    from inkvoice.signature.writer_model import MIN_REFERENCES, WriterModel

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
