"""How a query departs from a writer's references: per-feature deviations averaged over feature groups.

Features arrive standardised with statistics of the development writers; then, per feature,
the query's distance to the references' mean is divided by the references' own spread (plus a
floor), so a writer whose signatures vary a lot in some region is forgiven more there. These
per-feature deviations are averaged within groups (each HOG scale as a whole and in a grid of
regions, the row and column ink profiles, each shape measure), giving a short vector that means
the same thing for every writer: the input of the verifier's networks.
"""

import numpy as np

#: Added to the references' per-feature spread (in standard deviations of the development
#: writers) so that a feature on which a few references happen to agree cannot dominate.
DEFAULT_SPREAD_FLOOR = 0.5
#: Regions (rows, columns) of each HOG scale that are compared separately.
DEFAULT_GRID = (2, 4)


def hog_shape(height, width, cell, block, orientations):
    """Shape (block rows, block columns, block, block, orientations) of one HOG scale's features."""
    return (height // cell - block + 1, width // cell - block + 1, block, block, orientations)


def feature_groups(parameters, grid=DEFAULT_GRID):
    """Index arrays of the feature groups compared separately, for complete feature ``parameters``.

    Returns a list of (name, indices) in feature order; indices cover every feature once per
    level of detail (each HOG scale appears whole and by region).
    """
    groups = []
    offset = 0
    for cell in parameters["cells"]:
        shape = hog_shape(parameters["height"], parameters["width"], cell, parameters["block"],
                          parameters["orientations"])
        size = int(np.prod(shape))
        indices = np.arange(offset, offset + size).reshape(shape[0], shape[1], -1)
        groups.append((f"hog{cell}", indices.ravel()))
        for r, rows in enumerate(np.array_split(np.arange(shape[0]), min(grid[0], shape[0]))):
            for c, columns in enumerate(np.array_split(np.arange(shape[1]), min(grid[1], shape[1]))):
                groups.append((f"hog{cell}[{r},{c}]", indices[np.ix_(rows, columns)].ravel()))
        offset += size
    for axis in ("rows", "columns"):
        if parameters["profile_bins"]:
            groups.append((f"profile_{axis}", np.arange(offset, offset + parameters["profile_bins"])))
            offset += parameters["profile_bins"]
    if parameters.get("lbp_radius") is not None:
        from inkvoice.signature.features import LBP_CODES, LBP_GRID

        groups.append(("texture", np.arange(offset, offset + LBP_CODES)))
        offset += LBP_CODES
        for r in range(LBP_GRID[0]):
            for c in range(LBP_GRID[1]):
                groups.append((f"texture[{r},{c}]", np.arange(offset, offset + LBP_CODES)))
                offset += LBP_CODES
    for name in ("aspect", "density", "coverage", "centre_row", "centre_column"):
        groups.append((name, np.array([offset])))
        offset += 1
    return groups


def keypoint_columns(parameters):
    """The slice of the feature vector that holds encoded keypoints (last), or None without keypoints.

    These values are matched (``keypoints.evidence``), never averaged into a group.
    """
    from inkvoice.signature.keypoints import KEYPOINT_WIDTH

    count = parameters.get("keypoints") or 0
    if not count:
        return None
    start = int(max(indices.max() for _, indices in feature_groups(parameters))) + 1
    return slice(start, start + count * KEYPOINT_WIDTH)


def feature_length(parameters):
    """Length of the feature vector that ``features.extract`` gives for ``parameters``."""
    columns = keypoint_columns(parameters)
    if columns is not None:
        return columns.stop
    return int(max(indices.max() for _, indices in feature_groups(parameters))) + 1


def group_matrix(groups, n_features):
    """A (n_features, n_groups) matrix whose product with per-feature values averages each group."""
    matrix = np.zeros((n_features, len(groups)), dtype=np.float32)
    for column, (_, indices) in enumerate(groups):
        matrix[indices, column] = 1.0 / len(indices)
    return matrix


def deviation_features(queries, references, averaging, spread_floor=DEFAULT_SPREAD_FLOOR):
    """How each query departs from a set of references, averaged per feature group.

    Parameters
    ----------
    queries : ndarray (n_queries, n_features), standardised features
    references : ndarray (n_references, n_features), standardised features, n_references >= 1
    averaging : ndarray (n_features, n_groups), from ``group_matrix``
    spread_floor : float > 0

    Returns
    -------
    ndarray (n_queries, n_groups), float32
    """
    queries = np.atleast_2d(queries)
    references = np.atleast_2d(references)
    centre = references.mean(axis=0)
    spread = references.std(axis=0) + spread_floor
    return ((np.abs(queries - centre) / spread) @ averaging).astype(np.float32)


def nearest_features(queries, references, averaging):
    """How far each query is from its nearest reference, per feature group, over the references' own spacing.

    Per group, the root-mean-square difference between a query and each reference; the
    smallest, divided by the median over references of their own nearest-neighbour distance
    (with a single reference, by 1). A forgery may sit near the references' mean yet near
    none of them; a genuine signature is usually as close to one of them as they are to
    each other.

    Returns ndarray (n_queries, n_groups), float32.
    """
    queries = np.atleast_2d(queries)
    references = np.atleast_2d(references)
    squared = np.stack([((queries - reference) ** 2) @ averaging for reference in references], axis=1)
    nearest = np.sqrt(squared.min(axis=1))
    if len(references) >= 2:
        between = np.stack([((references - reference) ** 2) @ averaging for reference in references], axis=1)
        between[np.arange(len(references)), np.arange(len(references))] = np.inf
        spacing = np.median(np.sqrt(between.min(axis=1)), axis=0)
    else:
        spacing = np.ones(averaging.shape[1], dtype=np.float32)
    return (nearest / (spacing + 0.1)).astype(np.float32)


#: The statistics a comparison can give per feature group: "spread" (``deviation_features``)
#: and "nearest" (``nearest_features``).
STATISTICS = ("spread", "nearest")
DEFAULT_STATISTICS = ("spread",)


class Comparison:
    """Turns (queries, references) of standardised features into the verifier's inputs.

    Parameters
    ----------
    groups : list of (name, indices), from ``feature_groups``
    n_features : int
    spread_floor : float > 0
    statistics : sequence of names from ``STATISTICS``; each gives one input per group
    """

    def __init__(self, groups, n_features, spread_floor=DEFAULT_SPREAD_FLOOR, statistics=DEFAULT_STATISTICS):
        from inkvoice.core.errors import ParameterError

        self.statistics = tuple(statistics)
        if not self.statistics or any(name not in STATISTICS for name in self.statistics):
            raise ParameterError(f"statistics must be a non-empty list of {STATISTICS}; got {statistics!r}")
        self.groups = groups
        self.averaging = group_matrix(groups, n_features)
        self.spread_floor = float(spread_floor)

    @property
    def input_names(self):
        """Name of each input: "<statistic>:<group>"."""
        return [f"{statistic}:{name}" for statistic in self.statistics for name, _ in self.groups]

    def __call__(self, queries, references):
        """Inputs (n_queries, n_inputs) of standardised ``queries`` against standardised ``references``."""
        parts = []
        for statistic in self.statistics:
            if statistic == "spread":
                parts.append(deviation_features(queries, references, self.averaging, self.spread_floor))
            else:
                parts.append(nearest_features(queries, references, self.averaging))
        return np.concatenate(parts, axis=1)

    def leave_one_out(self, references):
        """Inputs of each reference against the others (n_references >= 2)."""
        references = np.atleast_2d(references)
        return np.concatenate([self(references[i : i + 1], np.delete(references, i, axis=0))
                               for i in range(len(references))])
