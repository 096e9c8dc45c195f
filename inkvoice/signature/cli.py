"""The ``signature`` command: train, enrol, verify, compare, evaluate, info."""

import json
import sys
from pathlib import Path

import click
import numpy as np

from inkvoice.core.command import OutputFile, ProjectGroup, progress_reporter
from inkvoice.core.errors import DataError, ProjectError

_PATH = click.Path(exists=True, dir_okay=False, path_type=Path)
_FOLDER = click.Path(exists=True, file_okay=False, path_type=Path)


def _store_location(model, store):
    """The enrolment store: ``--store`` (an SQLite path or a postgresql:// URL), else MODEL.enrol.sqlite."""
    return store if store is not None else model.with_suffix(".enrol.sqlite")


def _extract(paths, feature_parameters, jobs, cache, max_pixels, label, quiet=False):
    """Features of ``paths`` through the parallel cached extractor; errors stay per file."""
    from inkvoice.core.extraction import default_cache_dir, extract_many
    from inkvoice.signature.features import extract

    parameters = {**feature_parameters, "max_pixels": max_pixels}
    bar, advance = progress_reporter(len(paths), label, enabled=not quiet and len(paths) > 8)
    with bar:
        return extract_many(extract, paths, parameters, cache_dir=default_cache_dir() if cache else None,
                            n_jobs=jobs, progress=advance)


def _report_failures(paths, results):
    failed = 0
    for path, result in zip(paths, results):
        if isinstance(result, ProjectError):
            click.echo(f"Error: {result}", err=True)
            failed += 1
    return failed


def _signature_features(signatures, data, feature_parameters, jobs, cache, max_pixels, quiet=False):
    """(features, writers, genuine, number failed) of a data set's usable signatures; failures are reported."""
    paths = [s.path for s in signatures]
    results = _extract(paths, feature_parameters, jobs, cache, max_pixels, "features", quiet=quiet)
    failed = _report_failures(paths, results)
    keep = [i for i, r in enumerate(results) if not isinstance(r, ProjectError)]
    if not keep:
        raise DataError(f"no usable signature images in {data}")
    X = np.stack([results[i] for i in keep])
    writers = np.array([signatures[i].writer for i in keep])
    genuine = np.array([signatures[i].genuine for i in keep])
    return X, writers, genuine, failed


def _load_writers(data, writers):
    """The signatures in ``data``, only those of ``writers`` (text such as "1-35") when given."""
    from inkvoice.signature.dataset import load_signatures, parse_writer_range, select_writers

    signatures = load_signatures(data)
    if writers:
        signatures = select_writers(signatures, parse_writer_range(writers))
        if not signatures:
            raise DataError(f"no signatures of writers {writers} in {data}")
    return signatures


def _emit(rows, as_json, columns):
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    widths = [max(len(title), *(len(_cell(row.get(key))) for row in rows)) for key, title in columns] if rows else []
    click.echo("  ".join(title.ljust(width) for (_, title), width in zip(columns, widths)))
    for row in rows:
        click.echo("  ".join(_cell(row.get(key)).ljust(width) for (key, _), width in zip(columns, widths)))


def _cell(value):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _load(model):
    from inkvoice.signature.model_file import load_verifier

    return load_verifier(model)


_jobs_option = click.option("--jobs", type=click.IntRange(min=1), default=None,
                            help="Worker processes for feature extraction (default: every core).")
_cache_option = click.option("--cache/--no-cache", default=True, show_default=True,
                             help="Reuse features cached by file content ($INKVOICE_CACHE or ~/.cache/inkvoice).")
_pixels_option = click.option("--max-pixels", type=click.IntRange(min=1), default=40_000_000, show_default=True,
                              help="Refuse images with more pixels than this (read from the header, before decoding).")
_json_option = click.option("--json", "as_json", is_flag=True,
                            help="Print one JSON object per line instead of a table.")
_threshold_option = click.option("--threshold", type=float, default=None,
                                 help="Decision threshold on the score (default: the one stored in the model "
                                      "for the mode).")
