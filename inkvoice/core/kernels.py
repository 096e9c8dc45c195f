"""The element-wise work of training, done by compiled kernels or by numpy with the same results.

Matrix products stay with numpy (BLAS). What surrounds them is a dozen small passes per layer
and per optimiser step in numpy, each a separate call and a separate trip through memory; the
compiled kernels (``core.compiled``, numba) fuse them: bias + activation in one pass (relu family),
the activation's derivative with the bias gradient, softmax and cross-entropy with their
gradient and the batch accuracy, the whole Adam or SGD step. Both backends offer the same
functions; the numpy one serves where numba is missing or cannot cache its compiled code, and
for trainings too small to repay loading numba (``choose``).

Prediction never comes here: it is plain numpy and never imports numba.

The environment variable ``INKVOICE_KERNELS`` (``auto``, ``numba`` or ``numpy``) overrides the
choice, for example to rule the compiled kernels out.
"""

import contextlib
import contextvars
import importlib
import os
import time
import warnings

import numpy as np

from inkvoice.core.activations import CODES, get_activation
from inkvoice.core.errors import check_choice

ENVIRONMENT_VARIABLE = "INKVOICE_KERNELS"
CHOICES = ("auto", "numba", "numpy")
# Trainings with fewer element updates than this (batch steps x parameters) stay with numpy
# under "auto": importing numba and loading its cached kernels costs a fresh process one to a
# few seconds, which the compiled kernels repay only over a few thousand batch steps.
SMALL_TRAINING = 2e8
# Forward passes the compiled kernels leave to numpy, with dropout too: on a 128 x 256 batch
# numpy's vectorised tanh (and the sigmoid made from it) ran 6-7 times faster than a compiled
# scalar loop, and numpy's dropout 6 times faster than the compiled one, whose random keep-or-drop
# branch the processor could not predict (it made speech training 15% slower than numpy).
_NUMPY_FORWARD = {CODES["tanh"], CODES["sigmoid"]}
_EMPTY = {}


def _empty(dtype, n_dimensions):
    """An empty array: a kernel's stand-in for None, so that its argument types stay fixed."""
    key = np.dtype(dtype), n_dimensions
    if key not in _EMPTY:
        _EMPTY[key] = np.empty((0,) * n_dimensions, dtype=key[0])
    return _EMPTY[key]


def no_mask(dtype):
    """The argument that stands for "no dropout"."""
    return _empty(dtype, 2)


def empty_weights(dtype):
    """The argument that stands for "no sample weights"."""
    return _empty(dtype, 1)


class NumpyKernels:
    """The kernels written as numpy operations: the reference the compiled ones must match."""

    name = "numpy"

    def prepare(self, dtype):
        """Nothing to compile; returns the seconds spent (0)."""
        return 0.0

    def dense_forward(self, z, bias, activation, noise, keep, output):
        z += bias
        a = activation.forward(z)
        if a is not z:
            z[...] = a
        if noise.size:
            scale = z.dtype.type(1 / keep)
            np.multiply(noise < z.dtype.type(keep), scale, out=noise)
            np.multiply(z, noise, out=output)

    def dense_backward(self, d_output, output, mask, activation, grad_bias):
        if mask.size:
            d_output *= mask
        d_z = activation.backward(output, d_output)
        if d_z is not d_output:
            d_output[...] = d_z
        d_output.sum(axis=0, out=grad_bias)

    def softmax_cross_entropy(self, logits, targets, weights):
        rows = np.arange(len(targets))
        correct = int(np.count_nonzero(logits.argmax(axis=1) == targets))
        logits -= logits.max(axis=1, keepdims=True)
        chosen = logits[rows, targets]
        np.exp(logits, out=logits)
        sums = logits.sum(axis=1, keepdims=True)
        per_sample = np.log(sums[:, 0]) - chosen
        logits /= sums
        logits[rows, targets] -= 1
        _scale_gradient(logits, weights)
        return _weighted_mean(per_sample, weights), correct

    def sigmoid_cross_entropy(self, logits, targets, weights):
        z = logits[:, 0].astype(np.float64)
        y = targets.astype(np.float64)
        # log(1 + exp(-|z|)) + max(z, 0) - z*y is the cross-entropy without overflow.
        per_sample = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
        correct = int(np.count_nonzero((z > 0) == (targets == 1)))
        logits[:, 0] = 0.5 * (1 + np.tanh(0.5 * z)) - y
        _scale_gradient(logits, weights)
        return _weighted_mean(per_sample, weights), correct

    def add_l2(self, weights, gradients, l2):
        gradients += weights.dtype.type(l2) * weights
        return float(np.vdot(weights, weights))

    def adam_update(self, parameter, gradient, first, second, scratch, beta1, beta2, inverse_rate, scaled_epsilon,
                    shrink):
        first -= gradient  # first = beta1 * first + (1 - beta1) * gradient
        first *= beta1
        first += gradient
        np.multiply(gradient, gradient, out=scratch)
        second -= scratch  # second = beta2 * second + (1 - beta2) * gradient**2
        second *= beta2
        second += scratch
        if shrink:
            parameter -= shrink * parameter
        np.sqrt(second, out=scratch)  # step = rate * first / (sqrt(second) + epsilon)
        scratch *= inverse_rate
        scratch += scaled_epsilon
        np.divide(first, scratch, out=scratch)
        parameter -= scratch

    def sgd_update(self, parameter, gradient, velocity, rate, momentum, nesterov):
        velocity *= momentum
        velocity -= rate * gradient
        if nesterov:
            parameter += momentum * velocity - rate * gradient
        else:
            parameter += velocity


