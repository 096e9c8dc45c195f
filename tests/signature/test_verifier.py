"""The writer-independent verifier, its model file, the writer-dependent mode and the figures."""

import numpy as np
import pytest

from inkvoice.core.errors import DataError, ModelFileError, ParameterError
from inkvoice.signature.evaluation import area_under_curve, equal_error_rate, figures, protocol_queries
from inkvoice.signature.features import check_parameters, extract
from inkvoice.signature.model_file import load_verifier
from inkvoice.signature.training import train_verifier
from inkvoice.signature.writer_model import WriterModel
from tests.signature.conftest import TRAINING_WRITERS
from tests.signature.helpers import save_page


def _writer(signatures, X, writer):
    genuine = np.array([s.writer == writer and s.genuine for s in signatures])
    forged = np.array([s.writer == writer and not s.genuine for s in signatures])
    return X[genuine], X[forged]


def test_unseen_writers_genuine_score_above_their_forgeries(sample_model, sample_features):
    _, verifier = sample_model
    signatures, X = sample_features
    for writer in ("writer5", "writer6"):
        genuine, forged = _writer(signatures, X, writer)
        scores_genuine = verifier.scores(genuine[6:], genuine[:6])
        scores_forged = verifier.scores(forged, genuine[:6])
        assert area_under_curve(scores_genuine, scores_forged) > 0.75
        assert verifier.decide(scores_genuine).mean() >= 0.75


def test_save_and_load_give_identical_scores(sample_model, sample_features):
    path, verifier = sample_model
    signatures, X = sample_features
    loaded, metadata = load_verifier(path)
    genuine, forged = _writer(signatures, X, "writer5")
    assert np.array_equal(loaded.scores(forged, genuine[:6]), verifier.scores(forged, genuine[:6]))
    assert loaded.threshold == verifier.threshold
    assert loaded.dependent_threshold == verifier.dependent_threshold
    assert metadata["features"] == check_parameters({})
    assert set(metadata["figures"]) >= {"development_frr", "development_far_skilled"}


def test_threshold_can_be_overridden(sample_model):
    _, verifier = sample_model
    scores = np.array([-1.0, 0.0, 1.0])
    assert verifier.decide(scores, threshold=0.5).tolist() == [False, False, True]
    assert verifier.decide(scores, threshold=-5).all()


def test_writer_dependent_mode_has_its_own_stored_threshold(sample_model, sample_features):
    path, verifier = sample_model
    _, metadata = load_verifier(path)
    assert metadata["verifier"]["dependent_threshold"] == verifier.dependent_threshold
    assert verifier.dependent_threshold is not None and verifier.dependent_threshold != verifier.threshold
    assert {"development_dependent_frr", "development_dependent_far_skilled"} <= set(metadata["figures"])
    assert verifier.threshold_for("independent") == verifier.threshold
    assert verifier.threshold_for("dependent") == verifier.dependent_threshold
    scores = np.array([verifier.dependent_threshold - 1e-3, verifier.dependent_threshold])
    assert verifier.decide(scores, mode="dependent").tolist() == [False, True]
    with pytest.raises(ValueError, match="mode"):
        verifier.threshold_for("both")


def test_dependent_threshold_is_chosen_without_the_test_writers(sample_features):
    # Training on writers 1-4 must not depend on writers 5 and 6 being in the data set at all.
    signatures, X = sample_features
    rows = [i for i, s in enumerate(signatures) if s.writer in TRAINING_WRITERS]
    writers = np.array([signatures[i].writer for i in rows])
    genuine = np.array([signatures[i].genuine for i in rows])
    settings = {"n_references": 6, "n_folds": 4}
    first, figures_first, _ = train_verifier(X[rows], writers, genuine, check_parameters({}), settings,
                                             np.random.default_rng(0))
    assert first.dependent_threshold is not None
    assert 0.0 <= figures_first["development_dependent_frr"] <= 0.5
    without, figures_without, _ = train_verifier(X[rows], writers, genuine, check_parameters({}),
                                                 {**settings, "dependent_threshold": False}, np.random.default_rng(0))
    assert without.dependent_threshold is None and without.threshold_for("dependent") == without.threshold
    assert without.threshold == first.threshold
    assert "development_dependent_frr" not in figures_without