_store_option = click.option("--store", metavar="PATH_OR_URL", default=None,
                             help="Enrolment store: an SQLite file, or postgresql://user@host:port/database for one "
                                  "that several processes share; default: MODEL with the suffix .enrol.sqlite.")


@click.group(cls=ProjectGroup)
@click.version_option(package_name="inkvoice")
def main():
    """Verify signature images against a writer's enrolled references."""


@main.command()
@click.argument("data", type=_FOLDER)
@click.option("-o", "--output", type=OutputFile(), required=True,
              help="Model file to write (.npz).")
@click.option("--writers", default=None,
              help="Development writers to learn from, e.g. 1-35 (default: every writer in DATA).")
@click.option("--refs", type=click.IntRange(min=1), default=12, show_default=True,
              help="References per writer in the training comparisons.")
@click.option("--draws", type=click.IntRange(min=1), default=5, show_default=True,
              help="Random reference sets drawn per development writer.")
@click.option("--hidden", default="64", show_default=True, help="Hidden layer sizes, comma-separated.")
@click.option("--cells", default="16,32", show_default=True, help="HOG cell sizes in pixels, comma-separated.")
@click.option("--pen-radius", type=click.IntRange(min=0), default=None,
              help="Redraw strokes with this pen radius (stroke-width normalisation; default: off).")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@_jobs_option
@_cache_option
@_pixels_option
def train(data, output, writers, refs, draws, hidden, cells, pen_radius, seed, jobs, cache, max_pixels):
    """Learn a writer-independent verifier from the signatures in DATA.

    DATA is a CEDAR folder (full_org/, full_forg/) or a folder per writer holding genuine/
    and optionally forged/ images.
    """
    from inkvoice.signature.features import check_parameters
    from inkvoice.signature.model_file import save_verifier
    from inkvoice.signature.training import train_verifier

    signatures = _load_writers(data, writers)
    try:
        parameters = check_parameters({"cells": [int(c) for c in cells.split(",")], "pen_radius": pen_radius})
        hidden_sizes = [int(h) for h in hidden.split(",")]
    except ValueError:
        raise click.BadParameter("expected comma-separated integers", param_hint="--cells/--hidden") from None
    X, names, genuine, failed = _signature_features(signatures, data, parameters, jobs, cache, max_pixels)
    settings = {"n_references": refs, "n_draws": draws, "hidden_sizes": hidden_sizes}
    n_writers = len(set(names.tolist()))
    n_folds = min(5, n_writers)
    bar, advance = progress_reporter(2 * n_folds if n_writers >= 2 else 1, "training")
    with bar:
        verifier, figures, settings = train_verifier(X, names, genuine, parameters, settings,
                                                     np.random.default_rng(seed), progress=advance)
    training = {**settings, "seed": seed, "writers": sorted(set(names.tolist())), "n_signatures": len(X)}
    save_verifier(output, verifier, training, figures)
    dependent = "-" if verifier.dependent_threshold is None else f"{verifier.dependent_threshold:.3f}"
    click.echo(f"wrote {output}: {len(set(names))} writers, {len(X)} signatures, "
               f"threshold {verifier.threshold:.3f} (writer-dependent {dependent})")
    for key, value in figures.items():
        click.echo(f"  {key}: {_cell(value)}")
    if failed:
        sys.exit(1)


@main.command()
@click.argument("model", type=_PATH)
@click.argument("images", type=_PATH, nargs=-1, required=True)
@click.option("--writer", required=True, help="Name of the writer whose references these are.")
@click.option("--min-references", type=click.IntRange(min=1), default=3, show_default=True,
              help="Fewest references the writer may have after enrolment.")
