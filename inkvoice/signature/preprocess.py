"""From a scanned page to a clean, cropped, fixed-size ink image that ignores paper and scanner tone.

Stages, in order: grey levels; paper shading evened out (a photographed page is darker on one
side, and a fixed threshold would take the shadow for ink); background removal by Otsu's threshold (the ink is whatever is
clearly darker than the page, so the paper's grey level drops out); removal of scan specks;
crop to the ink; optional stroke-width normalisation (skeleton redrawn with one pen width);
scaling into a fixed canvas with the aspect ratio kept, centred.
"""

import numpy as np

from inkvoice.core.errors import DataError, ParameterError
from inkvoice.signature.images import DEFAULT_MAX_PIXELS, read_grey

#: Least difference in grey level between paper and ink for a page to hold any writing.
MIN_CONTRAST = 0.12
#: Spread of the paper's own grey level over the page, as a share of its brightest, above which
#: the page is evened out before the ink is found (a flat scan's paper varies by a few percent).
SHADING_SPREAD = 0.1
#: Least number of ink pixels (after speck removal) for a page to hold a signature.
MIN_INK_PIXELS = 30


def paper_level(grey):
    """The paper's grey level under every pixel of ``grey``, the ink taken out.

    The page's local maximum over windows wider than any stroke (on a copy reduced to about 64
    pixels on its short side, so that the cost does not grow with the scan), smoothed, and
    brought back to the page's size.
    """
    from scipy import ndimage

    height, width = grey.shape
    step = max(1, round(min(height, width) / 64))
    rows, columns = max(1, height // step), max(1, width // step)
    reduced = grey[: rows * step, : columns * step].reshape(rows, step, columns, step).max(axis=(1, 3))
    window = max(3, round(min(rows, columns) / 8) | 1)
    level = ndimage.uniform_filter(ndimage.maximum_filter(reduced, size=window, mode="nearest"), size=window,
                                   mode="nearest")
    level = ndimage.zoom(level, (height / rows, width / columns), order=1, mode="nearest", grid_mode=True)
    return np.pad(level, ((0, max(0, height - level.shape[0])), (0, max(0, width - level.shape[1]))),
                  mode="edge")[:height, :width]


def even_paper(grey):
    """``grey`` with the paper's shading divided out where the paper is unevenly lit; as it was otherwise."""
    level = paper_level(grey)
    brightest = float(np.percentile(level, 99))
    if brightest <= 0 or brightest - float(np.percentile(level, 1)) <= SHADING_SPREAD * brightest:
        return grey
    return np.minimum(grey / np.maximum(level, 1e-3), 1.0).astype(np.float32)


def _negative(grey):
    """Whether ``grey`` is a dark page with light marks: a negative, or white ink on black.

    Told from a page in shadow by how much of it is dark: a shadow darkens part of the paper,
    a negative all of it but the marks.
    """
    page = float(np.median(grey))
    return page < 0.5 and float(np.mean(grey < 0.5)) > 0.8 and float(np.percentile(grey, 99.95)) - page >= MIN_CONTRAST


def ink_mask(grey, name="image"):
    """Boolean ink mask of a grey page (True = ink), by Otsu's threshold on the evened-out page,
    with specks removed.

    Parameters
    ----------
    grey : numpy.ndarray, shape (height, width), values in [0, 1] (0 = black)
    name : str
        Shown in error messages (usually the file name).

    Raises
    ------
    DataError
        The page is blank: no ink clearly darker than the paper.
    """
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    grey = np.asarray(grey, dtype=np.float32)
    if _negative(grey):
        raise DataError(f"{name}: light marks on a dark page (a negative?): a signature is read as dark ink on "
                        "light paper")
    grey = even_paper(grey)
    paper = float(np.median(grey))
    darkest = float(np.percentile(grey, 0.05))
    if paper - darkest < MIN_CONTRAST:
        raise DataError(f"{name}: blank page (no ink found: contrast {paper - darkest:.3f} is below {MIN_CONTRAST})")
    threshold = threshold_otsu(grey)
    # Otsu splits the noise of a near-empty page too; never call ink what is close to paper.
    threshold = min(threshold, paper - MIN_CONTRAST / 2)
    mask = grey < threshold
    min_size = max(4, int(grey.size * 2e-5))
    labels, n_parts = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    if n_parts:
        sizes = np.bincount(labels.ravel())
        keep = sizes >= min_size
        keep[0] = False
        mask = keep[labels]
    if mask.sum() < MIN_INK_PIXELS:
        raise DataError(f"{name}: blank page (no ink found: {int(mask.sum())} ink pixels after removing specks)")
    return mask


def crop_to_ink(mask):
    """The smallest sub-array of ``mask`` that holds all its True pixels."""
    rows = np.flatnonzero(mask.any(axis=1))
    columns = np.flatnonzero(mask.any(axis=0))
    return mask[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]


def normalise_strokes(mask, pen_radius):
    """Redraw the ink's skeleton with a round pen of ``pen_radius`` pixels (0 keeps the skeleton)."""
    from scipy import ndimage
    from skimage.morphology import disk, skeletonize

    skeleton = skeletonize(mask)
    if pen_radius <= 0:
        return skeleton
    return ndimage.binary_dilation(skeleton, structure=disk(pen_radius).astype(bool))


def fit_canvas(mask, height, width):
    """Scale an ink mask into a ``height`` x ``width`` canvas, keeping its aspect ratio, centred.

    Returns ink coverage in [0, 1] per canvas pixel (1 = fully inked), float32.
    """
    from skimage.transform import resize

    rows, columns = mask.shape
    scale = min(height / rows, width / columns)
    new_rows = max(1, min(height, int(round(rows * scale))))
    new_columns = max(1, min(width, int(round(columns * scale))))
    small = resize(mask.astype(np.float32), (new_rows, new_columns), order=1, anti_aliasing=scale < 1,
                   preserve_range=True)
    canvas = np.zeros((height, width), dtype=np.float32)
    top = (height - new_rows) // 2
    left = (width - new_columns) // 2
    canvas[top : top + new_rows, left : left + new_columns] = np.clip(small, 0.0, 1.0)
    return canvas


def preprocess(path, height=128, width=256, pen_radius=None, max_pixels=DEFAULT_MAX_PIXELS):
    """Read a signature image and return its normalised ink canvas and shape measurements.

    Parameters
    ----------
    path : path-like
    height, width : int > 0
        Canvas size in pixels.
    pen_radius : int >= 0 or None
        None keeps the writer's own strokes; a number redraws every stroke with that pen
        radius (in pixels of the cropped scan) so pen and scanner resolution matter less.
    max_pixels : int > 0
        Pixel limit of the input image (see ``read_grey``).

    Returns
    -------
    canvas : numpy.ndarray of float32, shape (height, width), ink coverage in [0, 1]
    shape : dict
        ``aspect`` (log of width / height of the ink's bounding box) and ``density``
        (fraction of the bounding box that is ink).
    """
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 16:
            raise ParameterError(f"{name} must be an integer >= 16; got {value!r}")
    if pen_radius is not None and (isinstance(pen_radius, bool) or not isinstance(pen_radius, (int, np.integer))
                                   or pen_radius < 0):
        raise ParameterError(f"pen_radius must be None or an integer >= 0; got {pen_radius!r}")
    grey = read_grey(path, max_pixels=max_pixels)
    mask = crop_to_ink(ink_mask(grey, name=str(path)))
    if pen_radius is not None:
        mask = normalise_strokes(mask, pen_radius)
    shape = {
        "aspect": float(np.log(mask.shape[1] / mask.shape[0])),
        "density": float(mask.mean()),
    }
    return fit_canvas(mask, height, width), shape