def _weighted_mean(per_sample, weights):
    if weights.size == 0:
        return float(per_sample.mean())
    return float(np.dot(per_sample, weights) / len(per_sample))


def _scale_gradient(gradient, weights):
    """Divide by the batch size and apply per-sample weights, in place."""
    gradient /= gradient.dtype.type(len(gradient))
    if weights.size:
        gradient *= weights[:, None]


class NumbaKernels(NumpyKernels):
    """The same kernels compiled by numba (``core.compiled``); weights are scaled in the kernel."""

    name = "numba"

    def __init__(self, compiled):
        self.compiled = compiled

    def prepare(self, dtype):
        """Compile (first time on this machine) or load the kernels for ``dtype``; returns seconds."""
        started = time.perf_counter()
        dtype = np.dtype(dtype)
        one = dtype.type(1)
        z = np.zeros((2, 3), dtype)
        bias, noise, targets = np.zeros(3, dtype), np.full((2, 3), 0.5, dtype), np.zeros(2, np.intp)
        for name in sorted(CODES):
            activation = get_activation(name)
            self.dense_forward(z, bias, activation, no_mask(dtype), 1.0, z)
            self.dense_backward(z, z.copy(), noise, activation, bias)
            self.dense_backward(z, z.copy(), no_mask(dtype), activation, bias)
        for weights in (empty_weights(dtype), np.ones(2, dtype)):
            self.softmax_cross_entropy(z, targets, weights)
            self.sigmoid_cross_entropy(np.zeros((2, 1), dtype), targets, weights)
        self.add_l2(bias, bias.copy(), one)
        self.adam_update(bias, bias.copy(), bias.copy(), bias.copy(), bias.copy(), one, one, one, one, one)
        for nesterov in (False, True):
            self.sgd_update(bias, bias.copy(), bias.copy(), one, one, nesterov)
        return time.perf_counter() - started

    def dense_forward(self, z, bias, activation, noise, keep, output):
        if noise.size or activation.code in _NUMPY_FORWARD:
            super().dense_forward(z, bias, activation, noise, keep, output)
        else:
            self.compiled.dense_forward(z, bias, activation.code)

    def dense_backward(self, d_output, output, mask, activation, grad_bias):
        self.compiled.dense_backward(d_output, output, mask, activation.code, grad_bias)

    def softmax_cross_entropy(self, logits, targets, weights):
        return self.compiled.softmax_cross_entropy(logits, targets, weights)

    def sigmoid_cross_entropy(self, logits, targets, weights):
        return self.compiled.sigmoid_cross_entropy(logits, targets, weights)

    def add_l2(self, weights, gradients, l2):
        return self.compiled.add_l2(weights, gradients, weights.dtype.type(l2))

    def adam_update(self, *arguments):
        self.compiled.adam_update(*arguments)

    def sgd_update(self, parameter, gradient, velocity, rate, momentum, nesterov):
        self.compiled.sgd_update(parameter, gradient, velocity, rate, momentum, bool(nesterov))


NUMPY = NumpyKernels()
_numba = None  # NumbaKernels once loaded, or the reason it could not be (a str)
_current = contextvars.ContextVar("inkvoice_kernels", default=None)


def numba_kernels():
    """The compiled kernels, or None (with a warning, once) when numba cannot provide them."""
    global _numba
    if _numba is None:
        try:
            _numba = NumbaKernels(importlib.import_module("inkvoice.core.compiled"))
        except Exception as error:  # ImportError, or numba refusing to cache (no writable folder)
            _numba = f"{type(error).__name__}: {error}"
            warnings.warn(f"training uses numpy: the compiled kernels are unavailable ({_numba})", stacklevel=2)
    return _numba if isinstance(_numba, NumbaKernels) else None


def requested():
    """The choice in ``INKVOICE_KERNELS`` ("auto" when unset)."""
    value = os.environ.get(ENVIRONMENT_VARIABLE, "auto").strip().lower() or "auto"
    return check_choice(ENVIRONMENT_VARIABLE, value, CHOICES)


def choose(n_updates=None):
    """The kernels for a training of ``n_updates`` element updates (None: a large one).

    "auto" takes the compiled kernels for any training but a small one, and numpy where they
    are unavailable.
    """
    choice = requested()
    if choice == "numpy" or (choice == "auto" and n_updates is not None and n_updates < SMALL_TRAINING):
        return NUMPY
    return numba_kernels() or NUMPY


def active(n_updates=None):
    """The kernels in use: those of the enclosing ``using`` block, else ``choose(n_updates)``."""
    return _current.get() or choose(n_updates)


@contextlib.contextmanager
def using(kernels):
    """Use ``kernels`` inside the block (in this thread and context only)."""
    token = _current.set(kernels)
    try:
        yield kernels
    finally:
        _current.reset(token)