def test_paper_grey_level_and_scanner_noise_do_not_move_the_score(sample_model, samples_dir, tmp_path):
    # CEDAR's forgeries were scanned on lighter paper than its genuine signatures: the score
    # must come from the ink, not from the paper or the scanner.
    from inkvoice.signature.images import read_grey

    _, verifier = sample_model
    parameters = verifier.feature_parameters
    paths = sorted((samples_dir / "writer5" / "genuine").iterdir())[:6]
    references = np.stack([extract(p, **parameters) for p in paths])
    rng = np.random.default_rng(0)
    for query in [samples_dir / "writer5" / "genuine" / "09.png", samples_dir / "writer5" / "forged" / "02.png"]:
        grey = read_grey(query)
        paper = np.median(grey)
        original = verifier.scores(extract(query, **parameters), references)[0]
        scores = []
        for target in (0.7, 0.85, 1.0):
            for noise in (0.0, 0.03):
                # move the paper to ``target``, leave the ink where it is, add scanner noise
                shifted = np.where(grey > paper - 0.2, grey + (target - paper), grey)
                shifted = shifted + rng.normal(0, noise, grey.shape)
                path = save_page(tmp_path / f"shifted-{target}-{noise}.png", np.clip(shifted, 0, 1))
                scores.append(verifier.scores(extract(path, **parameters), references)[0])
        assert np.max(np.abs(np.array(scores) - original)) < 0.25, (query.name, original, scores)
        assert len({bool(verifier.decide(score)) for score in scores + [original]}) == 1


def test_explanations_name_regions_and_groups_and_draw_a_picture(sample_model, sample_features, samples_dir,
                                                                  tmp_path):
    from PIL import Image

    from inkvoice.signature.explain import explain_queries

    _, verifier = sample_model
    signatures, X = sample_features
    genuine, forged = _writer(signatures, X, "writer5")
    paths = [s.path for s in signatures if s.writer == "writer5" and not s.genuine][:2]
    explanations = explain_queries(verifier, paths, forged[:2], genuine[:6], tmp_path / "why")
    assert len(explanations) == 2
    for explanation in explanations:
        with Image.open(explanation["png"]) as picture:
            assert picture.size[0] > 600 and picture.size[1] > 200
        assert 0 <= explanation["nearest_reference"] < 6
        assert len(explanation["regions"]) == 3 and len(explanation["groups"]) == 3
        deviations = [region["deviation"] for region in explanation["regions"]]
        assert deviations == sorted(deviations, reverse=True)
        effects = [group["effect"] for group in explanation["groups"]]
        assert effects == sorted(effects) and all(group["description"] for group in explanation["groups"])
        for region in explanation["regions"]:
            assert 0 <= region["top"] < 128 and 0 <= region["left"] < 256
    # setting every input to the references' own values would lift a forgery's score: the
    # most negative effect must point at a real departure
    assert explanations[0]["groups"][0]["effect"] < 0


def test_explanations_show_the_nearest_references_real_picture(sample_model, sample_features, tmp_path):
    from inkvoice.signature.enrollment import reference_thumbnail
    from inkvoice.signature.explain import explain_queries, picture_canvas
    from inkvoice.signature.preprocess import preprocess

    _, verifier = sample_model
    signatures, X = sample_features
    genuine, forged = _writer(signatures, X, "writer5")
    reference_paths = [s.path for s in signatures if s.writer == "writer5" and s.genuine][:6]
    query_paths = [s.path for s in signatures if s.writer == "writer5" and not s.genuine][:1]
    pictures = [reference_thumbnail(path) for path in reference_paths]
    (shown,) = explain_queries(verifier, query_paths, forged[:1], genuine[:6], tmp_path / "real", None, pictures)
    assert shown["reference_shown"] == "picture"
    # the picture lands in the frame of the features' canvas: the boxed regions point at the
    # same ink as in the reference's own canvas
    parameters = verifier.feature_parameters
    own, _ = preprocess(reference_paths[shown["nearest_reference"]], parameters["height"], parameters["width"])
    drawn = picture_canvas(pictures[shown["nearest_reference"]], parameters["height"], parameters["width"])
    overlap = ((own > 0.5) & (drawn > 0.3)).sum() / max((own > 0.5).sum(), 1)
    assert drawn.shape == own.shape and overlap > 0.8
    # a reference enrolled before pictures were kept is drawn from its features, and says so
    (sketched,) = explain_queries(verifier, query_paths, forged[:1], genuine[:6], tmp_path / "old", None,
                                  [None] * 6)
    assert sketched["reference_shown"] == "stroke directions"
    assert sketched["nearest_reference"] == shown["nearest_reference"]
    with pytest.raises(ParameterError, match="one entry per reference"):
        explain_queries(verifier, query_paths, forged[:1], genuine[:6], tmp_path / "bad", None, pictures[:2])


