"""Keypoint evidence: ORB keypoints kept in one vector, matched with geometric consistency."""

import numpy as np
import pytest

from inkvoice.signature import keypoints
from inkvoice.signature.keypoints import KEYPOINT_WIDTH
from tests.signature.helpers import page, save_page, stroke_mask


def _signature(tmp_path, name, seed, wobble=0.0, shift=(0, 0)):
    mask = np.roll(stroke_mask(seed=seed, wobble=wobble), shift, axis=(0, 1))
    return keypoints.extract(save_page(tmp_path / f"{name}.png", page(mask, seed=seed)))


def test_encode_and_decode_keep_positions_and_descriptors():
    rng = np.random.default_rng(0)
    positions = rng.uniform(0, 120, (5, 2))
    descriptors = rng.random((5, 256)) < 0.5
    vector = keypoints.encode(positions, descriptors, 8)
    assert vector.shape == (8 * KEYPOINT_WIDTH,) and vector.dtype == np.float32
    where, packed = keypoints.decode(vector)
    assert np.allclose(where, positions, atol=1e-4)
    assert np.array_equal(np.unpackbits(packed, axis=1).astype(bool), descriptors)


def test_hamming_counts_differing_bits():
    rng = np.random.default_rng(1)
    bits = rng.random((4, 256)) < 0.5
    other = rng.random((3, 256)) < 0.5
    expected = (bits[:, None, :] != other[None, :, :]).sum(axis=2)
    assert np.array_equal(keypoints.hamming(np.packbits(bits, axis=1), np.packbits(other, axis=1)), expected)


def test_a_signature_matches_itself_shifted_and_not_another_writers(tmp_path):
    own = keypoints.decode(_signature(tmp_path, "own", seed=3))
    # the canvas is cropped to the ink, so a shift on the page changes nothing; a small
    # change of the stroke keeps most details where they were
    varied = keypoints.decode(_signature(tmp_path, "varied", seed=3, wobble=0.2, shift=(5, 20)))
    other = keypoints.decode(_signature(tmp_path, "other", seed=11))
    assert len(own[0]) > 20
    same = keypoints.consistent_matches(own, own)
    assert same >= 0.9 * len(own[0])
    assert keypoints.consistent_matches(own, varied) > 3 * max(keypoints.consistent_matches(own, other), 1)


def test_evidence_ranks_the_writers_own_signature_above_another(tmp_path):
    references = np.stack([_signature(tmp_path, f"ref{i}", seed=5, wobble=0.1 * i) for i in range(4)])
    genuine = _signature(tmp_path, "genuine", seed=5, wobble=0.15)
    other = _signature(tmp_path, "other", seed=8)
    evidence = keypoints.evidence(np.stack([genuine, other]), references)
    assert evidence.shape == (2, len(keypoints.EVIDENCE_NAMES))
    assert np.all(evidence[0] > evidence[1] + 0.5)


def test_a_canvas_without_corners_gives_no_keypoints_and_no_matches():
    positions, descriptors = keypoints.detect(np.zeros((128, 256), dtype=np.float32))
    assert len(positions) == 0
    empty = keypoints.decode(keypoints.encode(positions, descriptors, 10))
    assert len(empty[0]) == 0 and keypoints.consistent_matches(empty, empty) == 0


@pytest.mark.parametrize("references", [1, 2])
def test_evidence_with_one_or_two_references(tmp_path, references):
    codes = np.stack([_signature(tmp_path, f"r{i}", seed=5, wobble=0.1 * i) for i in range(references)])
    evidence = keypoints.evidence(codes[:1], codes)
    assert evidence.shape == (1, 2) and np.all(np.isfinite(evidence))


def test_keypoints_add_to_the_features_and_a_model_weighs_them(tmp_path):
    from inkvoice.signature.comparison import feature_length, keypoint_columns
    from inkvoice.signature.dataset import load_signatures
    from inkvoice.signature.features import check_parameters, extract
    from inkvoice.signature.model_file import load_verifier, save_verifier
    from inkvoice.signature.training import KEYPOINT_WEIGHTS, train_verifier
    from tests.signature.conftest import SAMPLES, TRAINING_WRITERS

    parameters = check_parameters({"keypoints": 60})
    plain = check_parameters({"keypoints": 0})
    columns = keypoint_columns(parameters)
    assert keypoint_columns(plain) is None and columns.start == feature_length(plain)
    assert feature_length(parameters) == feature_length(plain) + 60 * KEYPOINT_WIDTH
    signatures = [s for s in load_signatures(SAMPLES) if s.writer in (*TRAINING_WRITERS, "writer5")]
    X = np.stack([extract(s.path, **parameters) for s in signatures])
    assert X.shape[1] == feature_length(parameters)
    # the other features are those of a model without keypoints
    assert np.array_equal(X[0, : columns.start], extract(signatures[0].path, **plain))
    writers = np.array([s.writer for s in signatures])
    genuine = np.array([s.genuine for s in signatures])
    training = np.isin(writers, TRAINING_WRITERS)
    verifier, figures, settings = train_verifier(X[training], writers[training], genuine[training], parameters,
                                                 {"n_references": 6, "n_folds": 4, "dependent_threshold": False},
                                                 np.random.default_rng(0))
    assert figures["keypoint_weight"] in KEYPOINT_WEIGHTS
    assert verifier.config.keypoint_weight == figures["keypoint_weight"]
    path = tmp_path / "keypoints.npz"
    save_verifier(path, verifier, settings.to_dict(), figures)
    loaded, _ = load_verifier(path)
    own = X[(writers == "writer5") & genuine]
    forged = X[(writers == "writer5") & ~genuine]
    queries = np.concatenate([own[6:8], forged[:2]])
    assert np.allclose(loaded.scores(queries, own[:6]), verifier.scores(queries, own[:6]))
    if verifier.config.keypoint_weight:
        term = verifier.keypoint_scores(queries, own[:6])
        assert np.all(term[:2] > term[2:])
    # two references match each other once: too little to know the writer's level, so no term
    assert np.array_equal(verifier.keypoint_scores(queries, own[:2]), np.zeros(len(queries)))


def test_a_store_made_before_keypoints_existed_keeps_its_digest():
    from inkvoice.signature.enrollment import settings_digest
    from inkvoice.signature.features import check_parameters

    parameters = check_parameters({"keypoints": 0})
    before = {key: value for key, value in parameters.items() if key != "keypoints"}
    assert settings_digest(parameters) == settings_digest(before)
    assert settings_digest(check_parameters({"keypoints": 100})) != settings_digest(before)
