"""Optimisers that update a list of parameter arrays in place from their gradients.

Each step is one fused pass per array (``core.kernels``); arrays of at least
``PARALLEL_SIZE`` elements are cut into slices that threads update at once (the kernels
release the GIL), which gives the same numbers as one thread since every element is
updated on its own.
"""

import inspect
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from inkvoice.core import kernels
from inkvoice.core.constraints import Boolean, Interval, validate
from inkvoice.core.errors import ParameterError, check_choice

# Arrays smaller than this update on one thread: handing work to threads costs more.
PARALLEL_SIZE = 1 << 17


class _Optimizer:
    """Shared by the optimisers: the per-array state and the threads that share large arrays."""

    name = ""
    constraints = {"learning_rate": Interval(0, low_open=True), "n_threads": Interval(1, integer=True)}

    def __init__(self, **settings):
        self.__dict__.update(validate(self.constraints, settings))
        self._state = None
        self._pool = None
        self._pieces = None

    def __getstate__(self):
        return {**self.__dict__, "_pool": None, "_pieces": None}

    def _run(self, update, arrays, settings):
        """Call ``update(*arrays[i], *settings[i])`` for each i, cutting arrays of at least
        ``PARALLEL_SIZE`` elements into ``n_threads`` slices that are updated in parallel."""
        key = [id(array) for group in arrays for array in group]
        if self._pieces is None or self._pieces[0] != key:
            pieces = []
            for index, group in enumerate(arrays):
                size = group[0].size
                n_pieces = self.n_threads if size >= PARALLEL_SIZE else 1
                bounds = [size * piece // n_pieces for piece in range(n_pieces + 1)]
                for start, stop in zip(bounds[:-1], bounds[1:]):
                    pieces.append((index, [array.reshape(-1)[start:stop] for array in group]))
            self._pieces = key, pieces, list(arrays)  # the arrays too, so that their ids stay theirs
        pieces = self._pieces[1]
        if len(pieces) == len(arrays):
            for index, piece in pieces:
                update(*piece, *settings[index])
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.n_threads)
        # The caller's thread takes the first slice itself rather than waiting idle.
        futures = [self._pool.submit(update, *piece, *settings[index]) for index, piece in pieces[1:]]
        index, piece = pieces[0]
        update(*piece, *settings[index])
        for future in futures:
            future.result()


class Sgd(_Optimizer):
    """Stochastic gradient descent with (optionally Nesterov) momentum.

    Parameters
    ----------
    learning_rate : float > 0
    momentum : float in [0, 1)
    nesterov : bool
        Look ahead along the velocity before taking the gradient step (Sutskever et al., 2013).
    n_threads : int > 0
        Threads sharing the update of large arrays.
    """

    name = "sgd"
    constraints = {**_Optimizer.constraints, "momentum": Interval(0, 1, high_open=True), "nesterov": Boolean()}

    def __init__(self, learning_rate=0.01, momentum=0.9, nesterov=False, n_threads=1):
        super().__init__(learning_rate=learning_rate, momentum=momentum, nesterov=nesterov, n_threads=n_threads)

    def step(self, parameters, gradients, decay=None):
        """Update ``parameters`` in place; ``decay`` is accepted for a common interface."""
        if self._state is None:
            self._state = [np.zeros_like(p) for p in parameters]
        dtype = parameters[0].dtype.type
        settings = (dtype(self.learning_rate), dtype(self.momentum), self.nesterov)
        arrays = [(p, g, v) for p, g, v in zip(parameters, gradients, self._state)]
        self._run(kernels.active().sgd_update, arrays, [settings] * len(arrays))


class Adam(_Optimizer):
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
        Threads sharing the update of large arrays.
    """

    name = "adam"
    constraints = {
        **_Optimizer.constraints,
        "beta1": Interval(0, 1, high_open=True),
        "beta2": Interval(0, 1, high_open=True),
        "epsilon": Interval(0, low_open=True),
        "weight_decay": Interval(0),
    }

    def __init__(self, learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-8, weight_decay=0.0, n_threads=1):
        super().__init__(learning_rate=learning_rate, beta1=beta1, beta2=beta2, epsilon=epsilon,
                         weight_decay=weight_decay, n_threads=n_threads)
        self._steps = 0

    def step(self, parameters, gradients, decay=None):
        """Update ``parameters`` in place; ``decay`` flags the arrays weight decay applies to
        (default: those with more than one dimension, i.e. weight matrices, not biases)."""
        if decay is None:
            decay = [parameter.ndim > 1 for parameter in parameters]
        if self._state is None:
            # First and second moments, and a scratch array for the numpy kernels.
            self._state = [(np.zeros_like(p), np.zeros_like(p), np.empty_like(p)) for p in parameters]
        self._steps += 1
        dtype = parameters[0].dtype.type
        # Bias corrections folded into the step size, as in the paper's efficient version.
        rate = self.learning_rate * np.sqrt(1 - self.beta2**self._steps) / (1 - self.beta1**self._steps)
        settings = (dtype(self.beta1), dtype(self.beta2), dtype(1 / rate), dtype(self.epsilon / rate))
        shrink = dtype(self.learning_rate * self.weight_decay)
        arrays = [(parameter, gradient, *state) for parameter, gradient, state in zip(parameters, gradients, self._state)]
        self._run(kernels.active().adam_update, arrays, [(*settings, shrink if decayed else dtype(0)) for decayed in decay])


OPTIMIZERS = {cls.name: cls for cls in (Sgd, Adam)}


def make_optimizer(name, **settings):
    """Build the optimiser called ``name``; a setting it does not take is refused by name."""
    cls = OPTIMIZERS[check_choice("optimizer", name, tuple(OPTIMIZERS))]
    accepted = [parameter for parameter in inspect.signature(cls).parameters]
    unknown = sorted(set(settings) - set(accepted))
    if unknown:
        raise ParameterError(
            f"optimizer {name!r} takes no setting {', '.join(map(repr, unknown))}; "
            f"its settings: {', '.join(accepted)}"
        )
    return cls(**settings)
