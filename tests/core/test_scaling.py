"""The standardiser: statistics as exact as numpy's in one pass, and in-place scaling equal to a copy's."""

import tracemalloc

import numpy as np
import pytest

from inkvoice.core import scaling
from inkvoice.core.errors import NotFittedError
from inkvoice.core.estimator import MlpClassifier
from inkvoice.core.scaling import Standardizer


def data(n=3000, n_features=7, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    X = rng.normal(loc=1e4, scale=rng.uniform(0.5, 3, n_features), size=(n, n_features))
    X[:, 3] = 5.0  # a constant feature
    return X.astype(dtype)


@pytest.mark.parametrize("block_bytes", [64, 1000, 1 << 19])
def test_statistics_equal_numpy_two_pass_ones_over_any_blocks(monkeypatch, block_bytes):
    monkeypatch.setattr(scaling, "BLOCK_BYTES", block_bytes)
    X = data()
    standardizer = Standardizer().fit(X)
    exact = X.astype(np.float64)
    np.testing.assert_allclose(standardizer.mean_, exact.mean(axis=0), rtol=1e-14)
    expected_scale = exact.std(axis=0)
    expected_scale[3] = 1.0
    np.testing.assert_allclose(standardizer.scale_, expected_scale, rtol=1e-10)
    assert standardizer.scale_[3] == 1.0


def test_fitting_never_copies_the_data_into_float64():
    X = data(20000, 50)
    tracemalloc.start()
    try:
        Standardizer().fit(X)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < X.nbytes / 2  # a float64 copy would take twice X


@pytest.mark.parametrize("source_dtype", [np.float32, np.float64])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scaling_in_place_equals_scaling_a_copy_to_the_bit(monkeypatch, source_dtype, dtype):
    monkeypatch.setattr(scaling, "BLOCK_BYTES", 4096)
    X = data(dtype=source_dtype)
    standardizer = Standardizer().fit(X)
    expected = (X.astype(dtype) - standardizer.mean_.astype(dtype)) / standardizer.scale_.astype(dtype)
    untouched = X.copy()
    copy = standardizer.transform(X, dtype)
    np.testing.assert_array_equal(X, untouched)
    np.testing.assert_array_equal(copy, expected)
    assert copy.dtype == dtype
    mine = X.astype(dtype)
    in_place = standardizer.transform(mine, dtype, in_place=True)
    assert in_place is mine
    np.testing.assert_array_equal(in_place, expected)


def test_in_place_leaves_arrays_it_cannot_reuse_untouched():
    X = data()
    standardizer = Standardizer().fit(X)
    for array in (X, np.asfortranarray(X), X[::2]):
        before = array.copy()
        result = standardizer.transform(array, np.float64, in_place=True)  # another dtype, layout, a view
        assert result is not array
        np.testing.assert_array_equal(array, before)
    read_only = X.copy()
    read_only.flags.writeable = False
    assert standardizer.transform(read_only, np.float32, in_place=True) is not read_only


def test_an_unfitted_standardizer_refuses_to_transform():
    with pytest.raises(NotFittedError, match="call fit first"):
        Standardizer().transform(np.zeros((2, 2)))


@pytest.mark.parametrize("early_stopping", [False, True])
def test_fit_never_changes_the_callers_data_and_in_place_gives_the_same_model(early_stopping):
    X64 = data(400, 6, seed=1, dtype=np.float64)
    y = (X64[:, 0] > np.median(X64[:, 0])).astype(int)
    X32 = X64.astype(np.float32)
    before32, before64 = X32.copy(), X64.copy()
    settings = dict(hidden_sizes=(8,), max_epochs=4, early_stopping=early_stopping, random_state=0)
    from_caller = MlpClassifier(**settings).fit(X32, y)  # the caller's float32 array: scaled into a copy
    from_copy = MlpClassifier(**settings).fit(X64, y)  # converted to float32 by fit: scaled in place
    np.testing.assert_array_equal(X32, before32)
    np.testing.assert_array_equal(X64, before64)
    for a, b in zip(from_caller.network_.parameters(), from_copy.network_.parameters()):
        np.testing.assert_array_equal(a, b)
    probabilities = from_caller.predict_proba(X32)
    np.testing.assert_array_equal(X32, before32)
    np.testing.assert_array_equal(probabilities, from_copy.predict_proba(X64))
    np.testing.assert_array_equal(X64, before64)
