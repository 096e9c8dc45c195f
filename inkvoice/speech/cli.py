"""The ``speech`` command: train, predict, transcribe, evaluate, info and download."""

import sys
from pathlib import Path

import click

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
from inkvoice.speech.audio import DEFAULT_MAX_SECONDS
from inkvoice.speech.model import (
    DEFAULT_AUGMENTATION_COPIES,
    DEFAULT_TEST_COPIES,
    DEFAULT_TEST_FRACTION,
    DEFAULT_TRAINING,
    FINE_TUNING,
    SPLIT_CHOICES,
)

max_seconds_option = click.option(
    "--max-seconds", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_MAX_SECONDS, show_default=True,
    help="Longest clip accepted, in seconds (longer clips are refused).")
test_copies_option = click.option(
    "--test-copies", type=click.IntRange(0, 50), default=None,
    help="Variants of each clip at other speeds averaged with it (default: the model's setting; 0: the clip alone).")
model_argument = click.argument("model_path", metavar="MODEL", type=click.Path(exists=True, dir_okay=False, path_type=Path))
# Not exists=True: a missing file is reported like any other bad file and the batch goes on.
inputs_argument = click.argument("inputs", metavar="FILE_OR_DIR...", nargs=-1, required=True, type=click.Path(path_type=Path))
min_confidence_option = click.option(
    "--min-confidence", type=click.FloatRange(0, 1), default=0.0, show_default=True,
    help="Also answer 'unknown' when the best word's probability is below this.")


def _report_failures(failures):
    for _, error in failures:
        click.echo(f"Error: {printable(error)}", err=True)


def _progress(total, label, quiet):
    return progress_reporter(total, label, enabled=not quiet and total > 0)


def _audio_files(inputs):
    """The files named and the audio files under the folders named; an empty folder is reported."""
    from inkvoice.speech.dataset import is_audio

    return input_files(inputs, is_audio, ".wav, .flac or .ogg files")


@click.group(cls=ProjectGroup)
@version_option("speech")
def main():
    """Recognise spoken digits (or any small spoken vocabulary) in audio files."""


@main.command()
@click.argument("data", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--output", required=True, type=OutputFile(), help="Model file to write (.npz).")
@click.option("--split", type=click.Choice(SPLIT_CHOICES), default="auto", show_default=True,
              help="Held-out test clips: FSDD's official split (takes 0-4), one speaker, a seeded stratified random split, "
                   "or none. auto: none with --init (every recording of yours trains), else official for FSDD "
                   "names and random for others.")
@click.option("--test-speaker", help="The speaker left out with --split speaker.")
@click.option("--test-fraction", type=float, default=DEFAULT_TEST_FRACTION, show_default=True,
              help="Share of clips held out with --split random.")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help=f"Training epochs (default {DEFAULT_TRAINING['epochs']}; {FINE_TUNING['epochs']} when fine-tuning).")
@click.option("--hidden", type=CommaList(int, minimum=1, example="256 or 256,128"),
              default=",".join(str(n) for n in DEFAULT_TRAINING["hidden_sizes"]), show_default=True,
              help="Hidden layer sizes, comma-separated (e.g. 256,128).")
@click.option("--augment/--no-augment", default=True, show_default=True,
              help="Add perturbed copies (speed, rooms, longer windows, noise, phone band, level) of each training clip, "
                   "and examples of non-speech and non-words the model learns to answer 'unknown'.")
@click.option("--copies", type=click.IntRange(0, 50), default=DEFAULT_AUGMENTATION_COPIES, show_default=True,
              help="Perturbed copies per training clip with --augment.")
@click.option("--ensemble", type=click.IntRange(1, 20), default=DEFAULT_TRAINING["ensemble"], show_default=True,
              help="Networks trained from different initial weights; their probabilities are averaged.")
@click.option("--test-copies", type=click.IntRange(0, 50), default=DEFAULT_TEST_COPIES, show_default=True,
              help="Variants of each clip at other speeds averaged at prediction (test-time augmentation; needs --augment).")
@click.option("--seed", type=int, default=DEFAULT_TRAINING["seed"], show_default=True, help="Seed for splits, augmentation and weights.")
@click.option("--extra", "extra_folders", multiple=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="More labelled clips (either layout) for training only, never held out; repeatable. The "
                   "project's data/speech voices widen the range of speakers a digit model has heard.")
@click.option("--init", "init_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Fine-tune this model on DATA instead of training from scratch (keeps its labels and features); "
                   "every clip in DATA trains unless --split asks for a test set.")
