"""MlpClassifier: learning, repeatability, early stopping, weights, fine-tuning, settings."""

import numpy as np
import pytest

from inkvoice.core.errors import NotFittedError, ParameterError, TrainingInterrupted
from inkvoice.core.estimator import MlpClassifier
from inkvoice.core.schedules import PlateauSchedule
from inkvoice.core.training import evaluate


def spiral(n_per_class=100, n_classes=3, seed=0):
    rng = np.random.default_rng(seed)
    X, y = [], []
    for label in range(n_classes):
        radius = np.linspace(0.1, 1, n_per_class)
        angle = np.linspace(label * 4, (label + 1) * 4, n_per_class) + rng.normal(0, 0.15, n_per_class)
        X.append(np.c_[radius * np.sin(angle), radius * np.cos(angle)])
        y += [label] * n_per_class
    return np.concatenate(X), np.array(y)


def overlapping_blobs(n=400, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = rng.normal(size=(n, 2)) + y[:, None] * 1.0
    return X, y


def test_learns_xor_perfectly():
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]] * 8, dtype=float)
    y = np.array([0, 1, 1, 0] * 8)
    model = MlpClassifier(hidden_sizes=(8,), activation="tanh", learning_rate=0.05, batch_size=8,
                          max_epochs=300, early_stopping=False, random_state=0)
    assert model.fit(X, y).score(X, y) == 1.0


def test_learns_spiral_perfectly_with_string_labels():
    X, y = spiral()
    labels = np.array(["red", "green", "blue"])[y]
    model = MlpClassifier(hidden_sizes=(64, 64), learning_rate=0.01, batch_size=32, max_epochs=400,
                          early_stopping=False, random_state=0)
    model.fit(X, labels)
    assert model.score(X, labels) == 1.0
    assert set(model.classes_) == {"red", "green", "blue"}


def test_same_seed_gives_same_weights_and_other_seed_does_not():
    X, y = spiral(30)
    fit = lambda seed: MlpClassifier(hidden_sizes=(16,), max_epochs=5, random_state=seed).fit(X, y)
    first, second, other = fit(7), fit(7), fit(8)
    for a, b in zip(first.network_.parameters(), second.network_.parameters()):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first.network_.parameters()[0], other.network_.parameters()[0])


def test_early_stopping_restores_the_best_epoch():
    X, y = overlapping_blobs(120, seed=1)
    X_val, y_val = overlapping_blobs(400, seed=2)
    model = MlpClassifier(hidden_sizes=(256, 256), learning_rate=0.01, batch_size=8, max_epochs=200,
                          patience=8, random_state=0)
    model.fit(X, y, validation_data=(X_val, y_val))
    history = model.history_
    val_losses = history.column("val_loss")
    assert history.stopped_early and history.best_epoch < len(val_losses)
    assert history.best_epoch == 1 + int(np.argmin(val_losses))
    restored, _ = evaluate(model.network_, model.loss_, model._scale(X_val), model._encode(y_val))
    assert restored == pytest.approx(min(val_losses), rel=1e-5)


def test_class_weights_shift_predictions_toward_the_weighted_class():
    X, y = overlapping_blobs()
    settings = dict(hidden_sizes=(16,), max_epochs=60, early_stopping=False, random_state=0)
    plain = MlpClassifier(**settings).fit(X, y)
    weighted = MlpClassifier(**settings, class_weight={1: 8.0}).fit(X, y)
    assert np.mean(weighted.predict(X) == 1) > np.mean(plain.predict(X) == 1) + 0.15


def test_sample_weights_act_like_class_weights():
    X, y = overlapping_blobs()
    settings = dict(hidden_sizes=(16,), max_epochs=60, early_stopping=False, random_state=0)
    by_class = MlpClassifier(**settings, class_weight={1: 8.0}).fit(X, y)
    by_sample = MlpClassifier(**settings).fit(X, y, sample_weight=np.where(y == 1, 8.0, 1.0))
    np.testing.assert_allclose(by_class.predict_proba(X), by_sample.predict_proba(X), atol=1e-5)


