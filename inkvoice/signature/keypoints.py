"""Local evidence a forger rarely copies: ORB keypoints of the ink canvas, matched between signatures.

A forger copies a signature's shape; the small details of its strokes (where a loop closes,
how a stroke ends) and their exact places are much harder to copy. Each signature's normalised
ink canvas (``preprocess``) gets up to ``n_keypoints`` ORB keypoints (oriented FAST corners
with rotated BRIEF binary descriptors, scikit-image). Two signatures are compared by matching
their descriptors (mutual nearest neighbours in Hamming distance that pass Lowe's ratio test),
then keeping only the matches that agree on one displacement (geometric consistency: canvases
are already cropped and scaled, so a genuine pair's matches move together, within
``tolerance`` pixels; the largest such group is the number of consistent matches).

``evidence`` turns these counts into a writer-independent measure: how many consistent
matches a query makes with a writer's references, over how many the references make with
one another. A genuine signature matches its references about as well as they match each
other; a forgery, even a close copy of the shape, matches fewer.

Keypoints travel as one float32 vector per signature (``encode``/``decode``), so they are
extracted, cached and stored like the other features.
"""

import numpy as np

#: Default keypoint settings (canvas size as the features use).
DEFAULT_KEYPOINTS = {"n_keypoints": 150, "tolerance": 6.0, "max_ratio": 0.8}
#: Bytes of one ORB descriptor (256 binary tests).
DESCRIPTOR_BYTES = 32
#: Values per keypoint in the encoded vector: row, column, descriptor bytes.
KEYPOINT_WIDTH = 2 + DESCRIPTOR_BYTES


def detect(canvas, n_keypoints=DEFAULT_KEYPOINTS["n_keypoints"]):
    """ORB keypoints of an ink canvas: (positions (n, 2) in pixels as (row, column), descriptors (n, 256) bool).

    Fewer than ``n_keypoints`` (possibly none) on a canvas with little ink.
    """
    from skimage.feature import ORB

    orb = ORB(n_keypoints=n_keypoints, fast_threshold=0.05, downscale=1.2, n_scales=4)
    try:
        orb.detect_and_extract(canvas.astype(np.float64))
    except (RuntimeError, IndexError, ValueError):
        # scikit-image raises when no corner is found at all
        return np.zeros((0, 2)), np.zeros((0, 8 * DESCRIPTOR_BYTES), dtype=bool)
    return np.asarray(orb.keypoints, dtype=np.float64), np.asarray(orb.descriptors, dtype=bool)


def extract(path, height=128, width=256, pen_radius=None, n_keypoints=DEFAULT_KEYPOINTS["n_keypoints"],
            max_pixels=None):
    """Encoded ORB keypoints (``encode``) of one signature image's normalised ink canvas.

    Module-level so that ``core.extraction`` can run it in worker processes and cache it.
    Raises DataError for a file that is not a usable signature image.
    """
    from inkvoice.signature.images import DEFAULT_MAX_PIXELS
    from inkvoice.signature.preprocess import preprocess

    canvas, _ = preprocess(path, height=height, width=width, pen_radius=pen_radius,
                           max_pixels=DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels)
    return encode(*detect(canvas, n_keypoints), n_keypoints)


def encode(positions, descriptors, n_keypoints):
    """One float32 vector of length ``n_keypoints * KEYPOINT_WIDTH``; unused slots hold -1."""
    vector = np.full((n_keypoints, KEYPOINT_WIDTH), -1.0, dtype=np.float32)
    count = min(len(positions), n_keypoints)
    if count:
        vector[:count, :2] = positions[:count]
        vector[:count, 2:] = np.packbits(descriptors[:count], axis=1)
    return vector.ravel()


def decode(vector):
    """(positions (n, 2), descriptors (n, 32) as packed uint8 bits) of an ``encode``d vector."""
    table = np.asarray(vector, dtype=np.float32).reshape(-1, KEYPOINT_WIDTH)
    table = table[table[:, 0] >= 0]
    return table[:, :2].astype(np.float64), np.clip(table[:, 2:], 0, 255).astype(np.uint8)


# Set bits of every 16-bit value, for numpy releases without ``bitwise_count`` (before 2.0).
# Distances are counted in integers: a matrix product would hand these small matrices to a
# multi-threaded BLAS, which costs far more in threads than it saves on a busy machine.
_POPCOUNT = None