@max_seconds_option
@extraction_options
@quiet_option
def train(data, output, split, test_speaker, test_fraction, epochs, hidden, augment, copies, ensemble, test_copies, seed,
          extra_folders, init_path, max_seconds, extraction, quiet):
    """Train a model on the labelled clips in DATA and write it to OUTPUT.

    DATA holds FSDD-named files ({label}_{speaker}_{take}.wav, also in recordings/) or one
    folder per label (DATA/<label>/*.wav).
    """
    from inkvoice.speech.model import SpeechModel, train_folder

    init = SpeechModel.load(init_path) if init_path else None
    training = {"hidden_sizes": hidden, "ensemble": ensemble}
    if epochs is not None:
        training["epochs"] = epochs
    model, failures = train_folder(
        data, split=split, test_speaker=test_speaker, test_fraction=test_fraction, seed=seed, extra=extra_folders,
        init=init, augment=augment, copies=copies, test_copies=test_copies, training=training,
        max_seconds=max_seconds, extraction=extraction, reporter=lambda label, total: _progress(total, label, quiet),
    )
    _report_failures(failures)
    model.save(output)
    summary = model.metadata["data"]
    extra = f", {summary['extra']['clips']} of them from --extra" if "extra" in summary else ""
    click.echo(f"trained on {summary['train']} clips{extra} ({len(model.labels)} labels: {', '.join(model.labels)})")
    if "test_accuracy" in summary:
        click.echo(f"{summary['split']} split: test accuracy {summary['test_accuracy']:.4f} on {summary['test']} held-out clips")
    click.echo(f"model written to {output}")
    if failures:
        sys.exit(1)


@main.command()
@model_argument
@inputs_argument
@click.option("--top-k", type=click.IntRange(min=1), default=1, show_default=True, help="Show the k most likely labels.")
@min_confidence_option
@test_copies_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file on stdout.")
@max_seconds_option
@extraction_options
@quiet_option
def predict(model_path, inputs, top_k, min_confidence, test_copies, as_json, max_seconds, extraction, quiet):
    """Say which word MODEL hears in each audio file (folders are searched recursively).

    Sounds that are none of the model's words (non-speech, other words, silence) are answered
    'unknown' with the reason.
    """
    from inkvoice.speech.model import SpeechModel

    model = SpeechModel.load(model_path)
    paths, empty_folder = _audio_files(inputs)
    bar, advance = _progress(len(paths), "predicting", quiet or len(paths) < 50)
    with bar:
        records = model.predict_files(paths, top_k=top_k, min_confidence=min_confidence, test_copies=test_copies,
                                      max_seconds=max_seconds, extraction=extraction, progress=advance)
    for record in records:
        if "error" in record:
            _echo_error(record, as_json)
        elif as_json:
            if top_k == 1:
                record = {key: value for key, value in record.items() if key != "top"}
            click.echo(json_line(record))
        else:
            extra = "  ".join(f"{row['label']}:{row['probability']:.3f}" for row in record["top"][1:])
            reason = f"\t({printable(record['reason'])})" if "reason" in record else ""
            click.echo(f"{printable(record['file'])}\t{record['label']}\t{record['confidence']:.3f}"
                       + (f"\t{extra}" if extra else "") + reason)
    if empty_folder or any("error" in record for record in records):
        sys.exit(1)


def _echo_error(record, as_json):
    """A file that could not be used: its record on stdout with --json, and one Error line on stderr."""
    if as_json:
        click.echo(json_line(record))
    click.echo(f"Error: {printable(record['error'])}", err=True)


@main.command()
@model_argument
@inputs_argument
@min_confidence_option
@test_copies_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file on stdout, with each word's times.")
@max_seconds_option
@extraction_options
@quiet_option
def transcribe(model_path, inputs, min_confidence, test_copies, as_json, max_seconds, extraction, quiet):
    """Read the string of words (e.g. a phone number) spoken with short pauses in each audio file.

    Prints the file and the digits; --json adds each word's start and end in seconds, label
    and confidence.
    """
    from inkvoice.speech.model import SpeechModel

    model = SpeechModel.load(model_path)
    paths, empty_folder = _audio_files(inputs)
    bar, advance = _progress(len(paths), "transcribing", quiet or len(paths) < 50)
    with bar:
        records = model.transcribe_files(paths, min_confidence=min_confidence, test_copies=test_copies,
                                         max_seconds=max_seconds, extraction=extraction, progress=advance)
    for record in records:
        if "error" in record:
            _echo_error(record, as_json)
        else:
            click.echo(json_line(record) if as_json else f"{printable(record['file'])}\t{record['digits']}")
    if empty_folder or any("error" in record for record in records):
        sys.exit(1)


