"""The signature model file: the verifier's networks, feature statistics, settings and thresholds."""

from inkvoice.signature.verifier import Verifier

PIPELINE = "signature"


def _schema():
    """The signature model file's own fields and arrays, checked before any network is built."""
    from inkvoice.core.bundle import NUMBER, ArraySpec, ModelSchema, OptionalField

    return ModelSchema(
        fields={"features": dict, "training": OptionalField(dict), "figures": OptionalField(dict),
                "verifier": {"threshold": NUMBER, "dependent_threshold": OptionalField(NUMBER), "spread_floor": NUMBER,
                             "grid": [int], "normalisation": OptionalField(str)}},
        arrays={"feature_mean": ArraySpec(ndim=1), "feature_scale": ArraySpec(ndim=1, positive=True),
                "background": ArraySpec(ndim=2, required=False)},
    )


def save_verifier(path, verifier, training=None, figures=None):
    """Write ``verifier`` to one model file (weights, statistics, feature parameters, threshold)."""
    from inkvoice.core.bundle import save_model

    metadata = {
        "features": verifier.feature_parameters,
        "verifier": {"threshold": verifier.threshold, "dependent_threshold": verifier.dependent_threshold,
                     "spread_floor": verifier.spread_floor,
                     "grid": list(verifier.grid), "normalisation": verifier.normalisation},
        "training": training or {},
        "figures": figures or {},
    }
    arrays = {"feature_mean": verifier.feature_mean, "feature_scale": verifier.feature_scale}
    if verifier.background is not None:
        arrays["background"] = verifier.background
    networks = verifier.network if isinstance(verifier.network, (list, tuple)) else [verifier.network]
    save_model(path, PIPELINE, {f"verifier{i}": network for i, network in enumerate(networks)}, metadata, arrays)


def load_verifier(path):
    """Read a model file written by ``save_verifier``; returns (Verifier, metadata).

    Raises ModelFileError for a missing, damaged or foreign file, or one whose parts disagree.
    """
    from inkvoice.core.bundle import load_model
    from inkvoice.core.errors import ModelFileError
    from inkvoice.signature.features import check_parameters

    bundle = load_model(path, PIPELINE, _schema())
    try:
        parameters = check_parameters(bundle.metadata["features"])
        settings = bundle.metadata["verifier"]
        names = sorted((name for name in bundle.models if name.startswith("verifier")), key=lambda n: int(n[8:] or 0))
        if not names:
            raise KeyError("no verifier network")
        network = [bundle.models[name] for name in names]
        mean, scale = bundle.arrays["feature_mean"], bundle.arrays["feature_scale"]
        verifier = Verifier(parameters, mean, scale, network, settings["threshold"], settings["spread_floor"],
                            settings["grid"], background=bundle.arrays.get("background"),
                            normalisation=settings.get("normalisation", "none"),
                            dependent_threshold=settings.get("dependent_threshold"))
    except (KeyError, TypeError, ValueError) as error:
        raise ModelFileError(f"{path} is not a complete signature model: {error}") from None
    n_groups = len(verifier.groups)
    if mean.shape != (verifier.n_features,) or scale.shape != (verifier.n_features,):
        raise ModelFileError(f"{path}: feature statistics do not match its feature settings")
    for member in network:
        if member.n_features_in_ != n_groups:
            raise ModelFileError(
                f"{path}: its network takes {member.n_features_in_} inputs; its settings give {n_groups}"
            )
    return verifier, bundle.metadata
