"""The suite's one model file: a single .npz with weights, standardisers and JSON metadata.

Layout of the archive:

- ``metadata``: a 0-d string array holding JSON: ``format_version``, ``pipeline``, ``models``
  (each model's description) and whatever the pipeline adds (feature parameters, thresholds,
  training settings, measured figures);
- ``model/<name>/<array>``: the arrays of each model (``layer0.weights``, ...);
- ``array/<name>``: extra arrays of the pipeline.

Loading never unpickles and checks everything before it builds anything (the zip directory,
each array's header before its data, the metadata's size, depth and types, every array against
its network's description, and the pipeline's own :class:`ModelSchema`), so a damaged, crafted,
foreign or newer file is refused with one clear message, within a small memory and time budget,
instead of misbehaving later.
"""

import io
import json
import math
import os
import re
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from inkvoice.core.errors import DataError, ModelFileError, ProjectError
from inkvoice.core.estimator import MlpClassifier
from inkvoice.core.files import atomic_path, read_input_bytes

FORMAT_VERSION = 1
RESERVED_KEYS = ("format_version", "pipeline", "models")

# Budgets of a model file, far above any real model (a speech model with its rehearsal
# sample is a few MB), so a crafted file is refused before it costs memory or time.
MAX_FILE_BYTES = 256 * 2**20
MAX_ARRAY_BYTES = 256 * 2**20
MAX_MEMBERS = 1000
MAX_METADATA_CHARACTERS = 4 * 2**20
MAX_METADATA_DEPTH = 32
MAX_LAYER_WIDTH = 2**20
# What a network's arrays may hold, by kind (the name after the last dot): far beyond any trained
# network's (weights below 1 in the suite's models; a standardiser's scale is at least the 1e-12
# its fit keeps), so that a crafted or damaged number is refused at loading rather than turning
# answers into NaN or infinity (a scale of 1e-300 is 0 in float32).
ARRAY_RANGES = {"weights": (-1e4, 1e4), "bias": (-1e4, 1e4), "mean": (-1e12, 1e12), "scale": (1e-12, 1e12)}
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")
_MEMBER = re.compile(r"(metadata|model/[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}|array/[A-Za-z0-9_.-]{1,100})\.npy")


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


def load_model(path, pipeline, schema=None):
    """Read and check a model file written by ``save_model`` for ``pipeline``.

    Everything is checked before anything is built, within a small memory and time budget:
    the file's size, the archive's members and their declared sizes, each array's header
    (shape and dtype) before its data is read, the metadata's size, depth and field types,
    every network description against its arrays, and, with a ``schema``, the pipeline's
    own fields and arrays.

    Parameters
    ----------
    path : path-like
    pipeline : str
    schema : ModelSchema or None
        The pipeline's own metadata fields and extra arrays; None accepts any.

    Raises
    ------
    ModelFileError
        Missing, special, oversized, truncated or non-npz file; unknown or oversized members;
        object arrays; no or bad metadata; a newer format version; another pipeline; missing,
        extra or misshapen arrays; non-finite weights or any outside ``ARRAY_RANGES``; fields of the
        wrong type.
    """
    path = Path(path)
    if not os.path.lexists(path):
        raise ModelFileError(f"model file {path} does not exist")
    try:
        payload = read_input_bytes(path, MAX_FILE_BYTES, "model file")
    except DataError as error:
        raise ModelFileError(str(error)) from None
    return loads(payload, pipeline, name=str(path), schema=schema)


def loads(payload, pipeline, name="model", schema=None):
    """Like ``load_model`` for bytes made by ``dumps``; ``name`` labels the error messages."""
    try:
        with _Archive(payload, name) as archive:
            return _load_archive(archive, pipeline, name, schema)
    except ModelFileError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError, NotImplementedError, zlib.error) as error:
        raise ModelFileError(f"{name} is damaged or not an .npz model file ({type(error).__name__}: {error})") from None


