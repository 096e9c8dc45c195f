"""A verifier fails closed: what it was not trained to judge is forged, and poisoned references are refused.

The model is the weak demo one (four sample writers), since a strong model's refusals prove
nothing about the design: a stand-in network that extrapolates upwards shows the same.
"""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from inkvoice.core.errors import DataError
from inkvoice.core.scaling import Standardizer
from inkvoice.signature.api import compare_files, enroll_files, verify_files
from inkvoice.signature.cli import main
from inkvoice.signature.comparison import feature_groups, feature_length
from inkvoice.signature.domain import Domain
from inkvoice.signature.enrollment import open_store
from inkvoice.signature.features import check_parameters, extract
from inkvoice.signature.verifier import Verifier, VerifierConfig

PARAMETERS = check_parameters({})


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def probes(tmp_path_factory, samples_dir):
    """Images that are not a signature of writer5: the probes that once scored 20 to 92 as "genuine"."""
    folder = tmp_path_factory.mktemp("probes")
    rng = np.random.default_rng(0)
    grid = np.full((120, 300), 255, np.uint8)
    grid[::10, :] = 0
    grid[:, ::10] = 0
    rows = np.full((120, 300), 255, np.uint8)
    rows[0:20:2, :] = 0  # ten black rows at the top of a white page
    other = np.asarray(Image.open(samples_dir / "writer6" / "genuine" / "01.png").convert("L"))
    pictures = {"grid": grid, "noise": (rng.random((120, 300)) * 255).astype(np.uint8), "rows": rows,
                "twice": np.concatenate([other, other], axis=1)}
    paths = []
    for name, picture in pictures.items():
        paths.append(folder / f"{name}.png")
        Image.fromarray(picture).save(paths[-1])
    return paths


@pytest.fixture()
def enrolled(sample_model, samples_dir, tmp_path):
    model, _ = sample_model
    store = tmp_path / "store.sqlite"
    references = sorted((samples_dir / "writer5" / "genuine").iterdir())[:6]
    assert enroll_files(model, "writer5", references, store)["enrolled"]
    return model, store


def test_non_signatures_are_forged_by_the_cli_and_the_api(enrolled, probes, samples_dir):
    model, store = enrolled
    genuine = sorted((samples_dir / "writer5" / "genuine").iterdir())[6:]
    result = run("verify", model, "--writer", "writer5", "--store", store, "--json", "--no-cache", *probes, *genuine)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.output.splitlines()]
    assert len(records) == len(probes) + len(genuine)
    for record in records[: len(probes)]:
        assert record["verdict"] == "forged" and record["score"] < record["threshold"], record
        assert "reason" in record or record["score"] < -5, record
    # genuine signatures of writer5 are still accepted
    assert [record["verdict"] for record in records[len(probes):]] == ["genuine"] * len(genuine)
    answers = verify_files(model, "writer5", probes, store)
    assert [answer["verdict"] for answer in answers] == ["forged"] * len(probes)


def test_far_departures_are_forged_whatever_the_threshold(enrolled, probes):
    model, store = enrolled
    result = run("verify", model, "--writer", "writer5", "--store", store, "--threshold", "-1000", *probes[:3])
    assert result.exit_code == 0, result.output
    table = result.stdout.splitlines()[1:]
    assert len(table) == 3 and all(" forged " in line for line in table)
    # and the reason is said
    assert result.stderr.count("not like any signature the model was trained on") == 3


def _extrapolating_verifier():
    """A verifier whose network scores higher the further a query departs: the worst case."""

    class Extrapolating:
        n_features_in_ = len(feature_groups(PARAMETERS))

        def decision_function(self, inputs):
            return np.asarray(inputs).sum(axis=1)

    n_groups = len(feature_groups(PARAMETERS))
    n_features = feature_length(PARAMETERS)
    domain = Domain([1.0] * n_groups, [1.0] * n_groups, [[1.0] * n_groups], score_floor=-5.0, genuine_floor=-3.0)
    config = VerifierConfig(PARAMETERS, threshold=0.0, domain=domain)
    standardizer = Standardizer.from_arrays(np.zeros(n_features), np.ones(n_features))
    return Verifier(config, standardizer, [Extrapolating()])


