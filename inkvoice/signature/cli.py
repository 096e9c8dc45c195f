"""The ``signature`` command: train, enroll, verify, compare, evaluate, info.

Each command parses its options, calls one library function and prints the answer.
"""

import json
import sys
from pathlib import Path

import click
import numpy as np

from inkvoice.core.command import (
    CommaList,
    OutputFile,
    ProjectGroup,
    extraction_options,
    json_line,
    input_files,
    printable,
    progress_reporter,
    quiet_option,
    version_option,
)
from inkvoice.core.errors import DataError
from inkvoice.signature.dataset import shorten
from inkvoice.signature.enrollment import DEFAULT_MIN_REFERENCES
from inkvoice.signature.evaluation import DEFAULT_REFERENCES
from inkvoice.signature.features import DEFAULT_PARAMETERS
from inkvoice.signature.images import DEFAULT_MAX_PIXELS
from inkvoice.signature.training import TrainingSettings
from inkvoice.signature.verifier import DEFAULT_MODE, MODES

_PATH = click.Path(exists=True, dir_okay=False, path_type=Path)
_FOLDER = click.Path(exists=True, file_okay=False, path_type=Path)
# Images are checked one by one by the library, so one missing file costs one error line.
_IMAGE = click.Path(path_type=Path)


def _emit(rows, as_json, columns):
    if as_json:
        for row in rows:
            click.echo(json_line(row))
        return
    widths = [max(len(title), *(len(_cell(row.get(key))) for row in rows)) for key, title in columns] if rows else []
    click.echo("  ".join(title.ljust(width) for (_, title), width in zip(columns, widths)).rstrip())
    for row in rows:
        click.echo("  ".join(_cell(row.get(key)).ljust(width) for (key, _), width in zip(columns, widths)).rstrip())


def _cell(value):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return printable(value)


def _report_errors(records):
    """Print each record's error as one line on stderr; returns how many there were."""
    failed = [record for record in records if "error" in record]
    for record in failed:
        click.echo(f"Error: {printable(record['error'])}", err=True)
    return len(failed)


def _image_files(inputs):
    """The images named and the image files under the folders named (``core.command.input_files``)."""
    from inkvoice.signature.dataset import IMAGE_SUFFIXES, is_image

    return input_files(inputs, is_image, "image files (" + ", ".join(sorted(IMAGE_SUFFIXES)) + ")")


def _load(model):
    from inkvoice.signature.model_file import load_verifier

    return load_verifier(model)


def _progress(count, label, quiet):
    return progress_reporter(count, label, enabled=not quiet and count > 8)


def _load_table(data, writers, parameters, extraction, max_pixels, quiet):
    """(FeatureTable, signatures) of the data folders, only ``writers`` when given; failures are printed."""
    from inkvoice.signature.dataset import load_data_sets, parse_writer_range, select_writers
    from inkvoice.signature.features import load_features

    signatures = load_data_sets(data)
    if writers:
        signatures = select_writers(signatures, parse_writer_range(writers))
    bar, advance = _progress(len(signatures), "features", quiet)
    with bar:
        table = load_features(signatures, parameters, extraction, max_pixels, advance)
    for path, error in table.failures:
        click.echo(f"Error: {printable(error)}", err=True)
    return table, signatures


_pixels_option = click.option("--max-pixels", type=click.IntRange(min=1), default=DEFAULT_MAX_PIXELS,
                              show_default=True,
                              help="Refuse images with more pixels than this (read from the header, before decoding).")
_json_option = click.option("--json", "as_json", is_flag=True,
                            help="Print one JSON object per line (one per input) instead of a table.")
_threshold_option = click.option("--threshold", type=float, default=None,
                                 help="Decision threshold on the score (default: the one stored in the model "
                                      "for the mode).")
_store_option = click.option("--store", metavar="PATH_OR_URL", default=None,
                             help="Enrolment store: an SQLite file, or postgresql://user@host:port/database for one "
                                  "that several processes share; default: MODEL with the suffix .enrol.sqlite.")
_mode_option = click.option("--mode", type=click.Choice(MODES), default=DEFAULT_MODE, show_default=True,
                            help="independent: the trained verifier; dependent: adds a network learnt from the "
                                 "writer's references (>= 4 references).")
