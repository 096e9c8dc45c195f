"""Feature standardisation fitted on training data and carried inside the model file."""

import numpy as np

from inkvoice.core.errors import NotFittedError


class Standardizer:
    """Shift each feature to zero mean and unit variance, as measured on the training set.

    Constant features keep a scale of 1 so they map to 0 instead of dividing by zero.
    """

    def fit(self, X):
        X = np.asarray(X, dtype=np.float64)
        self.mean_ = X.mean(axis=0)
        scale = X.std(axis=0)
        scale[scale < 1e-12] = 1.0
        self.scale_ = scale
        return self

    def transform(self, X, dtype=np.float32):
        if not hasattr(self, "mean_"):
            raise NotFittedError("the standardiser is not fitted: call fit first")
        result = np.asarray(X, dtype=dtype) - self.mean_.astype(dtype)
        result /= self.scale_.astype(dtype)
        return result

    @classmethod
    def from_arrays(cls, mean, scale):
        standardizer = cls()
        standardizer.mean_ = np.asarray(mean, dtype=np.float64)
        standardizer.scale_ = np.asarray(scale, dtype=np.float64)
        return standardizer