def _load_archive(archive, pipeline, name, schema):
    if "metadata" not in archive.members:
        raise ModelFileError(f"{name} is not a model file of this suite: it has no metadata")
    try:
        text = archive.read("metadata", kinds="U", shape=(), limit=4 * MAX_METADATA_CHARACTERS)
    except ModelFileError as error:
        if "object arrays" in str(error):
            raise
        raise ModelFileError(f"{name} is not a model file of this suite: it has no metadata") from None
    metadata = _parse_metadata(str(text), name)
    version = metadata.get("format_version")
    if version is None:
        raise ModelFileError(f"{name} is not a model file of this suite: its metadata has no format version")
    if isinstance(version, bool) or not isinstance(version, (int, float)) or version != int(version) or version < 1:
        raise ModelFileError(f"{name}: format_version must be a whole number such as {FORMAT_VERSION}; got {version!r}")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{name} uses model format {int(version)}, newer than this version reads "
            f"({FORMAT_VERSION}): upgrade inkvoice to load it"
        )
    if metadata.get("pipeline") != pipeline:
        raise ModelFileError(f"{name} is a {_short(metadata.get('pipeline'))} model, not a {pipeline!r} model")
    descriptions = metadata.get("models")
    if not isinstance(descriptions, dict) or not descriptions:
        raise ModelFileError(f"{name}: 'models' must name at least one network; got {_short(descriptions)}")
    expected = {}
    for model_name, description in descriptions.items():
        if not _NAME.fullmatch(model_name):
            raise ModelFileError(f"{name}: {_short(model_name)} is not a usable network name")
        for array_name, shape in _described_arrays(description, f"{name}: model {model_name!r}").items():
            expected[f"model/{model_name}/{array_name}"] = shape
    # Every member is accounted for before any array's data is read.
    for key in sorted(archive.members):
        if key == "metadata" or key in expected:
            continue
        if not key.startswith("array/"):
            raise ModelFileError(f"{name}: unexpected member {key!r} (not described by its metadata)")
        if schema is not None and key[len("array/") :] not in schema.arrays:
            raise ModelFileError(f"{name}: unexpected member {key!r} (not part of this model format)")
    arrays_by_model = {model_name: {} for model_name in descriptions}
    for key, shape in expected.items():
        _, model_name, array_name = key.split("/")
        if key not in archive.members:
            raise ModelFileError(f"{name}: model {model_name!r} does not fit its description: array {array_name!r} is missing")
        array = archive.read(key, kinds="f", shape=shape,
                             where=f"{name}: model {model_name!r} does not fit its description: array {array_name!r}")
        if not np.all(np.isfinite(array)):
            raise ModelFileError(f"{name}: array {key} holds non-finite or non-numeric weights")
        low, high = ARRAY_RANGES[array_name.rsplit(".", 1)[-1]]
        if array.size and not (low <= float(array.min()) and float(array.max()) <= high):
            raise ModelFileError(f"{name}: array {key} holds values from {float(array.min()):.3g} to "
                                 f"{float(array.max()):.3g}, outside [{low:g}, {high:g}]: the file is damaged or crafted")
        arrays_by_model[model_name][array_name] = array
    extra = {key[len("array/") :]: archive.read(key) for key in archive.members if key.startswith("array/")}
    metadata = {key: value for key, value in metadata.items() if key not in RESERVED_KEYS}
    if schema is not None:
        schema.check(metadata, extra, name, pipeline)
    models = {}
    for model_name, description in descriptions.items():
        try:
            models[model_name] = MlpClassifier.from_arrays(arrays_by_model[model_name], description)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError, ProjectError) as error:
            raise ModelFileError(f"{name}: model {model_name!r} does not fit its description: {error}") from None
    return Bundle(pipeline=pipeline, models=models, metadata=metadata, arrays=extra)


