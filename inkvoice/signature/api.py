"""One call per job, from files to plain answers: enroll, verify and compare.

The ``signature`` command and the web service both call these; each returns lists and dicts of
plain values (str, int, float, bool), one record per input file, so a bad file costs one
record, never the other answers.
"""

from pathlib import Path

import numpy as np

from inkvoice.core.errors import DataError, ProjectError
from inkvoice.signature.enrollment import DEFAULT_BUSY_SECONDS, DEFAULT_MIN_REFERENCES, new_writer_name, writer_name
from inkvoice.signature.features import extract_files
from inkvoice.signature.images import DEFAULT_MAX_PIXELS
from inkvoice.signature.verifier import DEFAULT_MODE

#: The enrolment store beside a model when none is named: MODEL with this suffix.
STORE_SUFFIX = ".enrol.sqlite"


def default_store(model_path):
    """Where a model's enrolment store lives unless another is named."""
    return Path(model_path).with_suffix(STORE_SUFFIX)


def open_enrollment_store(location, verifier, create, busy_seconds=DEFAULT_BUSY_SECONDS):
    """The enrolment store at ``location`` (an SQLite path or a postgresql:// URL) for ``verifier``'s features."""
    from inkvoice.signature.enrollment import open_store

    return open_store(location, verifier.feature_parameters, create=create, busy_seconds=busy_seconds)


def _verifier(model_path, verifier):
    if verifier is not None:
        return verifier
    from inkvoice.signature.model_file import load_verifier

    return load_verifier(model_path)[0]


def _records(paths, results):
    """One record per path: {"image": ...} plus {"error": message} for a file that failed."""
    return [
        {"image": str(path), **({"error": str(result)} if isinstance(result, ProjectError) else {})}
        for path, result in zip(paths, results)
    ]


def enroll_files(model_path, writer, paths, store=None, *, extraction=None, max_pixels=DEFAULT_MAX_PIXELS,
                 min_references=DEFAULT_MIN_REFERENCES, verifier=None, progress=None, busy_seconds=DEFAULT_BUSY_SECONDS):
    """Enroll reference images of ``writer``: all of them, or none if any is unusable.

    Parameters
    ----------
    model_path : path-like, the model file whose features the store keeps
    writer : str, normalised by ``dataset.writer_name``
    paths : sequence of path-like, the reference images
    store : path-like, postgresql:// URL or None (``default_store(model_path)``)
    extraction : ExtractionSettings or None
    max_pixels : int > 0
    min_references : int >= 1, fewest references the writer may have afterwards
    verifier : Verifier or None, the loaded model (read from ``model_path`` when None)
    progress : callable or None
    busy_seconds : float > 0, how long to wait for a store another process holds

    Returns
    -------
    dict: ``writer``, ``enrolled`` (bool), ``added`` and ``total`` references (None when
    nothing was enrolled), ``already`` (names of the images that were already enrolled for
    the writer, so not added again; None when nothing was enrolled) and ``images``, one record
    per path (with ``error`` for a file that could not be used, or that the verifier refuses
    as a reference: see ``Verifier.reference_problems``).

    Raises
    ------
    ProjectError
        A bad model, writer name or store, or too few references for ``min_references``.
    """
    from inkvoice.signature.enrollment import file_digest, reference_thumbnail

    name = new_writer_name(writer)
    verifier = _verifier(model_path, verifier)
    paths = [Path(p) for p in paths]
    results = extract_files(paths, verifier.feature_parameters, extraction, max_pixels, progress)
    records = _records(paths, results)
    answer = {"writer": name, "enrolled": False, "added": None, "total": None, "already": None, "images": records}
    if any("error" in record for record in records):
        return answer
    model_digest = file_digest(model_path)[:16]
    entries = [(path.name, file_digest(path), vector, reference_thumbnail(path, max_pixels))
               for path, vector in zip(paths, results)]
    location = default_store(model_path) if store is None else store
    by_name = {path.name: record for path, record in zip(paths, records)}
    try:
        with open_enrollment_store(location, verifier, create=True, busy_seconds=busy_seconds) as database:
            added, total, already = database.add(name, entries, model_digest, min_references,
                                                 check=lambda sources, vectors: _trust(verifier, name, sources,
                                                                                       vectors))
    except _Refused as refusal:
        if not all(source in by_name for source, _ in refusal.problems):  # one enrolled earlier
            raise DataError(f"nothing enrolled: {refusal}; remove the writer and enrol it again") from None
        for source, reason in refusal.problems:
            by_name[source]["error"] = reason
        return answer
    return {**answer, "enrolled": True, "added": int(added), "total": int(total), "already": already}


class _Refused(DataError):
    """References the verifier will not trust; ``problems`` lists (source name, reason)."""

    def __init__(self, message, problems):
        super().__init__(message)
        self.problems = problems


def _trust(verifier, writer, sources, references):
    """Raise _Refused naming each of ``references`` (with their ``sources``) that cannot be trusted.

    A poisoned set (a reference that is not a signature, or departs far beyond genuine
    variation) would accept what it should refuse, so it is refused whole.
    """
    problems = [(str(sources[i]), f"{sources[i]}: refused as a reference of {writer!r}: {reason}")
                for i, reason in verifier.reference_problems(references)]
    if problems:
        raise _Refused("; ".join(reason for _, reason in problems), problems)


