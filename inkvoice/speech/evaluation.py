"""Figures of a model on labelled clips: accuracy, per-class precision/recall, per speaker, confusions."""

import numpy as np

from inkvoice.core.errors import DataError, ParameterError
from inkvoice.core.plots import pyplot, save_figure


def evaluate(model, dataset, *, test_copies=None, max_seconds=None, extraction=None, progress=None):
    """Predict every clip of ``dataset`` with ``model`` and measure the answers.

    Clips answered ``unknown`` count as errors (and as ``rejected`` in the report).

    Returns
    -------
    report : dict
        As :func:`evaluate_predictions`, plus ``rejected`` (clips answered unknown).
    failures : list of (path, DataError)

    Raises
    ------
    DataError
        The data set's labels are not the model's (e.g. one label's folder, whose file names
        are not labels), or every file failed.
    """
    from inkvoice.speech.audio import DEFAULT_MAX_SECONDS
    from inkvoice.speech.model import UNKNOWN

    foreign = sorted(set(dataset.labels.tolist()) - set(model.labels))
    if foreign:
        shown = ", ".join(foreign[:8]) + (", ..." if len(foreign) > 8 else "")
        raise DataError(
            f"{dataset.root}: labels {shown} are not among the model's ({', '.join(model.labels)}); evaluate a folder "
            "holding one folder per label (or FSDD-named files) of the model's words"
        )
    records = model.predict_files(dataset.paths, test_copies=test_copies,
                                  max_seconds=DEFAULT_MAX_SECONDS if max_seconds is None else max_seconds,
                                  extraction=extraction, progress=progress)
    failures = [(path, record["error"]) for path, record in zip(dataset.paths, records) if "error" in record]
    usable = [i for i, record in enumerate(records) if "error" not in record]
    if not usable:
        raise DataError(f"{dataset.root}: no clip could be evaluated: every file failed")
    predicted = [records[i]["label"] for i in usable]
    report = evaluate_predictions(dataset.labels[usable], predicted, dataset.speakers[usable], model.labels)
    report["rejected"] = int(sum(label == UNKNOWN for label in predicted))
    return report, failures


def evaluate_predictions(true_labels, predicted_labels, speakers, labels):
    """Accuracy, per-label precision and recall, per-speaker accuracy and the confusion matrix.

    Parameters
    ----------
    true_labels, predicted_labels, speakers : sequences of str, one per clip
    labels : list of str
        Rows and columns of the confusion matrix, in this order (true labels the model does
        not know, and answers such as ``unknown``, are added at the end).

    Returns
    -------
    dict
        ``accuracy``, ``n_clips``, ``labels``, ``confusion`` (rows: true, columns: predicted),
        ``per_label`` (label -> precision, recall, support), ``per_speaker`` (speaker -> accuracy, n).
    """
    true_labels = np.asarray(true_labels).astype(str)
    predicted_labels = np.asarray(predicted_labels).astype(str)
    speakers = np.asarray(speakers).astype(str)
    labels = list(labels) + sorted((set(true_labels.tolist()) | set(predicted_labels.tolist())) - set(labels))
    index = {label: i for i, label in enumerate(labels)}
    confusion = np.zeros((len(labels), len(labels)), dtype=int)
    for true, predicted in zip(true_labels, predicted_labels):
        if predicted in index:
            confusion[index[true], index[predicted]] += 1
    per_label = {}
    for label, i in index.items():
        predicted_count = confusion[:, i].sum()
        support = confusion[i].sum()
        per_label[label] = {
            "precision": float(confusion[i, i] / predicted_count) if predicted_count else 0.0,
            "recall": float(confusion[i, i] / support) if support else 0.0,
            "support": int(support),
        }
    per_speaker = {}
    for speaker in sorted(set(speakers.tolist())):
        chosen = speakers == speaker
        per_speaker[speaker] = {
            "accuracy": float(np.mean(true_labels[chosen] == predicted_labels[chosen])),
            "n": int(chosen.sum()),
        }
    return {
        "accuracy": float(np.mean(true_labels == predicted_labels)) if len(true_labels) else 0.0,
        "n_clips": int(len(true_labels)),
        "labels": labels,
        "confusion": confusion.tolist(),
        "per_label": per_label,
        "per_speaker": per_speaker,
    }


def format_report(report):
    """The report as plain-text tables."""
    rejected = f", {report['rejected']} answered unknown" if report.get("rejected") else ""
    lines = [f"accuracy  {report['accuracy']:.4f}  ({report['n_clips']} clips{rejected})", "", "label      precision  recall  support"]
    for label, row in report["per_label"].items():
        lines.append(f"{label:<10} {row['precision']:>9.3f}  {row['recall']:>6.3f}  {row['support']:>7d}")
    lines += ["", "speaker        accuracy      n"]
    for speaker, row in report["per_speaker"].items():
        lines.append(f"{speaker:<14} {row['accuracy']:>8.3f}  {row['n']:>5d}")
    width = max(5, *(len(label) for label in report["labels"]))
    lines += ["", "confusion (rows: true, columns: predicted)", " " * (width + 1) + " ".join(f"{l:>{width}}" for l in report["labels"])]
    for label, row in zip(report["labels"], report["confusion"]):
        lines.append(f"{label:>{width}} " + " ".join(f"{v:>{width}d}" for v in row))
    return "\n".join(lines)


def plot_confusion(report, path):
    """Write the confusion matrix as a PNG (atomically)."""
    plt = pyplot()
    matrix = np.asarray(report["confusion"])
    figure, axes = plt.subplots(figsize=(1.0 + 0.5 * len(matrix), 0.8 + 0.5 * len(matrix)))
    axes.imshow(matrix, cmap="Blues")
    axes.set_xticks(range(len(matrix)), report["labels"], rotation=45)
    axes.set_yticks(range(len(matrix)), report["labels"])
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(f"accuracy {report['accuracy']:.3f}")
    for (i, j), value in np.ndenumerate(matrix):
        if value:
            axes.text(j, i, str(value), ha="center", va="center", color="white" if value > matrix.max() / 2 else "black", fontsize=8)
    figure.tight_layout()
    save_figure(figure, path)


def plot_training_curve(records, path):
    """Write the loss and accuracy per epoch (training records of the classifier) as a PNG."""
    plt = pyplot()
    if not records:
        raise ParameterError("the model holds no training history to plot")
    epochs = [r["epoch"] for r in records]
    figure, (loss_axes, accuracy_axes) = plt.subplots(1, 2, figsize=(9, 3.5))
    for key, axes in (("loss", loss_axes), ("accuracy", accuracy_axes)):
        axes.plot(epochs, [r.get(key) for r in records], label="training")
        validation = [r.get(f"val_{key}") for r in records]
        if any(v is not None for v in validation):
            axes.plot(epochs, validation, label="validation")
        axes.set_xlabel("epoch")
        axes.set_ylabel(key)
        axes.legend()
    figure.tight_layout()
    save_figure(figure, path)