def hamming(first, second):
    """Hamming distances (n, m) between packed binary descriptors (n, 32) and (m, 32) uint8."""
    global _POPCOUNT
    words_a = np.ascontiguousarray(first).view(np.uint64)
    words_b = np.ascontiguousarray(second).view(np.uint64)
    if hasattr(np, "bitwise_count"):
        # word by word: five times faster than one (n, m, 4) array summed over its last axis
        distance = np.zeros((len(words_a), len(words_b)), dtype=np.int32)
        for word in range(words_a.shape[1]):
            distance += np.bitwise_count(words_a[:, word, None] ^ words_b[None, :, word])
        return distance
    differ = words_a[:, None, :] ^ words_b[None, :, :]
    if _POPCOUNT is None:
        _POPCOUNT = np.array([bin(value).count("1") for value in range(1 << 16)], dtype=np.uint8)
    return _POPCOUNT[differ.view(np.uint16)].sum(axis=2, dtype=np.int32)


def consistent_matches(first, second, tolerance=DEFAULT_KEYPOINTS["tolerance"],
                       max_ratio=DEFAULT_KEYPOINTS["max_ratio"]):
    """Number of descriptor matches between two decoded keypoint sets that agree on one displacement.

    Matches are mutual nearest neighbours in Hamming distance whose nearest distance is below
    ``max_ratio`` times the second nearest. Every match's displacement is tried as the shared
    one (an exhaustive one-point consensus, as RANSAC would sample it, but exact and cheap);
    the answer is the most matches within ``tolerance`` pixels of one of them.
    """
    (where_a, bits_a), (where_b, bits_b) = first, second
    if len(where_a) < 2 or len(where_b) < 2:
        return 0
    distance = hamming(bits_a, bits_b)
    nearest = distance.argmin(axis=1)
    mutual = distance.argmin(axis=0)[nearest] == np.arange(len(where_a))
    two = np.partition(distance, 1, axis=1)[:, :2]
    passes = mutual & (two[:, 0] < max_ratio * two[:, 1])
    rows = np.flatnonzero(passes)
    if not len(rows):
        return 0
    moves = where_b[nearest[rows]] - where_a[rows]
    agree = (np.abs(moves[:, None, :] - moves[None, :, :]).max(axis=2) <= tolerance).sum(axis=1)
    return int(agree.max())


#: Names of the values ``evidence`` gives per query.
EVIDENCE_NAMES = ("keypoints_mean", "keypoints_best")
#: The one the verifier adds to its score: on CEDAR's k-fold, with weights chosen on the other
#: folds, the three best-matching references' count got all the weight and the mean none.
KEYPOINT_EVIDENCE = EVIDENCE_NAMES.index("keypoints_best")


def evidence(queries, references, tolerance=DEFAULT_KEYPOINTS["tolerance"], max_ratio=DEFAULT_KEYPOINTS["max_ratio"]):
    """How well each query's keypoints match the references, relative to how the references match one another.

    Parameters
    ----------
    queries : ndarray (n_queries, n_keypoints * KEYPOINT_WIDTH), encoded keypoints
    references : ndarray (n_references, n_keypoints * KEYPOINT_WIDTH), n_references >= 1

    Returns
    -------
    ndarray (n_queries, 2), float32: log of (1 + the query's mean consistent matches over the
    references) minus log of (1 + the references' typical mean against one another), and the
    same for the query's three best-matching references. With a single reference the
    references' own level is unknown and taken as 0 matches.
    """
    queries = [decode(q) for q in np.atleast_2d(queries)]
    references = [decode(r) for r in np.atleast_2d(references)]
    level_mean = level_best = 0.0
    n_references = len(references)
    if n_references >= 2:
        # matching is symmetric up to the one-sided ratio test: each pair once
        between = np.zeros((n_references, n_references))
        for i in range(n_references):
            for j in range(i + 1, n_references):
                between[i, j] = between[j, i] = consistent_matches(references[i], references[j], tolerance,
                                                                   max_ratio)
        others = between[~np.eye(n_references, dtype=bool)].reshape(n_references, n_references - 1)
        level_mean = float(np.median(np.log1p(others.mean(axis=1))))
        level_best = float(np.median(np.log1p(np.sort(others, axis=1)[:, -3:].mean(axis=1))))
    values = []
    for query in queries:
        counts = np.array([consistent_matches(query, r, tolerance, max_ratio) for r in references], dtype=np.float64)
        values.append((np.log1p(counts.mean()) - level_mean, np.log1p(np.sort(counts)[-3:].mean()) - level_best))
    return np.array(values, dtype=np.float32).reshape(-1, len(EVIDENCE_NAMES))
