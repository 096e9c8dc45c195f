"""Optimisers that update a list of parameter arrays in place from their gradients."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from inkvoice.core.errors import check_choice, check_number


class Sgd:
    """Stochastic gradient descent with (optionally Nesterov) momentum.

    Parameters
    ----------
    learning_rate : float > 0
    momentum : float in [0, 1)
    nesterov : bool
        Look ahead along the velocity before taking the gradient step (Sutskever et al., 2013).
    """

    name = "sgd"

    def __init__(self, learning_rate=0.01, momentum=0.9, nesterov=False):
        self.learning_rate = check_number("learning_rate", learning_rate, low=0, low_open=True)
        self.momentum = check_number("momentum", momentum, low=0, high=1, high_open=True)
        self.nesterov = bool(nesterov)
        self._velocities = None

    def step(self, parameters, gradients, decay=None):
        """Update ``parameters`` in place; ``decay`` is accepted for a common interface."""
        if self._velocities is None:
            self._velocities = [np.zeros_like(p) for p in parameters]
        rate = parameters[0].dtype.type(self.learning_rate)
        momentum = parameters[0].dtype.type(self.momentum)
        for parameter, gradient, velocity in zip(parameters, gradients, self._velocities):
            velocity *= momentum
            velocity -= rate * gradient
            if self.nesterov:
                parameter += momentum * velocity - rate * gradient
            else:
                parameter += velocity


class Adam:
    """Adam (Kingma & Ba, 2015), with optional decoupled weight decay (AdamW).

    Parameters
    ----------
    learning_rate : float > 0
    beta1, beta2 : float in [0, 1)
    epsilon : float > 0
    weight_decay : float >= 0
        Shrinks weights by ``learning_rate * weight_decay`` per step, apart from the gradient
        (Loshchilov & Hutter, 2019); the L2 penalty of the loss is the other, coupled, way.
    n_threads : int > 0
        Threads sharing the update of large arrays. The dozen element-wise passes of Adam
        cost a quarter of an epoch of a large network on one core; numpy releases the GIL in
        them, so slices of the arrays update in parallel.
    """

    name = "adam"
    # Arrays smaller than this update on one thread: handing work to threads costs more.
    parallel_size = 1 << 17

    def __init__(self, learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-8, weight_decay=0.0, n_threads=1):
        self.learning_rate = check_number("learning_rate", learning_rate, low=0, low_open=True)
        self.beta1 = check_number("beta1", beta1, low=0, high=1, high_open=True)
        self.beta2 = check_number("beta2", beta2, low=0, high=1, high_open=True)
        self.epsilon = check_number("epsilon", epsilon, low=0, low_open=True)
        self.weight_decay = check_number("weight_decay", weight_decay, low=0)
        self.n_threads = check_number("n_threads", n_threads, low=1, integer=True)
        self._moments = None
        self._steps = 0
        self._pool = None

    def step(self, parameters, gradients, decay=None):
        """Update ``parameters`` in place; ``decay`` flags the arrays weight decay applies to
        (default: those with more than one dimension, i.e. weight matrices, not biases)."""
        if decay is None:
            decay = [parameter.ndim > 1 for parameter in parameters]
        if self._moments is None:
            self._moments = [(np.zeros_like(p), np.zeros_like(p), np.empty_like(p)) for p in parameters]
        self._steps += 1
        dtype = parameters[0].dtype.type
        # Bias corrections folded into the step size, as in the paper's efficient version.
        rate = self.learning_rate * np.sqrt(1 - self.beta2**self._steps) / (1 - self.beta1**self._steps)
        beta1, beta2 = dtype(self.beta1), dtype(self.beta2)
        inverse_rate, scaled_epsilon = dtype(1 / rate), dtype(self.epsilon / rate)
        shrink = dtype(self.learning_rate * self.weight_decay)
        jobs = []
        for parameter, gradient, moments, decayed in zip(parameters, gradients, self._moments, decay):
            settings = (beta1, beta2, inverse_rate, scaled_epsilon, shrink if decayed else 0)
            pieces = self.n_threads if parameter.size >= self.parallel_size else 1
            if pieces == 1:
                jobs.append((parameter, gradient, *moments, *settings))
                continue
            bounds = [parameter.size * piece // pieces for piece in range(pieces + 1)]
            for start, stop in zip(bounds[:-1], bounds[1:]):
                arrays = [array.reshape(-1)[start:stop] for array in (parameter, gradient, *moments)]
                jobs.append((*arrays, *settings))
        if len(jobs) > len(parameters):
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.n_threads)
            list(self._pool.map(lambda job: _adam_update(*job), jobs))
        else:
            for job in jobs:
                _adam_update(*job)


def _adam_update(parameter, gradient, first, second, scratch, beta1, beta2, inverse_rate, scaled_epsilon, shrink):
    """One Adam update of flat arrays, every operation in place (no temporary arrays)."""
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


OPTIMIZERS = {cls.name: cls for cls in (Sgd, Adam)}


def make_optimizer(name, **settings):
    """Build the optimiser called ``name`` with the settings it accepts."""
    cls = OPTIMIZERS[check_choice("optimizer", name, tuple(OPTIMIZERS))]
    accepted = cls.__init__.__code__.co_varnames[1 : cls.__init__.__code__.co_argcount]
    return cls(**{key: value for key, value in settings.items() if key in accepted})
