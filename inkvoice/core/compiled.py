"""Training kernels compiled by numba: each fuses what numpy would do in several passes.

Imported only through ``core.kernels``, which falls back to numpy equivalents when numba is
missing or cannot cache compiled code. Every kernel releases the GIL (``nogil``) so that the
optimisers can share large arrays between threads, and is cached on disk (``cache=True``):
the first training on a machine compiles them once (a few seconds), later ones load them.
Scalars come in the arrays' own dtype, so float32 arithmetic stays float32 as in numpy.
"""

import math

import numba
import numpy as np

from inkvoice.core.activations import CODES

RELU, LEAKY_RELU, TANH, SIGMOID = (CODES[name] for name in ("relu", "leaky_relu", "tanh", "sigmoid"))
LEAKY_SLOPE = 0.01

jit = numba.njit(cache=True, nogil=True, error_model="numpy")


@jit
def dense_forward(z, bias, code):
    """``z`` (n, m) becomes ``activation(z + bias)`` in place, for the piecewise-linear activations
    (identity, relu, leaky relu): one branch-free loop per activation, which the compiler turns
    into vector instructions. Tanh, sigmoid and dropout stay with numpy (``core.kernels``),
    whose vectorised tanh and comparisons beat a compiled scalar loop several times."""
    n, m = z.shape
    zero, slope = bias.dtype.type(0), bias.dtype.type(LEAKY_SLOPE)
    for i in range(n):
        row = z[i]
        if code == RELU:
            for j in range(m):
                value = row[j] + bias[j]
                row[j] = value if value > zero else value * zero  # NaN stays NaN, as in numpy
        elif code == LEAKY_RELU:
            for j in range(m):
                value = row[j] + bias[j]
                row[j] = value if value > zero else value * slope
        else:
            for j in range(m):
                row[j] = row[j] + bias[j]


@jit
def dense_backward(d_output, output, mask, code, grad_bias):
    """``d_output`` (n, m) becomes the gradient in ``z`` in place (through the dropout ``mask``
    when not empty and the activation's derivative at ``output``); ``grad_bias`` its column sums.
    One loop per step and activation, each free of branches the compiler cannot vectorise."""
    n, m = d_output.shape
    dropout = mask.shape[0] > 0
    zero, one, slope = grad_bias.dtype.type(0), grad_bias.dtype.type(1), grad_bias.dtype.type(LEAKY_SLOPE)
    grad_bias[:] = 0
    for i in range(n):
        d = d_output[i]
        a = output[i]
        if dropout:
            kept = mask[i]
            for j in range(m):
                d[j] *= kept[j]
        if code == RELU:
            for j in range(m):
                d[j] = d[j] if a[j] > zero else d[j] * zero
        elif code == LEAKY_RELU:
            for j in range(m):
                d[j] = d[j] if a[j] > zero else d[j] * slope
        elif code == TANH:
            for j in range(m):
                d[j] *= one - a[j] * a[j]
        elif code == SIGMOID:
            for j in range(m):
                d[j] *= a[j] * (one - a[j])
        for j in range(m):
            grad_bias[j] += d[j]


@jit
def softmax_cross_entropy(logits, targets, weights):
    """Weighted mean loss and correct count; ``logits`` becomes d loss / d logits in place."""
    n, k = logits.shape
    weighted = weights.shape[0] > 0
    total = 0.0
    correct = 0
    for i in range(n):
        best = 0
        top = logits[i, 0]
        for j in range(1, k):
            if logits[i, j] > top:
                top = logits[i, j]
                best = j
        target = targets[i]
        chosen = logits[i, target]
        sums = 0.0
        for j in range(k):
            value = np.exp(logits[i, j] - top)
            logits[i, j] = value
            sums += value
        weight = weights[i] if weighted else 1.0
        total += weight * (math.log(sums) - (chosen - top))
        factor = weight / (n * sums)
        for j in range(k):
            logits[i, j] = logits[i, j] * factor
        logits[i, target] -= weight / n
        correct += best == target
    return total / n, correct


@jit
def sigmoid_cross_entropy(logits, targets, weights):
    """Weighted mean loss and correct count of one sigmoid output; ``logits`` (n, 1) becomes
    d loss / d logits in place."""
    n = logits.shape[0]
    weighted = weights.shape[0] > 0
    total = 0.0
    correct = 0
    for i in range(n):
        z = float(logits[i, 0])
        y = float(targets[i])
        weight = weights[i] if weighted else 1.0
        # log(1 + exp(-|z|)) + max(z, 0) - z*y is the cross-entropy without overflow.
        total += weight * (max(z, 0.0) - z * y + math.log1p(math.exp(-abs(z))))
        logits[i, 0] = (0.5 * (1 + math.tanh(0.5 * z)) - y) * weight / n
        correct += (z > 0) == (targets[i] == 1)
    return total / n, correct


@jit
def add_l2(weights, gradients, l2):
    """Add ``l2 * weights`` to ``gradients``; return the sum of squared weights."""
    total = 0.0
    for i in range(weights.shape[0]):
        value = weights[i]
        total += value * value
        gradients[i] += l2 * value
    return total


@jit
def adam_update(parameter, gradient, first, second, scratch, beta1, beta2, inverse_rate, scaled_epsilon, shrink):
    """One Adam step over flat arrays in one pass, in the same float order as the numpy version."""
    for i in range(parameter.shape[0]):
        g = gradient[i]
        m = (first[i] - g) * beta1 + g
        squared = g * g
        v = (second[i] - squared) * beta2 + squared
        first[i] = m
        second[i] = v
        p = parameter[i]
        p -= shrink * p
        parameter[i] = p - m / (np.sqrt(v) * inverse_rate + scaled_epsilon)


@jit
def sgd_update(parameter, gradient, velocity, rate, momentum, nesterov):
    """One step of SGD with (Nesterov) momentum over flat arrays in one pass."""
    for i in range(parameter.shape[0]):
        step = rate * gradient[i]
        v = velocity[i] * momentum - step
        velocity[i] = v
        parameter[i] += momentum * v - step if nesterov else v
