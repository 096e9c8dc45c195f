"""Losses fused with the output layer: each gives the mean loss and its gradient in the logits.

Fusing softmax (or sigmoid) with cross-entropy gives the simple gradient
``probabilities - targets`` and lets the loss be computed from log-sum-exp, which stays finite
for logits of any size. The work itself is one kernel per loss (``core.kernels``).
"""

import numpy as np

from inkvoice.core import kernels
from inkvoice.core.errors import check_choice


def _sigmoid(z):
    """The logistic function through tanh, which never overflows."""
    return 0.5 * (1 + np.tanh(0.5 * z))


class _CrossEntropy:
    name = ""

    def value_correct_and_gradient(self, logits, targets, weights=None):
        """Mean (weighted) loss, number of correctly classified samples, and d loss / d logits.

        The gradient is written over ``logits`` (and returned); ``targets`` are class indices
        of shape (n,), ``weights`` None or one weight per sample in the logits' dtype.
        """
        if weights is None:
            weights = kernels.empty_weights(logits.dtype)
        value, correct = getattr(kernels.active(), self.name)(logits, targets, weights)
        return float(value), int(correct)

    def value_and_gradient(self, logits, targets, weights=None):
        """Mean (weighted) loss and d loss / d logits, leaving ``logits`` untouched."""
        gradient = np.array(logits, order="C")
        if weights is not None:
            weights = np.ascontiguousarray(weights, dtype=gradient.dtype)
        value, _ = self.value_correct_and_gradient(gradient, np.ascontiguousarray(targets, dtype=np.intp), weights)
        return value, gradient

    def __repr__(self):
        return f"{type(self).__name__}()"


class SoftmaxCrossEntropy(_CrossEntropy):
    """Softmax outputs with categorical cross-entropy; targets are class indices."""

    name = "softmax_cross_entropy"

    def n_outputs(self, n_classes):
        return n_classes

    def probabilities(self, logits):
        shifted = logits - logits.max(axis=1, keepdims=True)
        np.exp(shifted, out=shifted)
        shifted /= shifted.sum(axis=1, keepdims=True)
        return shifted


class SigmoidBinaryCrossEntropy(_CrossEntropy):
    """One sigmoid output with binary cross-entropy; targets are 0 or 1 (the positive class)."""

    name = "sigmoid_cross_entropy"

    def n_outputs(self, n_classes):
        return 1

    def probabilities(self, logits):
        positive = _sigmoid(logits[:, 0])
        return np.stack([1 - positive, positive], axis=1)


LOSSES = {cls.name: cls for cls in (SoftmaxCrossEntropy, SigmoidBinaryCrossEntropy)}


def get_loss(name):
    """The loss registered under ``name``."""
    return LOSSES[check_choice("loss", name, tuple(LOSSES))]()
