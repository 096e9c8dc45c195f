"""Why a signature was rejected: the regions that departed most, the feature groups that weighed most, a PNG.

For each query:
- its nearest reference (in standardised features, keypoints aside);
- the regions of the canvas that departed most from the references: per block of the finest
  HOG scale, the query's mean distance to the references' mean over their own spread;
- the feature groups that weighed most: each of the networks' inputs in turn is set to the
  value the references themselves get (their leave-one-out median), and the change of the
  score is that input's effect; effects are summed per feature group, most negative first
  (what pulled the score towards "forged"); the keypoint evidence is a group of its own, whose
  effect is its term of the score (0 is how well the references match one another);
- a PNG: the query's ink canvas beside the nearest reference's picture (the thumbnail the
  enrolment store keeps, or the reference file itself), set into the same canvas frame so the
  departing regions boxed on both point at the same place, and the main groups named
  underneath. A reference enrolled before the store kept pictures is drawn from its stored HOG
  features as stroke directions instead, and the picture says so.
"""

import io
from pathlib import Path

import numpy as np

#: Regions marked per query, and feature groups named.
N_REGIONS = 3
N_GROUPS = 3

_SHAPE_NAMES = {
    "aspect": "width-to-height ratio",
    "density": "ink density in its box",
    "coverage": "ink coverage",
    "centre_row": "height of the ink's centre",
    "centre_column": "left-right position of the ink's centre",
    "profile_rows": "ink distribution from top to bottom",
    "profile_columns": "ink distribution from left to right",
    "keypoints": "small stroke details (keypoints) found at the same places as in the references",
}


def describe_group(name, grid):
    """A clerk's words for a feature group name such as ``hog16[1,2]``."""
    if name in _SHAPE_NAMES:
        return _SHAPE_NAMES[name]
    if name.startswith("texture"):
        region = name[len("texture"):]
        if not region:
            return "stroke edges (smooth or shaky), whole signature"
        row, column = (int(v) for v in region.strip("[]").split(","))
        return f"stroke edges (smooth or shaky), {['top', 'bottom'][row]} half, part {column + 1} of 4 from the left"
    if name.startswith("hog"):
        cell, _, region = name[3:].partition("[")
        text = f"stroke directions at {cell}-pixel scale"
        if not region:
            return f"{text}, whole signature"
        row, column = (int(v) for v in region.rstrip("]").split(","))
        rows = {1: ["all rows"], 2: ["top half", "bottom half"], 3: ["top", "middle", "bottom"]}.get(
            grid[0], [f"row {i + 1} of {grid[0]}" for i in range(grid[0])])
        return f"{text}, {rows[row]}, part {column + 1} of {grid[1]} from the left"
    return name


def _block_deviation(verifier, query, references):
    """(cell, map (block rows, block columns)) of the query's mean deviation per block of the finest HOG."""
    from inkvoice.signature.comparison import hog_shape

    parameters = verifier.feature_parameters
    cell = min(parameters["cells"])
    offset = 0
    for size in parameters["cells"]:
        if size == cell:
            break
        offset += int(np.prod(hog_shape(parameters["height"], parameters["width"], size, parameters["block"],
                                        parameters["orientations"])))
    shape = hog_shape(parameters["height"], parameters["width"], cell, parameters["block"], parameters["orientations"])
    size = int(np.prod(shape))
    spread = references.std(axis=0) + verifier.config.spread_floor
    deviation = np.abs(query - references.mean(axis=0)) / spread
    return cell, offset, shape, deviation[offset : offset + size].reshape(shape[0], shape[1], -1).mean(axis=2)


def _regions(block_map, cell, block, count=N_REGIONS):
    """The ``count`` blocks that departed most, as canvas rectangles, largest first."""
    order = np.argsort(block_map.ravel())[::-1]
    chosen = []
    for flat in order:
        row, column = np.unravel_index(flat, block_map.shape)
        # skip blocks that overlap one already chosen: each box should point at a new place
        if any(abs(row - r) < block and abs(column - c) < block for r, c, _ in chosen):
            continue
        chosen.append((int(row), int(column), float(block_map[row, column])))
        if len(chosen) == count:
            break
    return [{"top": r * cell, "left": c * cell, "height": block * cell, "width": block * cell,
             "deviation": round(d, 3)} for r, c, d in chosen]


