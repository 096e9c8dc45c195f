"""What training covered, so that a verifier's "genuine" is earned inside it and never outside.

The networks learnt from comparisons of development writers' signatures; beyond the largest
departures those comparisons held they extrapolate, and nothing stops them extrapolating
upwards (a grid of lines once scored 134 against a threshold of -1.3). Training therefore
records, in the model file:

- ``signature_limits``: per feature group, the largest mean absolute standardised value of any
  development signature (genuine or forged). An image beyond them by more than the margin is
  not like any signature training saw (a grid, noise, ruled lines, a page of text).
- ``input_limits``: per network input, the largest departure of any training comparison
  (genuine, skilled and random forgeries alike). A query beyond them departs from the
  references further than anything the networks were taught to judge.
- ``reference_limits``: per count k of other references and per network input, the largest
  departure of a development writer's genuine signature from k of its other genuine ones
  (leave-one-out over random sets of k + 1). A reference beyond them (times the reference
  margin) departs from the writer's other references far beyond genuine variation; the
  count matters, since a spread measured on few references is small.
- ``score_floor``: the lowest score of the held-out development comparisons.
- ``genuine_floor``: the lowest score a held-out development writer's genuine signature got.
  A reference scoring more than ``score_margin`` below it against the writer's other
  references is refused: a poisoned reference (a picture of no signature) scores far below
  anything genuine.

The networks only ever see inputs clipped to ``input_limits``, and what lies beyond is
subtracted from the score. A query beyond ``margin`` times a limit is outside: scored below
everything training scored (at most ``score_floor`` less one and the log of its excess) and
forged whatever the threshold.
"""

from dataclasses import dataclass

import numpy as np

from inkvoice.core.errors import ParameterError, check_number

#: A query departing more than this many times the largest value training saw is outside.
#: Genuine signatures of unseen writers reached 2.4 times (CEDAR, a model trained on writers
#: 10-45 tested on 1-9) and 4.9 (the demo model, trained on four writers); a grid of lines, a
#: noise image and ruled rows reached 14 to 65 times against the demo model. Below the margin
#: the networks see clipped inputs and the excess is subtracted from the score.
DEFAULT_MARGIN = 8.0
#: A reference departing from the writer's others more than this many times the largest
#: genuine departure training saw is refused. Clean reference sets of CEDAR writers 1-9 reached
#: 1.1 (model trained on 10-45), the demo model's writer5 (genuine 01-10) 5.2; a noise image
#: among 11 CEDAR references reached 6.2 to 10.9, ruled rows 4.6 to 13.8 (refused for 8 of 9
#: writers), a grid of lines 2.4 to 4.4 (never refused: see docs/figures/robustness.md).
DEFAULT_REFERENCE_MARGIN = 5.5
#: How far below ``genuine_floor`` a reference may score against the writer's others before it
#: is refused (logit units). The demo model's genuine floor is -3.05: writer6's genuine 01-03
#: scored -3.14 at worst against each other, another writer's signature -2.4 to -2.7, and
#: pictures of no signature (shaded blobs, text-like blocks, a checkerboard) -5.8 to -22.7.
DEFAULT_SCORE_MARGIN = 2.0
#: Random reference sets per development writer and reference count behind ``reference_limits``.
REFERENCE_DRAWS = 5
#: Most reference counts ``reference_limits`` holds (more references use the last).
MAX_REFERENCE_COUNT = 64


def _limits(name, values):
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ParameterError(f"domain.{name} must be a list of numbers; got {values!r}") from None
    if array.ndim != 1 or not array.size or not np.all(np.isfinite(array)) or np.any(array <= 0) \
            or np.any(array > 1e6):
        raise ParameterError(f"domain.{name} must be a non-empty list of numbers in (0, 1e6]; got {values!r}")
    return tuple(float(v) for v in array)