@_store_option
@_jobs_option
@_cache_option
@_pixels_option
def enroll(model, images, writer, min_references, store, jobs, cache, max_pixels):
    """Enrol reference IMAGES of a writer (all of them or, if any is unusable, none)."""
    from inkvoice.signature.enrollment import file_digest, open_store

    verifier, _ = _load(model)
    results = _extract(list(images), verifier.feature_parameters, jobs, cache, max_pixels, "features")
    if _report_failures(images, results):
        raise DataError(f"nothing enrolled for writer {writer!r}: fix or leave out the images above")
    model_digest = file_digest(model)[:16]
    entries = [(path.name, file_digest(path), vector) for path, vector in zip(images, results)]
    with open_store(_store_location(model, store), verifier.feature_parameters) as database:
        added, total = database.add(writer, entries, model_digest, min_references)
    click.echo(f"writer {writer}: {added} reference(s) added, {total} in total")


def _verdict_rows(paths, scores, threshold, verifier, mode="independent"):
    threshold = verifier.threshold_for(mode) if threshold is None else threshold
    return [
        {"image": str(path), "verdict": "genuine" if score >= threshold else "forged", "score": round(float(score), 4),
         "threshold": round(float(threshold), 4)}
        for path, score in zip(paths, scores)
    ]


_VERDICT_COLUMNS = [("image", "image"), ("verdict", "verdict"), ("score", "score"), ("threshold", "threshold")]


@main.command()
@click.argument("model", type=_PATH)
@click.argument("images", type=_PATH, nargs=-1, required=True)
@click.option("--writer", required=True, help="The writer the images claim to be from.")
@click.option("--mode", type=click.Choice(["independent", "dependent"]), default="independent", show_default=True,
              help="independent: the trained verifier; dependent: adds a network learnt from this writer's references.")
@_threshold_option
@_store_option
@_json_option
@_jobs_option
@_cache_option
@_pixels_option
def verify(model, images, writer, mode, threshold, store, as_json, jobs, cache, max_pixels):
    """Say whether each of IMAGES is a genuine signature of an enrolled writer."""
    from inkvoice.signature.enrollment import open_store

    verifier, _ = _load(model)
    with open_store(_store_location(model, store), verifier.feature_parameters, create=False) as database:
        references = database.references(writer)
    results = _extract(list(images), verifier.feature_parameters, jobs, cache, max_pixels, "features", quiet=as_json)
    failed = _report_failures(images, results)
    good = [(path, vector) for path, vector in zip(images, results) if not isinstance(vector, ProjectError)]
    if good:
        queries = np.stack([vector for _, vector in good])
        if mode == "dependent":
            from inkvoice.signature.writer_model import WriterModel

            scores = WriterModel(verifier, references).scores(queries)
        else:
            scores = verifier.scores(queries, references)
        _emit(_verdict_rows([p for p, _ in good], scores, threshold, verifier, mode), as_json, _VERDICT_COLUMNS)
    if failed:
        sys.exit(1)


@main.command()
@click.argument("model", type=_PATH)
@click.argument("references", type=_PATH, nargs=-1, required=True)
@click.argument("query", type=_PATH)
@_threshold_option
@_json_option
@_pixels_option
def compare(model, references, query, threshold, as_json, max_pixels):
    """Compare QUERY with one or more REFERENCES of the same writer, with no enrolment store.

    The stored threshold was chosen for the number of references used in training; with
    fewer references scores are lower, so pass several references or set --threshold.
    """
    verifier, _ = _load(model)
    paths = [*references, query]
    results = _extract(paths, verifier.feature_parameters, 1, False, max_pixels, "features", quiet=True)
    if _report_failures(paths, results):
        sys.exit(1)
    scores = verifier.scores(results[-1], np.stack(results[:-1]))
    _emit(_verdict_rows([query], scores, threshold, verifier), as_json, _VERDICT_COLUMNS)


@main.command()
@click.argument("model", type=_PATH)
@click.argument("data", type=_FOLDER)
@click.option("--refs", type=click.IntRange(min=1), default=12, show_default=True,
              help="Genuine references per writer (the first ones); the rest are queries.")
@click.option("--writers", default=None, help="Writers to test, e.g. 36-45 (default: every writer in DATA).")
@click.option("--mode", type=click.Choice(["independent", "dependent"]), default="independent", show_default=True,
              help="Writer-independent verifier, or with a per-writer network added.")