def test_scores_fall_beyond_what_training_covered_even_for_a_network_that_extrapolates_upwards():
    verifier = _extrapolating_verifier()
    rng = np.random.default_rng(0)
    references = rng.normal(0, 0.3, (6, feature_length(PARAMETERS)))
    direction = rng.normal(0, 1, references.shape[1])
    steps = [0.5, 1.0, 2.0, 3.0, 5.0, 50.0]
    scores, reasons = verifier.assess(np.stack([references.mean(axis=0) + k * direction for k in steps]), references)
    # the raw network would give ever higher scores; beyond the limits they only fall
    assert np.all(np.diff(scores[1:]) < 0), scores
    assert reasons[-1] is not None and scores[-1] < verifier.config.domain.score_floor
    verdicts = verifier.verify(np.stack([references.mean(axis=0) + 50 * direction]), references, threshold=-1e5)
    assert verdicts[0]["verdict"] == "forged" and "reason" in verdicts[0]


def test_a_verifier_without_a_domain_refuses_to_score():
    verifier = _extrapolating_verifier()
    blind = Verifier(VerifierConfig(PARAMETERS, threshold=0.0), verifier.standardizer, verifier.networks)
    with pytest.raises(Exception, match="no record of what its training covered"):
        blind.verify(np.zeros((1, verifier.n_features)), np.zeros((3, verifier.n_features)))


def test_a_poisoned_reference_set_is_refused_with_the_reason(sample_model, samples_dir, probes, tmp_path):
    model, _ = sample_model
    store = tmp_path / "store.sqlite"
    genuine = sorted((samples_dir / "writer6" / "genuine").iterdir())[:5]
    noise = probes[1]
    result = run("enroll", model, "--writer", "writer6", "--store", store, "--no-cache", *genuine, noise)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "noise.png: refused as a reference of 'writer6': not like any signature" in result.stderr
    assert "nothing enrolled for writer 'writer6'" in result.stderr
    answer = enroll_files(model, "writer6", [*genuine, probes[0]], store)
    assert not answer["enrolled"]
    assert [("error" in record) for record in answer["images"]] == [False] * 5 + [True]
    with pytest.raises(DataError, match="not enrolled|does not exist"):
        verify_files(model, "writer6", genuine[:1], store)
    # all or nothing: the clean references alone enrol
    assert enroll_files(model, "writer6", genuine, store)["enrolled"]
    # a poisoned reference added later is refused too, naming it, and the writer keeps its five
    later = enroll_files(model, "writer6", [probes[2]], store)
    assert not later["enrolled"] and "rows.png: refused" in later["images"][0]["error"]
    with open_store(store, PARAMETERS, create=False) as database:
        assert database.writers() == [("writer6", 5)]


def test_references_that_depart_far_beyond_genuine_variation_are_refused(sample_model):
    _, verifier = sample_model
    rng = np.random.default_rng(1)
    background = verifier.background[:6]
    assert verifier.reference_problems(background[:5]) == []
    # a reference pushed along a random direction, far beyond any genuine spread yet still signature-like
    far = background[0] + 40 * rng.normal(0, 1, background.shape[1]).astype(np.float32) * verifier.standardizer.scale_
    problems = verifier.reference_problems(np.vstack([background[:5], far]))
    assert problems and problems[0][0] == 5


def test_verify_and_compare_refuse_a_poisoned_set_enrolled_before_the_check(sample_model, samples_dir, probes,
                                                                            tmp_path):
    model, verifier = sample_model
    store = tmp_path / "store.sqlite"
    paths = [*sorted((samples_dir / "writer5" / "genuine").iterdir())[:5], probes[1]]
    vectors = [extract(path, **PARAMETERS) for path in paths]
    with open_store(store, PARAMETERS) as database:  # as an older version enrolled it
        database.add("writer5", [(p.name, f"digest{i}", v) for i, (p, v) in enumerate(zip(paths, vectors))], "m")
    with pytest.raises(DataError, match="references cannot be trusted"):
        verify_files(model, "writer5", paths[:1], store)
    result = run("verify", model, "--writer", "writer5", "--store", store, paths[0])
    assert result.exit_code == 1 and "Traceback" not in result.output and "cannot be trusted" in result.output
    records = compare_files(verifier, paths, samples_dir / "writer5" / "genuine" / "07.png")
    assert len(records) == 1 and "noise.png: refused as a reference" in records[0]["error"]


