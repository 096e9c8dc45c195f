"""Every analytic gradient of the core against central differences in float64."""

import numpy as np
import pytest

from inkvoice.core.activations import ACTIVATIONS, get_activation
from inkvoice.core.estimator import MlpClassifier
from inkvoice.core.layers import Dense
from inkvoice.core.losses import LOSSES, get_loss
from inkvoice.core.network import Mlp

TOLERANCE = 1e-6


def relative_error(analytic, numeric):
    return np.linalg.norm(analytic - numeric) / max(np.linalg.norm(analytic) + np.linalg.norm(numeric), 1e-12)


def numeric_gradient(function, array, step=1e-6):
    """Central differences of the scalar ``function()`` with respect to every entry of ``array``."""
    gradient = np.zeros_like(array)
    for index in np.ndindex(array.shape):
        saved = array[index]
        array[index] = saved + step
        plus = function()
        array[index] = saved - step
        minus = function()
        array[index] = saved
        gradient[index] = (plus - minus) / (2 * step)
    return gradient


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_gradient(name):
    rng = np.random.default_rng(1)
    z = rng.normal(size=(6, 5))
    upstream = rng.normal(size=(6, 5))
    activation = get_activation(name)
    analytic = activation.backward(activation.forward(z.copy()), upstream.copy())
    numeric = numeric_gradient(lambda: float(np.sum(activation.forward(z.copy()) * upstream)), z)
    assert relative_error(analytic, numeric) < TOLERANCE


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_dense_layer_gradients(activation):
    rng = np.random.default_rng(2)
    layer = Dense(4, 3, activation, rng, dtype=np.float64)
    layer.bias[:] = rng.normal(size=3)
    x = rng.normal(size=(5, 4))
    upstream = rng.normal(size=(5, 3))

    def objective():
        return float(np.sum(layer.forward(x) * upstream))

    layer.forward(x, training=True)
    d_x = layer.backward(upstream.copy())
    assert relative_error(layer.grad_weights, numeric_gradient(objective, layer.weights)) < TOLERANCE
    assert relative_error(layer.grad_bias, numeric_gradient(objective, layer.bias)) < TOLERANCE
    assert relative_error(d_x, numeric_gradient(objective, x)) < TOLERANCE


def loss_targets(name, rng, n_samples, n_outputs):
    if name == "softmax_cross_entropy":
        return rng.integers(0, n_outputs, n_samples)
    if name == "sigmoid_cross_entropy":
        return rng.integers(0, 2, n_samples)
    return rng.normal(size=(n_samples, n_outputs))


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("weighted", [False, True])
def test_loss_gradient(name, weighted):
    rng = np.random.default_rng(3)
    loss = get_loss(name)
    n_outputs = loss.n_outputs(4)
    logits = rng.normal(scale=3, size=(7, n_outputs))
    targets = loss_targets(name, rng, 7, n_outputs)
    weights = rng.uniform(0.2, 3, 7) if weighted else None
    _, analytic = loss.value_and_gradient(logits.copy(), targets, weights)
    numeric = numeric_gradient(lambda: loss.value_and_gradient(logits.copy(), targets, weights)[0], logits)
    assert relative_error(analytic, numeric) < TOLERANCE


@pytest.mark.parametrize(
    "name, wrong_targets", [("softmax_cross_entropy", [1, 0]), ("sigmoid_cross_entropy", [0, 1])]
)
def test_cross_entropy_is_finite_for_huge_logits(name, wrong_targets):
    loss = get_loss(name)
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 5.0]])[:, : loss.n_outputs(3)]
    value, gradient = loss.value_and_gradient(logits, np.array(wrong_targets))
    assert np.isfinite(value) and value > 1000
    assert np.all(np.isfinite(gradient))
    assert np.all(np.isfinite(loss.probabilities(logits)))


def test_whole_network_gradient_with_l2_and_class_weights():
    rng = np.random.default_rng(4)
    network = Mlp([5, 6, 4, 3], "tanh", rng, dropout=0.0, dtype=np.float64)
    for layer in network.dense_layers:
        layer.bias[:] = rng.normal(size=layer.bias.shape)
    loss = get_loss("softmax_cross_entropy")
    X = rng.normal(size=(8, 5))
    targets = rng.integers(0, 3, 8)
    class_weights = np.array([0.5, 2.0, 1.5])
    weights = class_weights[targets]

    assert_network_gradients(network, lambda: network.loss_and_gradients(X, targets, loss, weights, l2=0.1)[0])


def test_estimator_network_gradient_through_relu_layers():
    """The network an estimator builds (ReLU, two hidden layers) has exact gradients too."""
    rng = np.random.default_rng(5)
    X = rng.normal(size=(30, 4))
    y = rng.integers(0, 3, 30)
    model = MlpClassifier(hidden_sizes=(7, 5), dtype="float64", max_epochs=1, random_state=0, l2=0.05)
    model.fit(X, y)
    network, loss = model.network_, model.loss_
    targets = model._encode(y)

    assert_network_gradients(network, lambda: network.loss_and_gradients(X, targets, loss, None, l2=0.05)[0])


def assert_network_gradients(network, objective):
    """Every parameter's back-propagated gradient of ``objective`` matches central differences."""
    objective()
    analytic = [g.copy() for g in network.gradients()]
    for parameter, gradient in zip(network.parameters(), analytic):
        assert relative_error(gradient, numeric_gradient(objective, parameter)) < TOLERANCE
