"""Mini-batch training with validation, early stopping, schedules, progress and Ctrl-C."""

import contextlib
import math
from dataclasses import dataclass, field

import numpy as np

from inkvoice.core import kernels
from inkvoice.core.errors import TrainingDiverged, TrainingInterrupted
from inkvoice.core.threads import blas_threads


@dataclass
class TrainingConfig:
    """How ``train`` runs; settings are checked by the callers (``MlpClassifier.fit``).

    Attributes
    ----------
    batch_size : int > 0
    max_epochs : int > 0
    early_stopping : bool
        Stop after ``patience`` epochs without an improvement of at least ``min_delta``
        and restore the weights of the best epoch.
    patience : int > 0
    min_delta : float >= 0
    l2 : float >= 0
        L2 penalty: ``l2 / 2`` times the sum of squared weights is added to the loss.
    n_threads : int > 0 or None
        BLAS threads for the products; None leaves the library's own setting.
    """

    batch_size: int = 64
    max_epochs: int = 200
    early_stopping: bool = True
    patience: int = 10
    min_delta: float = 1e-4
    l2: float = 0.0
    n_threads: int | None = None


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


def evaluate(network, loss, X, targets, sample_weight=None, batch_size=4096):
    """Mean loss and accuracy of ``network`` on a data set, without touching its gradients."""
    logits = network.predict_logits(X, batch_size)
    value, correct = loss.value_correct_and_gradient(logits, targets, sample_weight)
    return value, correct / len(targets)


def train(network, loss, optimizer, X, targets, config=None, *, rng, sample_weight=None, validation=None,
          schedule=None, callback=None, history=None):
    """Train ``network`` in place and return its History.

    Parameters
    ----------
    network : core.network.Mlp
    loss : a loss of ``core.losses``
    optimizer : an optimiser of ``core.optimizers``
    X : ndarray (n_samples, n_features), already in the network's dtype
    targets : ndarray (n_samples,) of class indices
    config : TrainingConfig or None (its defaults)
    rng : numpy.random.Generator
        Shuffles the mini-batches.
    sample_weight : ndarray (n_samples,) in the network's dtype, or None
    validation : tuple (X_val, targets_val[, weights_val]) or None
        Monitored for early stopping; without it the training loss is monitored.
    schedule : object with ``rate_after(epoch, monitored)`` or None
    callback : callable or None
        Called with each epoch's record; returning False stops training.
    history : History or None
        Continue this history (fine-tuning, partial_fit) instead of starting a new one.

    Raises
    ------
    TrainingInterrupted
        On Ctrl-C. The network keeps the best weights so far (with early stopping) or those
        of the last finished epoch, and ``error.history`` says how far training got.
    TrainingDiverged
        When the loss stops being finite. The network keeps the weights of the last epoch
        whose loss was finite, so NaN weights are never kept.
    """
    run = _Run(network, loss, optimizer, config or TrainingConfig(), schedule, callback,
               history if history is not None else History())
    n_updates = _n_updates(run.config, len(X), network.flat_parameters.size)
    threads = contextlib.nullcontext() if run.config.n_threads is None else blas_threads(run.config.n_threads)
    # Overflow shows as a non-finite loss, which raises TrainingDiverged: no numpy warnings first.
    with threads, kernels.using(kernels.active(n_updates)) as chosen, np.errstate(over="ignore", invalid="ignore"):
        chosen.prepare(network.dtype)
        run.epochs(X, targets, rng, sample_weight, validation)
    return run.history


def _n_updates(config, n_samples, n_parameters):
    """Element updates a training will make at most: batch steps times parameters."""
    return math.ceil(n_samples / config.batch_size) * config.max_epochs * n_parameters


class _Run:
    """The state of one call of ``train``: best score and weights, epochs without progress."""

    def __init__(self, network, loss, optimizer, config, schedule, callback, history):
        self.network, self.loss, self.optimizer = network, loss, optimizer
        self.config, self.schedule, self.callback, self.history = config, schedule, callback, history
        self.best_score, self.best_weights, self.waited = math.inf, None, 0
        # The weights at the end of the last finished epoch, to fall back on.
        self.last_good = network.get_weights()

    def epochs(self, X, targets, rng, sample_weight, validation):
        first = len(self.history.records) + 1
        epoch = first
        try:
            for epoch in range(first, first + self.config.max_epochs):
                record = self._epoch(epoch, X, targets, rng, sample_weight, validation)
                if self._finish_epoch(record, epoch - first + 1):
                    break
        except KeyboardInterrupt:
            self.history.interrupted = True
            self._restore()
            raise TrainingInterrupted(epoch, first + self.config.max_epochs - 1, self.history) from None
        self._restore()

    def _epoch(self, epoch, X, targets, rng, sample_weight, validation):
        """One pass over the shuffled training set; returns the epoch's record."""
        n_samples, batch_size = len(X), self.config.batch_size
        order = rng.permutation(n_samples)
        total, correct = 0.0, 0
        batch = np.empty((min(batch_size, n_samples), X.shape[1]), dtype=X.dtype)
        for start in range(0, n_samples, batch_size):
            # Gathering each batch, not a shuffled copy of the whole set, keeps memory flat.
            rows = order[start : start + batch_size]
            inputs = np.take(X, rows, axis=0, out=batch[: len(rows)])
            weights = None if sample_weight is None else sample_weight[rows]
            value, n_correct = self.network.loss_and_gradients(inputs, targets[rows], self.loss, weights,
                                                               self.config.l2)
            self.optimizer.step(*self.network.optimizer_groups())
            total += value * len(rows)
            correct += n_correct
        record = {
            "epoch": epoch,
            "loss": total / n_samples,
            "accuracy": correct / n_samples,
            "val_loss": None,
            "val_accuracy": None,
            "learning_rate": self.optimizer.learning_rate,
        }
        if validation is not None:
            record["val_loss"], record["val_accuracy"] = evaluate(self.network, self.loss, *validation)
        return record

    def _finish_epoch(self, record, n_done):
        """Book-keeping after an epoch; True when training should stop."""
        losses = [record["loss"], record["val_loss"] if record["val_loss"] is not None else 0.0]
        if not all(math.isfinite(value) for value in losses):
            self.network.set_weights(self.last_good)
            raise TrainingDiverged(record["epoch"], record["loss"], record["val_loss"])
        self.history.records.append(record)
        self.last_good[...] = self.network.flat_parameters
        monitored = record["val_loss"] if record["val_loss"] is not None else record["loss"]
        if monitored < self.best_score - self.config.min_delta:
            self.best_score, self.waited, self.history.best_epoch = monitored, 0, record["epoch"]
            if self.config.early_stopping:
                self.best_weights = self.network.get_weights()
        else:
            self.waited += 1
        if self.schedule is not None:
            self.optimizer.learning_rate = self.schedule.rate_after(n_done, monitored)
        if self.callback is not None and self.callback(record) is False:
            return True
        if self.config.early_stopping and self.waited >= self.config.patience:
            self.history.stopped_early = True
            return True
        return False

    def _restore(self):
        """Keep the best epoch's weights (early stopping) or the last finished epoch's."""
        if self.config.early_stopping and self.best_weights is not None:
            self.network.set_weights(self.best_weights)
        else:
            self.network.set_weights(self.last_good)