def _short(value):
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _parse_metadata(text, name):
    if len(text) > MAX_METADATA_CHARACTERS:
        raise ModelFileError(f"{name}: its metadata holds {len(text):,} characters, over the limit of {MAX_METADATA_CHARACTERS:,}")
    try:
        metadata = json.loads(text)
    except RecursionError:
        raise ModelFileError(f"{name} has unreadable metadata: nested deeper than {MAX_METADATA_DEPTH} levels") from None
    except ValueError as error:
        raise ModelFileError(f"{name} has unreadable metadata: {error}") from None
    if not isinstance(metadata, dict):
        raise ModelFileError(f"{name} is not a model file of this suite: its metadata has no format version")
    # Depth and non-finite numbers (JSON's NaN/Infinity extension), each reported with where it is.
    stack = [(metadata, ())]
    while stack:
        value, where = stack.pop()
        if len(where) >= MAX_METADATA_DEPTH:
            raise ModelFileError(f"{name} has unreadable metadata: nested deeper than {MAX_METADATA_DEPTH} levels")
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, child in items:
            if isinstance(child, (dict, list)):
                stack.append((child, (*where, key)))
            elif isinstance(child, float) and not math.isfinite(child):
                place = ".".join(str(part) for part in (*where, key))
                raise ModelFileError(f"{name}: metadata field {place} must be a finite number; got {child} ({child} is not a number JSON allows)".replace("nan (nan", "nan (NaN").replace("inf (inf", "inf (Infinity"))
    return metadata


def _whole(value, low=0, high=None):
    return (isinstance(value, int) and not isinstance(value, bool) and value >= low
            and (high is None or value <= high))


def _described_arrays(description, where):
    """The arrays (name -> shape) a network description calls for, after checking its fields' types."""
    if not isinstance(description, dict):
        raise ModelFileError(f"{where}: its description must be an object; got {_short(description)}")
    sizes = description.get("layer_sizes")
    if not isinstance(sizes, list) or len(sizes) < 2 or not all(_whole(n, 1, MAX_LAYER_WIDTH) for n in sizes):
        raise ModelFileError(f"{where}: layer_sizes must be a list of at least 2 positive whole numbers; got {_short(sizes)}")
    params = description.get("params")
    if not isinstance(params, dict):
        raise ModelFileError(f"{where}: params must be an object; got {_short(params)}")
    classes = description.get("classes")
    if (not isinstance(classes, list) or len(classes) < 2
            or not all(isinstance(c, str) or _whole(c, low=-(2**63)) for c in classes)
            or len(set(classes)) != len(classes)):
        raise ModelFileError(f"{where}: classes must be a list of at least 2 distinct labels; got {_short(classes)}")
    if not isinstance(description.get("loss"), str):
        raise ModelFileError(f"{where}: loss must be a name; got {_short(description.get('loss'))}")
    if description.get("n_features") != sizes[0] or not _whole(description.get("n_features"), 1):
        raise ModelFileError(f"{where}: n_features must equal the first layer size {sizes[0]}; got "
                             f"{_short(description.get('n_features'))}")
    if not isinstance(description.get("history", {}), dict):
        raise ModelFileError(f"{where}: history must be an object")
    if not (description.get("random_state") is None or _whole(description.get("random_state"))):
        raise ModelFileError(f"{where}: random_state must be a whole number or null")
    arrays = {}
    for index, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        arrays[f"layer{index}.weights"] = (n_in, n_out)
        arrays[f"layer{index}.bias"] = (n_out,)
    standardize = params.get("standardize", True)
    if not isinstance(standardize, bool):
        raise ModelFileError(f"{where}: params.standardize must be true or false; got {_short(standardize)}")
    if standardize:
        arrays["standardizer.mean"] = arrays["standardizer.scale"] = (sizes[0],)
    return arrays


NUMBER = "number"
"""A metadata field that must be a finite int or float (not a bool, not a string)."""


@dataclass(frozen=True)
class OptionalField:
    """A metadata field that may be missing or null; when present it follows ``spec``."""

    spec: object


