"""The suite's one model file: a single .npz with weights, standardisers and JSON metadata.

Layout of the archive:

- ``metadata``: a 0-d string array holding JSON: ``format_version``, ``pipeline``, ``models``
  (each model's description) and whatever the pipeline adds (feature parameters, thresholds,
  training settings, measured figures);
- ``model/<name>/<array>``: the arrays of each model (``layer0.weights``, ...);
- ``array/<name>``: extra arrays of the pipeline.

Loading never unpickles (``allow_pickle=False``) and checks everything it reads, so a damaged,
foreign or newer file is refused with one clear message instead of misbehaving later.
"""

import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from inkvoice.core.errors import ModelFileError
from inkvoice.core.estimator import MlpClassifier
from inkvoice.core.files import atomic_path

FORMAT_VERSION = 1
RESERVED_KEYS = ("format_version", "pipeline", "models")


@dataclass
class Bundle:
    """A loaded model file: trained models by name, metadata, and extra arrays."""

    pipeline: str
    models: dict
    metadata: dict
    arrays: dict = field(default_factory=dict)


def _archive(pipeline, models, metadata, arrays):
    clashes = [key for key in RESERVED_KEYS if key in metadata]
    if clashes:
        raise ValueError(f"metadata keys {clashes} are reserved for the model file itself")
    entries = {}
    descriptions = {}
    for name, model in models.items():
        model_arrays, descriptions[name] = model.to_arrays()
        for array_name, array in model_arrays.items():
            entries[f"model/{name}/{array_name}"] = array
    for name, array in (arrays or {}).items():
        entries[f"array/{name}"] = np.asarray(array)
    document = {"format_version": FORMAT_VERSION, "pipeline": pipeline, "models": descriptions, **metadata}
    entries["metadata"] = np.array(json.dumps(document, allow_nan=False))
    return entries


def dumps(pipeline, models, metadata=None, arrays=None):
    """The model file's bytes, for storing a model somewhere other than a file."""
    buffer = io.BytesIO()
    np.savez(buffer, **_archive(pipeline, models, metadata or {}, arrays))
    return buffer.getvalue()


def save_model(path, pipeline, models, metadata=None, arrays=None):
    """Write a model file atomically: an interrupted save leaves the previous file intact.

    Parameters
    ----------
    path : path-like
    pipeline : str
        Which pipeline the file belongs to ("speech", "signature"); checked at load time.
    models : dict of str -> MlpClassifier
        Trained models by name.
    metadata : dict or None
        JSON-able information the pipeline needs to rebuild its preprocessing.
    arrays : dict of str -> ndarray or None
        Extra numeric arrays (no object arrays).
    """
    payload = dumps(pipeline, models, metadata, arrays)
    with atomic_path(path, suffix=".npz") as temporary:
        temporary.write_bytes(payload)


def load_model(path, pipeline):
    """Read and check a model file written by ``save_model`` for ``pipeline``.

    Raises
    ------
    ModelFileError
        Missing, truncated or non-npz file; object arrays; no or bad metadata; a newer
        format version; another pipeline; missing or misshapen arrays; non-finite weights.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {path} does not exist")
    return loads(path.read_bytes(), pipeline, name=str(path))


def loads(payload, pipeline, name="model"):
    """Like ``load_model`` for bytes made by ``dumps``; ``name`` labels the error messages."""
    entries = _read_entries(payload, name)
    if "metadata" not in entries or entries["metadata"].dtype.kind != "U" or entries["metadata"].ndim != 0:
        raise ModelFileError(f"{name} is not a model file of this suite: it has no metadata")
    try:
        metadata = json.loads(str(entries["metadata"]))
    except json.JSONDecodeError as error:
        raise ModelFileError(f"{name} has unreadable metadata: {error}") from None
    if not isinstance(metadata, dict) or not isinstance(metadata.get("format_version"), int):
        raise ModelFileError(f"{name} is not a model file of this suite: its metadata has no format version")
    if metadata["format_version"] > FORMAT_VERSION:
        raise ModelFileError(
            f"{name} uses model format {metadata['format_version']}, newer than this version reads "
            f"({FORMAT_VERSION}): upgrade inkvoice to load it"
        )
    if metadata.get("pipeline") != pipeline:
        raise ModelFileError(f"{name} is a {metadata.get('pipeline')!r} model, not a {pipeline!r} model")
    models = {}
    for model_name, description in metadata.get("models", {}).items():
        prefix = f"model/{model_name}/"
        arrays = {key[len(prefix) :]: value for key, value in entries.items() if key.startswith(prefix)}
        for array_name, array in arrays.items():
            if array.dtype.kind != "f" or not np.all(np.isfinite(array)):
                raise ModelFileError(f"{name}: array {prefix}{array_name} holds non-finite or non-numeric weights")
        try:
            models[model_name] = MlpClassifier.from_arrays(arrays, description)
        except (KeyError, TypeError, ValueError) as error:
            raise ModelFileError(f"{name}: model {model_name!r} does not fit its description: {error}") from None
    extra = {key[len("array/") :]: value for key, value in entries.items() if key.startswith("array/")}
    metadata = {key: value for key, value in metadata.items() if key not in RESERVED_KEYS}
    return Bundle(pipeline=pipeline, models=models, metadata=metadata, arrays=extra)


def _read_entries(payload, name):
    # numpy would take any other bytes for a pickle and suggest loading them unsafely; say what the file is not.
    if not payload.startswith((b"PK\x03\x04", b"\x93NUMPY")):
        raise ModelFileError(f"{name} is damaged or not an .npz model file: it does not begin like one")
    try:
        archive = np.load(io.BytesIO(payload), allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ModelFileError(f"{name} is not a model file: it holds a single array, not an .npz archive")
        with archive:
            return {key: archive[key] for key in archive.files}
    except ModelFileError:
        raise
    except ValueError as error:
        if "Object arrays" in str(error):
            raise ModelFileError(f"{name} holds object arrays, which are refused because loading them runs code") from None
        raise ModelFileError(f"{name} is damaged or not an .npz model file: {error}") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as error:
        raise ModelFileError(f"{name} is damaged or not an .npz model file ({type(error).__name__}: {error})") from None
