"""Verification figures: FAR on skilled and random forgeries, FRR, EER and AUC, per writer and overall."""

import numpy as np

from inkvoice.core.errors import DataError

#: Genuine references per writer in the evaluation protocol (and in training comparisons).
DEFAULT_REFERENCES = 12
#: Genuine signatures of other writers scored as random forgeries, per writer.
DEFAULT_RANDOM_FORGERIES = 12


def roc_points(genuine_scores, forgery_scores):
    """False acceptance and false rejection rates at every distinct threshold, plus the thresholds."""
    genuine_scores = np.sort(np.asarray(genuine_scores, dtype=float))
    forgery_scores = np.sort(np.asarray(forgery_scores, dtype=float))
    thresholds = np.unique(np.concatenate([genuine_scores, forgery_scores, [np.inf]]))
    frr = np.searchsorted(genuine_scores, thresholds, side="left") / len(genuine_scores)
    far = 1.0 - np.searchsorted(forgery_scores, thresholds, side="left") / len(forgery_scores)
    return far, frr, thresholds


def _equal_error_point(genuine_scores, forgery_scores):
    """(FAR, FRR, threshold) at the score threshold where FAR and FRR are closest."""
    if not len(genuine_scores) or not len(forgery_scores):
        raise DataError("equal error needs both genuine and forged scores")
    far, frr, thresholds = roc_points(genuine_scores, forgery_scores)
    best = int(np.argmin(np.abs(far - frr)))
    return far[best], frr[best], float(thresholds[best])


def equal_error_rate(genuine_scores, forgery_scores):
    """The equal error rate: where FAR and FRR cross (their mean at the closest threshold)."""
    far, frr, _ = _equal_error_point(genuine_scores, forgery_scores)
    return float((far + frr) / 2)


def equal_error_threshold(genuine_scores, forgery_scores):
    """The threshold where the share of genuine scores below it is closest to the share of forgeries at or above it."""
    return _equal_error_point(genuine_scores, forgery_scores)[2]


def area_under_curve(genuine_scores, forgery_scores):
    """Probability that a genuine score beats a forgery score (ties count half)."""
    genuine_scores = np.asarray(genuine_scores, dtype=float)
    forgery_scores = np.asarray(forgery_scores, dtype=float)
    below = np.searchsorted(np.sort(forgery_scores), genuine_scores, side="left")
    ties = np.searchsorted(np.sort(forgery_scores), genuine_scores, side="right") - below
    return float((below + ties / 2).sum() / (len(genuine_scores) * len(forgery_scores)))


def figures(scores, kinds, threshold):
    """Figures of one set of scored queries.

    Parameters
    ----------
    scores : ndarray (n,)
    kinds : ndarray (n,) of "genuine", "skilled" or "random"
    threshold : float, scores at or above it are accepted

    Returns
    -------
    dict with n_genuine, n_skilled, n_random, frr, far_skilled, far_random, eer (genuine
    against skilled forgeries, or random ones when there are no skilled ones), auc, and
    eer_random.
    """
    scores = np.asarray(scores, dtype=float)
    kinds = np.asarray(kinds)
    genuine = scores[kinds == "genuine"]
    skilled = scores[kinds == "skilled"]
    random = scores[kinds == "random"]
    if not len(genuine):
        raise DataError("no genuine queries to evaluate")
    result = {
        "n_genuine": int(len(genuine)),
        "n_skilled": int(len(skilled)),
        "n_random": int(len(random)),
        "frr": float(np.mean(genuine < threshold)),
        "far_skilled": float(np.mean(skilled >= threshold)) if len(skilled) else None,
        "far_random": float(np.mean(random >= threshold)) if len(random) else None,
    }
    negatives = skilled if len(skilled) else random
    result["eer"] = equal_error_rate(genuine, negatives) if len(negatives) else None
    result["auc"] = area_under_curve(genuine, negatives) if len(negatives) else None
    result["eer_random"] = equal_error_rate(genuine, random) if len(random) else None
    return result