_writers_help = ("Writers, e.g. 1-35 or ann,bob; with several DATA folders, FOLDER/WRITER as in cedar/1-35 "
                 "(default: every writer). A writer not in DATA is an error.")


@click.group(cls=ProjectGroup)
@version_option("signature")
def main():
    """Verify signature images against a writer's enrolled references."""


@main.command()
@click.argument("data", type=_FOLDER, nargs=-1, required=True)
@click.option("-o", "--output", type=OutputFile(), required=True,
              help="Model file to write (.npz).")
@click.option("--writers", default=None, help=f"Development writers to learn from. {_writers_help}")
@click.option("--refs", type=click.IntRange(min=1), default=TrainingSettings.n_references, show_default=True,
              help="References per writer in the training comparisons (all but one for writers with fewer).")
@click.option("--draws", type=click.IntRange(min=1), default=TrainingSettings.n_draws, show_default=True,
              help="Random reference sets drawn per development writer.")
@click.option("--hidden", type=CommaList(int, minimum=1, example="64"),
              default=",".join(map(str, TrainingSettings.hidden_sizes)), show_default=True,
              help="Hidden layer sizes, comma-separated.")
@click.option("--cells", type=CommaList(int, minimum=4, example="16,32"),
              default=",".join(map(str, DEFAULT_PARAMETERS["cells"])), show_default=True,
              help="HOG cell sizes in pixels, comma-separated.")
@click.option("--pen-radius", type=click.IntRange(min=0), default=None,
              help="Redraw strokes with this pen radius (stroke-width normalisation; default: off).")
@click.option("--keypoints", type=click.IntRange(min=0, max=1000), default=DEFAULT_PARAMETERS["keypoints"],
              show_default=True,
              help="ORB keypoints per signature matched against the references (0: no keypoint evidence).")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@extraction_options
@_pixels_option
@quiet_option
def train(data, output, writers, refs, draws, hidden, cells, pen_radius, keypoints, seed, extraction, max_pixels,
          quiet):
    """Learn a writer-independent verifier from the signatures in one or more DATA folders.

    Each DATA is a CEDAR folder (full_org/, full_forg/) or a folder per writer holding genuine/
    and optionally forged/ images. With several folders, writers are named FOLDER/WRITER.
    """
    from inkvoice.signature.features import check_parameters
    from inkvoice.signature.model_file import save_verifier
    from inkvoice.signature.training import train_verifier

    parameters = check_parameters({"cells": cells, "pen_radius": pen_radius, "keypoints": keypoints})
    settings = TrainingSettings(n_references=refs, n_draws=draws, hidden_sizes=tuple(hidden))
    table, _ = _load_table(data, writers, parameters, extraction, max_pixels, quiet)
    names = sorted(set(table.writers.tolist()))
    counts = {name: int(np.sum((table.writers == name) & table.genuine)) for name in names}
    short = sorted(name for name, count in counts.items() if count <= refs)
    if short:
        click.echo(f"note: {len(short)} of {len(names)} writers have {refs} or fewer genuine signatures "
                   f"(fewest: {min(counts.values())}); their comparisons use all but one as references", err=True)
    bar, advance = progress_reporter(2 * min(settings.n_folds, len(names)), "training", enabled=not quiet)
    with bar:
        verifier, figures, settings = train_verifier(table.X, table.writers, table.genuine, parameters, settings,
                                                     np.random.default_rng(seed), progress=advance)
    training = {**settings.to_dict(), "seed": seed, "writers": names, "n_signatures": len(table.X),
                "data": [str(folder) for folder in data]}
    save_verifier(output, verifier, training, figures)
    dependent = "-" if verifier.dependent_threshold is None else f"{verifier.dependent_threshold:.3f}"
    click.echo(f"wrote {output}: {len(names)} writers, {len(table.X)} signatures, "
               f"threshold {verifier.threshold:.3f} (writer-dependent {dependent})")
    for key, value in figures.items():
        click.echo(f"  {key}: {_cell(value)}")
    if table.failures:
        sys.exit(1)


_ENROLL_COLUMNS = [("image", "image"), ("status", "status")]


