"""Train, fine-tune, save, load and apply a spoken-word model (an MLP on MFCC summaries)."""

import contextlib
import dataclasses
import time
from pathlib import Path

import numpy as np

from inkvoice.core.errors import DataError, ModelFileError, ParameterError, ProjectError, check_number
from inkvoice.core.extraction import ExtractionSettings
from inkvoice.speech.audio import DEFAULT_MAX_SECONDS, NoSpeechError
from inkvoice.speech.augment import DEFAULT_AUGMENTATION, TEST_AUGMENTATION, augmentation_parameters
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
# The network's extra class for what is none of the model's words (non-speech, other words);
# predictions answer UNKNOWN for it.
REJECT_CLASS = "<unknown>"
UNKNOWN = "unknown"

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
# Fine-tuning (``init``) continues from the model's weights: fewer epochs, a smaller step.
FINE_TUNING = {"epochs": 15, "learning_rate": 3e-4}
DEFAULT_AUGMENTATION_COPIES = DEFAULT_AUGMENTATION["copies"]
# Test-time augmentation: the probabilities of a clip are averaged over the clip and this many
# variants of it at other speeds (from a fixed seed, so answers are repeatable). It helps most
# on voices unlike the training speakers.
DEFAULT_TEST_COPIES = 24
TEST_SEED = 12345
# A clip is answered ``unknown`` when the rejection class's probability reaches this. Chosen on
# leave-one-speaker-out development folds (the lowest rejecting at most 1 % of their digits came
# out 0.7-0.8; 0.7 rejects more other words): non-speech gets nearly 1, a word in noise or an
# unfamiliar voice often 0.5-0.7 (docs/experiments.md).
DEFAULT_REJECT_THRESHOLD = 0.7
# Each word read in a long stretch costs this much log-probability, so that a word is not cut
# in two unless both halves sound clearly like words.
SEGMENT_PENALTY = 0.5
SPLIT_CHOICES = ("auto", "official", "speaker", "random", "none")
DEFAULT_TEST_FRACTION = 0.2