@dataclass(frozen=True)
class ArraySpec:
    """What a pipeline's extra array must be.

    Parameters
    ----------
    ndim : int or None
        Number of dimensions (None: any).
    kinds : str
        Allowed numpy dtype kinds ("f" float, "i" integer, "U" text).
    finite : bool
        Every value finite (numeric kinds only).
    not_all_zero, non_negative, positive : bool
        Value checks for, e.g., a filterbank or a scale.
    max_abs : float or None
        Largest magnitude a value may have (numeric kinds only): what the pipeline can produce,
        with a wide margin.
    required : bool
    """

    ndim: int | None = None
    kinds: str = "f"
    finite: bool = True
    not_all_zero: bool = False
    non_negative: bool = False
    positive: bool = False
    max_abs: float | None = None
    required: bool = True


@dataclass(frozen=True)
class ModelSchema:
    """A pipeline's own part of its model file: metadata fields and extra arrays.

    ``fields`` maps a metadata key to its spec: ``NUMBER``, a type (``str``, ``bool``,
    ``int``, ``dict``, ``list``), a nested dict of specs (an object with those keys), a
    one-item list ``[spec]`` (a list of such values) or ``OptionalField(spec)``. Keys not named
    are allowed. ``arrays`` maps each extra array's name to an :class:`ArraySpec`; an array
    not named there is refused as an unexpected member.
    """

    fields: dict = field(default_factory=dict)
    arrays: dict = field(default_factory=dict)

    def check(self, metadata, arrays, name, pipeline="this"):
        """Raise ModelFileError naming the file and the field or array that is wrong."""
        _check_field(metadata, self.fields, "", name, pipeline)
        for array_name in sorted(arrays):
            if array_name not in self.arrays:
                raise ModelFileError(f"{name}: unexpected member 'array/{array_name}' (not part of this model format)")
        for array_name, spec in self.arrays.items():
            if array_name not in arrays:
                if spec.required:
                    raise ModelFileError(f"{name} is not a complete {pipeline} model: array {array_name!r} is missing")
                continue
            _check_array(arrays[array_name], spec, f"{name}: array {array_name!r}")


def _describe(spec):
    if spec is NUMBER or spec == NUMBER:
        return "a finite number"
    if isinstance(spec, OptionalField):
        return f"{_describe(spec.spec)} or null"
    if isinstance(spec, dict):
        return "an object"
    if isinstance(spec, list):
        return f"a list of {_describe(spec[0]).removeprefix('a ').removeprefix('an ')}s"
    return {str: "a string", bool: "true or false", int: "a whole number", float: "a number"}.get(spec, f"a {spec.__name__}")


def _check_field(value, spec, where, name, pipeline):
    def fail():
        raise ModelFileError(f"{name}: metadata field {where or 'root'} must be {_describe(spec)}; got {_short(value)}")

    if isinstance(spec, OptionalField):
        if value is not None:
            _check_field(value, spec.spec, where, name, pipeline)
    elif isinstance(spec, dict):
        if not isinstance(value, dict):
            fail()
        for key, inner in spec.items():
            inner_where = f"{where}.{key}" if where else key
            if key not in value and not isinstance(inner, OptionalField):
                raise ModelFileError(f"{name} is not a complete {pipeline} model: metadata field {inner_where} is missing")
            _check_field(value.get(key), inner, inner_where, name, pipeline)
    elif isinstance(spec, list):
        if not isinstance(value, list):
            fail()
        for index, item in enumerate(value):
            _check_field(item, spec[0], f"{where}[{index}]", name, pipeline)
    elif spec is NUMBER or spec == NUMBER:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            fail()
    elif spec is int:
        if not _whole(value, low=-(2**63)):
            fail()
    elif not isinstance(value, spec) or (spec is not bool and isinstance(value, bool)):
        fail()


