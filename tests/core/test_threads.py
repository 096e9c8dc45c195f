"""BLAS thread choice: one thread for small products or a busy machine, all cores otherwise."""

import os

import numpy as np
import pytest

from inkvoice.core import threads
from inkvoice.core.estimator import MlpClassifier
from inkvoice.core.kernels import NUMPY, numba_kernels, using
from inkvoice.core.optimizers import PARALLEL_SIZE, Adam, Sgd


def test_small_networks_train_on_one_thread(monkeypatch):
    monkeypatch.setattr(threads, "_busy", lambda cores: False)
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    assert threads.training_threads([78, 256, 128, 10], 64) == 1
    assert threads.training_threads([784, 512, 256, 10], 256) == 4
    assert threads.training_threads([78, 256, 128, 10], 64, n_threads=3) == 3


def test_a_busy_machine_gets_one_thread(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    monkeypatch.setattr(os, "getloadavg", lambda: (6.0, 6.0, 6.0))
    assert threads.training_threads([784, 512, 256, 10], 256) == 1
    monkeypatch.setattr(os, "getloadavg", lambda: (0.2, 0.2, 0.2))
    assert threads.training_threads([784, 512, 256, 10], 256) == 4


def test_thread_limit_gives_the_same_training_result():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(300, 20)), rng.integers(0, 3, 300)
    settings = dict(hidden_sizes=(32,), max_epochs=3, early_stopping=False, random_state=0, dtype="float64")
    one = MlpClassifier(**settings, n_threads=1).fit(X, y)
    two = MlpClassifier(**settings, n_threads=2).fit(X, y)
    np.testing.assert_allclose(one.predict_proba(X), two.predict_proba(X), rtol=1e-10)


@pytest.mark.parametrize("kernels", [NUMPY, numba_kernels()], ids=["numpy", "numba"])
@pytest.mark.parametrize("make", [lambda n: Adam(weight_decay=0.1, n_threads=n), lambda n: Sgd(nesterov=True, n_threads=n)],
                         ids=["adam", "sgd"])
def test_optimizers_on_several_threads_update_exactly_like_one(kernels, make):
    rng = np.random.default_rng(0)
    size = PARALLEL_SIZE * 2 + 7
    start, gradient = rng.normal(size=size).astype(np.float32), rng.normal(size=size).astype(np.float32)
    results = []
    for n_threads in (1, 3):
        parameter = start.copy()
        optimizer = make(n_threads)
        with using(kernels):
            for _ in range(3):
                optimizer.step([parameter], [gradient], [True])
        results.append(parameter)
    np.testing.assert_array_equal(results[0], results[1])
    assert not np.array_equal(results[0], start)