def protocol_queries(writers, genuine, test_writers, n_references=DEFAULT_REFERENCES,
                     n_random=DEFAULT_RANDOM_FORGERIES):
    """The evaluation protocol's references and queries for each test writer.

    A writer's first ``n_references`` genuine signatures are references; the queries are its
    other genuine signatures, its skilled forgeries, and the first ``n_random`` genuine
    signatures of other test writers that are not references (random forgeries), spread
    over those writers. Returns a list of (writer, reference indices, query indices, kinds).
    """
    writers = np.asarray(writers).astype(str)
    genuine = np.asarray(genuine, dtype=bool)
    plan = []
    held_out = {}
    short = {}
    for writer in test_writers:
        own = np.flatnonzero((writers == writer) & genuine)
        if len(own) <= n_references:
            short[writer] = len(own)
        held_out[writer] = own[n_references:]
    if short:
        listed = ", ".join(f"{w} ({n})" for w, n in list(short.items())[:5]) + (", ..." if len(short) > 5 else "")
        raise DataError(
            f"{len(short)} writer(s) have {n_references} or fewer genuine signatures, so {n_references} references "
            f"leave none to test: {listed}; use at most {min(short.values()) - 1} references"
        )
    for writer in test_writers:
        own = np.flatnonzero((writers == writer) & genuine)
        forged = np.flatnonzero((writers == writer) & ~genuine)
        others = [w for w in test_writers if w != writer]
        randoms = []
        for round_ in range(n_random):
            if not others:
                break
            pool = held_out[others[round_ % len(others)]]
            index = round_ // len(others)
            if index < len(pool):
                randoms.append(pool[index])
        queries = np.concatenate([own[n_references:], forged, np.array(randoms, dtype=int)])
        kinds = ["genuine"] * (len(own) - n_references) + ["skilled"] * len(forged) + ["random"] * len(randoms)
        plan.append((writer, own[:n_references], queries, np.array(kinds)))
    return plan


#: Error rates (%) labelled on the DET axes, which are drawn on the normal-deviate scale.
DET_TICKS = (0.1, 0.5, 1, 2, 5, 10, 20, 40, 60)


def plot_curves(scores, kinds, path, title="Signature verification", threshold=None):
    """Write ROC and DET curves (genuine against skilled and random forgeries) to a PNG, atomically.

    The DET curve uses normal-deviate axes, as is usual, so that error rates near zero stay
    readable; rates of exactly 0 or 1 cannot be drawn there and are left out. With
    ``threshold``, the operating point at that threshold is marked on both curves.
    """
    from scipy.stats import norm

    from inkvoice.core.plots import pyplot, save_figure

    plt = pyplot()
    scores = np.asarray(scores, dtype=float)
    kinds = np.asarray(kinds)
    genuine = scores[kinds == "genuine"]
    figure, (roc_axis, det_axis) = plt.subplots(1, 2, figsize=(10, 4.5))
    for kind in ("skilled", "random"):
        negatives = scores[kinds == kind]
        if not len(negatives):
            continue
        far, frr, _ = roc_points(genuine, negatives)
        (line,) = roc_axis.plot(far, 1 - frr, label=f"{kind} forgeries")
        inside = (far > 0) & (far < 1) & (frr > 0) & (frr < 1)
        det_axis.plot(norm.ppf(far[inside]), norm.ppf(frr[inside]), color=line.get_color(),
                      label=f"{kind} forgeries")
        if threshold is not None:
            point_far = float(np.mean(negatives >= threshold))
            point_frr = float(np.mean(genuine < threshold))
            roc_axis.plot(point_far, 1 - point_frr, "o", color=line.get_color())
            clipped = np.clip([point_far, point_frr], DET_TICKS[0] / 100, 1 - DET_TICKS[0] / 100)
            det_axis.plot(*norm.ppf(clipped), "o", color=line.get_color())
    roc_axis.set(xlabel="false acceptance rate", ylabel="true acceptance rate",
                 title="ROC" if threshold is None else f"ROC (dots: threshold {threshold:.3f})")
    ticks = norm.ppf(np.array(DET_TICKS) / 100)
    labels = [f"{t:g}" for t in DET_TICKS]
    det_axis.set(xlabel="FAR (%)", ylabel="FRR (%)", title="DET", xticks=ticks, xticklabels=labels,
                 yticks=ticks, yticklabels=labels, xlim=(ticks[0], ticks[-1]), ylim=(ticks[0], ticks[-1]))
    for axis in (roc_axis, det_axis):
        axis.grid(True, alpha=0.3)
        axis.legend()
    figure.suptitle(title)
    figure.tight_layout()
    save_figure(figure, path)


