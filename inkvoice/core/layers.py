"""Layers with ``forward``/``backward``: a dense layer with its activation, and dropout."""

import numpy as np

from inkvoice.core.activations import get_activation
from inkvoice.core.initializers import get_initializer


class Dense:
    """A fully connected layer ``a = activation(x @ weights + bias)``.

    Parameters
    ----------
    n_inputs, n_outputs : int > 0
    activation : str
        A name from ``core.activations.ACTIVATIONS``.
    rng : numpy.random.Generator
        Source of the initial weights.
    initializer : {"he", "glorot"} or None
        None picks the usual one for the activation.
    dtype : numpy dtype
    """

    def __init__(self, n_inputs, n_outputs, activation, rng, initializer=None, dtype=np.float32):
        self.activation = get_activation(activation)
        self.weights = get_initializer(initializer, self.activation.name)(n_inputs, n_outputs, rng, dtype)
        self.bias = np.zeros(n_outputs, dtype=dtype)
        self.grad_weights = np.zeros_like(self.weights)
        self.grad_bias = np.zeros_like(self.bias)
        self._inputs = None
        self._outputs = None

    def parameters(self):
        return [self.weights, self.bias]

    def gradients(self):
        return [self.grad_weights, self.grad_bias]

    def forward(self, x, training=False):
        z = x @ self.weights
        z += self.bias
        a = self.activation.forward(z)
        if training:
            self._inputs, self._outputs = x, a
        return a

    def backward(self, d_a, need_input_gradient=True):
        """Store the parameter gradients and return the gradient with respect to the input."""
        d_z = self.activation.backward(self._outputs, d_a)
        np.matmul(self._inputs.T, d_z, out=self.grad_weights)
        d_z.sum(axis=0, out=self.grad_bias)
        return d_z @ self.weights.T if need_input_gradient else None

    def __repr__(self):
        n_inputs, n_outputs = self.weights.shape
        return f"Dense({n_inputs}, {n_outputs}, activation={self.activation.name!r})"


class Dropout:
    """Inverted dropout: zero a fraction ``rate`` of inputs in training and rescale the rest."""

    def __init__(self, rate, rng):
        self.rate = rate
        self.rng = rng
        self._mask = None

    def parameters(self):
        return []

    def gradients(self):
        return []

    def forward(self, x, training=False):
        if not training or self.rate == 0:
            self._mask = None
            return x
        keep = 1.0 - self.rate
        self._mask = (self.rng.random(x.shape, dtype=x.dtype) < keep) * x.dtype.type(1.0 / keep)
        return x * self._mask

    def backward(self, d_a, need_input_gradient=True):
        return d_a if self._mask is None else d_a * self._mask

    def __repr__(self):
        return f"Dropout({self.rate})"