def extract_features(paths, parameters, *, augmentation=None, seed=0, max_seconds=DEFAULT_MAX_SECONDS,
                     extraction=None, progress=None):
    """Feature rows for ``paths``: ``(results, failures)``.

    ``results[i]`` is an array of shape (n_features,) - or (rows, n_features) when
    ``augmentation`` is given (see :func:`speech.features.extract_augmented`) - or None when
    that file failed; ``failures`` lists ``(path, DataError)`` in file order. ``extraction``
    (an :class:`inkvoice.core.extraction.ExtractionSettings`, default: every core, cached) says
    how the work is run.
    """
    extraction = ExtractionSettings() if extraction is None else extraction
    if augmentation is not None and (augmentation["copies"] > 0 or augmentation.get("negatives", 0) > 0):
        function = extract_augmented
        arguments = {**parameters, "augmentation": augmentation, "seed": int(seed), "max_seconds": max_seconds}
    else:
        function = extract
        arguments = {**parameters, "max_seconds": max_seconds}
    arguments["feature_version"] = FEATURE_VERSION
    outputs = extraction.extract(function, paths, arguments, progress=progress)
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
        """The words the model can answer, in the order of its probabilities (without the rejection class)."""
        return [str(label) for label in self.networks[0].classes_ if str(label) != REJECT_CLASS]

    @property
    def classes(self):
        """Every class of the networks, the rejection class included when the model has one."""
        return [str(label) for label in self.networks[0].classes_]

    def predict_proba(self, X):
        """Mean class probabilities of the networks for feature rows ``X`` (columns: :attr:`classes`)."""
        return np.mean([network.predict_proba(X) for network in self.networks], axis=0)

    @property
    def reject_threshold(self):
        """The rejection class's probability from which a clip is answered ``unknown``."""
        return float(self.metadata.get("prediction", {}).get("reject_threshold", DEFAULT_REJECT_THRESHOLD))

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
        from inkvoice.core.bundle import NUMBER, ArraySpec, ModelSchema, OptionalField, load_model

        schema = ModelSchema(
            fields={"features": dict, "feature_version": OptionalField(int), "training": OptionalField(dict),
                    "prediction": OptionalField({"test_copies": OptionalField(int), "reject_threshold": OptionalField(NUMBER)}),
                    "figures": OptionalField(dict), "data": OptionalField(dict)},
            # Slaney-normalised mel filters stay below 1; feature vectors are normalised MFCC summaries.
            arrays={"mel_basis": ArraySpec(ndim=2, not_all_zero=True, non_negative=True, max_abs=10.0, required=False),
                    "rehearsal_X": ArraySpec(ndim=2, max_abs=1e6, required=False),
                    "rehearsal_y": ArraySpec(ndim=1, kinds="U", required=False)},
        )
        bundle = load_model(path, PIPELINE, schema)
        metadata = dict(bundle.metadata)
        prediction = metadata.get("prediction") or {}
        for key, low, high, integer in (("test_copies", 0, 50, True), ("reject_threshold", 0, 1, False)):
            if prediction.get(key) is not None:
                try:
                    check_number(f"prediction.{key}", prediction[key], low=low, high=high, integer=integer)
                except ParameterError as error:
                    raise ModelFileError(f"{path}: {error}") from None
        names = sorted((name for name in bundle.models if name.startswith(MODEL_PREFIX)), key=lambda n: int(n[len(MODEL_PREFIX):] or 0))
        if not names or not isinstance(metadata.get("features"), dict):
            raise ModelFileError(f"{path} is not a complete speech model: no network or no feature parameters")
        if metadata.get("feature_version", 0) > FEATURE_VERSION:
            raise ModelFileError(f"{path} uses feature version {metadata['feature_version']}, newer than this version reads")
        stored = dict(metadata.pop("features"))
        # Files written before the voice activity detector had a second pass were trained with one.
        stored.setdefault("vad_passes", 1)
        try:
            features = feature_parameters(**stored)
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

    def describe(self):
        """What the model recognises, its layers, activations, training and figures, as plain data."""
        network = self.networks[0]
        training = {k: v for k, v in self.metadata.get("training", {}).items() if k != "history"}
        widths = [int(layer.weights.shape[1]) for layer in network.network_.dense_layers]
        return {
            "labels": self.labels,
            "rejects": REJECT_CLASS in self.classes,
            "layers": [int(network.n_features_in_), *widths],
            "activation": network.activation,
            "output": "sigmoid" if network._loss_name() == "sigmoid_cross_entropy" else "softmax",
            "n_features": feature_length(self.features),
            "features": self.features,
            "prediction": self.metadata.get("prediction", {}),
            "training": training,
            "data": self.metadata.get("data", {}),
            "figures": self.metadata.get("figures", {}),
            "epochs_run": len(network.history_.records),
        }

    @property
    def test_copies(self):
        """Variants averaged per clip at prediction (0 when the model was saved without)."""
        return int(self.metadata.get("prediction", {}).get("test_copies", 0))

    def _test_augmentation(self, test_copies):
        copies = self.test_copies if test_copies is None else int(
            check_number("test_copies", test_copies, low=0, high=50, integer=True))
        return augmentation_parameters(**{**TEST_AUGMENTATION, "copies": copies}) if copies else None

    def predict_proba_files(self, paths, *, test_copies=None, max_seconds=DEFAULT_MAX_SECONDS, extraction=None,
                            progress=None):
        """Class probabilities per file: ``(probabilities or None per path, failures)``.

        Columns follow :attr:`classes`. ``test_copies`` variants of each clip at other speeds
        are averaged with it (default: the model's setting; 0 uses the clip alone).
        """
        augmentation = self._test_augmentation(test_copies)
        extraction = _small_batch(extraction, len(paths) * (1 + (augmentation or {}).get("copies", 0)))
        results, failures = extract_features(
            paths, self.features, augmentation=augmentation, seed=TEST_SEED, max_seconds=max_seconds,
            extraction=extraction, progress=progress,
        )
        return self._probabilities(results), failures

    def _probabilities(self, results):
        """Mean probabilities over each result's finite rows (None stays None)."""
        blocks = [None if r is None else np.atleast_2d(r)[np.all(np.isfinite(np.atleast_2d(r)), axis=1)] for r in results]
        filled = [i for i, block in enumerate(blocks) if block is not None and len(block)]
        probabilities = [None] * len(results)
        if filled:
            matrix = self.predict_proba(np.vstack([blocks[i] for i in filled]))
            bounds = np.cumsum([0] + [len(blocks[i]) for i in filled])
            for i, start, stop in zip(filled, bounds[:-1], bounds[1:]):
                probabilities[i] = matrix[start:stop].mean(axis=0)
        return probabilities

    def decide(self, probabilities, *, top_k=1, min_confidence=0.0):
        """The answer for one clip's class probabilities, as plain data.

        Returns
        -------
        dict
            ``label`` (a word, or ``"unknown"``), ``confidence`` (the best word's probability),
            ``top`` (the ``top_k`` likeliest words with their probabilities) and, for
            ``unknown``, the ``reason``.
        """
        classes = self.classes
        words = [i for i, label in enumerate(classes) if label != REJECT_CLASS]
        order = sorted(words, key=lambda i: -probabilities[i])[: max(1, int(top_k))]
        best = order[0]
        answer = {"label": classes[best], "confidence": round(float(probabilities[best]), 4),
                  "top": [{"label": classes[i], "probability": round(float(probabilities[i]), 4)} for i in order]}
        rejected = REJECT_CLASS in classes and probabilities[classes.index(REJECT_CLASS)] >= self.reject_threshold
        if rejected:
            answer.update(label=UNKNOWN, reason="not one of the model's words")
        elif probabilities[best] < min_confidence:
            answer.update(label=UNKNOWN, reason=f"confidence {probabilities[best]:.3f} below {min_confidence:g}")
        return answer

    def predict_files(self, paths, *, top_k=1, min_confidence=0.0, test_copies=None, max_seconds=DEFAULT_MAX_SECONDS,
                      extraction=None, progress=None):
        """Which word each audio file holds: one plain record per path, in order.

        Each record has ``file`` and either the fields of :meth:`decide` or ``error`` (the
        file could not be used). A recording in which no speech is found is answered
        ``unknown`` with the reason ``no speech found``.
        """
        check_number("top_k", top_k, low=1, integer=True)
        check_number("min_confidence", min_confidence, low=0, high=1)
        probabilities, failures = self.predict_proba_files(
            paths, test_copies=test_copies, max_seconds=max_seconds, extraction=extraction, progress=progress)
        errors = dict((str(path), error) for path, error in failures)
        records = []
        for path, row in zip(paths, probabilities):
            error = errors.get(str(path))
            if isinstance(error, NoSpeechError):
                records.append({"file": str(path), "label": UNKNOWN, "confidence": 0.0, "top": [], "reason": "no speech found"})
            elif row is None:
                records.append({"file": str(path), "error": str(error)})
            else:
                records.append({"file": str(path), **self.decide(row, top_k=top_k, min_confidence=min_confidence)})
        return records

    def transcribe_files(self, paths, *, min_confidence=0.0, test_copies=None, max_seconds=DEFAULT_MAX_SECONDS,
                         extraction=None, progress=None):
        """The words spoken one after another in each file: one plain record per path, in order.

        Each record has ``file`` and either ``error``, or ``digits`` (the words joined, e.g.
        ``"5551234"``; words longer than one character are separated by spaces) and
        ``segments``: ``start`` and ``end`` in seconds, ``label`` and ``confidence`` of each
        stretch of speech found, ``unknown`` ones included (they add nothing to ``digits``).
        """
        from inkvoice.speech.features import extract_segments

        check_number("min_confidence", min_confidence, low=0, high=1)
        augmentation = self._test_augmentation(test_copies)
        copies = 0 if augmentation is None else augmentation["copies"]
        arguments = {**self.features, "test_copies": copies, "seed": TEST_SEED, "max_seconds": max_seconds,
                     "feature_version": FEATURE_VERSION}
        extraction = _small_batch(extraction, len(paths) * 8 * (1 + copies))
        outputs = extraction.extract(extract_segments, paths, arguments, progress=progress)
        records = []
        for path, output in zip(paths, outputs):
            if isinstance(output, NoSpeechError):
                records.append({"file": str(path), "digits": "", "segments": []})
                continue
            if isinstance(output, Exception):
                records.append({"file": str(path), "error": str(output)})
                continue
            segments = []
            for number in np.unique(output[:, 0]).astype(int):
                segments += self._read_stretch(output[output[:, 0] == number], min_confidence)
            words = [segment["label"] for segment in segments if segment["label"] != UNKNOWN]
            separator = "" if all(len(word) == 1 for word in words) else " "
            records.append({"file": str(path), "digits": separator.join(words), "segments": segments})
        return records


    def _read_stretch(self, rows, min_confidence):
        """The words of one stretch of speech: the sequence of candidates the model finds likeliest.

        Each candidate scores the log of its best word's probability, less
        ``SEGMENT_PENALTY``; a stretch with one candidate is one word.
        """
        candidates = {}
        for a, b in {(int(a), int(b)) for a, b in rows[:, 1:3]}:
            chosen = rows[(rows[:, 1] == a) & (rows[:, 2] == b)]
            probabilities = self._probabilities([chosen[:, 5:]])[0]
            if probabilities is None:
                continue
            decision = self.decide(probabilities, min_confidence=min_confidence)
            score = np.log(max(decision["confidence"], 1e-6)) - SEGMENT_PENALTY
            if decision["label"] == UNKNOWN:
                score = np.log(1e-6)
            candidates[(a, b)] = (score, {"start": round(float(chosen[0, 3]), 3), "end": round(float(chosen[0, 4]), 3),
                                          "label": decision["label"], "confidence": decision["confidence"]})
        if not candidates:
            return []
        last = max(b for _, b in candidates)
        best = {0: (0.0, [])}
        for b in range(1, last + 1):
            options = [(best[a][0] + candidates[(a, b)][0], best[a][1] + [candidates[(a, b)][1]])
                       for a in range(b) if a in best and (a, b) in candidates]
            if options:
                best[b] = max(options, key=lambda option: option[0])
        return best[last][1]