def _crafted(model, tmp_path, section, key, value):
    """A copy of ``model`` whose metadata ``verifier[section][key]`` (or ``verifier[key]``) is ``value``."""
    import io

    with np.load(model, allow_pickle=False) as archive:
        entries = {name: archive[name] for name in archive.files}
    document = json.loads(str(entries["metadata"]))
    target = document["verifier"] if section is None else document["verifier"][section]
    target[key] = value
    entries["metadata"] = np.array(json.dumps(document))
    buffer = io.BytesIO()
    np.savez(buffer, **entries)
    path = tmp_path / "crafted.npz"
    path.write_bytes(buffer.getvalue())
    return path


@pytest.mark.parametrize("section, key, value, message", [
    ("writer_model", "max_epochs", 10**9, "writer_model.max_epochs must be an integer in [1, 5000]"),
    ("writer_model", "hidden_sizes", [10**7], "writer_model.hidden_sizes must be 1 to 4 integers in [1, 1024]"),
    ("calibration", "weight", 1e308, "calibration.weight must be a number in [0, 1000.0]"),
    ("calibration", "centre", 1e308, "calibration.centre must be a finite number in [-1e+06, 1e+06]"),
    (None, "threshold", 1e308, "threshold must be a finite number in [-1e+06, 1e+06]"),
    ("domain", "score_floor", -1e308, "domain.score_floor must be a number in [-1000000.0, 1000000.0]"),
    ("domain", "input_limits", [1e308], "domain.input_limits must be a non-empty list of numbers in (0, 1e6]"),
])
def test_crafted_model_files_are_refused_at_load_with_one_error(sample_model, samples_dir, tmp_path, section, key,
                                                                value, message):
    model, _ = sample_model
    crafted = _crafted(model, tmp_path, section, key, value)
    references = sorted((samples_dir / "writer5" / "genuine").iterdir())[:4]
    result = run("compare", crafted, *references, samples_dir / "writer5" / "genuine" / "09.png")
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert result.output.startswith("Error: ") and len(result.output.splitlines()) == 1
    assert message in result.output


def test_a_signature_like_picture_among_references_is_refused_by_its_score(sample_model, samples_dir, tmp_path):
    # shaded blobs: like ink strokes in every statistic the other tests look at, but no signature
    model, verifier = sample_model
    rows, columns = np.indices((120, 300))
    shading = tmp_path / "shading.png"
    Image.fromarray((127 + 120 * np.sin(columns / 40) * np.cos(rows / 20)).astype(np.uint8)).save(shading)
    genuine = sorted((samples_dir / "writer6" / "genuine").iterdir())[:5]
    answer = enroll_files(model, "writer6", [*genuine, shading], tmp_path / "store.sqlite")
    assert not answer["enrolled"]
    assert "shading.png: refused as a reference of 'writer6': scores" in answer["images"][-1]["error"]
    assert "far below any genuine signature in training" in answer["images"][-1]["error"]
    # the writer's own references, even few, pass
    for count in (3, 4, 10):
        references = np.stack([extract(path, **PARAMETERS) for path in
                               sorted((samples_dir / "writer6" / "genuine").iterdir())[:count]])
        assert verifier.reference_problems(references) == []


def test_the_domain_is_measured_even_without_held_out_scores():
    from inkvoice.signature.comparison import Comparison

    groups = feature_groups(PARAMETERS)
    compare = Comparison(groups, feature_length(PARAMETERS))
    rng = np.random.default_rng(0)
    X = rng.normal(0, 1, (6, feature_length(PARAMETERS)))
    writers = np.array(["a", "a", "a", "b", "b", "b"])
    inputs = compare(X[:2], X[2:5])
    domain = Domain.measure(X, writers, np.ones(6, bool), compare, inputs, np.array([]), np.array([]), 2, rng)
    assert domain.score_floor == 0.0 and domain.genuine_floor == 0.0
    assert len(domain.reference_limits) == 2 and len(domain.input_limits) == len(groups)
    # what it records survives the model file's round trip
    assert Domain(**domain.to_dict()) == domain