def writer_references(model_path, writer, store=None, verifier=None, pictures=False):
    """The enrolled reference features of ``writer``, shape (n_references, n_features).

    With ``pictures``, also their kept pictures: ``(features, [PNG bytes or None per reference])``.
    """
    verifier = _verifier(model_path, verifier)
    location = default_store(model_path) if store is None else store
    with open_enrollment_store(location, verifier, create=False) as database:
        references = database.references(writer_name(writer))
        if not pictures:
            return references
        return references, [thumbnail for _, thumbnail in database.thumbnails_of(writer_name(writer))]


def verify_features(verifier, paths, results, references, mode=DEFAULT_MODE, threshold=None, explain=None,
                    max_pixels=DEFAULT_MAX_PIXELS, reference_pictures=None, inputs=()):
    """Records of already extracted ``results`` (vectors or ProjectErrors) of ``paths`` against ``references``.

    ``reference_pictures`` (one PNG or None per reference) are what explanations show. An
    explanation never replaces an image being read: ``paths`` or the other ``inputs``.
    """
    records = _records(paths, results)
    good = [i for i, record in enumerate(records) if "error" not in record]
    if explain is not None:
        from inkvoice.core.files import check_not_an_input
        from inkvoice.signature.explain import explanation_paths

        for png in explanation_paths(explain, [paths[i] for i in good]):
            check_not_an_input(png, [*paths, *inputs])
    problems = verifier.reference_problems(references, scored=False)
    if problems:
        raise DataError("the references cannot be trusted, so nothing is verified: "
                        + "; ".join(f"reference {i + 1}: {reason}" for i, reason in problems)
                        + "; enrol the writer again")
    if good:
        queries = np.stack([results[i] for i in good])
        verdicts = verifier.verify(queries, references, mode, threshold)
        for i, verdict in zip(good, verdicts):
            records[i].update(verdict)
        if explain is not None:
            from inkvoice.signature.explain import explain_queries

            explanations = explain_queries(verifier, [paths[i] for i in good], queries, references, explain,
                                           max_pixels, reference_pictures)
            for i, explanation in zip(good, explanations):
                records[i]["explanation"] = explanation
    return records


def verify_files(model_path, writer, paths, store=None, *, mode=DEFAULT_MODE, threshold=None, extraction=None,
                 max_pixels=DEFAULT_MAX_PIXELS, explain=None, verifier=None, progress=None):
    """Whether each image in ``paths`` is a genuine signature of the enrolled ``writer``.

    Parameters
    ----------
    model_path, writer, store, extraction, max_pixels, verifier, progress
        As in ``enroll_files``.
    mode : "independent" or "dependent"
    threshold : float or None (the one stored in the model for ``mode``)
    explain : path-like or None
        A folder for one PNG per query showing where it departs from the references (see
        ``explain.explain_queries``); each record then holds an ``explanation``.

    Returns
    -------
    list of dict, one per path in order: ``image`` and either ``verdict`` ("genuine" or
    "forged"), ``score`` and ``threshold``, or ``error`` for a file that could not be used.

    Raises
    ------
    ProjectError
        A bad model, writer name or store, or a writer who is not enrolled.
    """
    verifier = _verifier(model_path, verifier)
    pictures = None
    if explain is None:
        references = writer_references(model_path, writer, store, verifier)
    else:
        references, pictures = writer_references(model_path, writer, store, verifier, pictures=True)
    paths = [Path(p) for p in paths]
    results = extract_files(paths, verifier.feature_parameters, extraction, max_pixels, progress)
    return verify_features(verifier, paths, results, references, mode, threshold, explain, max_pixels, pictures)


def compare_files(verifier, reference_paths, query_path, *, threshold=None, max_pixels=DEFAULT_MAX_PIXELS,
                  explain=None):
    """Compare one query image with reference images of the same writer, with no enrolment store.

    Returns a list of records: one per unusable reference (with ``error``) and, when every
    file could be used, the query's verdict record (as in ``verify_files``).
    """
    from inkvoice.core.extraction import ExtractionSettings

    paths = [Path(p) for p in [*reference_paths, query_path]]
    results = extract_files(paths, verifier.feature_parameters, ExtractionSettings(n_jobs=1, cache=False),
                            max_pixels)
    records = _records(paths, results)
    failed = [record for record in records if "error" in record]
    if failed:
        return failed
    problems = verifier.reference_problems(np.stack(results[:-1]))
    if problems:
        return [{**records[i], "error": f"{paths[i]}: refused as a reference: {reason}"} for i, reason in problems]
    pictures = None
    if explain is not None:
        from inkvoice.signature.enrollment import reference_thumbnail

        pictures = [reference_thumbnail(path, max_pixels) for path in paths[:-1]]
    return verify_features(verifier, paths[-1:], results[-1:], np.stack(results[:-1]), threshold=threshold,
                           explain=explain, max_pixels=max_pixels, reference_pictures=pictures, inputs=paths[:-1])