def test_explanations_name_the_keypoint_evidence_when_it_pulls_towards_forged(sample_model, sample_features,
                                                                            tmp_path):
    from dataclasses import replace

    from inkvoice.signature.explain import explain_queries
    from inkvoice.signature.verifier import Verifier

    _, verifier = sample_model
    signatures, X = sample_features
    genuine, forged = _writer(signatures, X, "writer5")
    paths = [s.path for s in signatures if s.writer == "writer5" and not s.genuine][:2]
    # a weight large enough that the keypoint term outweighs every network input
    heavy = Verifier(replace(verifier.config, keypoint_weight=100.0), verifier.standardizer, verifier.networks)
    local = heavy.keypoint_scores(forged[:2], genuine[:6])
    assert np.all(local < 0)
    explanations = explain_queries(heavy, paths, forged[:2], genuine[:6], tmp_path / "why")
    for explanation, term in zip(explanations, local):
        first = explanation["groups"][0]
        assert first["group"] == "keypoints" and first["effect"] == round(float(term), 3)
        assert "keypoints" in first["description"]


@pytest.mark.parametrize("png", [None, b"not a picture", b"\x89PNG\r\n\x1a\n damaged"])
def test_a_missing_or_damaged_picture_is_not_drawn(png):
    from inkvoice.signature.explain import picture_canvas

    assert picture_canvas(png, 128, 256) is None


def test_a_picture_larger_than_a_thumbnail_is_not_decoded(tmp_path):
    import io

    from PIL import Image

    from inkvoice.signature.explain import picture_canvas

    buffer = io.BytesIO()
    Image.new("L", (3000, 3000), 0).save(buffer, format="PNG")
    assert picture_canvas(buffer.getvalue(), 128, 256) is None


def test_feature_length_mismatch_is_refused(sample_model):
    _, verifier = sample_model
    with pytest.raises(ParameterError, match="feature vectors have 10 values"):
        verifier.scores(np.zeros(10), np.zeros((3, 10)))


def test_damaged_and_foreign_model_files(tmp_path, sample_model):
    path, _ = sample_model
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(path.read_bytes()[:500])
    with pytest.raises(ModelFileError):
        load_verifier(damaged)
    from inkvoice.core.bundle import load_model, save_model

    bundle = load_model(path, "signature")
    foreign = tmp_path / "speech.npz"
    save_model(foreign, "speech", bundle.models, {})
    with pytest.raises(ModelFileError, match="not a 'signature' model"):
        load_verifier(foreign)
    incomplete = tmp_path / "incomplete.npz"
    save_model(incomplete, "signature", bundle.models, {"features": bundle.metadata["features"]})
    with pytest.raises(ModelFileError, match="not a complete signature model"):
        load_verifier(incomplete)


def test_writer_dependent_mode_separates_forgeries(sample_model, sample_features):
    _, verifier = sample_model
    signatures, X = sample_features
    genuine, forged = _writer(signatures, X, "writer6")
    model = WriterModel(verifier, genuine[:6], rng=np.random.default_rng(0))
    assert area_under_curve(model.scores(genuine[6:]), model.scores(forged)) > 0.75
    with pytest.raises(DataError, match="at least 4 references"):
        WriterModel(verifier, genuine[:2])


def test_figures_on_known_scores():
    scores = np.array([0.9, 0.8, 0.7, 0.2, 0.6, 0.1, 0.3, -1.0])
    kinds = np.array(["genuine"] * 4 + ["skilled"] * 3 + ["random"])
    result = figures(scores, kinds, threshold=0.5)
    assert result["frr"] == 0.25 and result["far_skilled"] == pytest.approx(1 / 3) and result["far_random"] == 0.0
    assert result["eer"] == pytest.approx(equal_error_rate(scores[:4], scores[4:7]))
    assert equal_error_rate([1, 2, 3], [-1, 0]) == 0.0
    assert area_under_curve([1, 2], [0, 3]) == 0.5


def test_protocol_uses_first_references_and_other_writers_as_random_forgeries():
    writers = np.array(["a"] * 5 + ["b"] * 5)
    genuine = np.array([True, True, True, False, False] * 2)
    plan = protocol_queries(writers, genuine, ["a", "b"], n_references=2, n_random=2)
    writer, references, queries, kinds = plan[0]
    assert writer == "a" and references.tolist() == [0, 1]
    assert queries.tolist() == [2, 3, 4, 7] and kinds.tolist() == ["genuine", "skilled", "skilled", "random"]
    with pytest.raises(DataError, match=r"3 references leave none to test: a \(3\); use at most 2"):
        protocol_queries(writers, genuine, ["a"], n_references=3)
