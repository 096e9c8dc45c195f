"""Training's failure modes (divergence, Ctrl-C), its config, and the settings tables."""

import inspect

import numpy as np
import pytest

from inkvoice.core.errors import ParameterError, TrainingDiverged, TrainingInterrupted
from inkvoice.core.estimator import MlpClassifier
from inkvoice.core.losses import get_loss
from inkvoice.core.network import Mlp
from inkvoice.core.optimizers import Adam, make_optimizer
from inkvoice.core.training import TrainingConfig, train


def blobs(n=120, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    return rng.normal(size=(n, 4)) + y[:, None], y


@pytest.mark.parametrize("early_stopping", [False, True])
def test_a_diverging_loss_raises_naming_the_epoch_and_keeps_finite_weights(early_stopping):
    X, y = blobs()
    model = MlpClassifier(hidden_sizes=(16,), optimizer="sgd", learning_rate=1e30, max_epochs=20,
                          early_stopping=early_stopping, random_state=0)
    with pytest.raises(TrainingDiverged, match=r"training diverged in epoch 1 \(loss nan"):
        model.fit(X, y)
    assert all(np.all(np.isfinite(p)) for p in model.network_.parameters())
    assert model.n_epochs_ == 0
    assert np.all(np.isfinite(model.predict_proba(X)))


def test_divergence_after_good_epochs_keeps_the_last_good_epoch():
    X, y = blobs()
    settings = dict(hidden_sizes=(16,), max_epochs=3, early_stopping=False, random_state=0, dtype="float64")
    model = MlpClassifier(**settings).fit(X, y)
    good = model.predict_proba(X)
    model.set_params(warm_start=True, optimizer="sgd", learning_rate=1e300, max_epochs=5)
    with pytest.raises(TrainingDiverged, match="in epoch 4"):
        model.fit(X, y)
    np.testing.assert_array_equal(model.predict_proba(X), good)
    assert model.n_epochs_ == 3


def test_ctrl_c_inside_an_epoch_keeps_the_last_finished_epoch(monkeypatch):
    X, y = blobs()
    settings = dict(hidden_sizes=(16,), max_epochs=2, early_stopping=False, random_state=0, dtype="float64")
    two_epochs = MlpClassifier(**settings).fit(X, y)
    steps = []
    original = Adam.step

    def step(self, *arguments):
        steps.append(1)
        if len(steps) == 5:  # the third epoch's third batch (two batches per epoch)
            raise KeyboardInterrupt
        return original(self, *arguments)

    monkeypatch.setattr(Adam, "step", step)
    model = MlpClassifier(**{**settings, "max_epochs": 10, "batch_size": 64})
    with pytest.raises(TrainingInterrupted, match="during epoch 3 of 10") as caught:
        model.fit(X, y)
    assert caught.value.epoch == 3 and caught.value.history.interrupted
    assert model.n_epochs_ == 2
    np.testing.assert_array_equal(model.predict_proba(X), two_epochs.predict_proba(X))


def test_train_takes_its_settings_as_one_config():
    X, y = blobs(60)
    network = Mlp([4, 8, 3], "relu", np.random.default_rng(0), dtype=np.float64)
    history = train(network, get_loss("softmax_cross_entropy"), Adam(0.01), X, y,
                    TrainingConfig(batch_size=16, max_epochs=4, early_stopping=False), rng=np.random.default_rng(1))
    assert [record["epoch"] for record in history.records] == [1, 2, 3, 4]
    assert history.records[-1]["loss"] < history.records[0]["loss"]


def test_make_optimizer_refuses_settings_the_optimizer_does_not_take():
    with pytest.raises(ParameterError, match="optimizer 'adam' takes no setting 'momentum'; its settings: learning_rate"):
        make_optimizer("adam", learning_rate=0.01, momentum=0.9)
    assert make_optimizer("sgd", momentum=0.5).momentum == 0.5


def test_every_estimator_setting_has_a_declared_constraint():
    names = set(inspect.signature(MlpClassifier).parameters) - {"random_state"}
    assert names == set(MlpClassifier._parameter_constraints)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"momentum": 1.5}, "momentum must be a number in \\[0, 1\\); got 1.5"),
        ({"nesterov": "yes"}, "nesterov must be True or False; got 'yes'"),
        ({"weight_decay": -1}, "weight_decay must be a number in \\[0, inf\\]; got -1"),
        ({"hidden_sizes": ()}, "hidden_sizes must hold at least one size"),
        ({"n_threads": 0}, "n_threads must be an integer in \\[1, inf\\]; got 0"),
        ({"early_stopping": None}, "early_stopping must be True or False; got None"),
    ],
)
def test_settings_are_checked_once_against_the_table(settings, message):
    X, y = blobs(20)
    with pytest.raises(ParameterError, match=message):
        MlpClassifier(**settings).fit(X, y)