@main.command()
@model_argument
@click.argument("data", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--split", type=click.Choice(["all", "official", "speaker", "random"]), default="all", show_default=True,
              help="Evaluate on every clip in DATA, or only on the test part of a split (as in train).")
@click.option("--test-speaker", help="The speaker to evaluate on with --split speaker.")
@click.option("--test-fraction", type=float, default=DEFAULT_TEST_FRACTION, show_default=True, help="Test share with --split random.")
@click.option("--seed", type=int, default=DEFAULT_TRAINING["seed"], show_default=True, help="Seed of --split random (use the training seed).")
@test_copies_option
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.option("--confusion-png", type=OutputFile(), help="Also draw the confusion matrix to this PNG.")
@click.option("--curve-png", type=OutputFile(), help="Also draw the model's training curve to this PNG.")
@max_seconds_option
@extraction_options
@quiet_option
def evaluate(model_path, data, split, test_speaker, test_fraction, seed, test_copies, as_json, confusion_png, curve_png,
             max_seconds, extraction, quiet):
    """Measure MODEL on the labelled clips in DATA: accuracy, precision/recall, speakers, confusions."""
    from inkvoice.speech.dataset import load_dataset, split_indices
    from inkvoice.speech.evaluation import evaluate as evaluate_model, format_report, plot_confusion, plot_training_curve
    from inkvoice.speech.model import SpeechModel

    model = SpeechModel.load(model_path)
    dataset = load_dataset(data)
    if split != "all":
        _, test_indices = split_indices(dataset, split, test_speaker=test_speaker, test_fraction=test_fraction, seed=seed)
        dataset = dataset.subset(test_indices)
    bar, advance = _progress(len(dataset), "evaluating", quiet)
    with bar:
        report, failures = evaluate_model(model, dataset, test_copies=test_copies, max_seconds=max_seconds,
                                          extraction=extraction, progress=advance)
    _report_failures(failures)
    if confusion_png:
        plot_confusion(report, confusion_png)
    if curve_png:
        plot_training_curve(model.networks[0].history_.records, curve_png)
    click.echo(json_line(report) if as_json else format_report(report))
    if failures:
        sys.exit(1)


@main.command()
@model_argument
@click.option("--json", "as_json", is_flag=True, help="Print everything as one JSON object.")
def info(model_path, as_json):
    """Show what MODEL recognises, how it was trained and its measured figures."""
    from inkvoice.speech.model import SpeechModel

    model = SpeechModel.load(model_path)
    document = model.describe()
    if as_json:
        click.echo(json_line(document))
        return
    click.echo(f"labels     {', '.join(document['labels'])}" + ("  (and 'unknown' for anything else)" if document["rejects"] else ""))
    count = f"{len(model.networks)} x " if len(model.networks) > 1 else ""
    click.echo(f"network    {count}{' -> '.join(str(n) for n in document['layers'])} "
               f"({document['activation']}, {document['output']})")
    click.echo("features   " + ", ".join(f"{k}={v}" for k, v in model.features.items()))
    for key, value in document["training"].items():
        click.echo(f"training   {key}={value}")
    for key, value in document["data"].items():
        click.echo(f"data       {key}={value}")
    for key, value in document["figures"].items():
        click.echo(f"figure     {key}={value}")


@main.command()
@click.argument("name", type=click.Choice(["fsdd"]))
@click.option("--url", help="Fetch the archive from here instead (http(s)://, file:// or a local path).")
@click.option("--sha256", help="Expected SHA-256 of the archive (default: the pinned digest of FSDD v1.0.9, "
                                "unless --url is given); a mismatch aborts.")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), help="Folder for data sets (default: the cache's datasets/).")
@click.option("--force", is_flag=True, help="Download again even if the data set is already there.")
def download(name, url, sha256, cache_dir, force):
    """Download a public data set (FSDD) into the cache and print its folder."""
    from inkvoice.speech.download import download as fetch_dataset, recorded_source

    folder = fetch_dataset(name, url=url, sha256=sha256, cache_dir=cache_dir, force=force)
    click.echo(f"sha256 {recorded_source(folder)['sha256']}", err=True)
    click.echo(str(folder))