def _small_batch(extraction, n_rows):
    """One process for a handful of clips: a worker pool costs more than it saves."""
    extraction = ExtractionSettings() if extraction is None else extraction
    if extraction.n_jobs is None and n_rows < 200:
        return dataclasses.replace(extraction, n_jobs=1)
    return extraction


def _rehearsal_sample(X, y, generator):
    keep = []
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        keep.extend(generator.permutation(members)[:REHEARSAL_PER_LABEL])
    keep = np.sort(np.asarray(keep, dtype=int))
    return X[keep], y[keep]


def _stack_training(results, labels, n_words):
    """Rows and labels: the first ``n_words`` rows of a file are its word, the rest rejection examples.

    Rows in which no speech was found (NaN) are left out.
    """
    X, y = [], []
    for result, label in zip(results, labels):
        if result is None:
            continue
        block = result if result.ndim == 2 else result[None, :]
        names = np.array([str(label)] * min(n_words, len(block)) + [REJECT_CLASS] * max(0, len(block) - n_words))
        usable = np.all(np.isfinite(block), axis=1)
        X.append(block[usable])
        y.append(names[usable])
    if not X:
        raise DataError("no usable training clips: every file failed")
    return np.vstack(X), np.concatenate(y)


def _check_interrupted(networks):
    for network in networks:
        history = network.history_
        if getattr(history, "interrupted", False):
            raise ProjectError(f"training interrupted after {len(history.records)} epochs; no model written")


