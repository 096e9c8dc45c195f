"""The ``speech`` command: train, predict, evaluate, info and download."""

import json
import sys
from pathlib import Path

import click

from inkvoice.core.command import OutputFile, ProjectGroup, progress_reporter
from inkvoice.core.errors import DataError

MAX_SECONDS_HELP = "Longest clip accepted, in seconds (longer clips are refused)."
JOBS_HELP = "Worker processes for feature extraction (default: every core)."


def _report_failures(failures):
    for path, error in failures:
        click.echo(f"Error: {error}", err=True)


def _progress(total, label, quiet):
    return progress_reporter(total, label, enabled=not quiet and total > 0)


def _parse_hidden(text):
    try:
        sizes = [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers such as 256 or 256,128; got {text!r}") from None
    if not sizes or any(size < 1 for size in sizes):
        raise click.BadParameter(f"expected positive layer sizes such as 256 or 256,128; got {text!r}")
    return sizes


def _choose_split(dataset, split, test_speaker, test_fraction, seed):
    from inkvoice.speech.dataset import split_indices

    if split == "auto":
        split = "official" if dataset.layout == "fsdd" else "random"
    if split == "none":
        import numpy as np

        return split, np.arange(len(dataset)), np.arange(0)
    return split, *split_indices(dataset, split, test_speaker=test_speaker, test_fraction=test_fraction, seed=seed)


@click.group(cls=ProjectGroup)
def main():
    """Recognise spoken digits (or any small spoken vocabulary) in audio files."""


@main.command()
@click.argument("data", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--output", required=True, type=OutputFile(), help="Model file to write (.npz).")
@click.option("--split", type=click.Choice(["auto", "official", "speaker", "random", "none"]), default="auto", show_default=True,
              help="Held-out test clips: FSDD's official split (takes 0-4), one speaker, a seeded stratified random split, "
                   "or none; auto is official for FSDD names, else random.")
@click.option("--test-speaker", help="The speaker left out with --split speaker.")
@click.option("--test-fraction", type=float, default=0.2, show_default=True, help="Share of clips held out with --split random.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Training epochs (default 40; 15 when fine-tuning).")
@click.option("--hidden", default="256", show_default=True, help="Hidden layer sizes, comma-separated (e.g. 256,128).")
@click.option("--augment/--no-augment", default=True, show_default=True,
              help="Add perturbed copies (speed/pitch, shift, gain, noise) of each training clip.")
@click.option("--copies", type=click.IntRange(0, 50), default=24, show_default=True, help="Perturbed copies per training clip with --augment.")
@click.option("--ensemble", type=click.IntRange(1, 20), default=1, show_default=True,
              help="Networks trained from different initial weights; their probabilities are averaged.")
@click.option("--test-copies", type=click.IntRange(0, 50), default=24, show_default=True,
              help="Perturbed copies of each clip averaged at prediction (test-time augmentation; needs --augment).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for splits, augmentation and weights.")
@click.option("--extra", "extra_folders", multiple=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="More labelled clips (either layout) for training only, never held out; repeatable. The "
                   "project's data/speech voices widen the range of speakers a digit model has heard.")
@click.option("--init", "init_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Fine-tune this model on DATA instead of training from scratch (keeps its labels and features).")
@click.option("--max-seconds", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True, help=MAX_SECONDS_HELP)
@click.option("--jobs", type=click.IntRange(min=1), default=None, help=JOBS_HELP)
@click.option("--no-cache", is_flag=True, help="Do not read or write the feature cache.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def train(data, output, split, test_speaker, test_fraction, epochs, hidden, augment, copies, ensemble, test_copies, seed,
          extra_folders, init_path, max_seconds, jobs, no_cache, quiet):
    """Train a model on the labelled clips in DATA and write it to OUTPUT.

    DATA holds FSDD-named files ({label}_{speaker}_{take}.wav, also in recordings/) or one
    folder per label (DATA/<label>/*.wav).
    """
    from inkvoice.speech.dataset import load_dataset
    from inkvoice.speech.model import SpeechModel, train as train_model

    hidden_sizes = _parse_hidden(hidden)
    dataset = load_dataset(data)
    split, train_indices, test_indices = _choose_split(dataset, split, test_speaker, test_fraction, seed)
    n_clips = len(dataset)
    for folder in extra_folders:
        dataset, train_indices = dataset.with_extra(load_dataset(folder), train_indices)
    n_extra = len(dataset) - n_clips
    init = SpeechModel.load(init_path) if init_path else None
    training = {"hidden_sizes": hidden_sizes, "seed": seed, "epochs": epochs if epochs is not None else (15 if init else 40), "ensemble": ensemble,
                "test_copies": test_copies}
    if init is not None:
        training["learning_rate"] = 3e-4
    augmentation = {"copies": copies} if augment and copies > 0 else None
    bar, advance = _progress(len(train_indices), "features", quiet)
    with bar:
        model, failures = train_model(
            dataset, train_indices, augmentation=augmentation, training=training, init=init,
            max_seconds=max_seconds, n_jobs=jobs, cache=not no_cache, progress=advance,
        )
    _report_failures(failures)
    if init is not None:
        # The figures measured before fine-tuning no longer describe this model.
        model.metadata["figures_before_fine_tuning"] = model.metadata.pop("figures", {})
    figures = {}
    summary = {"clips": n_clips, "train": int(len(train_indices)), "test": int(len(test_indices)),
               "split": split}
    if extra_folders:
        summary["extra"] = {"folders": [folder.resolve().name for folder in extra_folders], "clips": n_extra}
    if len(test_indices):
        report, test_failures = _evaluate(model, dataset.subset(test_indices), max_seconds, jobs, not no_cache, quiet)
        failures += test_failures
        _report_failures(test_failures)
        key = f"{split}_accuracy" if split != "speaker" else f"speaker_{test_speaker}_accuracy"
        figures[key] = round(report["accuracy"], 4)
        summary["test_accuracy"] = round(report["accuracy"], 4)
    model.metadata["figures"] = figures
    model.metadata["data"] = {"name": data.resolve().name, "layout": dataset.layout, **summary}
    model.save(output)
    extra = f", {n_extra} of them from --extra" if n_extra else ""
    click.echo(f"trained on {summary['train']} clips{extra} ({len(model.labels)} labels: {', '.join(model.labels)})")
    if "test_accuracy" in summary:
        click.echo(f"{split} split: test accuracy {summary['test_accuracy']:.4f} on {summary['test']} held-out clips")
    click.echo(f"model written to {output}")
    if failures:
        sys.exit(1)


def _evaluate(model, dataset, max_seconds, jobs, cache, quiet, test_copies=None):
    from inkvoice.speech.evaluation import evaluate_predictions

    bar, advance = _progress(len(dataset), "evaluating", quiet)
    with bar:
        probabilities, failures = model.predict_proba_files(
            dataset.paths, test_copies=test_copies, max_seconds=max_seconds, n_jobs=jobs, cache=cache, progress=advance
        )
    usable = [i for i, p in enumerate(probabilities) if p is not None]
    if not usable:
        raise DataError("no clip could be evaluated: every file failed")
    labels = model.labels
    predicted = [labels[int(probabilities[i].argmax())] for i in usable]
    report = evaluate_predictions(dataset.labels[usable], predicted, dataset.speakers[usable], labels)
    return report, failures


@main.command()
@click.argument("model_path", metavar="MODEL", type=click.Path(exists=True, dir_okay=False, path_type=Path))
# Not exists=True: a missing file is reported like any other bad file and the batch goes on.
@click.argument("inputs", metavar="FILE_OR_DIR...", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--top-k", type=click.IntRange(min=1), default=1, show_default=True, help="Show the k most likely labels.")
@click.option("--min-confidence", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Answer 'unknown' when the best probability is below this.")
@click.option("--test-copies", type=click.IntRange(0, 50), default=None,
              help="Perturbed copies of each clip averaged with it (default: the model's setting; 0: the clip alone).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file on stdout.")
@click.option("--max-seconds", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True, help=MAX_SECONDS_HELP)
@click.option("--jobs", type=click.IntRange(min=1), default=None, help=JOBS_HELP)
def predict(model_path, inputs, top_k, min_confidence, test_copies, as_json, max_seconds, jobs):
    """Say which label MODEL hears in each audio file (folders are searched recursively)."""
    from inkvoice.speech.dataset import is_audio
    from inkvoice.speech.model import SpeechModel

    model = SpeechModel.load(model_path)
    paths = []
    empty_folder = False
    for item in inputs:
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if p.is_file() and is_audio(p))
            if not found:
                click.echo(f"Error: {item}: the folder holds no .wav, .flac or .ogg files", err=True)
                empty_folder = True
            paths.extend(found)
        else:
            paths.append(item)
    probabilities, failures = model.predict_proba_files(paths, test_copies=test_copies, max_seconds=max_seconds, n_jobs=jobs)
    labels = model.labels
    failed = {str(path): error for path, error in failures}
    for path, row in zip(paths, probabilities):
        if row is None:
            error = failed[str(path)]
            if as_json:
                click.echo(json.dumps({"file": str(path), "error": str(error)}))
            click.echo(f"Error: {error}", err=True)
            continue
        order = row.argsort()[::-1][:top_k]
        best = labels[order[0]] if row[order[0]] >= min_confidence else "unknown"
        if as_json:
            record = {"file": str(path), "label": best, "confidence": round(float(row[order[0]]), 4)}
            if top_k > 1:
                record["top"] = [{"label": labels[i], "probability": round(float(row[i]), 4)} for i in order]
            click.echo(json.dumps(record))
        else:
            extra = "  ".join(f"{labels[i]}:{row[i]:.3f}" for i in order[1:])
            click.echo(f"{path}\t{best}\t{row[order[0]]:.3f}" + (f"\t{extra}" if extra else ""))
    if failures or empty_folder:
        sys.exit(1)


@main.command()
@click.argument("model_path", metavar="MODEL", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("data", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--split", type=click.Choice(["all", "official", "speaker", "random"]), default="all", show_default=True,
              help="Evaluate on every clip in DATA, or only on the test part of a split (as in train).")
@click.option("--test-speaker", help="The speaker to evaluate on with --split speaker.")
@click.option("--test-fraction", type=float, default=0.2, show_default=True, help="Test share with --split random.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of --split random (use the training seed).")
@click.option("--test-copies", type=click.IntRange(0, 50), default=None,
              help="Perturbed copies of each clip averaged with it (default: the model's setting; 0: the clip alone).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.option("--confusion-png", type=OutputFile(), help="Also draw the confusion matrix to this PNG.")
@click.option("--curve-png", type=OutputFile(), help="Also draw the model's training curve to this PNG.")
@click.option("--max-seconds", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True, help=MAX_SECONDS_HELP)
@click.option("--jobs", type=click.IntRange(min=1), default=None, help=JOBS_HELP)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def evaluate(model_path, data, split, test_speaker, test_fraction, seed, test_copies, as_json, confusion_png, curve_png,
             max_seconds, jobs, quiet):
    """Measure MODEL on the labelled clips in DATA: accuracy, precision/recall, speakers, confusions."""
    from inkvoice.speech.dataset import load_dataset, split_indices
    from inkvoice.speech.evaluation import format_report, plot_confusion, plot_training_curve
    from inkvoice.speech.model import SpeechModel

    model = SpeechModel.load(model_path)
    dataset = load_dataset(data)
    if split != "all":
        _, test_indices = split_indices(dataset, split, test_speaker=test_speaker, test_fraction=test_fraction, seed=seed)
        dataset = dataset.subset(test_indices)
    report, failures = _evaluate(model, dataset, max_seconds, jobs, True, quiet, test_copies)
    _report_failures(failures)
    if confusion_png:
        plot_confusion(report, confusion_png)
    if curve_png:
        plot_training_curve(model.networks[0].history_.records, curve_png)
    click.echo(json.dumps(report) if as_json else format_report(report))
    if failures:
        sys.exit(1)


@main.command()
@click.argument("model_path", metavar="MODEL", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print everything as one JSON object.")
def info(model_path, as_json):
    """Show what MODEL recognises, how it was trained and its measured figures."""
    from inkvoice.speech.features import feature_length
    from inkvoice.speech.model import SpeechModel

    model = SpeechModel.load(model_path)
    training = {k: v for k, v in model.metadata.get("training", {}).items() if k != "history"}
    document = {
        "labels": model.labels,
        "layers": [int(model.networks[0].n_features_in_), *training.get("hidden_sizes", []), len(model.labels)],
        "n_features": feature_length(model.features),
        "features": model.features,
        "training": training,
        "data": model.metadata.get("data", {}),
        "figures": model.metadata.get("figures", {}),
        "epochs_run": len(model.networks[0].history_.records),
    }
    if as_json:
        click.echo(json.dumps(document))
        return
    click.echo(f"labels     {', '.join(document['labels'])}")
    count = f"{len(model.networks)} x " if len(model.networks) > 1 else ""
    click.echo(f"network    {count}{' -> '.join(str(n) for n in document['layers'])} (relu, softmax)")
    click.echo("features   " + ", ".join(f"{k}={v}" for k, v in model.features.items()))
    for key, value in training.items():
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
    from inkvoice.speech.download import download as fetch_dataset

    folder = fetch_dataset(name, url=url, sha256=sha256, cache_dir=cache_dir, force=force)
    marker = json.loads((folder / "source.json").read_text())
    click.echo(f"sha256 {marker['sha256']}", err=True)
    click.echo(str(folder))
