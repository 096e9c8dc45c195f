"""The signature model file: the verifier's networks, feature statistics, settings and thresholds."""

from inkvoice.signature.verifier import Verifier, VerifierConfig

PIPELINE = "signature"


def _schema():
    """The signature model file's own fields and arrays, checked before any network is built."""
    from inkvoice.core.bundle import NUMBER, ArraySpec, ModelSchema, OptionalField

    writer_model = {"hidden_sizes": [int], "l2": NUMBER, "max_epochs": int, "weight": NUMBER}
    calibration = {"weight": NUMBER, "centre": NUMBER, "min_references": int}
    domain = {"signature_limits": [NUMBER], "input_limits": [NUMBER], "reference_limits": [[NUMBER]],
              "score_floor": NUMBER, "genuine_floor": NUMBER, "margin": OptionalField(NUMBER),
              "reference_margin": OptionalField(NUMBER), "score_margin": OptionalField(NUMBER)}
    return ModelSchema(
        fields={"features": dict, "training": OptionalField(dict), "figures": OptionalField(dict),
                "verifier": {"threshold": NUMBER, "dependent_threshold": OptionalField(NUMBER), "spread_floor": NUMBER,
                             "grid": [int], "statistics": OptionalField([str]),
                             "writer_model": OptionalField(writer_model),
                             "calibration": OptionalField(calibration),
                             # files written before the domain existed have none; they are refused below
                             "domain": OptionalField(domain),
                             "keypoint_weight": OptionalField(NUMBER)}},
        arrays={"feature_mean": ArraySpec(ndim=1), "feature_scale": ArraySpec(ndim=1, positive=True),
                "background": ArraySpec(ndim=2, required=False)},
    )


def save_verifier(path, verifier, training=None, figures=None):
    """Write ``verifier`` to one model file (weights, statistics, feature parameters, thresholds)."""
    from inkvoice.core.bundle import save_model

    metadata = {
        "features": verifier.feature_parameters,
        "verifier": verifier.config.to_dict(),
        "training": training or {},
        "figures": figures or {},
    }
    arrays = {"feature_mean": verifier.standardizer.mean_, "feature_scale": verifier.standardizer.scale_}
    if verifier.background is not None:
        arrays["background"] = verifier.background
    save_model(path, PIPELINE, {f"verifier{i}": network for i, network in enumerate(verifier.networks)}, metadata,
               arrays)


def load_verifier(path):
    """Read a model file written by ``save_verifier``; returns (Verifier, metadata).

    Raises ModelFileError for a missing, damaged or foreign file, one whose parts disagree, or
    one whose thresholds or settings are out of range (a NaN threshold, say).
    """
    import numpy as np

    from inkvoice.core.bundle import load_model
    from inkvoice.core.errors import ModelFileError, ProjectError
    from inkvoice.core.scaling import Standardizer
    from inkvoice.signature.features import check_parameters

    bundle = load_model(path, PIPELINE, _schema())
    name = str(path)
    try:
        # files written before stroke texture or keypoints existed have none
        parameters = check_parameters({"lbp_radius": None, "keypoints": 0, **bundle.metadata["features"]})
        config = VerifierConfig.from_dict(parameters, bundle.metadata["verifier"])
        names = sorted((key for key in bundle.models if key.startswith("verifier")), key=lambda n: int(n[8:] or 0))
        if not names:
            raise KeyError("no verifier network")
        networks = [bundle.models[key] for key in names]
        mean, scale = bundle.arrays["feature_mean"], bundle.arrays["feature_scale"]
        background = bundle.arrays.get("background")
        for label, array in (("feature_mean", mean), ("feature_scale", scale), ("background", background)):
            if array is not None and (array.dtype.kind != "f" or not np.all(np.isfinite(array))):
                raise ValueError(f"{label} holds non-finite or non-numeric values")
        if np.any(scale <= 0):
            raise ValueError("feature_scale holds values <= 0")
        verifier = Verifier(config, Standardizer.from_arrays(mean, scale), networks, background=background)
    except (KeyError, TypeError, ValueError, AttributeError, ProjectError) as error:
        raise ModelFileError(f"{name} is not a complete signature model: {error}") from None
    n_groups = len(verifier.groups)
    if config.domain is None:
        raise ModelFileError(f"{name} was written before models recorded what their training covered, without "
                             "which the verifier cannot refuse what it was not taught to judge: train it again")
    try:
        config.domain.check_sizes(n_groups, n_groups * len(config.statistics))
    except ProjectError as error:
        raise ModelFileError(f"{name}: {error}") from None
    if mean.shape != (verifier.n_features,) or scale.shape != (verifier.n_features,):
        raise ModelFileError(f"{name}: feature statistics do not match its feature settings")
    if background is not None and (background.ndim != 2 or background.shape[1] != verifier.n_features):
        raise ModelFileError(f"{name}: its development signatures do not match its feature settings")
    for member in networks:
        if member.n_features_in_ != n_groups:
            raise ModelFileError(
                f"{name}: its network takes {member.n_features_in_} inputs; its settings give {n_groups}"
            )
    return verifier, bundle.metadata