@main.command()
@click.argument("model", type=_PATH)
@click.argument("images", type=_IMAGE, nargs=-1, required=True)
@click.option("--writer", required=True, help="Name of the writer whose references these are.")
@click.option("--min-references", type=click.IntRange(min=1), default=DEFAULT_MIN_REFERENCES, show_default=True,
              help="Fewest references the writer may have after enrolment.")
@_store_option
@_json_option
@extraction_options
@_pixels_option
@quiet_option
def enroll(model, images, writer, min_references, store, as_json, extraction, max_pixels, quiet):
    """Enroll reference IMAGES of a writer (all of them or, if any is unusable, none).

    A folder among IMAGES stands for the image files under it.
    """
    from inkvoice.signature.api import enroll_files

    images, empty_folder = _image_files(images)
    if empty_folder:
        raise DataError(f"nothing enrolled for writer {shorten(writer)!r}: a folder named holds no images")
    bar, advance = _progress(len(images), "features", quiet or as_json)
    with bar:
        answer = enroll_files(model, writer, images, store, extraction=extraction, max_pixels=max_pixels,
                              min_references=min_references, progress=advance)
    failed = _report_errors(answer["images"])
    if as_json:
        for record in answer["images"]:
            click.echo(json_line({"writer": answer["writer"], "enrolled": answer["enrolled"], **record}))
    if failed:
        raise DataError(f"nothing enrolled for writer {shorten(answer['writer'])!r}: "
                        f"fix or leave out the {failed} image(s) above")
    if not as_json:
        already = answer["already"]
        note = f" ({len(already)} already enrolled: {', '.join(already)})" if already else ""
        click.echo(printable(f"writer {shorten(answer['writer'])}: {answer['added']} reference(s) added{note}, "
                             f"{answer['total']} in total"))


_VERDICT_COLUMNS = [("image", "image"), ("verdict", "verdict"), ("score", "score"), ("threshold", "threshold")]


def _print_verdicts(records, as_json, failed=False):
    """Errors on stderr, answers on stdout (with --json every record, errors included); exits 1 on errors."""
    failed = _report_errors(records) or failed
    if as_json:
        _emit(records, True, None)
    else:
        answered = [record for record in records if "error" not in record]
        if answered:
            _emit(answered, False, _VERDICT_COLUMNS)
        for record in answered:
            if "reason" in record:
                click.echo(f"{printable(record['image'])}: {record['verdict']}: {record['reason']}", err=True)
            explanation = record.get("explanation")
            if explanation:
                click.echo(f"{printable(record['image'])}: {explanation['summary']} -> "
                           f"{printable(explanation['png'])}", err=True)
    if failed:
        sys.exit(1)


_explain_option = click.option(
    "--explain", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Write one PNG per query to this folder: the query beside its nearest reference, with the regions "
         "that departed most marked (also reported in --json).")


@main.command()
@click.argument("model", type=_PATH)
@click.argument("images", type=_IMAGE, nargs=-1, required=True)
@click.option("--writer", required=True, help="The writer the images claim to be from.")
@_mode_option
@_threshold_option
@_explain_option
@_store_option
@_json_option
@extraction_options
@_pixels_option
@quiet_option
def verify(model, images, writer, mode, threshold, explain, store, as_json, extraction, max_pixels, quiet):
    """Say whether each of IMAGES is a genuine signature of an enrolled writer.

    A folder among IMAGES stands for the image files under it.
    """
    from inkvoice.signature.api import verify_files

    images, empty_folder = _image_files(images)
    bar, advance = _progress(len(images), "features", quiet or as_json)
    with bar:
        records = verify_files(model, writer, images, store, mode=mode, threshold=threshold, extraction=extraction,
                               max_pixels=max_pixels, explain=explain, progress=advance) if images else []
    _print_verdicts(records, as_json, failed=empty_folder)