def _effects(verifier, query_inputs, typical):
    """Score change per input when it is set to its typical genuine value (negative: pulled towards forged)."""
    from inkvoice.signature.verifier import _decision

    base = _decision(verifier.networks, query_inputs[None, :])[0]
    trials = np.repeat(query_inputs[None, :], len(query_inputs), axis=0)
    trials[np.arange(len(query_inputs)), np.arange(len(query_inputs))] = typical
    return base - _decision(verifier.networks, trials)


def _hog_picture(features, shape, cell, height, width):
    """An image of stroke directions drawn from one HOG scale's block features (as scikit-image draws HOG)."""
    from skimage.draw import line_aa

    block_rows, block_columns, block, _, orientations = shape
    blocks = features.reshape(shape)
    cells = np.zeros((block_rows + block - 1, block_columns + block - 1, orientations))
    for u in range(block):
        for v in range(block):
            cells[u : u + block_rows, v : v + block_columns] += blocks[:, :, u, v, :]
    # block normalisation (L2-Hys clips at 0.2) flattens a cell's histogram: draw only its
    # dominant directions, and cells in proportion to their strength, so strokes stand out
    strongest = cells.max(axis=2, keepdims=True)
    cells = np.where(cells >= 0.7 * strongest, cells, 0.0) * (strongest / max(float(strongest.max()), 1e-6))
    picture = np.zeros((height, width))
    radius = cell // 2 - 1
    angles = np.pi * (np.arange(orientations) + 0.5) / orientations
    for row in range(cells.shape[0]):
        for column in range(cells.shape[1]):
            centre = (row * cell + cell // 2, column * cell + cell // 2)
            for angle, strength in zip(angles, cells[row, column]):
                # the drawn line runs along the stroke, across the gradient
                dr, dc = radius * np.cos(angle), radius * np.sin(angle)
                rr, cc, value = line_aa(int(centre[0] - dr), int(centre[1] + dc), int(centre[0] + dr),
                                        int(centre[1] - dc))
                inside = (rr >= 0) & (rr < height) & (cc >= 0) & (cc < width)
                picture[rr[inside], cc[inside]] = np.maximum(picture[rr[inside], cc[inside]], value[inside] * strength)
    return picture / max(picture.max(), 1e-6)


def picture_canvas(png, height, width):
    """A reference's stored picture as ink coverage in the features' ``height`` x ``width`` canvas, or None.

    ``png`` is a thumbnail from ``enrollment.reference_thumbnail``: the ink cropped, dark on
    white. It is set into the canvas as ``preprocess`` sets a scan (aspect ratio kept, centred),
    so a region of the query's canvas and the same region of this one show the same part of
    the signature. None when ``png`` is None, not a PNG, or larger than a thumbnail can be.
    """
    from PIL import Image, UnidentifiedImageError

    from inkvoice.signature.enrollment import PNG_SIGNATURE, THUMBNAIL_SIZE
    from inkvoice.signature.preprocess import fit_canvas

    if png is None or not bytes(png).startswith(PNG_SIGNATURE):
        return None
    try:
        with Image.open(io.BytesIO(bytes(png))) as image:
            # the header's size is checked before any pixel is decoded
            if image.size[0] > THUMBNAIL_SIZE[0] or image.size[1] > THUMBNAIL_SIZE[1]:
                return None
            grey = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    except (OSError, UnidentifiedImageError, ValueError):
        return None
    # thumbnails draw full ink at 20/255 (see reference_thumbnail): undo that lift
    ink = np.clip((1.0 - grey) * (255.0 / 235.0), 0.0, 1.0)
    if not ink.any():
        return None
    return fit_canvas(ink, height, width)


def explanation_paths(folder, paths):
    """Where the explanations of the queries read from ``paths`` go: one PNG each in ``folder``."""
    return [Path(folder) / f"{index + 1:03d}-{Path(path).stem}.png" for index, path in enumerate(paths)]


def explain_queries(verifier, paths, queries, references, folder, max_pixels=None, reference_pictures=None):
    """Explanations of raw ``queries`` (from ``paths``) against raw ``references``; one PNG each in ``folder``.

    ``reference_pictures``, when given, holds one PNG thumbnail (or None) per reference, in the
    order of ``references``: the nearest reference is shown as that picture.

    Returns a list of plain dicts, one per query: ``png`` (the picture's path),
    ``nearest_reference`` (index among the references), ``reference_shown`` ("picture", or
    "stroke directions" when no picture of it is kept), ``regions`` (canvas rectangles that
    departed most, with their deviation), ``groups`` (the feature groups that weighed most,
    with a description and their effect on the score) and ``summary`` (one line of words).
    """
    from inkvoice.core.errors import ParameterError
    from inkvoice.core.plots import pyplot, save_figure
    from inkvoice.signature.preprocess import preprocess

    if reference_pictures is not None and len(reference_pictures) != len(np.atleast_2d(references)):
        raise ParameterError(f"reference_pictures must hold one entry per reference "
                             f"({len(np.atleast_2d(references))}); got {len(reference_pictures)}")

    plt = pyplot()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pngs = explanation_paths(folder, paths)
    parameters = verifier.feature_parameters
    standard_queries = verifier.standardize(queries)
    standard_refs = verifier.standardize(references)
    inputs = verifier.compare(standard_queries, standard_refs)
    if len(standard_refs) >= 2:
        typical = np.median(verifier.compare.leave_one_out(standard_refs), axis=0)
    else:
        typical = np.zeros(inputs.shape[1], dtype=np.float32)
    names = verifier.compare.input_names
    group_names = [name.split(":", 1)[1] for name in names]
    local = verifier.keypoint_scores(queries, references)
    # keypoints are matched, not compared value by value: the nearest reference is chosen on the rest
    compared = None if verifier.keypoint_columns is None else verifier.keypoint_columns.start
    explanations = []
    for index, (path, query) in enumerate(zip(paths, standard_queries)):
        nearest = int(np.argmin(((standard_refs[:, :compared] - query[:compared]) ** 2).sum(axis=1)))
        cell, offset, shape, block_map = _block_deviation(verifier, query, standard_refs)
        regions = _regions(block_map, cell, parameters["block"])
        effects = _effects(verifier, inputs[index], typical)
        per_group = {}
        for name, effect in zip(group_names, effects):
            per_group[name] = per_group.get(name, 0.0) + float(effect)
        if verifier.keypoint_columns is not None and verifier.config.keypoint_weight:
            per_group["keypoints"] = float(local[index])
        ranked = sorted(per_group.items(), key=lambda item: item[1])[:N_GROUPS]
        groups = [{"group": name, "description": describe_group(name, verifier.config.grid),
                   "effect": round(effect, 3)} for name, effect in ranked]
        summary = "; ".join(f"{g['description']} ({g['effect']:+.2f})" for g in groups)
        png = pngs[index]

        canvas, _ = preprocess(path, height=parameters["height"], width=parameters["width"],
                               pen_radius=parameters["pen_radius"],
                               **({} if max_pixels is None else {"max_pixels": max_pixels}))
        reference_picture = None if reference_pictures is None else picture_canvas(
            reference_pictures[nearest], parameters["height"], parameters["width"])
        shown = "picture"
        if reference_picture is None:
            shown = "stroke directions"
            size = int(np.prod(shape))
            reference_picture = _hog_picture(references[nearest][offset : offset + size], shape, cell,
                                             parameters["height"], parameters["width"])
        reference_title = (f"nearest reference (#{nearest + 1})" if shown == "picture" else
                           f"nearest reference (#{nearest + 1}): stroke directions (no picture of it is kept)")
        figure, axes = plt.subplots(1, 2, figsize=(10, 3.4))
        for axis, picture, title in ((axes[0], 1 - canvas, f"query: {Path(path).name}"),
                                     (axes[1], 1 - reference_picture, reference_title)):
            axis.imshow(picture, cmap="gray", vmin=0, vmax=1)
            for rank, region in enumerate(regions):
                axis.add_patch(plt.Rectangle((region["left"] - 0.5, region["top"] - 0.5), region["width"],
                                             region["height"], fill=False, edgecolor="red", linewidth=2.5 - rank * 0.6))
                axis.text(region["left"] + 2, region["top"] + 9, str(rank + 1), color="red", fontsize=9)
            axis.set_title(title, fontsize=9)
            axis.set_xticks([])
            axis.set_yticks([])
        figure.text(0.01, 0.02, "\n".join(
            ["boxes: the regions that depart most from the references (1 = most); "
             "what pulled the score towards forged (effect on the score):"]
            + [f"  {g['description']} ({g['effect']:+.2f})" for g in groups]), fontsize=8, va="bottom")
        figure.subplots_adjust(bottom=0.28, top=0.9, left=0.01, right=0.99, wspace=0.03)
        save_figure(figure, png)
        explanations.append({"png": str(png), "nearest_reference": nearest, "reference_shown": shown,
                             "regions": regions, "groups": groups, "summary": summary})
    return explanations
