"""Per-writer calibration: scores moved by how consistent a writer's own references are."""

from dataclasses import replace

import numpy as np
import pytest

from inkvoice.core.errors import ModelFileError, ParameterError
from inkvoice.core.scaling import Standardizer
from inkvoice.signature.comparison import DEFAULT_SPREAD_FLOOR, feature_groups, feature_length
from inkvoice.signature.domain import Domain
from inkvoice.signature.features import check_parameters
from inkvoice.signature.model_file import load_verifier, save_verifier
from inkvoice.signature.training import TrainingSettings, train_verifier
from inkvoice.signature.verifier import (
    DEFAULT_CALIBRATION_WEIGHT,
    MIN_CALIBRATION_REFERENCES,
    CalibrationSettings,
    Verifier,
    VerifierConfig,
    _decision,
)
from tests.signature.conftest import TRAINING_WRITERS

PARAMETERS = check_parameters({})


class MeanDeparture:
    """A stand-in network whose logit is minus the mean of its inputs (the per-group departures)."""

    def __init__(self, n_inputs):
        self.n_features_in_ = n_inputs

    def decision_function(self, inputs):
        return -np.asarray(inputs).mean(axis=1)


def _toy_verifier(calibration, threshold=0.0):
    n_features = feature_length(PARAMETERS)
    n_groups = len(feature_groups(PARAMETERS))
    # a domain wide enough that only calibration moves these scores
    wide = Domain([1e6] * n_groups, [1e6] * n_groups, [[1e6] * n_groups], score_floor=-1e3,
                  genuine_floor=-1e3)
    config = VerifierConfig(PARAMETERS, threshold, calibration=calibration, domain=wide)
    standardizer = Standardizer.from_arrays(np.zeros(n_features), np.ones(n_features))
    return Verifier(config, standardizer, [MeanDeparture(len(feature_groups(PARAMETERS)))])


def _writers(n_references=8):
    """Reference sets of two writers: one whose signatures barely vary, one whose vary a lot."""
    rng = np.random.default_rng(0)
    n_features = feature_length(PARAMETERS)
    consistent = rng.normal(0, 1, n_features) + rng.normal(0, 0.05, (n_references, n_features))
    varied = rng.normal(0, 1, n_features) + rng.normal(0, 1.5, (n_references, n_features))
    return consistent, varied


def _same_departure(references, k):
    """A query k spreads away from the references' mean on every feature: the same raw score for any writer."""
    return references.mean(axis=0) + k * (references.std(axis=0) + DEFAULT_SPREAD_FLOOR)


def test_a_consistent_writer_is_held_to_a_tighter_standard_than_a_varied_one():
    consistent, varied = _writers()
    plain = _toy_verifier(None)
    # the toy network's leave-one-out medians, and a centre between them
    medians = [float(np.median(_decision(plain.networks, plain.compare.leave_one_out(plain.standardize(refs)))))
               for refs in (consistent, varied)]
    assert medians[0] > medians[1]
    calibrated = _toy_verifier(CalibrationSettings(weight=1.0, centre=float(np.mean(medians))), threshold=-1.2)
    assert calibrated.calibration_offset(consistent) > 0 > calibrated.calibration_offset(varied)
    assert calibrated.calibration_offset(consistent) == pytest.approx(medians[0] - np.mean(medians), rel=1e-5)
    # the same departure from each writer's own references: the same raw score, but only the
    # varied writer's query is accepted once calibrated
    queries = [_same_departure(refs, 1.2) for refs in (consistent, varied)]
    raw = [plain.scores(query, refs)[0] for query, refs in zip(queries, (consistent, varied))]
    assert raw[0] == pytest.approx(raw[1], abs=1e-4) and raw[0] == pytest.approx(-1.2, abs=1e-3)
    verdicts = [calibrated.verify(query, refs)[0] for query, refs in zip(queries, (consistent, varied))]
    assert [v["verdict"] for v in verdicts] == ["forged", "genuine"]
    for verdict, score, refs in zip(verdicts, raw, (consistent, varied)):
        assert verdict["score"] == pytest.approx(score - calibrated.calibration_offset(refs), abs=1e-3)
    # the lowest raw score each writer needs: higher for the consistent writer
    bars = [calibrated.threshold + calibrated.calibration_offset(refs) for refs in (consistent, varied)]
    assert bars[0] > calibrated.threshold > bars[1]


def test_weight_scales_the_move_and_a_typical_writer_is_left_alone():
    consistent, _ = _writers()
    plain = _toy_verifier(None)
    median = float(np.median(_decision(plain.networks, plain.compare.leave_one_out(plain.standardize(consistent)))))
    half = _toy_verifier(CalibrationSettings(weight=0.5, centre=median - 1.0))
    assert half.calibration_offset(consistent) == pytest.approx(0.5, rel=1e-5)
    typical = _toy_verifier(CalibrationSettings(weight=1.0, centre=median))
    assert typical.calibration_offset(consistent) == pytest.approx(0.0, abs=1e-5)
    off = _toy_verifier(CalibrationSettings(weight=0.0, centre=median - 1.0))
    assert off.calibration_offset(consistent) == 0.0