@dataclass(frozen=True)
class Domain:
    """The range of what a verifier's networks were trained on (stored in the model file; see the module)."""

    signature_limits: tuple
    input_limits: tuple
    reference_limits: tuple
    score_floor: float
    genuine_floor: float
    margin: float = DEFAULT_MARGIN
    reference_margin: float = DEFAULT_REFERENCE_MARGIN
    score_margin: float = DEFAULT_SCORE_MARGIN

    def __post_init__(self):
        for name in ("signature_limits", "input_limits"):
            object.__setattr__(self, name, _limits(name, getattr(self, name)))
        rows = self.reference_limits
        if not isinstance(rows, (list, tuple)) or not rows or len(rows) > MAX_REFERENCE_COUNT:
            raise ParameterError(f"domain.reference_limits must be a list of 1 to {MAX_REFERENCE_COUNT} lists; got "
                                 f"{str(rows)[:80]}")
        rows = tuple(_limits("reference_limits", row) for row in rows)
        if any(len(row) != len(self.input_limits) for row in rows):
            raise ParameterError("domain.reference_limits and domain.input_limits must have one value per network input")
        object.__setattr__(self, "reference_limits", rows)
        for name in ("score_floor", "genuine_floor"):
            object.__setattr__(self, name, float(check_number(f"domain.{name}", getattr(self, name),
                                                              low=-1e6, high=1e6)))
        check_number("domain.margin", self.margin, low=1, high=100)
        check_number("domain.reference_margin", self.reference_margin, low=1, high=100)
        check_number("domain.score_margin", self.score_margin, low=0, high=1e6)

    @classmethod
    def measure(cls, X_std, writers, genuine, compare, inputs, held_scores, held_genuine, largest, rng):
        """The domain of a training run.

        Parameters
        ----------
        X_std : ndarray (n_signatures, n_features), standardised development signatures
        writers, genuine : ndarray (n_signatures,)
        compare : comparison.Comparison
        inputs : ndarray (n_comparisons, n_inputs), every training comparison
        held_scores : ndarray, scores of the held-out development comparisons
        held_genuine : ndarray, those of genuine signatures
        largest : int >= 1, the most references a training comparison used
        rng : numpy.random.Generator, draws the reference sets of ``reference_limits``
        """
        signature = (np.abs(X_std) @ compare.averaging).max(axis=0)
        # a group that never varied in training (constant features) still gets a small range
        floor = 1e-3
        rows = []
        for count in range(1, min(largest, MAX_REFERENCE_COUNT) + 1):
            parts = []
            for writer in np.unique(writers):
                own = np.flatnonzero((writers == writer) & genuine)
                for _ in range(REFERENCE_DRAWS if len(own) > count else 0):
                    parts.append(compare.leave_one_out(X_std[rng.choice(own, count + 1, replace=False)]))
            if not parts:
                break
            rows.append(np.maximum(np.concatenate(parts).max(axis=0), floor))
        if not rows:
            rows = [np.maximum(inputs.max(axis=0), floor)]  # no writer has two genuine signatures
        # with no held-out score at all (every held-out writer had a single genuine signature)
        # the floors fall back to 0, near where thresholds lie: stricter, never looser
        score_floor = float(np.min(held_scores)) if np.size(held_scores) else 0.0
        genuine_floor = float(np.min(held_genuine)) if np.size(held_genuine) else 0.0
        return cls(signature_limits=np.maximum(signature, floor), input_limits=np.maximum(inputs.max(axis=0), floor),
                   reference_limits=rows, score_floor=score_floor, genuine_floor=genuine_floor)

    def to_dict(self):
        """JSON-able form (stored under the verifier's settings in the model file)."""
        return {"signature_limits": list(self.signature_limits), "input_limits": list(self.input_limits),
                "reference_limits": [list(row) for row in self.reference_limits], "score_floor": self.score_floor,
                "genuine_floor": self.genuine_floor, "margin": self.margin,
                "reference_margin": self.reference_margin, "score_margin": self.score_margin}

    def check_sizes(self, n_groups, n_inputs):
        """Raise ParameterError unless the limits fit ``n_groups`` feature groups and ``n_inputs`` network inputs."""
        if len(self.signature_limits) != n_groups or len(self.input_limits) != n_inputs:
            raise ParameterError(
                f"domain limits cover {len(self.signature_limits)} feature groups and {len(self.input_limits)} "
                f"network inputs; the model has {n_groups} and {n_inputs}")

    def signature_departure(self, standardised, averaging):
        """Per row, the largest ratio of a group's mean absolute standardised value to its limit (> 1: beyond)."""
        groups = np.abs(np.atleast_2d(standardised)) @ averaging
        return (groups / np.asarray(self.signature_limits)).max(axis=1)

    def input_ratios(self, inputs):
        """Each input over its limit, shape of ``inputs``."""
        return np.atleast_2d(inputs) / np.asarray(self.input_limits)

    def reference_ratios(self, leave_one_out):
        """Per reference, the largest ratio of its leave-one-out inputs to the genuine ones training saw.

        ``leave_one_out`` holds each of n references against the other n - 1
        (``Comparison.leave_one_out``); the limits of n - 1 references apply (those of the
        most training measured when n - 1 is more).
        """
        leave_one_out = np.atleast_2d(leave_one_out)
        row = self.reference_limits[min(len(leave_one_out) - 1, len(self.reference_limits)) - 1]
        return (leave_one_out / np.asarray(row)).max(axis=1)

    def clip(self, inputs):
        """``inputs`` with each value at most its limit: the networks never see more than training held."""
        return np.minimum(inputs, np.asarray(self.input_limits, dtype=np.float32)).astype(np.float32)

    def judge(self, standardised, inputs, averaging):
        """What lies beyond training, per query: (penalty, reasons).

        ``penalty`` (>= 0) is the summed excess of the inputs over their limits (in units of
        each limit), subtracted from the score so that it keeps falling as a query departs
        further than training went; ``reasons[i]`` is a sentence for a query outside (beyond
        ``margin`` times a limit), else None.
        """
        signature = self.signature_departure(standardised, averaging)
        ratios = self.input_ratios(inputs)
        comparison = ratios.max(axis=1)
        penalty = np.maximum(ratios - 1.0, 0.0).sum(axis=1)
        reasons = []
        for sign, comp in zip(signature, comparison):
            if sign > self.margin:
                reasons.append(f"not like any signature the model was trained on ({sign:.1f} times the largest "
                               "departure training saw)")
            elif comp > self.margin:
                reasons.append(f"departs from the references {comp:.1f} times further than anything the model was "
                               "trained on")
            else:
                reasons.append(None)
        return penalty, reasons

    def outside_score(self, departure):
        """Score of a query outside: below every score training gave, falling as ``departure`` grows."""
        return self.score_floor - 1.0 - np.log1p(departure)
