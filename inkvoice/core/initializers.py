"""Weight initialisation: He for the ReLU family, Glorot for saturating activations."""

import numpy as np

from inkvoice.core.errors import check_choice


def he_normal(n_inputs, n_outputs, rng, dtype=np.float32):
    """Normal weights with variance 2 / fan_in (He et al., 2015), suited to ReLU units."""
    return (rng.standard_normal((n_inputs, n_outputs)) * np.sqrt(2.0 / n_inputs)).astype(dtype)


def glorot_uniform(n_inputs, n_outputs, rng, dtype=np.float32):
    """Uniform weights with variance 2 / (fan_in + fan_out) (Glorot & Bengio, 2010)."""
    limit = np.sqrt(6.0 / (n_inputs + n_outputs))
    return rng.uniform(-limit, limit, (n_inputs, n_outputs)).astype(dtype)


INITIALIZERS = {"he": he_normal, "glorot": glorot_uniform}
DEFAULT_INITIALIZER = {"relu": "he", "leaky_relu": "he", "tanh": "glorot", "sigmoid": "glorot", "identity": "glorot"}


def get_initializer(name, activation):
    """The initialiser called ``name``, or the usual one for ``activation`` when ``name`` is None."""
    if name is None:
        name = DEFAULT_INITIALIZER[activation]
    return INITIALIZERS[check_choice("initializer", name, tuple(INITIALIZERS))]