def train(dataset, train_indices, *, features=None, augmentation=None, training=None, init=None,
          max_seconds=DEFAULT_MAX_SECONDS, extraction=None, progress=None, callback=None):
    """Train a SpeechModel on ``dataset[train_indices]`` (or fine-tune ``init`` on them).

    Parameters
    ----------
    dataset : speech.dataset.Dataset
    train_indices : array of int
    features : dict or None
        Feature parameters (defaults from :func:`speech.features.feature_parameters`); ignored
        when fine-tuning, which keeps the parameters of ``init``.
    augmentation : dict or None
        Augmentation settings (see :mod:`speech.augment`); None trains on clean clips only,
        without a rejection class.
    training : dict or None
        Overrides of ``DEFAULT_TRAINING`` (of ``FINE_TUNING`` too with ``init``); ``ensemble``
        networks are trained from different initial weights and their probabilities averaged;
        ``test_copies`` (default ``DEFAULT_TEST_COPIES``, used only with augmentation) is
        stored as the model's test-time augmentation.
    init : SpeechModel or None
        Fine-tune this model: continue from its weights on the new clips mixed with its
        rehearsal sample. The new clips may only use its labels.
    extraction : inkvoice.core.extraction.ExtractionSettings or None
        How features are extracted (processes, cache).

    Returns
    -------
    model : SpeechModel
    failures : list of (path, DataError)
        Files that could not be used (training went on without them).

    Raises
    ------
    ProjectError
        Training was interrupted (Ctrl-C): no model is returned.
    """
    from inkvoice.core.estimator import MlpClassifier

    settings = {**DEFAULT_TRAINING, **(FINE_TUNING if init is not None else {}), **(training or {})}
    check_number("epochs", settings["epochs"], low=1, high=10000, integer=True)
    check_number("ensemble", settings["ensemble"], low=1, high=20, integer=True)
    check_number("test_copies", settings.get("test_copies", DEFAULT_TEST_COPIES), low=0, high=50, integer=True)
    check_number("seed", settings["seed"], low=0, integer=True)
    hidden_sizes = [check_number("hidden size", int(size), low=1, high=10000, integer=True) for size in settings["hidden_sizes"]]
    features = init.features if init is not None else feature_parameters(**(features or {}))
    if augmentation is not None:
        augmentation = augmentation_parameters(**augmentation)
        if init is not None and REJECT_CLASS not in init.classes:
            augmentation["negatives"] = 0  # a model without a rejection class cannot learn one now
    paths = [dataset.paths[i] for i in train_indices]
    results, failures = extract_features(
        paths, features, augmentation=augmentation, seed=settings["seed"], max_seconds=max_seconds,
        extraction=extraction, progress=progress,
    )
    n_words = 1 + (augmentation["copies"] if augmentation is not None else 0)
    X, y = _stack_training(results, dataset.labels[train_indices], n_words)
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
            _check_interrupted(networks)
        rehearsal = _rehearsal_sample(X, y, generator)
        history = []
    else:
        new = sorted(set(y.tolist()) - set(init.classes))
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
            _check_interrupted(networks)
        rehearsal = init.rehearsal
        history = list(init.metadata.get("training", {}).get("history", []))
    n_clips = int(len(paths) - len(failures))
    base = init.metadata.get("training", {}) if init is not None else {}
    training_record = {
        **{key: settings[key] for key in DEFAULT_TRAINING},
        "hidden_sizes": hidden_sizes if init is None else base.get("hidden_sizes", []),
        "ensemble": len(networks),
        "augmentation": augmentation,
        "n_clips": n_clips,
        "n_rows": int(len(X)),
        "seconds": round(time.perf_counter() - started, 2),
        "fine_tuned": init is not None,
        "history": history + [{"clips": n_clips, "fine_tuning": init is not None}],
    }
    metadata = dict(init.metadata) if init is not None else {}
    metadata["training"] = training_record
    if init is None:
        copies = int(settings.get("test_copies", DEFAULT_TEST_COPIES))
        metadata["prediction"] = {"test_copies": copies if augmentation is not None else 0,
                                  "reject_threshold": DEFAULT_REJECT_THRESHOLD}
    return SpeechModel(networks, features, metadata, rehearsal), failures


