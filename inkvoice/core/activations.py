"""Activation functions, registered by name so that a model file stores only the name.

Each activation maps pre-activations ``z`` to outputs ``a`` and back-propagates through its
derivative written in terms of ``a``, so a layer only has to keep its output for the
backward pass.
"""

import numpy as np

from inkvoice.core.errors import check_choice


class Activation:
    """Interface: ``forward(z) -> a`` and ``backward(a, d_a) -> d_z``."""

    name = ""
    code = -1  # the number by which the compiled kernels (core.compiled) know the activation

    def forward(self, z):
        """Outputs for pre-activations ``z``; may overwrite ``z`` to save memory."""
        raise NotImplementedError

    def derivative(self, a):
        """da/dz expressed through the outputs ``a``."""
        raise NotImplementedError

    def backward(self, a, d_a):
        """Gradient with respect to ``z`` given the gradient ``d_a``; may overwrite ``d_a``."""
        d_a *= self.derivative(a)
        return d_a

    def __repr__(self):
        return f"{type(self).__name__}()"


class Identity(Activation):
    name = "identity"
    code = 0

    def forward(self, z):
        return z

    def derivative(self, a):
        return np.ones_like(a)

    def backward(self, a, d_a):
        return d_a


class Relu(Activation):
    name = "relu"
    code = 1

    def forward(self, z):
        return np.maximum(z, 0, out=z)

    def derivative(self, a):
        return (a > 0).astype(a.dtype)

    def backward(self, a, d_a):
        return np.multiply(d_a, a > 0, out=d_a)


class LeakyRelu(Activation):
    """ReLU with a small slope (0.01) for negative inputs, so no unit dies completely."""

    name = "leaky_relu"
    code = 2
    slope = 0.01

    def forward(self, z):
        return np.where(z > 0, z, z * z.dtype.type(self.slope))

    def derivative(self, a):
        return np.where(a > 0, a.dtype.type(1), a.dtype.type(self.slope))


class Tanh(Activation):
    name = "tanh"
    code = 3

    def forward(self, z):
        return np.tanh(z, out=z)

    def derivative(self, a):
        return 1 - a * a


class Sigmoid(Activation):
    name = "sigmoid"
    code = 4

    def forward(self, z):
        # 0.5 * (1 + tanh(z / 2)) equals 1 / (1 + exp(-z)) without overflow for large |z|.
        z *= 0.5
        np.tanh(z, out=z)
        z += 1
        z *= 0.5
        return z

    def derivative(self, a):
        return a * (1 - a)


ACTIVATIONS = {cls.name: cls for cls in (Identity, Relu, LeakyRelu, Tanh, Sigmoid)}
CODES = {name: cls.code for name, cls in ACTIVATIONS.items()}


def get_activation(name):
    """The activation registered under ``name``."""
    return ACTIVATIONS[check_choice("activation", name, tuple(ACTIVATIONS))]()
