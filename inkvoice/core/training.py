"""Mini-batch training with validation, early stopping, schedules, progress and clean Ctrl-C."""

import contextlib
import math
from dataclasses import dataclass, field

import numpy as np

from inkvoice.core.threads import blas_threads


@dataclass
class History:
    """What happened during training, one record per epoch.

    Each record holds ``epoch``, ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy`` and
    ``learning_rate`` (validation entries are None without validation data).
    """

    records: list = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False
    interrupted: bool = False

    def column(self, name):
        return [record[name] for record in self.records]

    def to_dict(self):
        return {
            "records": self.records,
            "best_epoch": self.best_epoch,
            "stopped_early": self.stopped_early,
            "interrupted": self.interrupted,
        }

    @classmethod
    def from_dict(cls, data):
        return cls(
            records=list(data.get("records", [])),
            best_epoch=int(data.get("best_epoch", 0)),
            stopped_early=bool(data.get("stopped_early", False)),
            interrupted=bool(data.get("interrupted", False)),
        )


def _accuracy(loss, logits, targets):
    if loss.name == "mean_squared_error":
        return None
    predicted = logits[:, 0] > 0 if logits.shape[1] == 1 else logits.argmax(axis=1)
    return np.count_nonzero(predicted == targets) / len(targets)


def evaluate(network, loss, X, targets, sample_weight=None, batch_size=4096):
    """Mean loss and accuracy of ``network`` on a data set, without touching its gradients."""
    logits = network.predict_logits(X, batch_size)
    value, _ = loss.value_and_gradient(logits, targets, sample_weight)
    return value, _accuracy(loss, logits, targets)


def train(
    network,
    loss,
    optimizer,
    X,
    targets,
    *,
    rng,
    sample_weight=None,
    validation=None,
    batch_size=64,
    max_epochs=200,
    early_stopping=True,
    patience=10,
    min_delta=1e-4,
    l2=0.0,
    schedule=None,
    callback=None,
    history=None,
    n_threads=None,
):
    """Train ``network`` in place and return its History.

    Parameters
    ----------
    X : ndarray (n_samples, n_features), already in the network's dtype
    targets : ndarray
        What ``loss`` expects: class indices for cross-entropy, values for squared error.
    rng : numpy.random.Generator
        Shuffles the mini-batches.
    validation : tuple (X_val, targets_val[, weights_val]) or None
        Monitored for early stopping; without it the training loss is monitored.
    early_stopping : bool
        Stop after ``patience`` epochs without an improvement of at least ``min_delta``
        and restore the weights of the best epoch.
    schedule : object with ``rate_after(epoch, monitored)`` or None
    callback : callable or None
        Called with each epoch's record; returning False stops training.
    history : History or None
        Continue this history (fine-tuning, partial_fit) instead of starting a new one.
    n_threads : int or None
        BLAS threads for the products; None leaves the library's own setting.

    Ctrl-C ends training cleanly: the best weights so far are kept and the history says so.
    """
    history = history if history is not None else History()
    with contextlib.nullcontext() if n_threads is None else blas_threads(n_threads):
        _run_epochs(network, loss, optimizer, X, targets, rng, sample_weight, validation, batch_size, max_epochs,
                    early_stopping, patience, min_delta, l2, schedule, callback, history)
    return history


def _run_epochs(network, loss, optimizer, X, targets, rng, sample_weight, validation, batch_size, max_epochs,
                early_stopping, patience, min_delta, l2, schedule, callback, history):
    first_epoch = len(history.records) + 1
    n_samples = len(X)
    best_score, best_weights, waited = math.inf, None, 0
    try:
        for epoch in range(first_epoch, first_epoch + max_epochs):
            order = rng.permutation(n_samples)
            total, batch_accuracies = 0.0, []
            for start in range(0, n_samples, batch_size):
                # Gathering each batch, not a shuffled copy of the whole set, keeps memory flat.
                rows = order[start : start + batch_size]
                batch_targets = targets[rows]
                batch_weights = None if sample_weight is None else sample_weight[rows]
                value, logits = network.loss_and_gradients(X[rows], batch_targets, loss, batch_weights, l2)
                optimizer.step(*network.optimizer_groups())
                total += value * len(logits)
                batch_accuracies.append(_accuracy(loss, logits, batch_targets))
            record = {
                "epoch": epoch,
                "loss": total / n_samples,
                "accuracy": None if batch_accuracies[0] is None else _batch_mean(batch_accuracies, n_samples, batch_size),
                "val_loss": None,
                "val_accuracy": None,
                "learning_rate": optimizer.learning_rate,
            }
            if validation is not None:
                record["val_loss"], record["val_accuracy"] = evaluate(network, loss, *validation)
            history.records.append(record)
            monitored = record["val_loss"] if validation is not None else record["loss"]
            if not math.isfinite(monitored):
                break
            if monitored < best_score - min_delta:
                best_score, waited, history.best_epoch = monitored, 0, epoch
                if early_stopping:
                    best_weights = network.get_weights()
            else:
                waited += 1
            if schedule is not None:
                optimizer.learning_rate = schedule.rate_after(epoch - first_epoch + 1, monitored)
            if callback is not None and callback(record) is False:
                break
            if early_stopping and waited >= patience:
                history.stopped_early = True
                break
    except KeyboardInterrupt:
        history.interrupted = True
    if early_stopping and best_weights is not None:
        network.set_weights(best_weights)


def _batch_mean(batch_accuracies, n_samples, batch_size):
    """Sample-weighted mean of per-batch accuracies (the last batch may be smaller)."""
    sizes = [min(batch_size, n_samples - i * batch_size) for i in range(len(batch_accuracies))]
    return float(np.dot(batch_accuracies, sizes) / n_samples)
