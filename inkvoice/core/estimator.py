"""MlpClassifier: the MLP behind an estimator interface that scikit-learn users recognise.

Settings are stored unchanged by ``__init__`` and checked by ``fit``; learned state ends in
``_``. With scikit-learn installed (it is not needed otherwise) the classifier works inside
``Pipeline``, ``GridSearchCV`` and ``cross_val_score``.
"""

import inspect
import warnings

import numpy as np

from inkvoice.core.activations import ACTIVATIONS
from inkvoice.core.constraints import Boolean, Interval, Optional, Options, Sizes, validate
from inkvoice.core.errors import DataConversionWarning, ModelFileError, NotFittedError, ParameterError, check_number
from inkvoice.core.losses import get_loss
from inkvoice.core.network import Mlp
from inkvoice.core.optimizers import OPTIMIZERS, make_optimizer
from inkvoice.core.scaling import Standardizer
from inkvoice.core.schedules import SCHEDULES, make_schedule
from inkvoice.core.threads import training_threads
from inkvoice.core.training import History, TrainingConfig, train

DTYPES = ("float32", "float64")
LOSS_CHOICES = ("auto", "softmax_cross_entropy", "sigmoid_cross_entropy")


class _Dtype:
    """A numpy dtype or its name, one of DTYPES."""

    def check(self, name, value):
        try:
            value = np.dtype(value).name
        except TypeError:
            pass
        return Options(*DTYPES).check(name, value)


class _ClassWeight:
    def check(self, name, value):
        if not (value is None or value == "balanced" or isinstance(value, dict)):
            raise ParameterError(f"{name} must be None, 'balanced' or a dict; got {value!r}")
        return value