def test_too_few_references_are_not_calibrated():
    consistent, _ = _writers(n_references=MIN_CALIBRATION_REFERENCES)
    verifier = _toy_verifier(CalibrationSettings(weight=1.0, centre=-5.0))
    assert verifier.calibration_offset(consistent) != 0.0
    assert verifier.calibration_offset(consistent[:MIN_CALIBRATION_REFERENCES - 1]) == 0.0
    query = consistent.mean(axis=0)
    assert verifier.scores(query, consistent[:2]) == pytest.approx(_toy_verifier(None).scores(query, consistent[:2]))


@pytest.mark.parametrize("settings, message", [
    ({"weight": -0.1}, "calibration.weight"),
    ({"centre": float("nan")}, "calibration.centre"),
    ({"min_references": 2}, "calibration.min_references"),
])
def test_bad_calibration_settings_are_refused(settings, message):
    with pytest.raises(ParameterError, match=message):
        CalibrationSettings(**settings)


def test_training_stores_the_calibration_and_weight_zero_turns_it_off(sample_model, sample_features):
    path, verifier = sample_model
    _, metadata = load_verifier(path)
    stored = metadata["verifier"]["calibration"]
    assert stored["weight"] == DEFAULT_CALIBRATION_WEIGHT == TrainingSettings().calibration_weight
    assert stored["centre"] == verifier.config.calibration.centre and np.isfinite(stored["centre"])
    signatures, X = sample_features
    rows = [i for i, s in enumerate(signatures) if s.writer in TRAINING_WRITERS]
    off, _, _ = train_verifier(X[rows], np.array([signatures[i].writer for i in rows]),
                               np.array([signatures[i].genuine for i in rows]), PARAMETERS,
                               {"n_references": 6, "n_folds": 4, "dependent_threshold": False,
                                "calibration_weight": 0}, np.random.default_rng(0))
    assert off.config.calibration is None
    with pytest.raises(ParameterError, match="calibration_weight"):
        TrainingSettings(calibration_weight=-1)


def test_model_files_without_calibration_still_score_as_before(sample_model, sample_features, tmp_path):
    _, verifier = sample_model
    signatures, X = sample_features
    references = X[[i for i, s in enumerate(signatures) if s.writer == "writer5" and s.genuine][:6]]
    forged = X[[i for i, s in enumerate(signatures) if s.writer == "writer5" and not s.genuine]]
    older = Verifier(replace(verifier.config, calibration=None), verifier.standardizer, verifier.networks,
                     verifier.background)
    path = tmp_path / "older.npz"
    save_verifier(path, older)
    loaded, metadata = load_verifier(path)
    assert loaded.config.calibration is None and metadata["verifier"]["calibration"] is None
    # uncalibrated: the networks' score plus the keypoint evidence, nothing per writer
    raw = _decision(verifier.networks, verifier.comparison(forged, references)) + verifier.keypoint_scores(
        forged, references)
    assert np.allclose(loaded.scores(forged, references), raw)
    offset = verifier.calibration_offset(references)
    assert offset != 0.0 and np.allclose(verifier.scores(forged, references), raw - offset, atol=1e-6)


def test_a_model_file_with_a_bad_calibration_is_refused(sample_model, tmp_path):
    from inkvoice.core.bundle import load_model, save_model

    path, _ = sample_model
    bundle = load_model(path, "signature")
    metadata = dict(bundle.metadata)
    metadata["verifier"] = {**metadata["verifier"], "calibration": {"weight": -1.0, "centre": 0.0,
                                                                    "min_references": 3}}
    bad = tmp_path / "bad.npz"
    save_model(bad, "signature", bundle.models, metadata, bundle.arrays)
    with pytest.raises(ModelFileError, match="calibration.weight"):
        load_verifier(bad)


def test_the_writer_dependent_mode_combines_uncalibrated_scores(sample_model, sample_features):
    _, verifier = sample_model
    signatures, X = sample_features
    genuine = X[[i for i, s in enumerate(signatures) if s.writer == "writer6" and s.genuine]]
    plain = Verifier(replace(verifier.config, calibration=None), verifier.standardizer, verifier.networks,
                     verifier.background)
    assert verifier.calibration_offset(genuine[:6]) != 0.0
    with_calibration = verifier.scores(genuine[6:], genuine[:6], "dependent", rng=np.random.default_rng(0))
    without = plain.scores(genuine[6:], genuine[:6], "dependent", rng=np.random.default_rng(0))
    assert np.allclose(with_calibration, without)