@main.command()
@click.argument("model", type=_PATH)
@click.argument("references", type=_IMAGE, nargs=-1, required=True)
@click.argument("query", type=_IMAGE)
@_threshold_option
@_explain_option
@_json_option
@_pixels_option
def compare(model, references, query, threshold, explain, as_json, max_pixels):
    """Compare QUERY with one or more REFERENCES of the same writer, with no enrolment store.

    The stored threshold was chosen for the number of references used in training; with
    fewer references scores are lower, so pass several references or set --threshold.
    """
    from inkvoice.signature.api import compare_files

    verifier, _ = _load(model)
    _print_verdicts(compare_files(verifier, references, query, threshold=threshold, max_pixels=max_pixels,
                                  explain=explain), as_json)


@main.command()
@click.argument("model", type=_PATH)
@click.argument("data", type=_FOLDER)
@click.option("--refs", type=click.IntRange(min=1), default=DEFAULT_REFERENCES, show_default=True,
              help="Genuine references per writer (the first ones); the rest are queries.")
@click.option("--writers", default=None, help=f"Writers to test. {_writers_help}")
@_mode_option
@click.option("--plot", type=OutputFile(), default=None,
              help="Write ROC and DET curves to this PNG (needs matplotlib).")
@_threshold_option
@_json_option
@extraction_options
@_pixels_option
@quiet_option
def evaluate(model, data, refs, writers, mode, plot, threshold, as_json, extraction, max_pixels, quiet):
    """FAR (skilled and random forgeries), FRR, EER and AUC per writer and overall on DATA."""
    from inkvoice.signature.evaluation import evaluate_writers, plot_curves

    verifier, metadata = _load(model)
    table, signatures = _load_table([data], writers, verifier.feature_parameters, extraction, max_pixels,
                                    quiet or as_json)
    trained_on = set(metadata.get("training", {}).get("writers", []))
    if trained_on & {s.writer for s in signatures} and (data / "full_org").is_dir():
        click.echo("warning: some test writers were used in training; figures will be optimistic", err=True)
    result = evaluate_writers(verifier, table.X, table.writers, table.genuine, None, refs, mode, threshold)
    rows = [*result["writers"], result["overall"]]
    columns = [("writer", "writer"), ("n_genuine", "genuine"), ("n_skilled", "skilled"), ("n_random", "random"),
               ("frr", "FRR"), ("far_skilled", "FAR skilled"), ("far_random", "FAR random"), ("eer", "EER"),
               ("auc", "AUC")]
    _emit(rows, as_json, columns)
    overall = result["overall"]
    if not as_json:
        click.echo(f"threshold {overall['threshold']:.3f}; mean of per-writer EERs "
                   f"{_cell(overall['eer_per_writer_mean'])}")
    if plot is not None:
        plot_curves(result["scores"], result["kinds"], plot,
                    title=f"{model.name} on {data.name} ({mode}, {refs} references)", threshold=overall["threshold"])
        click.echo(f"wrote {plot}", err=True)
    if table.failures:
        sys.exit(1)


@main.command()
@click.argument("model", type=_PATH)
@_store_option
@_json_option
def info(model, store, as_json):
    """Show a model's feature settings, thresholds, training and figures (and its store's writers)."""
    from inkvoice.signature.api import default_store, open_enrollment_store
    from inkvoice.signature.enrollment import is_store_url

    verifier, metadata = _load(model)
    training = metadata.get("training", {})
    document = {
        "model": str(model),
        "threshold": verifier.threshold,
        "dependent_threshold": verifier.dependent_threshold,
        "networks": len(verifier.networks),
        "features": metadata["features"],
        "verifier": verifier.config.to_dict(),
        "training": {k: v for k, v in training.items() if k != "writers"},
        "training_writers": len(training.get("writers", [])),
        "figures": metadata.get("figures", {}),
    }
    location = default_store(model) if store is None else store
    if is_store_url(location) or Path(location).is_file():
        with open_enrollment_store(location, verifier, create=False) as database:
            document["enrolled"] = {name: count for name, count in database.writers()}
    if as_json:
        click.echo(json_line(document))
        return
    for key, value in document.items():
        if key == "verifier" and isinstance(value.get("domain"), dict):
            # the limits of what training covered are for the verifier (--json gives them whole)
            domain = value["domain"]
            value = {**value, "domain": {k: v for k, v in domain.items() if not isinstance(v, list)}}
        # names print as written (not as JSON escapes); control characters are escaped
        text = json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else value
        click.echo(printable(f"{key}: {text}"))