class MlpClassifier:
    """A multilayer perceptron classifier trained by back-propagation on mini-batches.

    Parameters
    ----------
    hidden_sizes : sequence of int > 0
        Units in each hidden layer.
    activation : {"relu", "leaky_relu", "tanh", "sigmoid", "identity"}
    loss : {"auto", "softmax_cross_entropy", "sigmoid_cross_entropy"}
        "auto" uses one sigmoid output for two classes and softmax otherwise.
    optimizer : {"adam", "sgd"}
    learning_rate : float > 0
    momentum : float in [0, 1)
        SGD only.
    nesterov : bool
        SGD only.
    weight_decay : float >= 0
        Adam only: decoupled weight decay.
    batch_size : int > 0
    max_epochs : int > 0
    early_stopping : bool
        Hold out validation data, stop after ``patience`` epochs without improvement and
        restore the best weights.
    patience : int > 0
    validation_fraction : float in [0, 1)
        Stratified share of the training data held out when ``fit`` gets no validation data.
    schedule : {None, "step", "cosine", "plateau"}
    dropout : float in [0, 1)
    l2 : float >= 0
        L2 penalty added to the loss: ``l2 / 2`` times the sum of squared weights.
    class_weight : None, "balanced" or dict label -> weight
    dtype : {"float32", "float64"}
    standardize : bool
        Standardise features with statistics of the training data; they travel with the model.
    warm_start : bool
        ``fit`` continues from the current weights, classes and standardiser (fine-tuning).
    random_state : None, int or numpy.random.Generator
        Seeds initial weights, splits, shuffling and dropout; an int makes runs repeatable.
    n_threads : int > 0 or None
        BLAS threads while training; None uses one for small networks and every core for
        large ones (see ``core.threads``).
    """

    _estimator_type = "classifier"
    # What each setting may be, checked once when training starts; the optimisers' own
    # settings come from their tables.
    _parameter_constraints = {
        "hidden_sizes": Sizes(),
        "activation": Options(*ACTIVATIONS),
        "loss": Options(*LOSS_CHOICES),
        "optimizer": Options(*OPTIMIZERS),
        "learning_rate": OPTIMIZERS["adam"].constraints["learning_rate"],
        "momentum": OPTIMIZERS["sgd"].constraints["momentum"],
        "nesterov": OPTIMIZERS["sgd"].constraints["nesterov"],
        "weight_decay": OPTIMIZERS["adam"].constraints["weight_decay"],
        "batch_size": Interval(1, integer=True),
        "max_epochs": Interval(1, integer=True),
        "early_stopping": Boolean(),
        "patience": Interval(1, integer=True),
        "validation_fraction": Interval(0, 1, high_open=True),
        "schedule": Optional(Options(*SCHEDULES)),
        "dropout": Interval(0, 1, high_open=True),
        "l2": Interval(0),
        "class_weight": _ClassWeight(),
        "dtype": _Dtype(),
        "standardize": Boolean(),
        "warm_start": Boolean(),
        "n_threads": Optional(Interval(1, integer=True)),
    }
    # The estimator's settings each optimiser takes (besides learning_rate and n_threads).
    _optimizer_settings = {"sgd": ("momentum", "nesterov"), "adam": ("weight_decay",)}

    def __init__(
        self,
        hidden_sizes=(100,),
        activation="relu",
        loss="auto",
        optimizer="adam",
        learning_rate=1e-3,
        momentum=0.9,
        nesterov=False,
        weight_decay=0.0,
        batch_size=64,
        max_epochs=200,
        early_stopping=True,
        patience=10,
        validation_fraction=0.1,
        schedule=None,
        dropout=0.0,
        l2=0.0,
        class_weight=None,
        dtype="float32",
        standardize=True,
        warm_start=False,
        random_state=None,
        n_threads=None,
    ):
        self.hidden_sizes = hidden_sizes
        self.activation = activation
        self.loss = loss
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.nesterov = nesterov
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.early_stopping = early_stopping
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.schedule = schedule
        self.dropout = dropout
        self.l2 = l2
        self.class_weight = class_weight
        self.dtype = dtype
        self.standardize = standardize
        self.warm_start = warm_start
        self.random_state = random_state
        self.n_threads = n_threads

    # --- settings -------------------------------------------------------------------------

    @classmethod
    def _param_names(cls):
        return [name for name in inspect.signature(cls.__init__).parameters if name != "self"]

    def get_params(self, deep=True):
        """The settings passed to ``__init__``, by name."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params):
        """Change settings by name; unknown names are refused."""
        valid = self._param_names()
        for name, value in params.items():
            if name not in valid:
                raise ParameterError(f"unknown parameter {name!r}; valid parameters: {', '.join(valid)}")
            setattr(self, name, value)
        return self

    def __sklearn_tags__(self):
        from sklearn.utils import ClassifierTags, InputTags, Tags, TargetTags

        return Tags(
            estimator_type="classifier",
            target_tags=TargetTags(required=True),
            classifier_tags=ClassifierTags(),
            input_tags=InputTags(),
        )

    def __repr__(self):
        defaults = type(self)().get_params()
        changed = {k: v for k, v in self.get_params().items() if not _same(v, defaults[k])}
        return f"{type(self).__name__}(" + ", ".join(f"{k}={v!r}" for k, v in changed.items()) + ")"

    def _check_params(self):
        """Check every setting against ``_parameter_constraints``; returns the hidden sizes."""
        return validate(self._parameter_constraints, self.get_params())["hidden_sizes"]

    # --- data checks ----------------------------------------------------------------------

    def _check_X(self, X, name="X", check_width=True):
        """``X`` as a C-contiguous array of the estimator's dtype, checked; see ``_check_own_X``."""
        return self._check_own_X(X, name, check_width)[0]

    def _check_own_X(self, X, name="X", check_width=True):
        """``(X checked, owned)``: ``owned`` says the array is a copy made here (another dtype,
        layout or container), which the estimator may overwrite; else it is the caller's memory."""
        if type(X).__module__.startswith("scipy.sparse"):
            raise ParameterError(f"{name} is a sparse matrix, and sparse input is not supported: pass X.toarray()")
        try:
            X = given = np.asarray(X)
            if X.dtype.kind == "c":
                raise ParameterError(f"Complex data not supported: {name} holds complex numbers")
            X = X.astype(self.dtype, copy=False)
        except TypeError as error:
            raise TypeError(f"{name} must be numeric: {error}") from None
        except ValueError as error:
            raise ParameterError(f"{name} must be numeric: {error}") from None
        if X.ndim != 2:
            raise ParameterError(
                f"{name} must be 2-D (n_samples, n_features); got shape {X.shape}. Reshape your data with "
                "X.reshape(-1, 1) for a single feature or X.reshape(1, -1) for a single sample"
            )
        if len(X) == 0:
            raise ParameterError(f"{name} is empty: at least one sample is needed")
        if X.shape[1] == 0:
            raise ParameterError(f"{name} has 0 feature(s) (shape={X.shape}) while a minimum of 1 is required.")
        if not np.all(np.isfinite(X)):
            rows = np.flatnonzero(~np.isfinite(X).all(axis=1))
            raise ParameterError(
                f"{name} contains NaN or infinite values in {len(rows)} of its {len(X)} rows (the first is row {rows[0]}, "
                f"column {int(np.flatnonzero(~np.isfinite(X[rows[0]]))[0])})"
            )
        if check_width and hasattr(self, "n_features_in_") and X.shape[1] != self.n_features_in_:
            raise ParameterError(
                f"{name} has {X.shape[1]} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input"
            )
        X = np.ascontiguousarray(X)
        return X, not np.may_share_memory(X, given)

    def _check_y(self, y, n_samples, name="y"):
        if y is None:
            raise ParameterError(f"{type(self).__name__} requires y to be passed, but the target y is None")
        y = np.asarray(y)
        if y.dtype.kind == "c":
            raise ParameterError(f"Complex data not supported: {name} holds complex numbers")
        if y.ndim == 2 and y.shape[1] == 1:
            warnings.warn(
                f"A column-vector y was passed when a 1d array was expected: {name} of shape {y.shape} "
                f"is read as ({len(y)},)", DataConversionWarning, stacklevel=3,
            )
            y = y[:, 0]
        if y.dtype == object:
            y = y.astype(str)
        if y.ndim != 1 or len(y) != n_samples:
            raise ParameterError(f"{name} must be 1-D with one label per sample ({n_samples}); got shape {y.shape}")
        if y.dtype.kind == "f" and not np.all(np.isfinite(y) & (y == np.round(y))):
            raise ParameterError(
                f"Unknown label type: continuous ({name} holds fractional or non-finite numbers; "
                "a classifier needs class labels)"
            )
        return y

    def _encode(self, y, name="y"):
        """Class indices of ``y``; labels never seen in training are refused."""
        indices = np.searchsorted(self.classes_, y)
        indices = np.clip(indices, 0, len(self.classes_) - 1)
        unknown = self.classes_[indices] != y
        if np.any(unknown):
            labels = sorted({str(v) for v in y[unknown]})
            raise ParameterError(
                f"{name} holds labels the model does not know: {', '.join(labels[:5])}; "
                f"known classes: {', '.join(str(c) for c in self.classes_)}"
            )
        return indices

    def _sample_weights(self, targets, sample_weight):
        weights = None
        if sample_weight is not None:
            weights = np.asarray(sample_weight, dtype=np.float64)
            if weights.shape != targets.shape or np.any(weights < 0) or not np.all(np.isfinite(weights)):
                raise ParameterError(
                    f"sample_weight must hold one finite non-negative weight per sample ({len(targets)}); "
                    f"got shape {weights.shape}"
                )
            if not np.any(weights):
                raise ParameterError("sample_weight is zero for every sample: there is nothing to learn from")
        if self.class_weight is not None:
            if self.class_weight == "balanced":
                counts = np.bincount(targets, minlength=len(self.classes_)).astype(np.float64)
                per_class = len(targets) / (len(self.classes_) * np.maximum(counts, 1))
            else:
                per_class = np.ones(len(self.classes_))
                for label, weight in self.class_weight.items():
                    matches = np.flatnonzero(self.classes_ == np.asarray(label, dtype=self.classes_.dtype))
                    if len(matches) == 0:
                        raise ParameterError(f"class_weight names a label not in the data: {label!r}")
                    per_class[matches[0]] = check_number(f"class_weight[{label!r}]", weight, low=0)
            weights = per_class[targets] if weights is None else weights * per_class[targets]
        return None if weights is None else weights.astype(self.dtype)

    # --- training -------------------------------------------------------------------------

    def _make_rng(self):
        if isinstance(self.random_state, np.random.Generator):
            return self.random_state
        return np.random.default_rng(self.random_state)

    def _validation_split(self, targets, rng):
        """Stratified indices (train, validation) with ``validation_fraction`` held out per class."""
        held = []
        for index in range(len(self.classes_)):
            members = rng.permutation(np.flatnonzero(targets == index))
            n_held = min(int(round(self.validation_fraction * len(members))), len(members) - 1)
            held.append(members[: max(n_held, 0)])
        held = np.sort(np.concatenate(held))
        kept = np.setdiff1d(np.arange(len(targets)), held)
        return kept, held

    def _build(self, hidden_sizes, n_features, rng):
        self.loss_ = get_loss(self._loss_name())
        sizes = [n_features, *hidden_sizes, self.loss_.n_outputs(len(self.classes_))]
        self.network_ = Mlp(sizes, self.activation, rng, self.dropout, np.dtype(self.dtype))

    def _loss_name(self):
        if self.loss != "auto":
            if self.loss == "sigmoid_cross_entropy" and len(self.classes_) != 2:
                raise ParameterError(
                    f"loss 'sigmoid_cross_entropy' needs exactly 2 classes; got {len(self.classes_)}"
                )
            return self.loss
        return "sigmoid_cross_entropy" if len(self.classes_) == 2 else "softmax_cross_entropy"

    def _optimizer(self, n_threads=1):
        settings = {name: getattr(self, name) for name in self._optimizer_settings[self.optimizer]}
        return make_optimizer(self.optimizer, learning_rate=self.learning_rate, n_threads=n_threads, **settings)

    def _threads(self):
        return training_threads(self.network_.layer_sizes, int(self.batch_size), self.n_threads)

    def fit(self, X, y, sample_weight=None, validation_data=None, callback=None):
        """Train on ``X`` (n_samples, n_features) and labels ``y`` (n_samples,).

        Parameters
        ----------
        sample_weight : array (n_samples,) or None
            Multiplies each sample's loss (on top of ``class_weight``).
        validation_data : tuple (X_val, y_val) or None
            Used instead of a split of the training data.
        callback : callable or None
            Gets each epoch's record (a dict); returning False stops training.
        """
        hidden_sizes = self._check_params()
        warm = self.warm_start and self._is_fitted()
        X, owned = self._check_own_X(X, check_width=warm)
        y = self._check_y(y, len(X))
        rng = self._make_rng()
        if not warm:
            self.classes_ = np.unique(y)
            if len(self.classes_) < 2:
                raise ParameterError(f"y must hold at least 2 classes; got {len(self.classes_)} class")
        targets = self._encode(y)
        weights = self._sample_weights(targets, sample_weight)

        if validation_data is not None:
            X_val = self._check_X(validation_data[0], "validation X")
            targets_val = self._encode(self._check_y(validation_data[1], len(X_val), "validation y"), "validation y")
            weights_val = self._sample_weights(targets_val, None)
            train_rows = None
        elif self.early_stopping and self.validation_fraction > 0:
            train_rows, held = self._validation_split(targets, rng)
            X_val, targets_val = X[held], targets[held]
            weights_val = None if weights is None else weights[held]
        else:
            train_rows, X_val, targets_val, weights_val = None, None, None, None
        if train_rows is None:  # every sample trains: no copy of a possibly large X
            X_train, targets_train, weights_train = X, targets, weights
            # Standardised in place only when checking X made a copy: the caller's array is never changed.
        else:
            X_train, targets_train = X[train_rows], targets[train_rows]
            weights_train = None if weights is None else weights[train_rows]
            owned = True  # the rows taken out are a copy

        if not warm:
            self.n_features_in_ = X.shape[1]
            self.standardizer_ = Standardizer().fit(X_train) if self.standardize else None
            self._build(hidden_sizes, X.shape[1], rng)
            self.history_ = History()
            self._partial_optimizer = None
        self._set_dropout_rng(rng)
        X_train = self._scale(X_train, in_place=owned)
        # Validation measures the objective training minimises: with the same class and sample weights.
        validation = (None if X_val is None or len(X_val) == 0
                      else (self._scale(X_val, in_place=validation_data is None), targets_val, weights_val))
        n_threads = self._threads()
        optimizer = self._optimizer(n_threads)
        config = TrainingConfig(
            batch_size=int(self.batch_size),
            max_epochs=int(self.max_epochs),
            early_stopping=self.early_stopping,
            patience=int(self.patience),
            l2=self.l2,
            n_threads=n_threads,
        )
        self._train(
            optimizer, X_train, targets_train, config, rng=rng, sample_weight=weights_train, validation=validation,
            schedule=make_schedule(self.schedule, self.learning_rate, int(self.max_epochs)), callback=callback,
        )
        return self

    def _train(self, optimizer, X, targets, config, **settings):
        """``core.training.train`` on this network, continuing ``history_``.

        When training raises (Ctrl-C, divergence) the model stays usable: ``history_`` and
        ``n_epochs_`` tell how far it got, and the network holds the weights ``train`` kept.
        """
        try:
            train(self.network_, self.loss_, optimizer, X, targets, config, history=self.history_, **settings)
        finally:
            self.n_epochs_ = len(self.history_.records)

    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """One more pass over ``(X, y)`` from the current weights (the first call builds the model).

        ``classes`` lists every label that will ever appear; it is needed on the first call
        unless this batch already holds them all. The standardiser is fitted on the first batch.
        """
        hidden_sizes = self._check_params()
        X, owned = self._check_own_X(X)
        y = self._check_y(y, len(X))
        if not self._is_fitted():
            self.classes_ = np.unique(np.asarray(classes) if classes is not None else y)
            if len(self.classes_) < 2:
                raise ParameterError(f"classes must hold at least 2 labels; got {len(self.classes_)}")
            self.n_features_in_ = X.shape[1]
            self.standardizer_ = Standardizer().fit(X) if self.standardize else None
            self._partial_rng = self._make_rng()
            self._build(hidden_sizes, X.shape[1], self._partial_rng)
            self.history_ = History()
        if getattr(self, "_partial_optimizer", None) is None:
            # A loaded model starts its own optimiser state and random stream here.
            self._partial_optimizer = self._optimizer(self._threads())
            self._partial_rng = getattr(self, "_partial_rng", None) or self._make_rng()
        targets = self._encode(y)
        self._set_dropout_rng(self._partial_rng)
        config = TrainingConfig(batch_size=int(self.batch_size), max_epochs=1, early_stopping=False, l2=self.l2,
                                n_threads=self._threads())
        self._train(
            self._partial_optimizer, self._scale(X, in_place=owned), targets, config, rng=self._partial_rng,
            sample_weight=self._sample_weights(targets, sample_weight),
        )
        return self

    def _set_dropout_rng(self, rng):
        for layer in self.network_.layers:
            if hasattr(layer, "rng"):
                layer.rng = rng

    # --- prediction -----------------------------------------------------------------------

    def _is_fitted(self):
        return hasattr(self, "network_")

    def __sklearn_is_fitted__(self):
        return self._is_fitted()

    def _scale(self, X, in_place=False):
        """``X`` standardised in the estimator's dtype; ``in_place`` when ``X`` is the estimator's own copy."""
        if self.standardizer_ is None:
            return X
        return self.standardizer_.transform(X, np.dtype(self.dtype), in_place=in_place)

    def _logits(self, X):
        if not self._is_fitted():
            raise NotFittedError(f"this {type(self).__name__} is not trained yet: call fit or load a model")
        X, owned = self._check_own_X(X)
        return self.network_.predict_logits(self._scale(X, in_place=owned))

    def decision_function(self, X):
        """Raw scores: the logit of the second class for two classes, else one logit per class."""
        logits = self._logits(X)
        return logits[:, 0] if logits.shape[1] == 1 else logits

    def predict_proba(self, X):
        """Class probabilities, shape (n_samples, n_classes), columns in the order of ``classes_``.

        Raises ModelFileError when they are not finite: a network whose numbers overflow gives
        no answer rather than NaN.
        """
        logits = self._logits(X)
        probabilities = self.loss_.probabilities(logits)
        if not np.all(np.isfinite(probabilities)):
            raise ModelFileError("the model gives NaN or infinite probabilities: its weights or standardiser hold "
                                 "values out of any trained range (a damaged or crafted model file)")
        return probabilities

    def predict(self, X):
        """The most probable label of each sample."""
        probabilities = self.predict_proba(X)
        return self.classes_[probabilities.argmax(axis=1)]

    def score(self, X, y, sample_weight=None):
        """Mean accuracy of ``predict(X)`` against ``y``."""
        correct = (self.predict(X) == np.asarray(y)).astype(np.float64)
        return float(np.average(correct, weights=sample_weight))

    # --- model files ----------------------------------------------------------------------

    def to_arrays(self):
        """The learned state as (arrays by name, JSON-able description) for a model file."""
        if not self._is_fitted():
            raise NotFittedError(f"this {type(self).__name__} is not trained yet: nothing to save")
        arrays = {}
        for index, layer in enumerate(self.network_.dense_layers):
            arrays[f"layer{index}.weights"] = layer.weights
            arrays[f"layer{index}.bias"] = layer.bias
        if self.standardizer_ is not None:
            arrays["standardizer.mean"] = self.standardizer_.mean_
            arrays["standardizer.scale"] = self.standardizer_.scale_
        params = {k: v for k, v in self.get_params().items() if k != "random_state"}
        params["hidden_sizes"] = list(self._check_params())
        params["dtype"] = np.dtype(self.dtype).name
        if isinstance(params["class_weight"], dict):
            # JSON object keys must be strings; pairs keep integer labels as they are.
            params["class_weight"] = [[_plain(k), float(v)] for k, v in params["class_weight"].items()]
        description = {
            "params": params,
            "random_state": self.random_state if isinstance(self.random_state, int) else None,
            "layer_sizes": self.network_.layer_sizes,
            "loss": self.loss_.name,
            "classes": self.classes_.tolist(),
            "n_features": int(self.n_features_in_),
            "history": self.history_.to_dict(),
        }
        return arrays, description

    @classmethod
    def from_arrays(cls, arrays, description):
        """Rebuild a trained classifier from ``to_arrays`` output, checking every shape.

        Raises ValueError (with the array's name) when an array is missing or misshapen.
        """
        params = dict(description["params"])
        if isinstance(params.get("class_weight"), list):
            params["class_weight"] = {label: weight for label, weight in params["class_weight"]}
        model = cls(**params, random_state=description.get("random_state"))
        model._check_params()
        model.classes_ = np.asarray(description["classes"])
        model.n_features_in_ = int(description["n_features"])
        model.loss_ = get_loss(description["loss"])
        sizes = [int(s) for s in description["layer_sizes"]]
        expected_sizes = [model.n_features_in_, *model._check_params(), model.loss_.n_outputs(len(model.classes_))]
        if sizes != expected_sizes:
            raise ValueError(f"layer sizes {sizes} do not match the described model {expected_sizes}")
        model.network_ = Mlp(sizes, model.activation, np.random.default_rng(0), model.dropout, np.dtype(model.dtype))
        for index, layer in enumerate(model.network_.dense_layers):
            for part, target in (("weights", layer.weights), ("bias", layer.bias)):
                name = f"layer{index}.{part}"
                if name not in arrays:
                    raise ValueError(f"array {name!r} is missing")
                if arrays[name].shape != target.shape:
                    raise ValueError(f"array {name!r} has shape {arrays[name].shape}; expected {target.shape}")
                target[...] = arrays[name]
        if model.standardize:
            for name in ("standardizer.mean", "standardizer.scale"):
                if name not in arrays:
                    raise ValueError(f"array {name!r} is missing")
                if arrays[name].shape != (model.n_features_in_,):
                    raise ValueError(
                        f"array {name!r} has shape {arrays[name].shape}; expected ({model.n_features_in_},)"
                    )
            model.standardizer_ = Standardizer.from_arrays(arrays["standardizer.mean"], arrays["standardizer.scale"])
        else:
            model.standardizer_ = None
        model.history_ = History.from_dict(description.get("history", {}))
        model.n_epochs_ = len(model.history_.records)
        return model


def _plain(value):
    """A numpy scalar as the matching Python value, for JSON."""
    return value.item() if isinstance(value, np.generic) else value


def _same(a, b):
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return a is b
