"""Feature standardisation fitted on training data and carried inside the model file."""

import numpy as np

from inkvoice.core.errors import NotFittedError

# Rows per block: the work of a block (a float64 copy for the statistics, the shifted and
# scaled rows for the transform) stays in the processor's cache, so that the data set itself
# is read from memory once, never copied whole into float64.
BLOCK_BYTES = 1 << 19


class Standardizer:
    """Shift each feature to zero mean and unit variance, as measured on the training set.

    Constant features keep a scale of 1 so they map to 0 instead of dividing by zero.
    """

    def fit(self, X):
        """Measure each feature's mean and standard deviation on ``X`` (n_samples, n_features).

        One pass over ``X`` in blocks of rows: each block's mean and sum of squared deviations
        are taken in float64 and merged (Chan, Golub and LeVeque's pairwise update), as exact
        as numpy's two-pass ``std`` without a float64 copy of the whole set.
        """
        X = np.asarray(X)
        if X.ndim != 2 or len(X) == 0:
            raise ValueError(f"the standardiser needs a non-empty 2-D array; got shape {X.shape}")
        n_features = X.shape[1]
        mean = np.zeros(n_features)
        squares = np.zeros(n_features)  # sum of squared deviations from the mean
        seen = 0
        for block in _blocks(X, 8):
            block = block.astype(np.float64)
            n = len(block)
            block_mean = block.mean(axis=0)
            block -= block_mean
            np.square(block, out=block)
            delta = block_mean - mean
            total = seen + n
            mean += delta * (n / total)
            squares += block.sum(axis=0) + delta**2 * (seen * n / total)
            seen = total
        scale = np.sqrt(squares / seen)
        scale[scale < 1e-12] = 1.0
        self.mean_, self.scale_ = mean, scale
        return self

    def transform(self, X, dtype=np.float32, in_place=False):
        """``(X - mean) / scale`` in ``dtype``, in one pass over ``X``.

        Parameters
        ----------
        X : array (n_samples, n_features)
        dtype : numpy dtype of the result
        in_place : bool
            Overwrite ``X`` when it is a writeable C-contiguous array of ``dtype`` (an array the
            caller no longer needs); otherwise, and by default, ``X`` is left untouched.
            Either way the result is the same, to the bit.
        """
        if not hasattr(self, "mean_"):
            raise NotFittedError("the standardiser is not fitted: call fit first")
        X = np.asarray(X)
        dtype = np.dtype(dtype)
        mean, scale = self.mean_.astype(dtype), self.scale_.astype(dtype)
        if in_place and X.dtype == dtype and X.flags.c_contiguous and X.flags.writeable:
            result = X
        else:
            result = np.empty(X.shape, dtype)
        for start, stop in _bounds(X, dtype.itemsize):
            block = result[start:stop]
            if result is not X:
                block[...] = X[start:stop]  # cast first, so float64 input rounds as it always did
            block -= mean
            block /= scale
        return result

    @classmethod
    def from_arrays(cls, mean, scale):
        standardizer = cls()
        standardizer.mean_ = np.asarray(mean, dtype=np.float64)
        standardizer.scale_ = np.asarray(scale, dtype=np.float64)
        return standardizer


def _bounds(X, itemsize):
    """(start, stop) of blocks of rows of about ``BLOCK_BYTES`` at ``itemsize`` bytes per value."""
    rows = max(1, BLOCK_BYTES // max(1, itemsize * (X.shape[1] if X.ndim > 1 else 1)))
    return [(start, min(start + rows, len(X))) for start in range(0, len(X), rows)]


def _blocks(X, itemsize):
    return (X[start:stop] for start, stop in _bounds(X, itemsize))
