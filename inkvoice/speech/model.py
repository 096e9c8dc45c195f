"""Train, fine-tune, save, load and apply a spoken-word model (an MLP on MFCC summaries)."""

import time

import numpy as np

from inkvoice.core.errors import DataError, ModelFileError, ParameterError, check_number
from inkvoice.core.extraction import default_cache_dir, extract_many
from inkvoice.speech.audio import DEFAULT_MAX_SECONDS
from inkvoice.speech.augment import augmentation_parameters
from inkvoice.speech.features import (
    FEATURE_VERSION,
    extract,
    extract_augmented,
    feature_length,
    feature_parameters,
    use_mel_filterbank,
)

PIPELINE = "speech"
MODEL_PREFIX = "network"
# Feature vectors per label kept in the model file and replayed when fine-tuning, so that a
# model tuned on a user's few recordings does not forget the voices it was trained on.
REHEARSAL_PER_LABEL = 40

DEFAULT_TRAINING = {
    "hidden_sizes": [256],
    "epochs": 40,
    "batch_size": 128,
    "learning_rate": 1e-3,
    "dropout": 0.2,
    "l2": 1e-4,
    "ensemble": 1,
    "seed": 0,
}
DEFAULT_AUGMENTATION_COPIES = 24
# Test-time augmentation: the probabilities of a clip are averaged over the clip and this many
# perturbed variants of it (drawn as in training, from a fixed seed, so answers are repeatable).
# It helps most on voices unlike the training speakers.
DEFAULT_TEST_COPIES = 24
TEST_SEED = 12345


def extract_features(paths, parameters, *, augmentation=None, seed=0, max_seconds=DEFAULT_MAX_SECONDS,
                     cache=True, n_jobs=None, progress=None):
    """Feature rows for ``paths``: ``(results, failures)``.

    ``results[i]`` is an array of shape (n_features,) - or (1 + copies, n_features) when
    ``augmentation`` is given - or None when that file failed; ``failures`` lists
    ``(path, DataError)`` in file order.
    """
    cache_dir = default_cache_dir() if cache else None
    if augmentation is not None and augmentation["copies"] > 0:
        function = extract_augmented
        arguments = {**parameters, "augmentation": augmentation, "seed": int(seed), "max_seconds": max_seconds}
    else:
        function = extract
        arguments = {**parameters, "max_seconds": max_seconds}
    arguments["feature_version"] = FEATURE_VERSION
    outputs = extract_many(function, paths, arguments, cache_dir=cache_dir, n_jobs=n_jobs, progress=progress)
    results, failures = [], []
    for path, output in zip(paths, outputs):
        if isinstance(output, Exception):
            failures.append((path, output))
            results.append(None)
        else:
            results.append(output)
    return results, failures


