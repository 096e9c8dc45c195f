"""Writer-dependent verification: a small MLP for one writer, learnt from that writer's references.

Positives are the references themselves, each compared with the others (leave one out);
negatives are genuine signatures of other writers (the development writers kept in the model
file) compared with the references. Inputs are the same per-group deviations the
writer-independent verifier uses, so the per-writer network learns which parts of this
writer's signature are stable. Its score, centred on the scores that held-out references of
the writer get, is added with a weight (``WriterModelSettings.weight``, stored in the model
file) to the writer-independent score (uncalibrated: see ``verifier``), which has seen skilled
forgeries; the per-writer network alone never has.
"""

import numpy as np

from inkvoice.core.errors import DataError

#: Least number of references for a writer-dependent model.
MIN_REFERENCES = 4


class WriterModel:
    """A per-writer MLP over deviation features, combined with the writer-independent score."""

    def __init__(self, verifier, references, rng=None):
        if verifier.background is None or not len(verifier.background):
            raise DataError("this model file holds no development signatures: writer-dependent mode is unavailable")
        references = np.atleast_2d(references)
        if len(references) < MIN_REFERENCES:
            raise DataError(
                f"writer-dependent mode needs at least {MIN_REFERENCES} references; got {len(references)}"
            )
        rng = np.random.default_rng(0) if rng is None else rng
        self.verifier = verifier
        self.references = references
        self.settings = settings = verifier.config.writer_model
        compare = verifier.compare
        standard_refs = verifier.standardize(references)
        positives = compare.leave_one_out(standard_refs)
        background = verifier.standardize(verifier.background)
        negatives = compare(background, standard_refs)
        self.network = self._fit(positives, negatives, rng, settings)
        # Centre the per-writer scores on what held-out references of this writer get: each
        # quarter of the references is scored by a network learnt from the other three.
        held_out = []
        for part in np.array_split(rng.permutation(len(standard_refs)), 4):
            rest = np.delete(standard_refs, part, axis=0)
            network = self._fit(compare.leave_one_out(rest), compare(background, rest), rng, settings)
            held = compare(standard_refs[part], rest)
            held_out.append(network.decision_function(held).reshape(-1))
        held_out = np.concatenate(held_out)
        self.offset = float(np.median(held_out))
        self.scale = float(np.std(held_out) + 1.0)

    @staticmethod
    def _fit(positives, negatives, rng, settings):
        from inkvoice.core.estimator import MlpClassifier

        features = np.concatenate([positives, negatives])
        labels = np.r_[np.ones(len(positives)), np.zeros(len(negatives))].astype(int)
        network = MlpClassifier(hidden_sizes=settings.hidden_sizes, l2=settings.l2, class_weight="balanced",
                                max_epochs=settings.max_epochs, early_stopping=False,
                                random_state=int(rng.integers(2**31)))
        return network.fit(features, labels)

    def scores(self, queries):
        """Combined scores (n_queries,) of raw query features; compare with the verifier's threshold."""
        independent = self.verifier.independent_scores(queries, self.references, calibrated=False)
        comparison = self.verifier.comparison(queries, self.references)
        dependent = (self.network.decision_function(comparison).reshape(-1) - self.offset) / self.scale
        return independent + self.settings.weight * dependent
