"""Signature features: HOG of the normalised ink canvas at one or more cell sizes, plus shape measures.

``extract`` is a pure, module-level function of (file, parameters) so that
``core.extraction.extract_many`` can run it in worker processes and cache its results;
the parameters are stored in every model file, so prediction applies what training used.
"""

from dataclasses import dataclass

import numpy as np

from inkvoice.core.errors import DataError, ParameterError, ProjectError, with_defaults
from inkvoice.signature.images import DEFAULT_MAX_PIXELS, READER_VERSION
from inkvoice.signature.preprocess import preprocess

#: Default feature parameters; a model file keeps its own copy.
DEFAULT_PARAMETERS = {
    "height": 128,
    "width": 256,
    "pen_radius": None,
    "cells": [16, 32],
    "orientations": 9,
    "block": 2,
    "profile_bins": 16,
    "lbp_radius": 1,
    "keypoints": 150,
}
#: Regions (rows, columns) of the canvas with one stroke-texture histogram each (besides the whole).
LBP_GRID = (2, 4)
#: Codes of the rotation-invariant uniform local binary pattern with 8 neighbours.
LBP_CODES = 10


# Upper bounds of the feature settings: far beyond any useful value, small enough that a
# damaged or crafted model file cannot make one image cost gigabytes.
LARGEST = {"height": 1024, "width": 2048, "orientations": 36, "block": 8, "profile_bins": 1024,
           "lbp_radius": 16, "pen_radius": 16, "keypoints": 1000}


def check_parameters(parameters):
    """Complete ``parameters`` with the defaults and validate every value; returns a new dict."""
    # max_pixels bounds reading, not the features: it travels with them but is not checked here.
    merged = with_defaults(DEFAULT_PARAMETERS, {k: v for k, v in parameters.items() if k != "max_pixels"},
                           "feature parameter")
    cells = merged["cells"]
    if not isinstance(cells, (list, tuple)) or not cells or not all(
        isinstance(c, (int, np.integer)) and not isinstance(c, bool) and c >= 4 for c in cells
    ):
        raise ParameterError(f"cells must be a non-empty list of integers >= 4; got {cells!r}")
    merged["cells"] = [int(c) for c in cells]
    for name in ("orientations", "block", "profile_bins", "keypoints"):
        value = merged[name]
        least = 0 if name in ("profile_bins", "keypoints") else 1
        most = LARGEST[name]
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not least <= value <= most:
            raise ParameterError(f"{name} must be an integer in [{least}, {most}]; got {value!r}")
    for name in ("height", "width"):
        value = merged[name]
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 16 <= value <= LARGEST[name]:
            raise ParameterError(f"{name} must be an integer in [16, {LARGEST[name]}]; got {value!r}")
    lbp = merged["lbp_radius"]
    if lbp is not None and (isinstance(lbp, bool) or not isinstance(lbp, (int, np.integer))
                            or not 1 <= lbp <= LARGEST["lbp_radius"]):
        raise ParameterError(f"lbp_radius must be None or an integer in [1, {LARGEST['lbp_radius']}]; got {lbp!r}")
    radius = merged["pen_radius"]
    if radius is not None and (isinstance(radius, bool) or not isinstance(radius, (int, np.integer))
                               or not 0 <= radius <= LARGEST["pen_radius"]):
        raise ParameterError(f"pen_radius must be None or an integer in [0, {LARGEST['pen_radius']}]; got {radius!r}")
    for cell in merged["cells"]:
        if merged["height"] // cell < merged["block"] or merged["width"] // cell < merged["block"]:
            raise ParameterError(
                f"cell size {cell} with block {merged['block']} does not fit a "
                f"{merged['height']}x{merged['width']} canvas"
            )
    return merged


def stroke_texture(canvas, radius):
    """Histograms of local binary patterns along the strokes: how smooth or shaky their edges are.

    Rotation-invariant uniform LBP (8 neighbours at ``radius`` pixels) of the ink canvas,
    counted over the pixels at the ink's edges, for the whole canvas and for each region of
    ``LBP_GRID``; each histogram sums to 1 (all zero where a region has no ink edge).
    """
    from scipy import ndimage
    from skimage.feature import local_binary_pattern

    ink = canvas > 0.5
    # on the coverage values, whose anti-aliased edges follow the strokes more finely than a binary mask
    codes = local_binary_pattern((canvas * 255).astype(np.uint8), 8, radius, method="uniform").astype(int)
    edges = ink ^ ndimage.binary_erosion(ink)
    parts = []
    regions = [(slice(None), slice(None))] + [
        (rows, columns)
        for rows in np.array_split(np.arange(canvas.shape[0]), LBP_GRID[0])
        for columns in np.array_split(np.arange(canvas.shape[1]), LBP_GRID[1])
    ]
    for rows, columns in regions:
        inside = edges[np.ix_(np.atleast_1d(np.arange(canvas.shape[0])[rows]),
                              np.atleast_1d(np.arange(canvas.shape[1])[columns]))]
        region_codes = codes[np.ix_(np.atleast_1d(np.arange(canvas.shape[0])[rows]),
                                    np.atleast_1d(np.arange(canvas.shape[1])[columns]))][inside]
        histogram = np.bincount(region_codes, minlength=LBP_CODES)[:LBP_CODES].astype(np.float64)
        parts.append(histogram / max(histogram.sum(), 1.0))
    return np.concatenate(parts)


