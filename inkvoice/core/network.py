"""The multilayer perceptron: dense layers (with optional dropout) and the objective's gradients."""

import numpy as np

from inkvoice.core import kernels
from inkvoice.core.layers import Dense


class Mlp:
    """A stack of dense layers ending in a linear output layer that a fused loss reads.

    Parameters
    ----------
    layer_sizes : sequence of int > 0
        Input size, each hidden size, output size.
    activation : str
        Activation of the hidden layers.
    rng : numpy.random.Generator
        Initial weights and dropout masks.
    dropout : float in [0, 1)
        Fraction of each hidden layer's outputs dropped during training.
    dtype : numpy dtype
    """

    def __init__(self, layer_sizes, activation, rng, dropout=0.0, dtype=np.float32):
        self.layer_sizes = [int(size) for size in layer_sizes]
        self.activation = activation
        self.dropout = dropout
        self.dtype = np.dtype(dtype)
        self.layers = []
        last = len(self.layer_sizes) - 2
        for index, (n_in, n_out) in enumerate(zip(self.layer_sizes[:-1], self.layer_sizes[1:])):
            output = index == last
            self.layers.append(Dense(n_in, n_out, "identity" if output else activation, rng, dtype=dtype,
                                     dropout=0.0 if output else dropout))
        self._pack()

    def _pack(self):
        """Move all weights, then all biases, into one flat array (and the gradients likewise).

        The layers keep views into it, so an optimiser updates every parameter with a few
        whole-array operations instead of a dozen per layer: for small networks the Python
        overhead per operation, not arithmetic, is what costs.
        """
        dense = self.layers
        pieces = [layer.weights for layer in dense] + [layer.bias for layer in dense]
        self.flat_parameters = np.concatenate([piece.ravel() for piece in pieces])
        self.flat_gradients = np.zeros_like(self.flat_parameters)
        self.n_weights = sum(layer.weights.size for layer in dense)
        offset = 0
        for attribute, gradient in (("weights", "grad_weights"), ("bias", "grad_bias")):
            for layer in dense:
                shape = getattr(layer, attribute).shape
                size = int(np.prod(shape))
                setattr(layer, attribute, self.flat_parameters[offset : offset + size].reshape(shape))
                setattr(layer, gradient, self.flat_gradients[offset : offset + size].reshape(shape))
                offset += size
        n = self.n_weights
        self._groups = (
            [self.flat_parameters[:n], self.flat_parameters[n:]],
            [self.flat_gradients[:n], self.flat_gradients[n:]],
            [True, False],
        )

    def __setstate__(self, state):
        # copy.deepcopy and pickle copy each layer's view as an array of its own; re-pack so
        # the layers and the flat buffer the optimiser updates are one memory again.
        self.__dict__.update(state)
        self._pack()

    def optimizer_groups(self):
        """(parameters, gradients, decay) for an optimiser: weights and biases as two flat arrays.

        ``decay`` tells which groups weight decay applies to (weights, not biases).
        """
        return self._groups

    @property
    def dense_layers(self):
        return self.layers

    def parameters(self):
        """Weights and biases of every layer, in order, as the arrays themselves."""
        return [p for layer in self.layers for p in layer.parameters()]

    def gradients(self):
        return [g for layer in self.layers for g in layer.gradients()]

    def forward(self, X, training=False):
        """Output-layer logits for ``X`` of shape (n_samples, n_inputs)."""
        a = X
        for layer in self.layers:
            a = layer.forward(a, training)
        return a

    def backward(self, d_logits):
        """Back-propagate the gradient of the loss in the logits, filling every layer's gradients."""
        d = d_logits
        for position, layer in enumerate(reversed(self.layers)):
            d = layer.backward(d, need_input_gradient=position < len(self.layers) - 1)

    def loss_and_gradients(self, X, targets, loss, sample_weight=None, l2=0.0):
        """The training objective on one batch, with every parameter's gradient filled in.

        The objective is the mean (weighted) loss plus ``l2 / 2`` times the sum of squared
        weights (biases are not penalised). Returns ``(objective, n_correct)``, the number of
        samples of the batch the network classified right before this step.
        """
        logits = self.forward(X, training=True)
        value, n_correct = loss.value_correct_and_gradient(logits, targets, sample_weight)
        self.backward(logits)  # the loss left its gradient in place of the logits
        if l2:
            (weights, _), (grad_weights, _), _ = self._groups
            squares = kernels.active().add_l2(weights, grad_weights, l2)
            value += 0.5 * l2 * squares
        return value, n_correct

    def predict_logits(self, X, batch_size=4096):
        """Logits in batches, so that large inputs do not need one huge activation matrix."""
        X = np.asarray(X, dtype=self.dtype)
        if len(X) <= batch_size:
            return self.forward(X)
        return np.concatenate([self.forward(X[i : i + batch_size]) for i in range(0, len(X), batch_size)])

    def get_weights(self):
        """A copy of all parameters (for restoring the best epoch)."""
        return self.flat_parameters.copy()

    def set_weights(self, weights):
        self.flat_parameters[...] = weights

    def __repr__(self):
        return "Mlp(" + ", ".join(repr(layer) for layer in self.layers) + ")"