def _check_array(array, spec, where):
    if array.dtype.kind not in spec.kinds:
        raise ModelFileError(f"{where} has dtype {array.dtype}; expected kind {spec.kinds!r}")
    if spec.ndim is not None and array.ndim != spec.ndim:
        raise ModelFileError(f"{where} has {array.ndim} dimensions; expected {spec.ndim}")
    if array.dtype.kind in "fiu":
        if spec.finite and not np.all(np.isfinite(array)):
            raise ModelFileError(f"{where} holds NaN or infinite values")
        if spec.not_all_zero and not np.any(array):
            raise ModelFileError(f"{where} is all zeros")
        if spec.non_negative and np.any(array < 0):
            raise ModelFileError(f"{where} holds negative values")
        if spec.positive and np.any(array <= 0):
            raise ModelFileError(f"{where} holds values that are not positive")
        if spec.max_abs is not None and array.size and float(np.max(np.abs(array))) > spec.max_abs:
            raise ModelFileError(f"{where} holds values up to {float(np.max(np.abs(array))):.3g} in magnitude, "
                                 f"over {spec.max_abs:g}: the file is damaged or crafted")


class _Archive:
    """The members of an .npz archive, checked from the zip directory and each array's header
    before any data is read, so a crafted file costs no more memory than its declared arrays."""

    def __init__(self, payload, name):
        # numpy would take any other bytes for a pickle and suggest loading them unsafely; say what the file is not.
        if payload.startswith(b"\x93NUMPY"):
            raise ModelFileError(f"{name} is not a model file: it holds a single array, not an .npz archive")
        if not payload.startswith(b"PK\x03\x04"):
            raise ModelFileError(f"{name} is damaged or not an .npz model file: it does not begin like one")
        self.name = name
        self.zip = zipfile.ZipFile(io.BytesIO(payload))
        infos = self.zip.infolist()
        if len(infos) > MAX_MEMBERS:
            raise ModelFileError(f"{name}: {len(infos)} members, over the limit of {MAX_MEMBERS}")
        declared = sum(info.file_size for info in infos)
        if declared > MAX_ARRAY_BYTES:
            raise ModelFileError(f"{name}: its members declare {declared:,} bytes, over the limit of {MAX_ARRAY_BYTES:,}")
        self.members = {}
        for info in infos:
            if not _MEMBER.fullmatch(info.filename) or info.filename[:-4] in self.members:
                raise ModelFileError(f"{name}: unexpected member {_short(info.filename)}")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise ModelFileError(f"{name}: member {info.filename!r} uses an unsupported compression")
            self.members[info.filename[:-4]] = info

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.zip.close()

    def read(self, key, kinds=None, shape=None, where=None, limit=MAX_ARRAY_BYTES):
        """Member ``key`` as an array; its header must give dtype kind in ``kinds`` and ``shape``."""
        info = self.members[key]
        where = where or f"{self.name}: member {key!r}"
        with self.zip.open(info) as stream:
            version = np.lib.format.read_magic(stream)
            if version not in ((1, 0), (2, 0)):
                raise ModelFileError(f"{where} has an unsupported array format {version}")
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            stored_shape, fortran, dtype = read_header(stream)
            if dtype.hasobject:
                raise ModelFileError(f"{self.name} holds object arrays, which are refused because loading them runs code")
            if kinds is not None and dtype.kind not in kinds:
                raise ModelFileError(f"{where} has dtype {dtype}; expected {'numbers' if kinds == 'f' else 'text'}")
            if shape is not None and tuple(stored_shape) != tuple(shape):
                raise ModelFileError(f"{where} has shape {_short(tuple(stored_shape))}; expected {tuple(shape)}")
            if not all(isinstance(n, int) and 0 <= n <= limit for n in stored_shape):
                raise ModelFileError(f"{where} declares shape {_short(stored_shape)}")
            n_bytes = math.prod(stored_shape) * dtype.itemsize
            if n_bytes > limit or stream.tell() + n_bytes != info.file_size:
                raise ModelFileError(f"{where} declares shape {_short(stored_shape)} of {dtype}, which does not match its size")
            data = stream.read(n_bytes)
        if len(data) != n_bytes:
            raise ModelFileError(f"{where} is truncated")
        array = np.frombuffer(bytearray(data), dtype=dtype)
        return array.reshape(stored_shape[::-1]).T if fortran else array.reshape(stored_shape)