def train_folder(data, *, split="auto", test_speaker=None, test_fraction=DEFAULT_TEST_FRACTION, seed=0, extra=(),
                 init=None, augment=True, copies=DEFAULT_AUGMENTATION_COPIES, test_copies=DEFAULT_TEST_COPIES,
                 training=None, max_seconds=DEFAULT_MAX_SECONDS, extraction=None, reporter=None):
    """Train (or fine-tune ``init``) on a folder of labelled clips and measure the held-out part.

    What ``speech train`` does, from Python: ``data`` in either layout of
    :func:`speech.dataset.load_dataset`; ``split`` one of ``SPLIT_CHOICES`` (``auto``: every
    clip trains when fine-tuning ``init``, else FSDD's official split for FSDD names and a
    random one for others; ``none``: train on everything);
    ``extra`` folders of clips that only ever train. The model's metadata records the data,
    the split, the true number of clips trained on and the held-out accuracy. ``reporter``,
    when given, is called as ``reporter(label, total)`` for each stage and returns a context
    manager and a ``progress(n_done)`` callback (as :func:`core.command.progress_reporter`).

    Returns
    -------
    model : SpeechModel
    failures : list of (path, DataError)
        Files that could not be used, in training and in the held-out test.
    """
    from inkvoice.speech.dataset import load_dataset, split_indices
    from inkvoice.speech.evaluation import evaluate

    if split not in SPLIT_CHOICES:
        raise ParameterError(f"split must be one of {', '.join(SPLIT_CHOICES)}; got {split!r}")
    dataset = load_dataset(data)
    if split == "auto":
        # Fine-tuning learns from a user's few recordings, all of them; a split is for
        # measuring, and is asked for.
        split = "none" if init is not None else "official" if dataset.layout == "fsdd" else "random"
    if split == "none":
        train_indices, test_indices = np.arange(len(dataset)), np.arange(0)
    else:
        train_indices, test_indices = split_indices(dataset, split, test_speaker=test_speaker,
                                                    test_fraction=test_fraction, seed=seed)
    test_set = dataset.subset(test_indices)
    n_own, n_data = len(train_indices), len(dataset)
    for folder in extra:
        dataset, train_indices = dataset.with_extra(load_dataset(folder), train_indices)
    settings = {"seed": seed, "test_copies": test_copies, **(training or {})}
    augmentation = {"copies": copies} if augment and copies > 0 else None
    bar, progress = _stage(reporter, "features", len(train_indices))
    with bar:
        model, failures = train(dataset, train_indices, augmentation=augmentation, training=settings, init=init,
                                max_seconds=max_seconds, extraction=extraction, progress=progress)
    if init is not None:
        # The figures measured before fine-tuning no longer describe this model.
        model.metadata["figures_before_fine_tuning"] = model.metadata.pop("figures", {})
    failed = {str(path) for path, _ in failures}
    summary = {"name": Path(data).resolve().name, "layout": dataset.layout, "split": split, "clips": n_data,
               "train": model.metadata["training"]["n_clips"], "test": int(len(test_indices))}
    if extra:
        extra_paths = dataset.paths[len(dataset) - (len(train_indices) - n_own):]
        summary["extra"] = {"folders": [Path(folder).resolve().name for folder in extra],
                            "clips": sum(str(path) not in failed for path in extra_paths)}
    figures = {}
    if len(test_indices):
        bar, progress = _stage(reporter, "evaluating", len(test_set))
        with bar:
            report, test_failures = evaluate(model, test_set, max_seconds=max_seconds, extraction=extraction,
                                             progress=progress)
        failures = failures + test_failures
        key = f"{split}_accuracy" if split != "speaker" else f"speaker_{test_speaker}_accuracy"
        figures[key] = round(report["accuracy"], 4)
        summary["test"] = report["n_clips"]
        summary["test_accuracy"] = round(report["accuracy"], 4)
    model.metadata["figures"] = figures
    model.metadata["data"] = summary
    return model, failures


def _stage(reporter, label, total):
    if reporter is None:
        return contextlib.nullcontext(), None
    return reporter(label, total)