class SpeechModel:
    """Trained networks with the feature parameters they were trained on.

    Attributes
    ----------
    networks : list of core.estimator.MlpClassifier
        One or more networks with the same labels; their probabilities are averaged.
    features : dict
        Feature parameters; prediction applies exactly these.
    metadata : dict
        Everything stored in the model file besides the weights (training, figures, ...).
    rehearsal : tuple (X, y) or None
        A sample of training feature vectors, replayed when fine-tuning.
    """

    def __init__(self, networks, features, metadata=None, rehearsal=None):
        self.networks = list(networks)
        self.features = features
        self.metadata = metadata or {}
        self.rehearsal = rehearsal

    @property
    def labels(self):
        """The labels the model can answer, in the order of its probabilities."""
        return [str(label) for label in self.networks[0].classes_]

    def predict_proba(self, X):
        """Mean class probabilities of the networks for feature rows ``X``."""
        return np.mean([network.predict_proba(X) for network in self.networks], axis=0)

    def save(self, path):
        """Write the model file atomically (weights, standardisers, features, metadata)."""
        from inkvoice.core.bundle import save_model
        from inkvoice.speech.features import analysis_matrices

        metadata = {**self.metadata, "features": self.features, "feature_version": FEATURE_VERSION}
        # The filterbank travels with the model so that prediction need not import librosa.
        arrays = {"mel_basis": analysis_matrices(self.features)[1]}
        if self.rehearsal is not None:
            arrays["rehearsal_X"] = self.rehearsal[0].astype(np.float32)
            arrays["rehearsal_y"] = np.asarray(self.rehearsal[1]).astype(str)
        networks = {f"{MODEL_PREFIX}{index}": network for index, network in enumerate(self.networks)}
        save_model(path, PIPELINE, networks, metadata, arrays)

    @classmethod
    def load(cls, path):
        """Read a speech model file.

        Raises
        ------
        ModelFileError
            Not a speech model file, damaged, or its features do not match its networks.
        """
        from inkvoice.core.bundle import ArraySpec, ModelSchema, OptionalField, load_model

        schema = ModelSchema(
            fields={"features": dict, "feature_version": OptionalField(int), "training": OptionalField(dict),
                    "prediction": OptionalField({"test_copies": OptionalField(int)}), "figures": OptionalField(dict)},
            arrays={"mel_basis": ArraySpec(ndim=2, not_all_zero=True, non_negative=True, required=False),
                    "rehearsal_X": ArraySpec(ndim=2, required=False), "rehearsal_y": ArraySpec(ndim=1, kinds="U", required=False)},
        )
        bundle = load_model(path, PIPELINE, schema)
        metadata = dict(bundle.metadata)
        names = sorted((name for name in bundle.models if name.startswith(MODEL_PREFIX)), key=lambda n: int(n[len(MODEL_PREFIX):] or 0))
        if not names or not isinstance(metadata.get("features"), dict):
            raise ModelFileError(f"{path} is not a complete speech model: no network or no feature parameters")
        if metadata.get("feature_version", 0) > FEATURE_VERSION:
            raise ModelFileError(f"{path} uses feature version {metadata['feature_version']}, newer than this version reads")
        try:
            features = feature_parameters(**metadata.pop("features"))
        except ParameterError as error:
            raise ModelFileError(f"{path} has unusable feature parameters: {error}") from None
        networks = [bundle.models[name] for name in names]
        for network in networks:
            if network.n_features_in_ != feature_length(features):
                raise ModelFileError(
                    f"{path}: the network expects {network.n_features_in_} features but its feature parameters "
                    f"make {feature_length(features)}"
                )
            if list(network.classes_) != list(networks[0].classes_):
                raise ModelFileError(f"{path}: its networks disagree on the labels")
        if "mel_basis" in bundle.arrays:
            try:
                use_mel_filterbank(features, bundle.arrays["mel_basis"])
            except ParameterError as error:
                raise ModelFileError(f"{path}: {error}") from None
        rehearsal = None
        if "rehearsal_X" in bundle.arrays and "rehearsal_y" in bundle.arrays:
            rehearsal = (bundle.arrays["rehearsal_X"], bundle.arrays["rehearsal_y"])
        return cls(networks, features, metadata, rehearsal)

    @property
    def test_copies(self):
        """Perturbed copies averaged per clip at prediction (0 when the model was saved without)."""
        return int(self.metadata.get("prediction", {}).get("test_copies", 0))

    def predict_proba_files(self, paths, *, test_copies=None, max_seconds=DEFAULT_MAX_SECONDS, n_jobs=None,
                            cache=False, progress=None):
        """Class probabilities per file: ``(probabilities or None per path, failures)``.

        ``test_copies`` perturbed variants of each clip are averaged with it (default: the
        model's setting; 0 uses the clip alone).
        """
        copies = self.test_copies if test_copies is None else int(check_number("test copies", test_copies, low=0, high=50, integer=True))
        if n_jobs is None and len(paths) * (1 + copies) < 200:
            n_jobs = 1  # a worker pool costs more than it saves on a handful of clips
        augmentation = None
        if copies:
            settings = self.metadata.get("training", {}).get("augmentation") or {}
            augmentation = augmentation_parameters(**{**settings, "copies": copies})
        results, failures = extract_features(
            paths, self.features, augmentation=augmentation, seed=TEST_SEED, max_seconds=max_seconds, cache=cache,
            n_jobs=n_jobs, progress=progress,
        )
        rows = [i for i, r in enumerate(results) if r is not None]
        probabilities = [None] * len(paths)
        if rows:
            blocks = [np.atleast_2d(results[i]) for i in rows]
            matrix = self.predict_proba(np.vstack(blocks))
            bounds = np.cumsum([0] + [len(block) for block in blocks])
            for i, start, stop in zip(rows, bounds[:-1], bounds[1:]):
                probabilities[i] = matrix[start:stop].mean(axis=0)
        return probabilities, failures


def _rehearsal_sample(X, y, generator):
    keep = []
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        keep.extend(generator.permutation(members)[:REHEARSAL_PER_LABEL])
    keep = np.sort(np.asarray(keep, dtype=int))
    return X[keep], y[keep]


def _stack_training(results, labels):
    X, y = [], []
    for result, label in zip(results, labels):
        if result is None:
            continue
        block = result if result.ndim == 2 else result[None, :]
        X.append(block)
        y.extend([label] * len(block))
    if not X:
        raise DataError("no usable training clips: every file failed")
    return np.vstack(X), np.asarray(y)


