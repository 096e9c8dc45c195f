"""Optimisers find the minimum of a simple quadratic; settings are checked."""

import numpy as np
import pytest

from inkvoice.core.errors import ParameterError
from inkvoice.core.optimizers import Adam, Sgd, make_optimizer


@pytest.mark.parametrize(
    "optimizer",
    [Sgd(0.1, momentum=0.0), Sgd(0.05, momentum=0.9), Sgd(0.05, momentum=0.9, nesterov=True), Adam(0.05)],
    ids=["sgd", "momentum", "nesterov", "adam"],
)
def test_optimizers_minimise_a_quadratic(optimizer):
    target = np.array([1.0, -2.0, 3.0])
    weights, bias = np.zeros((1, 3)), np.zeros(3)
    for _ in range(500):
        optimizer.step([weights, bias], [2 * (weights - target), 2 * (bias - target)])
    np.testing.assert_allclose(weights[0], target, atol=1e-2)
    np.testing.assert_allclose(bias, target, atol=1e-2)


def test_adam_weight_decay_shrinks_weights_but_not_biases():
    weights, bias = np.ones((2, 2)), np.ones(2)
    optimizer = Adam(0.01, weight_decay=10.0)
    for _ in range(20):
        optimizer.step([weights, bias], [np.zeros((2, 2)), np.zeros(2)])
    assert np.all(weights < 0.2) and np.all(bias == 1.0)


def test_bad_optimizer_settings_name_the_parameter():
    with pytest.raises(ParameterError, match="momentum must be a number in"):
        Sgd(momentum=1.5)
    with pytest.raises(ParameterError, match="optimizer must be one of 'sgd', 'adam'; got 'lbfgs'"):
        make_optimizer("lbfgs")
