"""Compiled training kernels against their numpy equivalents, the fallback, and numba-free prediction."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from inkvoice.core import kernels
from inkvoice.core.activations import ACTIVATIONS, get_activation
from inkvoice.core.errors import ParameterError
from inkvoice.core.estimator import MlpClassifier

COMPILED = kernels.numba_kernels()
needs_numba = pytest.mark.skipif(COMPILED is None, reason="numba is not installed: only the numpy kernels run")
DTYPES = [np.float32, np.float64]


def tolerance(dtype):
    return {"rtol": 2e-5, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-14}


def both(function, *arrays):
    """Run ``function(kernels, *copies)`` with each backend on its own copies of ``arrays``."""
    results = []
    for backend in (kernels.NUMPY, COMPILED):
        copies = [a.copy() if isinstance(a, np.ndarray) else a for a in arrays]
        value = function(backend, *copies)
        results.append((value, copies))
    return results


def assert_same(results, dtype):
    (value_a, arrays_a), (value_b, arrays_b) = results
    if value_a is not None:
        np.testing.assert_allclose(np.asarray(value_a, dtype=float), np.asarray(value_b, dtype=float), rtol=1e-5)
    for a, b in zip(arrays_a, arrays_b):
        if isinstance(a, np.ndarray):
            np.testing.assert_allclose(a, b, **tolerance(dtype))


@needs_numba
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@pytest.mark.parametrize("dropout", [False, True])
def test_dense_kernels_match_numpy(dtype, name, dropout):
    rng = np.random.default_rng(0)
    activation = get_activation(name)
    z = rng.normal(size=(9, 7)).astype(dtype)
    bias = rng.normal(size=7).astype(dtype)
    noise = rng.random((9, 7)).astype(dtype) if dropout else kernels.no_mask(dtype)
    output = np.zeros_like(z)
    forward = both(lambda k, z, b, n, o: k.dense_forward(z, b, activation, n, 0.7, o), z, bias, noise, output)
    assert_same(forward, dtype)
    _, (a, _, mask, _) = forward[0]
    d_output = rng.normal(size=(9, 7)).astype(dtype)
    grad_bias = np.zeros(7, dtype)
    assert_same(both(lambda k, d, a, m, g: k.dense_backward(d, a, m, activation, g), d_output, a, mask, grad_bias),
                dtype)


@needs_numba
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss", ["softmax_cross_entropy", "sigmoid_cross_entropy"])
@pytest.mark.parametrize("weighted", [False, True])
def test_loss_kernels_match_numpy(dtype, loss, weighted):
    rng = np.random.default_rng(1)
    width = 5 if loss == "softmax_cross_entropy" else 1
    logits = rng.normal(scale=4, size=(11, width)).astype(dtype)
    targets = rng.integers(0, max(width, 2), 11)
    weights = rng.uniform(0.1, 3, 11).astype(dtype) if weighted else kernels.empty_weights(dtype)
    results = both(lambda k, z, t, w: getattr(k, loss)(z, t, w), logits, targets, weights)
    assert_same(results, dtype)
    assert results[0][0][1] == results[1][0][1]  # the same number of correct samples


@needs_numba
@pytest.mark.parametrize("dtype", DTYPES)
def test_optimizer_and_penalty_kernels_match_numpy(dtype):
    rng = np.random.default_rng(2)
    p, g, m, v = (rng.normal(size=1000).astype(dtype) for _ in range(4))
    v = np.abs(v)
    settings = [dtype(x) for x in (0.9, 0.999, 3.0, 1e-7, 1e-3)]
    adam = lambda k, p, g, m, v: k.adam_update(p, g, m, v, np.empty_like(p), *settings)  # noqa: E731
    assert_same(both(adam, p, g, m, v), dtype)
    for nesterov in (False, True):
        assert_same(both(lambda k, p, g, v: k.sgd_update(p, g, v, dtype(0.1), dtype(0.9), nesterov), p, g, m), dtype)
    assert_same(both(lambda k, w, g: k.add_l2(w, g, 0.01), p, g), dtype)


@needs_numba
@pytest.mark.parametrize(
    "settings",
    [
        dict(hidden_sizes=(16, 8), dropout=0.2, l2=1e-3),
        dict(hidden_sizes=(12,), activation="tanh", optimizer="sgd", nesterov=True, learning_rate=0.05),
        dict(hidden_sizes=(12,), activation="leaky_relu", weight_decay=0.01, class_weight="balanced"),
    ],
    ids=["relu-dropout-l2", "tanh-sgd", "leaky-adamw"],
)
@pytest.mark.parametrize("n_classes", [2, 3])
def test_training_with_compiled_kernels_gives_the_numpy_model(monkeypatch, settings, n_classes):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(150, 6))
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + (n_classes == 3) * (X[:, 2] > 1)
    probabilities = []
    for choice in ("numpy", "numba"):
        monkeypatch.setenv(kernels.ENVIRONMENT_VARIABLE, choice)
        model = MlpClassifier(**settings, max_epochs=15, batch_size=16, dtype="float64", random_state=0).fit(X, y)
        probabilities.append(model.predict_proba(X))
    np.testing.assert_allclose(probabilities[0], probabilities[1], rtol=1e-9, atol=1e-12)


def test_numpy_serves_when_the_compiled_kernels_cannot_load(monkeypatch):
    monkeypatch.setattr(kernels, "_numba", None)
    monkeypatch.setitem(sys.modules, "inkvoice.core.compiled", None)  # import fails as without numba
    with pytest.warns(UserWarning, match="training uses numpy: the compiled kernels are unavailable"):
        assert kernels.choose() is kernels.NUMPY
    rng = np.random.default_rng(4)
    X, y = rng.normal(size=(60, 3)), rng.integers(0, 2, 60)
    assert MlpClassifier(hidden_sizes=(8,), max_epochs=3, random_state=0).fit(X, y).n_epochs_ == 3


def test_the_choice_follows_the_environment_and_the_size_of_the_training(monkeypatch):
    monkeypatch.setenv(kernels.ENVIRONMENT_VARIABLE, "numpy")
    assert kernels.choose() is kernels.NUMPY
    monkeypatch.setenv(kernels.ENVIRONMENT_VARIABLE, "auto")
    assert kernels.choose(kernels.SMALL_TRAINING / 10) is kernels.NUMPY
    assert kernels.choose(kernels.SMALL_TRAINING * 10) is (COMPILED or kernels.NUMPY)
    monkeypatch.setenv(kernels.ENVIRONMENT_VARIABLE, "fast")
    with pytest.raises(ParameterError, match="INKVOICE_KERNELS must be one of 'auto', 'numba', 'numpy'; got 'fast'"):
        kernels.choose()


def test_prediction_in_a_fresh_process_never_imports_numba(tmp_path):
    """Training uses the compiled kernels; loading the model file and predicting must not."""
    from inkvoice.core.bundle import save_model

    rng = np.random.default_rng(5)
    X, y = rng.normal(size=(80, 4)), rng.integers(0, 3, 80)
    save_model(tmp_path / "m.npz", "speech", {"main": MlpClassifier(hidden_sizes=(8,), max_epochs=2).fit(X, y)}, {})
    np.save(tmp_path / "X.npy", X)
    script = (
        "import sys, numpy as np\n"
        "from inkvoice.core.bundle import load_model\n"
        f"model = load_model({str(tmp_path / 'm.npz')!r}, 'speech').models['main']\n"
        f"print(len(model.predict(np.load({str(tmp_path / 'X.npy')!r}))))\n"
        "print('numba' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["80", "False"]


class NoWritableFolder:
    """A numba cache locator that finds no folder it may write to (as a read-only install with
    an unwritable home would); named by NUMBA_CACHE_LOCATOR_CLASSES in the test below."""

    @classmethod
    def from_function(cls, py_func, py_file):
        return None


def test_training_falls_back_to_numpy_where_numba_cannot_cache():
    script = (
        "import warnings, numpy as np\n"
        "from inkvoice.core.estimator import MlpClassifier\n"
        "from inkvoice.core import kernels\n"
        "X = np.random.default_rng(0).normal(size=(50, 3))\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    model = MlpClassifier(hidden_sizes=(4,), max_epochs=2).fit(X, X[:, 0] > 0)\n"
        "print(model.n_epochs_, kernels.choose().name)\n"
        "print(*[str(w.message) for w in caught], sep='\\n')\n"
    )
    env = {**os.environ, kernels.ENVIRONMENT_VARIABLE: "numba",
           "NUMBA_CACHE_LOCATOR_CLASSES": f"{__name__}.NoWritableFolder"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True,
                          cwd=Path(__file__).resolve().parents[2])
    lines = done.stdout.splitlines()
    assert lines[0] == "2 numpy"
    assert "training uses numpy: the compiled kernels are unavailable" in lines[1]
    assert "no locator available" in lines[1]


def test_installing_the_project_installs_numba():
    """``pip install`` gives users the compiled kernels: numba is a dependency of its own."""
    import tomllib

    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    names = [requirement.split(">")[0].split("=")[0].split("<")[0].strip() for requirement in
             pyproject["project"]["dependencies"]]
    assert "numba" in names


@pytest.mark.parametrize("epochs, compiled", [(2, False), (1000, True)])
def test_auto_loads_the_compiled_kernels_only_for_trainings_that_repay_them(epochs, compiled):
    """A fresh process's default fit: a small training never imports numba (loading it would
    cost more than it saves), a long one trains with the compiled kernels (the choice is made
    from the planned epochs; the callback stops after the first)."""
    script = (
        "import sys, numpy as np\n"
        "from inkvoice.core.estimator import MlpClassifier\n"
        "X = np.random.default_rng(0).normal(size=(2000, 20))\n"
        f"MlpClassifier(hidden_sizes=(128, 64), max_epochs={epochs}, early_stopping=False, random_state=0)"
        ".fit(X, X[:, 0] > 0, callback=lambda record: False)\n"
        "print('numba' in sys.modules)\n"
    )
    n_updates = 32 * epochs * (21 * 128 + 129 * 64 + 65)  # batch steps x parameters
    assert (n_updates >= kernels.SMALL_TRAINING) == compiled
    env = {**os.environ, kernels.ENVIRONMENT_VARIABLE: "auto"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.stdout.split() == [str(compiled and COMPILED is not None)]
