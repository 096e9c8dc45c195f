"""The shared multilayer perceptron: layers, losses, optimisers, training, model files."""

from inkvoice.core.errors import (
    DataError,
    ModelFileError,
    NotFittedError,
    ParameterError,
    ProjectError,
)

__all__ = ["DataError", "ModelFileError", "NotFittedError", "ParameterError", "ProjectError"]
