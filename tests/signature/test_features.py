"""Preprocessing and features: paper tone drops out, aspect is kept, features have the model's length."""

import numpy as np
import pytest

from inkvoice.core.errors import DataError, ParameterError
from inkvoice.signature.dataset import load_signatures, parse_writer_range, writers_of
from inkvoice.signature.features import DEFAULT_PARAMETERS, check_parameters, extract
from inkvoice.signature.preprocess import fit_canvas, preprocess
from inkvoice.signature.comparison import feature_groups, feature_length, keypoint_columns
from tests.signature.helpers import page, save_page, stroke_mask


@pytest.mark.parametrize("paper", [0.6, 0.75, 0.99])
def test_paper_grey_level_does_not_change_the_canvas(tmp_path, paper):
    mask = stroke_mask()
    reference, _ = preprocess(save_page(tmp_path / "white.png", page(mask, paper=0.92)))
    shifted, _ = preprocess(save_page(tmp_path / "grey.png", page(mask, paper=paper)))
    assert np.abs(reference - shifted).mean() < 0.002


def test_crop_keeps_aspect_ratio_and_centres():
    mask = np.zeros((50, 400), dtype=bool)
    mask[10:40, 100:300] = True
    canvas = fit_canvas(mask[10:40, 100:300], 128, 256)
    rows = np.flatnonzero(canvas.max(axis=1) > 0.5)
    columns = np.flatnonzero(canvas.max(axis=0) > 0.5)
    assert columns[0] == 0 and columns[-1] == 255
    assert abs((rows[-1] - rows[0] + 1) - 256 * 30 / 200) <= 2
    assert abs((rows[0] + rows[-1]) / 2 - 63.5) <= 1.5


def test_pen_radius_normalises_stroke_width(tmp_path):
    thin = stroke_mask()
    from scipy import ndimage

    thick = ndimage.binary_dilation(thin, iterations=3)
    a, _ = preprocess(save_page(tmp_path / "thin.png", page(thin)), pen_radius=2)
    b, _ = preprocess(save_page(tmp_path / "thick.png", page(thick)), pen_radius=2)
    plain_a, _ = preprocess(tmp_path / "thin.png")
    plain_b, _ = preprocess(tmp_path / "thick.png")
    assert abs(a.mean() - b.mean()) < abs(plain_a.mean() - plain_b.mean()) / 2


def test_features_have_the_length_the_groups_describe(tmp_path):
    path = save_page(tmp_path / "s.png", page(stroke_mask()))
    parameters = check_parameters({"cells": [8, 32]})
    vector = extract(path, **parameters)
    assert vector.shape == (feature_length(parameters),) and vector.dtype == np.float32
    assert np.all(np.isfinite(vector))
    assert np.array_equal(vector, extract(path, **parameters))
    covered = np.zeros(len(vector), dtype=bool)
    for _, indices in feature_groups(parameters):
        covered[indices] = True
    # every value is in a compared group, except the keypoints, which are matched and come last
    keypoints = keypoint_columns(parameters)
    assert not covered[keypoints].any()
    covered[keypoints] = True
    assert covered.all()


@pytest.mark.parametrize("override, message", [
    ({"cells": []}, "cells must be"),
    ({"cells": [200]}, "does not fit"),
    ({"orientations": 0}, "orientations must be"),
    ({"colour": 1}, "unknown feature parameter"),
    ({"height": 8}, "height must be an integer in \\[16, 1024\\]"),
    ({"pen_radius": -1}, "pen_radius must be None or an integer in \\[0, 16\\]"),
])
def test_bad_feature_parameters(override, message):
    with pytest.raises(ParameterError, match=message):
        check_parameters(override)


def test_defaults_are_complete():
    assert check_parameters({}) == {**DEFAULT_PARAMETERS, "cells": list(DEFAULT_PARAMETERS["cells"])}


def test_cedar_layout_and_writer_folders(tmp_path):
    cedar = tmp_path / "cedar"
    (cedar / "full_org").mkdir(parents=True)
    (cedar / "full_forg").mkdir()
    for writer in (2, 10):
        for n in (1, 2):
            (cedar / "full_org" / f"original_{writer}_{n}.png").write_bytes(b"")
            (cedar / "full_forg" / f"forgeries_{writer}_{n}.png").write_bytes(b"")
    (cedar / "full_org" / "Thumbs.db").write_bytes(b"")
    signatures = load_signatures(cedar)
    assert writers_of(signatures) == ["2", "10"]
    assert sum(s.genuine for s in signatures) == 4 and len(signatures) == 8

    own = tmp_path / "own"
    (own / "ann" / "genuine").mkdir(parents=True)
    (own / "ann" / "genuine" / "a.png").write_bytes(b"")
    (own / "bob" / "genuine").mkdir(parents=True)
    (own / "bob" / "forged").mkdir()
    (own / "bob" / "genuine" / "b.jpg").write_bytes(b"")
    (own / "bob" / "forged" / "f.tif").write_bytes(b"")
    (own / "bob" / "genuine" / "notes.txt").write_bytes(b"")
    signatures = load_signatures(own)
    assert [(s.writer, s.genuine) for s in signatures] == [("ann", True), ("bob", True), ("bob", False)]


def test_empty_or_missing_data_folder(tmp_path):
    with pytest.raises(DataError, match="no signatures found"):
        load_signatures(tmp_path)
    with pytest.raises(DataError, match="no such data folder"):
        load_signatures(tmp_path / "absent")


def test_writer_ranges():
    assert parse_writer_range("1-3,7") == ["1", "2", "3", "7"]
    assert parse_writer_range("ann,bob") == ["ann", "bob"]
    with pytest.raises(DataError, match="runs backwards"):
        parse_writer_range("5-2")


@pytest.mark.parametrize("setting", [{"pen_radius": 10**12}, {"height": 10**6}, {"width": 10**9},
                                     {"orientations": 10**5}, {"lbp_radius": 10**4}])
def test_settings_too_large_for_memory_are_refused(setting):
    # A damaged or crafted model file must not make one image cost gigabytes.
    with pytest.raises(ParameterError, match="must be"):
        check_parameters(setting)


def test_a_fifo_is_never_read_when_digesting_an_image(tmp_path):
    import os

    from inkvoice.signature.enrollment import file_digest

    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match="pipe.png"):
        file_digest(fifo)