def evaluate_writers(verifier, X, writers, genuine, test_writers=None, n_references=DEFAULT_REFERENCES,
                     mode="independent", threshold=None, rng=None):
    """Figures of ``verifier`` on test writers, by the evaluation protocol (``protocol_queries``).

    Parameters
    ----------
    verifier : Verifier
    X : ndarray (n_signatures, n_features), raw features
    writers, genuine : ndarray (n_signatures,)
    test_writers : list of str or None (every writer in ``writers``)
    n_references : int >= 1, the first genuine signatures of each writer used as references
    mode : "independent" or "dependent"
    threshold : float or None (the one stored for ``mode``)
    rng : numpy.random.Generator or None, seeds the writer-dependent networks

    Returns
    -------
    dict with ``writers`` (one dict of figures per writer, with its name under "writer"),
    ``overall`` (figures of all queries pooled, plus ``eer_per_writer_mean`` and
    ``threshold``), and ``scores`` and ``kinds`` of every query (for curves).
    """
    from inkvoice.signature.dataset import natural_order

    writers = np.asarray(writers).astype(str)
    if test_writers is None:
        test_writers = natural_order(set(writers.tolist()))
    threshold = verifier.threshold_for(mode) if threshold is None else float(threshold)
    rows, all_scores, all_kinds = [], [], []
    for writer, reference_rows, query_rows, kinds in protocol_queries(writers, genuine, test_writers, n_references):
        seed = None if rng is None else np.random.default_rng(int(rng.integers(2**31)))
        scores = verifier.scores(X[query_rows], X[reference_rows], mode, rng=seed)
        rows.append({"writer": writer, **figures(scores, kinds, threshold)})
        all_scores.append(scores)
        all_kinds.append(kinds)
    scores, kinds = np.concatenate(all_scores), np.concatenate(all_kinds)
    overall = {"writer": "overall", **figures(scores, kinds, threshold)}
    per_writer = [row["eer"] for row in rows if row["eer"] is not None]
    overall["eer_per_writer_mean"] = float(np.mean(per_writer)) if per_writer else None
    overall["threshold"] = float(threshold)
    return {"writers": rows, "overall": overall, "scores": scores, "kinds": kinds}


#: Folds of the k-fold evaluation by writer.
DEFAULT_FOLDS = 5


def writer_folds(writers, n_folds=DEFAULT_FOLDS):
    """A fixed assignment of writers to folds: natural order, cut into ``n_folds`` contiguous runs.

    The same writers always give the same folds (CEDAR's 45: 1-9, 10-18, 19-27, 28-36, 37-45),
    so every variant is compared on the same splits.
    """
    from inkvoice.signature.dataset import natural_order

    names = natural_order(set(np.asarray(writers).astype(str).tolist()))
    if len(names) < n_folds:
        raise DataError(f"{n_folds} folds need at least {n_folds} writers; got {len(names)}")
    return [part.tolist() for part in np.array_split(np.array(names, dtype=object), n_folds)]


def cross_validate(table, fold, parameters, settings=None, seed=0, n_references=DEFAULT_REFERENCES,
                   modes=("independent",), extra=None, test_table=None):
    """Train without the writers of ``fold`` and evaluate on them: one fold of a k-fold by writer.

    Parameters
    ----------
    table : features.FeatureTable, the development writers (the fold's writers are left out
        of training)
    fold : list of str, the test writers
    parameters : dict, the feature parameters the table was extracted with
    settings : TrainingSettings, dict of overrides or None
    seed : int, seeds training and the writer-dependent networks
    n_references : int, references per test writer
    modes : sequence of "independent" and "dependent"
    extra : FeatureTable or None, more development writers (never tested)
    test_table : FeatureTable or None, where the test writers are (default ``table``)

    Returns
    -------
    dict mode -> the ``evaluate_writers`` result, plus ``figures`` (the development figures
    training stored) and ``verifier``.
    """
    from inkvoice.signature.training import train_verifier

    inside = ~np.isin(table.writers, fold)
    X, writers, genuine = table.X[inside], table.writers[inside], table.genuine[inside]
    if extra is not None:
        X = np.concatenate([X, extra.X])
        writers = np.concatenate([writers, extra.writers])
        genuine = np.concatenate([genuine, extra.genuine])
    rng = np.random.default_rng(seed)
    verifier, development, _ = train_verifier(X, writers, genuine, parameters, settings, rng)
    test = table if test_table is None else test_table
    result = {"figures": development, "verifier": verifier}
    for mode in modes:
        result[mode] = evaluate_writers(verifier, test.X, test.writers, test.genuine, list(fold), n_references, mode,
                                        rng=np.random.default_rng(seed))
    return result