@click.option("--plot", type=OutputFile(), default=None,
              help="Write ROC and DET curves to this PNG (needs matplotlib).")
@_threshold_option
@_json_option
@_jobs_option
@_cache_option
@_pixels_option
def evaluate(model, data, refs, writers, mode, plot, threshold, as_json, jobs, cache, max_pixels):
    """FAR (skilled and random forgeries), FRR, EER and AUC per writer and overall on DATA."""
    from inkvoice.signature.dataset import writers_of
    from inkvoice.signature.evaluation import figures, plot_curves, protocol_queries

    verifier, metadata = _load(model)
    signatures = _load_writers(data, writers)
    trained_on = set(metadata.get("training", {}).get("writers", []))
    if trained_on & set(writers_of(signatures)) and (data / "full_org").is_dir():
        click.echo("warning: some test writers were used in training; figures will be optimistic", err=True)
    X, names, genuine, failed = _signature_features(signatures, data, verifier.feature_parameters, jobs, cache,
                                                    max_pixels, quiet=as_json)
    test_writers = [w for w in writers_of(signatures) if w in set(names)]
    plan = protocol_queries(names, genuine, test_writers, refs)
    threshold = verifier.threshold_for(mode) if threshold is None else threshold
    rows, all_scores, all_kinds = [], [], []
    for writer, reference_rows, query_rows, kinds in plan:
        if mode == "dependent":
            from inkvoice.signature.writer_model import WriterModel

            scores = WriterModel(verifier, X[reference_rows]).scores(X[query_rows])
        else:
            scores = verifier.scores(X[query_rows], X[reference_rows])
        rows.append({"writer": writer, **figures(scores, kinds, threshold)})
        all_scores.append(scores)
        all_kinds.append(kinds)
    scores, kinds = np.concatenate(all_scores), np.concatenate(all_kinds)
    overall = {"writer": "overall", **figures(scores, kinds, threshold)}
    overall["eer_per_writer_mean"] = float(np.mean([r["eer"] for r in rows if r["eer"] is not None]))
    overall["threshold"] = float(threshold)
    rows.append(overall)
    columns = [("writer", "writer"), ("n_genuine", "genuine"), ("n_skilled", "skilled"), ("n_random", "random"),
               ("frr", "FRR"), ("far_skilled", "FAR skilled"), ("far_random", "FAR random"), ("eer", "EER"),
               ("auc", "AUC")]
    _emit(rows, as_json, columns)
    if not as_json:
        click.echo(f"threshold {threshold:.3f}; mean of per-writer EERs {overall['eer_per_writer_mean']:.3f}")
    if plot is not None:
        plot_curves(scores, kinds, plot, title=f"{model.name} on {data.name} ({mode}, {refs} references)",
                    threshold=threshold)
        click.echo(f"wrote {plot}", err=True)
    if failed:
        sys.exit(1)


@main.command()
@click.argument("model", type=_PATH)
@_store_option
@_json_option
def info(model, store, as_json):
    """Show a model's feature settings, threshold, training and figures (and its store's writers)."""
    verifier, metadata = _load(model)
    document = {
        "model": str(model),
        "threshold": verifier.threshold,
        "dependent_threshold": verifier.dependent_threshold,
        "features": metadata["features"],
        "training": {k: v for k, v in metadata.get("training", {}).items() if k != "writers"},
        "training_writers": len(metadata.get("training", {}).get("writers", [])),
        "figures": metadata.get("figures", {}),
    }
    from inkvoice.signature.enrollment import is_store_url, open_store

    location = _store_location(model, store)
    if is_store_url(location) or Path(location).is_file():
        with open_store(location, verifier.feature_parameters, create=False) as database:
            document["enrolled"] = {name: count for name, count in database.writers()}
    if as_json:
        click.echo(json.dumps(document))
        return
    for key, value in document.items():
        click.echo(f"{key}: {json.dumps(value) if isinstance(value, (dict, list)) else value}")
