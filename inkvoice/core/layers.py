"""The dense layer: ``forward``/``backward`` of a fully connected layer, its activation and dropout."""

import numpy as np

from inkvoice.core import kernels
from inkvoice.core.activations import get_activation
from inkvoice.core.initializers import get_initializer


class Dense:
    """A fully connected layer ``a = activation(x @ weights + bias)``, with inverted dropout on
    its outputs during training (a fraction ``dropout`` zeroed, the rest rescaled).

    Parameters
    ----------
    n_inputs, n_outputs : int > 0
    activation : str
        A name from ``core.activations.ACTIVATIONS``.
    rng : numpy.random.Generator
        Source of the initial weights and of the dropout masks.
    initializer : {"he", "glorot"} or None
        None picks the usual one for the activation.
    dtype : numpy dtype
    dropout : float in [0, 1)

    In training the products go to BLAS and the rest to fused kernels (``core.kernels``),
    into buffers the layer keeps between batches: an output of ``forward(..., training=True)``
    is valid until the next training step. Prediction (``training=False``) is plain numpy.
    """

    def __init__(self, n_inputs, n_outputs, activation, rng, initializer=None, dtype=np.float32, dropout=0.0):
        self.activation = get_activation(activation)
        self.weights = get_initializer(initializer, self.activation.name)(n_inputs, n_outputs, rng, dtype)
        self.bias = np.zeros(n_outputs, dtype=dtype)
        self.grad_weights = np.zeros_like(self.weights)
        self.grad_bias = np.zeros_like(self.bias)
        self.dropout = dropout
        self.rng = rng
        self._clear()

    def _clear(self):
        self._inputs = self._outputs = self._mask = None
        self._buffers = {}

    def __getstate__(self):
        state = dict(self.__dict__)
        state.update(_inputs=None, _outputs=None, _mask=None, _buffers={})
        return state

    def _buffer(self, name, n_rows, n_columns):
        """A work array of ``n_rows`` rows, reused from batch to batch."""
        buffer = self._buffers.get(name)
        if buffer is None or len(buffer) < n_rows:
            buffer = self._buffers[name] = np.empty((n_rows, n_columns), dtype=self.bias.dtype)
        return buffer[:n_rows]

    def parameters(self):
        return [self.weights, self.bias]

    def gradients(self):
        return [self.grad_weights, self.grad_bias]

    def forward(self, x, training=False):
        if not training:
            z = x @ self.weights
            z += self.bias
            return self.activation.forward(z)
        n_rows, n_outputs = len(x), len(self.bias)
        z = np.matmul(x, self.weights, out=self._buffer("z", n_rows, n_outputs))
        output, mask = z, kernels.no_mask(z.dtype)
        if self.dropout > 0:
            mask = self.rng.random(dtype=z.dtype, out=self._buffer("mask", n_rows, n_outputs))
            output = self._buffer("output", n_rows, n_outputs)
        kernels.active().dense_forward(z, self.bias, self.activation, mask, 1.0 - self.dropout, output)
        self._inputs, self._outputs, self._mask = x, z, mask
        return output

    def backward(self, d_output, need_input_gradient=True):
        """Store the parameter gradients and return the gradient with respect to the input.

        ``d_output`` is overwritten (it becomes the gradient in the pre-activations).
        """
        kernels.active().dense_backward(d_output, self._outputs, self._mask, self.activation, self.grad_bias)
        np.matmul(self._inputs.T, d_output, out=self.grad_weights)
        if not need_input_gradient:
            return None
        return np.matmul(d_output, self.weights.T, out=self._buffer("d_input", len(d_output), len(self.weights)))

    def __repr__(self):
        n_inputs, n_outputs = self.weights.shape
        dropout = f", dropout={self.dropout}" if self.dropout else ""
        return f"Dense({n_inputs}, {n_outputs}, activation={self.activation.name!r}{dropout})"