def test_partial_fit_continues_training():
    X, y = spiral(50)
    model = MlpClassifier(hidden_sizes=(32,), learning_rate=0.01, random_state=0)
    model.partial_fit(X[:10], y[:10], classes=[0, 1, 2])
    before = [p.copy() for p in model.network_.parameters()]
    losses = []
    for _ in range(30):
        model.partial_fit(X, y)
        losses.append(model.history_.records[-1]["loss"])
    assert model.n_epochs_ == 31
    assert losses[-1] < 0.7 * losses[0]
    assert not np.array_equal(before[0], model.network_.parameters()[0])


def test_warm_start_fine_tunes_without_rebuilding():
    X, y = spiral(50)
    model = MlpClassifier(hidden_sizes=(32,), max_epochs=20, random_state=0).fit(X, y)
    mean_before = model.standardizer_.mean_.copy()
    epochs_before = model.n_epochs_
    model.set_params(warm_start=True, max_epochs=5, early_stopping=False)
    model.fit(X[:30] + 5.0, y[:30])  # new data far away: the standardiser must stay as trained
    np.testing.assert_array_equal(model.standardizer_.mean_, mean_before)
    assert model.n_epochs_ == epochs_before + 5
    with pytest.raises(ParameterError, match="labels the model does not know: 9"):
        model.fit(X[:3], [0, 1, 9])


def test_callback_sees_every_epoch_and_can_stop():
    X, y = spiral(30)
    seen = []
    model = MlpClassifier(hidden_sizes=(8,), max_epochs=50, early_stopping=False, random_state=0)
    model.fit(X, y, callback=lambda record: seen.append(record) or record["epoch"] < 4)
    assert [r["epoch"] for r in seen] == [1, 2, 3, 4]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"} <= set(seen[0])


def test_ctrl_c_raises_naming_the_epoch_and_keeps_the_best_weights():
    X, y = spiral(30)

    def interrupt(record):
        if record["epoch"] == 3:
            raise KeyboardInterrupt

    model = MlpClassifier(hidden_sizes=(8,), max_epochs=50, random_state=0)
    with pytest.raises(TrainingInterrupted, match="interrupted \\(Ctrl-C\\) during epoch 3 of 50"):
        model.fit(X, y, callback=interrupt)
    assert model.history_.interrupted and model.n_epochs_ == 3
    assert 1 <= model.history_.best_epoch <= 3
    assert model.predict(X).shape == (len(X),)


@pytest.mark.parametrize("schedule", ["step", "cosine"])
def test_schedules_lower_the_learning_rate(schedule):
    X, y = spiral(30)
    model = MlpClassifier(hidden_sizes=(8,), max_epochs=40, early_stopping=False, schedule=schedule,
                          learning_rate=0.01, random_state=0, optimizer="sgd", nesterov=True)
    rates = model.fit(X, y).history_.column("learning_rate")
    assert rates[0] == 0.01 and rates[-1] < 0.01


def test_plateau_schedule_cuts_the_rate_only_after_patience_epochs_without_progress():
    schedule = PlateauSchedule(0.1, factor=0.5, patience=2)
    rates = [schedule.rate_after(epoch, loss) for epoch, loss in enumerate([3, 2, 2, 2, 1, 1, 1], start=1)]
    assert rates == [0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025]


def test_float64_on_request():
    X, y = spiral(20)
    model = MlpClassifier(hidden_sizes=(8,), max_epochs=2, dtype="float64", random_state=0).fit(X, y)
    assert all(p.dtype == np.float64 for p in model.network_.parameters())
    default = MlpClassifier(hidden_sizes=(8,), max_epochs=2, random_state=0).fit(X, y)
    assert all(p.dtype == np.float32 for p in default.network_.parameters())