def canvas_features(canvas, shape, cells=(16, 32), orientations=9, block=2, profile_bins=16, lbp_radius=1,
                    keypoints=0):
    """Feature vector of a normalised ink canvas.

    Parameters
    ----------
    canvas : numpy.ndarray, shape (height, width), ink coverage in [0, 1]
    shape : dict with ``aspect`` and ``density`` (see ``preprocess``)
    cells : sequence of int
        HOG cell sizes in pixels; one HOG per size, concatenated (coarse sizes see the
        signature's layout, fine sizes its strokes).
    orientations, block : int
        HOG orientation bins and block size in cells (L2-Hys block normalisation).
    profile_bins : int >= 0
        Bins of the row and column ink profiles appended to the HOG.
    lbp_radius : int >= 1 or None
        With a radius, stroke-texture histograms (``stroke_texture``) are appended.
    keypoints : int >= 0
        With a number, up to that many ORB keypoints are appended last, encoded
        (``keypoints.encode``): the verifier matches them, it does not compare them value by value.

    Returns
    -------
    numpy.ndarray of float32, shape (n_features,)
    """
    from skimage.feature import hog

    parts = []
    for cell in cells:
        parts.append(
            hog(canvas, orientations=orientations, pixels_per_cell=(cell, cell), cells_per_block=(block, block),
                block_norm="L2-Hys", feature_vector=True)
        )
    total = float(canvas.sum()) or 1.0
    if profile_bins:
        for axis in (1, 0):
            profile = canvas.sum(axis=axis) / total
            starts = np.linspace(0, profile.size, profile_bins, endpoint=False).astype(int)
            parts.append(np.add.reduceat(profile, starts))
    if lbp_radius is not None:
        parts.append(stroke_texture(canvas, lbp_radius))
    rows, columns = np.indices(canvas.shape)
    parts.append(np.array([
        shape["aspect"],
        shape["density"],
        canvas.mean(),
        (rows * canvas).sum() / total / canvas.shape[0],
        (columns * canvas).sum() / total / canvas.shape[1],
    ]))
    if keypoints:
        from inkvoice.signature.keypoints import detect, encode

        parts.append(encode(*detect(canvas, keypoints), keypoints))
    return np.concatenate(parts).astype(np.float32)


def extract(path, height=128, width=256, pen_radius=None, cells=(16, 32), orientations=9, block=2,
            profile_bins=16, lbp_radius=1, keypoints=0, max_pixels=DEFAULT_MAX_PIXELS,
            reader_version=READER_VERSION):
    """Feature vector of one signature image file (see ``preprocess`` and ``canvas_features``).

    ``reader_version`` only keys the feature cache, so that features an older image reader
    cached (before EXIF orientation, say) are never served to this one.

    Raises DataError for a file that is not a usable signature image.
    """
    canvas, shape = preprocess(path, height=height, width=width, pen_radius=pen_radius, max_pixels=max_pixels)
    return canvas_features(canvas, shape, cells=cells, orientations=orientations, block=block,
                           profile_bins=profile_bins, lbp_radius=lbp_radius, keypoints=keypoints)


def extract_files(paths, parameters, extraction=None, max_pixels=DEFAULT_MAX_PIXELS, progress=None):
    """Features of many image files: the one extraction path of the CLI, the benchmarks and the service.

    Parameters
    ----------
    paths : sequence of path-like
    parameters : dict, complete feature parameters (``check_parameters``)
    extraction : inkvoice.core.extraction.ExtractionSettings or None (every core, with the cache)
    max_pixels : int > 0, see ``images.read_grey``
    progress : callable or None, called with the number of files done

    Returns
    -------
    list, one entry per path in order: a feature vector, or the ProjectError saying why that
    file could not be used (the other files still go through).
    """
    from inkvoice.core.extraction import ExtractionSettings

    extraction = ExtractionSettings() if extraction is None else extraction
    return extraction.extract(extract, list(paths), {**parameters, "max_pixels": max_pixels,
                                                     "reader_version": READER_VERSION}, progress=progress)


@dataclass
class FeatureTable:
    """Features of a data set's usable signatures, with their writers, and the files that failed.

    ``X`` is (n, n_features); ``writers``, ``genuine`` and ``paths`` are (n,) arrays;
    ``failures`` lists (path, ProjectError) of the unusable files.
    """

    X: np.ndarray
    writers: np.ndarray
    genuine: np.ndarray
    paths: list
    failures: list

    def subset(self, rows):
        """The table of ``rows`` (a boolean mask or indices) only, without failures."""
        rows = np.flatnonzero(rows) if np.asarray(rows).dtype == bool else np.asarray(rows)
        return FeatureTable(self.X[rows], self.writers[rows], self.genuine[rows],
                            [self.paths[i] for i in rows], [])


def load_features(signatures, parameters, extraction=None, max_pixels=DEFAULT_MAX_PIXELS, progress=None):
    """A FeatureTable of ``signatures`` (``dataset.Signature`` list); unusable files go to ``failures``.

    Raises DataError when no signature is usable.
    """
    paths = [s.path for s in signatures]
    results = extract_files(paths, parameters, extraction, max_pixels, progress)
    failures = [(path, r) for path, r in zip(paths, results) if isinstance(r, ProjectError)]
    keep = [i for i, r in enumerate(results) if not isinstance(r, ProjectError)]
    if not keep:
        raise DataError(f"no usable signature images among {len(paths)} files")
    return FeatureTable(
        np.stack([results[i] for i in keep]),
        np.array([signatures[i].writer for i in keep]),
        np.array([signatures[i].genuine for i in keep], dtype=bool),
        [paths[i] for i in keep],
        failures,
    )