def train(dataset, train_indices, *, features=None, augmentation=None, training=None, init=None,
          max_seconds=DEFAULT_MAX_SECONDS, n_jobs=None, cache=True, progress=None, callback=None):
    """Train a SpeechModel on ``dataset[train_indices]`` (or fine-tune ``init`` on them).

    Parameters
    ----------
    dataset : speech.dataset.Dataset
    train_indices : array of int
    features : dict or None
        Feature parameters (defaults from :func:`speech.features.feature_parameters`); ignored
        when fine-tuning, which keeps the parameters of ``init``.
    augmentation : dict or None
        Augmentation settings (see :mod:`speech.augment`); None trains on clean clips only.
    training : dict or None
        Overrides of ``DEFAULT_TRAINING``; ``ensemble`` networks are trained from different
        initial weights and their probabilities averaged; ``test_copies`` (default
        ``DEFAULT_TEST_COPIES``, used only with augmentation) is stored as the model's
        test-time augmentation.
    init : SpeechModel or None
        Fine-tune this model: continue from its weights on the new clips mixed with its
        rehearsal sample. The new clips may only use its labels.

    Returns
    -------
    model : SpeechModel
    failures : list of (path, DataError)
        Files that could not be used (training went on without them).
    """
    from inkvoice.core.estimator import MlpClassifier

    settings = {**DEFAULT_TRAINING, **(training or {})}
    check_number("epochs", settings["epochs"], low=1, high=10000, integer=True)
    check_number("ensemble", settings["ensemble"], low=1, high=20, integer=True)
    check_number("test_copies", settings.get("test_copies", DEFAULT_TEST_COPIES), low=0, high=50, integer=True)
    check_number("seed", settings["seed"], low=0, integer=True)
    hidden_sizes = [check_number("hidden size", int(size), low=1, high=10000, integer=True) for size in settings["hidden_sizes"]]
    features = init.features if init is not None else feature_parameters(**(features or {}))
    augmentation = None if augmentation is None else augmentation_parameters(**augmentation)
    paths = [dataset.paths[i] for i in train_indices]
    results, failures = extract_features(
        paths, features, augmentation=augmentation, seed=settings["seed"], max_seconds=max_seconds,
        cache=cache, n_jobs=n_jobs, progress=progress,
    )
    X, y = _stack_training(results, dataset.labels[train_indices])
    generator = np.random.default_rng(settings["seed"])
    started = time.perf_counter()
    if init is None:
        networks = []
        for _ in range(int(settings["ensemble"])):
            network = MlpClassifier(
                hidden_sizes=tuple(hidden_sizes),
                batch_size=int(settings["batch_size"]),
                max_epochs=int(settings["epochs"]),
                learning_rate=float(settings["learning_rate"]),
                dropout=float(settings["dropout"]),
                l2=float(settings["l2"]),
                early_stopping=False,
                schedule="cosine",
                random_state=generator,
            )
            networks.append(network.fit(X, y, callback=callback))
        rehearsal = _rehearsal_sample(X, y, generator)
        history = []
    else:
        new = sorted(set(y.tolist()) - set(init.labels))
        if new:
            raise ParameterError(
                f"fine-tuning cannot add labels {', '.join(new)} (the model knows {', '.join(init.labels)}); "
                "train a new model on all the labels instead"
            )
        if init.rehearsal is not None:
            X = np.vstack([X, init.rehearsal[0]])
            y = np.concatenate([y.astype(str), init.rehearsal[1].astype(str)])
        # Copies through the model-file arrays, so that the model passed in keeps its weights
        # (a deep copy would detach the layers' weights from the network's parameter buffer).
        networks = [MlpClassifier.from_arrays(*network.to_arrays()) for network in init.networks]
        for network in networks:
            network.set_params(
                warm_start=True,
                max_epochs=int(settings["epochs"]),
                learning_rate=float(settings["learning_rate"]),
                early_stopping=False,
                schedule="cosine",
                random_state=generator,
            )
            network.fit(X, y, callback=callback)
        rehearsal = init.rehearsal
        history = list(init.metadata.get("training", {}).get("history", []))
    base = init.metadata.get("training", {}) if init is not None else {}
    training_record = {
        **{key: settings[key] for key in DEFAULT_TRAINING},
        "hidden_sizes": hidden_sizes if init is None else base.get("hidden_sizes", []),
        "ensemble": len(networks),
        "augmentation": augmentation,
        "n_clips": int(len(paths) - len(failures)),
        "n_rows": int(len(X)),
        "seconds": round(time.perf_counter() - started, 2),
        "fine_tuned": init is not None,
        "history": history + [{"clips": int(len(paths) - len(failures)), "fine_tuning": init is not None}],
    }
    metadata = dict(init.metadata) if init is not None else {}
    metadata["training"] = training_record
    if init is None:
        copies = int(settings.get("test_copies", DEFAULT_TEST_COPIES))
        metadata["prediction"] = {"test_copies": copies if augmentation is not None else 0}
    return SpeechModel(networks, features, metadata, rehearsal), failures