def test_dropout_trains_and_predicts_deterministically():
    X, y = spiral(50)
    model = MlpClassifier(hidden_sizes=(64, 64), dropout=0.2, max_epochs=150, learning_rate=0.01,
                          early_stopping=False, random_state=0).fit(X, y)
    assert model.score(X, y) > 0.9
    np.testing.assert_array_equal(model.predict_proba(X), model.predict_proba(X))


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"hidden_sizes": (0,)}, "hidden_sizes must be an integer in"),
        ({"activation": "swish"}, "activation must be one of"),
        ({"optimizer": "rmsprop"}, "optimizer must be one of"),
        ({"learning_rate": -1}, "learning_rate must be a number in"),
        ({"batch_size": 2.5}, "batch_size must be an integer"),
        ({"dropout": 1.0}, "dropout must be a number in"),
        ({"dtype": "float16"}, "dtype must be one of"),
        ({"schedule": "linear"}, "schedule must be one of"),
        ({"class_weight": "heavy"}, "class_weight must be None, 'balanced' or a dict"),
    ],
)
def test_bad_settings_are_refused_with_their_name(settings, message):
    X, y = spiral(10)
    with pytest.raises(ParameterError, match=message):
        MlpClassifier(**settings).fit(X, y)


@pytest.mark.parametrize(
    "X, y, message",
    [
        (np.zeros((4, 2)), [0, 0, 0, 0], "at least 2 classes"),
        (np.zeros(4), [0, 1, 0, 1], "must be 2-D"),
        (np.full((4, 2), np.nan), [0, 1, 0, 1], "NaN or infinite"),
        (np.zeros((4, 2)), [0, 1, 0], "one label per sample"),
    ],
)
def test_bad_data_is_refused(X, y, message):
    with pytest.raises(ParameterError, match=message):
        MlpClassifier(max_epochs=1).fit(X, y)


def test_prediction_needs_a_trained_model_with_matching_width():
    with pytest.raises(NotFittedError, match="not trained yet"):
        MlpClassifier().predict(np.zeros((1, 2)))
    X, y = spiral(10)
    model = MlpClassifier(hidden_sizes=(4,), max_epochs=1).fit(X, y)
    with pytest.raises(ParameterError, match="X has 3 features, but MlpClassifier is expecting 2 features as input"):
        model.predict(np.zeros((1, 3)))


def test_get_and_set_params():
    model = MlpClassifier(hidden_sizes=(5,))
    assert model.get_params()["hidden_sizes"] == (5,)
    assert model.set_params(learning_rate=0.1).learning_rate == 0.1
    with pytest.raises(ParameterError, match="unknown parameter 'speed'"):
        model.set_params(speed=3)


def test_drops_into_sklearn_pipeline_and_cross_validation():
    sklearn = pytest.importorskip("sklearn", reason="scikit-learn is optional: only this test uses it")
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = spiral(40)
    model = MlpClassifier(hidden_sizes=(64, 64), max_epochs=150, learning_rate=0.01, batch_size=16,
                          early_stopping=False, random_state=0)
    assert clone(model).get_params() == model.get_params()
    folds = StratifiedKFold(3, shuffle=True, random_state=0)  # the spiral is ordered along its arms
    scores = cross_val_score(make_pipeline(StandardScaler(), model), X, y, cv=folds)
    assert scores.mean() > 0.8, sklearn.__version__


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_a_copied_model_trains_on_its_own_weights(how):
    import copy
    import pickle

    X, y = spiral(30)
    model = MlpClassifier(hidden_sizes=(16,), max_epochs=3, random_state=0).fit(X, y)
    copied = copy.deepcopy(model) if how == "deepcopy" else pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(copied.predict_proba(X), model.predict_proba(X))
    before = model.predict_proba(X)
    copied.set_params(warm_start=True, max_epochs=5, early_stopping=False).fit(X, y)
    assert not np.allclose(copied.predict_proba(X), before)  # training reaches the copy's layers
    np.testing.assert_array_equal(model.predict_proba(X), before)  # and leaves the original alone


def test_non_finite_input_says_where():
    X = np.zeros((5, 3))
    X[2, 1] = np.nan
    X[4, 0] = np.inf
    with pytest.raises(ParameterError, match=r"X contains NaN or infinite values in 2 of its 5 rows \(the first is row 2, column 1\)"):
        MlpClassifier(max_epochs=1).fit(X, [0, 1, 0, 1, 0])
