"""Losses fused with the output layer: each gives the mean loss and its gradient in the logits.

Fusing softmax (or sigmoid) with cross-entropy gives the simple gradient
``probabilities - targets`` and lets the loss be computed from log-sum-exp, which stays finite
for logits of any size.
"""

import numpy as np

from inkvoice.core.errors import check_choice


def _weighted_mean(per_sample, weights):
    if weights is None:
        return float(per_sample.mean())
    return float(np.dot(per_sample, weights) / len(per_sample))


def _scale_gradient(gradient, weights):
    """Divide by the batch size and apply per-sample weights, in place."""
    gradient /= len(gradient)
    if weights is not None:
        gradient *= weights.reshape(-1, *([1] * (gradient.ndim - 1))).astype(gradient.dtype, copy=False)
    return gradient


def _sigmoid(z):
    """The logistic function through tanh, which never overflows."""
    return 0.5 * (1 + np.tanh(0.5 * z))


class SoftmaxCrossEntropy:
    """Softmax outputs with categorical cross-entropy; targets are class indices."""

    name = "softmax_cross_entropy"

    def n_outputs(self, n_classes):
        return n_classes

    def value_and_gradient(self, logits, targets, weights=None):
        """Mean (weighted) loss and d loss / d logits for integer ``targets`` of shape (n,)."""
        shifted = logits - logits.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        sums = exp.sum(axis=1, keepdims=True)
        rows = np.arange(len(targets))
        per_sample = np.log(sums[:, 0]) - shifted[rows, targets]
        exp /= sums
        exp[rows, targets] -= 1
        return _weighted_mean(per_sample, weights), _scale_gradient(exp, weights)

    def probabilities(self, logits):
        shifted = logits - logits.max(axis=1, keepdims=True)
        np.exp(shifted, out=shifted)
        shifted /= shifted.sum(axis=1, keepdims=True)
        return shifted

    def __repr__(self):
        return "SoftmaxCrossEntropy()"


class SigmoidBinaryCrossEntropy:
    """One sigmoid output with binary cross-entropy; targets are 0 or 1 (the positive class)."""

    name = "sigmoid_cross_entropy"

    def n_outputs(self, n_classes):
        return 1

    def value_and_gradient(self, logits, targets, weights=None):
        z = logits[:, 0]
        y = targets.astype(logits.dtype, copy=False)
        # log(1 + exp(-|z|)) + max(z, 0) - z*y is the cross-entropy without overflow.
        per_sample = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
        gradient = (_sigmoid(z) - y)[:, None]
        return _weighted_mean(per_sample, weights), _scale_gradient(gradient, weights)

    def probabilities(self, logits):
        positive = _sigmoid(logits[:, 0])
        return np.stack([1 - positive, positive], axis=1)

    def __repr__(self):
        return "SigmoidBinaryCrossEntropy()"


class MeanSquaredError:
    """Half the mean over samples of the squared error summed over outputs; targets (n, k)."""

    name = "mean_squared_error"

    def n_outputs(self, n_targets):
        return n_targets

    def value_and_gradient(self, logits, targets, weights=None):
        error = logits - targets.reshape(logits.shape).astype(logits.dtype, copy=False)
        per_sample = 0.5 * np.sum(error * error, axis=1)
        return _weighted_mean(per_sample, weights), _scale_gradient(error, weights)

    def probabilities(self, logits):
        return logits

    def __repr__(self):
        return "MeanSquaredError()"


LOSSES = {cls.name: cls for cls in (SoftmaxCrossEntropy, SigmoidBinaryCrossEntropy, MeanSquaredError)}


def get_loss(name):
    """The loss registered under ``name``."""
    return LOSSES[check_choice("loss", name, tuple(LOSSES))]()
