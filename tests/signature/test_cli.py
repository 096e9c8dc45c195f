"""The signature command through click's CliRunner: every subcommand, and errors as one line."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from inkvoice.core.errors import ParameterError
from inkvoice.signature.cli import main
from inkvoice.signature.features import check_parameters
from inkvoice.signature.verifier import VerifierConfig
from tests.signature.helpers import page, save_page, stroke_mask


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _one_line_error(result, text):
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert "Error: " in result.output and text in result.output


@pytest.fixture()
def enrolled(sample_model, samples_dir, tmp_path):
    model, _ = sample_model
    store = tmp_path / "store.sqlite"
    references = sorted((samples_dir / "writer5" / "genuine").iterdir())[:6]
    result = run("enroll", model, "--writer", "writer5", "--store", store, "--no-cache", *references)
    assert result.exit_code == 0, result.output
    assert "6 reference(s) added, 6 in total" in result.output
    return model, store


def test_help_lists_every_command():
    result = run("--help")
    assert result.exit_code == 0
    for command in ("train", "enroll", "verify", "compare", "evaluate", "info"):
        assert command in result.output


def test_train_on_writer_folders(samples_dir, tmp_path):
    output = tmp_path / "model.npz"
    result = run("train", samples_dir, "-o", output, "--writers", "writer1,writer2,writer3", "--refs", "5",
                 "--draws", "2", "--no-cache")
    assert result.exit_code == 0, result.output
    assert output.is_file() and "3 writers, 48 signatures" in result.output
    info = run("info", output, "--json")
    document = json.loads(info.output)
    assert document["training"]["n_references"] == 5 and document["training_writers"] == 3


def test_verify_json_and_threshold_override(enrolled, samples_dir):
    model, store = enrolled
    queries = [samples_dir / "writer5" / "genuine" / "09.png", samples_dir / "writer5" / "forged" / "03.png"]
    result = run("verify", model, "--writer", "writer5", "--store", store, "--json", "--no-cache", *queries)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [row["image"] for row in rows] == [str(q) for q in queries]
    assert all(row["verdict"] == ("genuine" if row["score"] >= row["threshold"] else "forged") for row in rows)
    low = run("verify", model, "--writer", "writer5", "--store", store, "--json", "--threshold", "-1000", *queries)
    assert all(json.loads(line)["verdict"] == "genuine" for line in low.output.splitlines())
    high = run("verify", model, "--writer", "writer5", "--store", store, "--json", "--threshold", "1000", *queries)
    assert all(json.loads(line)["verdict"] == "forged" for line in high.output.splitlines())


def _shaded(image, kind):
    """``image`` as a photograph of the page would show it: one side, or the corners, darker."""
    height, width = image.shape
    if kind == "side":
        light = np.broadcast_to(np.linspace(1.0, 0.45, width), (height, width))
    else:
        rows, columns = np.mgrid[:height, :width]
        light = 1 - 1.2 * np.hypot(rows / height - 0.5, columns / width - 0.5) ** 2
    return (image * light).clip(0, 255).astype(np.uint8)


def test_a_page_lit_unevenly_is_judged_as_its_flat_scan(enrolled, samples_dir, tmp_path):
    from PIL import Image

    model, store = enrolled
    flat = [samples_dir / "writer5" / "genuine" / name for name in ("09.png", "10.png")]
    flat += [samples_dir / "writer5" / "forged" / name for name in ("03.png", "04.png")]
    shaded = []
    for path in flat:
        image = np.asarray(Image.open(path).convert("L"), dtype=np.float64)
        for kind in ("side", "corners"):
            shaded.append(tmp_path / f"{path.parent.name}-{path.stem}-{kind}.png")
            Image.fromarray(_shaded(image, kind)).save(shaded[-1])
    result = run("verify", model, "--writer", "writer5", "--store", store, "--json", "--no-cache", *flat, *shaded)
    assert result.exit_code == 0, result.output
    rows = {row["image"]: row for row in map(json.loads, result.output.splitlines())}
    for index, path in enumerate(flat):
        for copy in shaded[2 * index: 2 * index + 2]:
            assert rows[str(copy)]["verdict"] == rows[str(path)]["verdict"] == path.parent.name, (copy, rows[str(copy)])
            assert abs(rows[str(copy)]["score"] - rows[str(path)]["score"]) < 0.75, (copy, rows[str(copy)])


def test_verify_dependent_mode_uses_its_stored_threshold(enrolled, sample_model, samples_dir):
    model, store = enrolled
    _, verifier = sample_model
    queries = [samples_dir / "writer5" / "genuine" / "09.png", samples_dir / "writer5" / "forged" / "03.png"]
    dependent = run("verify", model, "--writer", "writer5", "--store", store, "--mode", "dependent", "--json",
                    *queries)
    assert dependent.exit_code == 0, dependent.output
    rows = [json.loads(line) for line in dependent.output.splitlines()]
    assert [row["threshold"] for row in rows] == [round(verifier.dependent_threshold, 4)] * 2
    assert all(row["verdict"] == ("genuine" if row["score"] >= row["threshold"] else "forged") for row in rows)
    override = run("verify", model, "--writer", "writer5", "--store", store, "--mode", "dependent", "--json",
                   "--threshold", "1000", *queries)
    rows = [json.loads(line) for line in override.output.splitlines()]
    assert [(row["threshold"], row["verdict"]) for row in rows] == [(1000.0, "forged")] * 2


def test_verify_unknown_writer(enrolled, samples_dir):
    model, store = enrolled
    query = samples_dir / "writer5" / "genuine" / "09.png"
    result = run("verify", model, "--writer", "nobody", "--store", store, query)
    _one_line_error(result, "writer 'nobody' is not enrolled")


def test_verify_batch_goes_on_after_a_bad_image(enrolled, samples_dir, tmp_path):
    model, store = enrolled
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    good = samples_dir / "writer5" / "genuine" / "10.png"
    result = run("verify", model, "--writer", "writer5", "--store", store, "--no-cache", bad, good)
    assert result.exit_code == 1 and "Traceback" not in result.output
    errors = result.stderr.splitlines()
    assert len(errors) == 1 and errors[0].startswith("Error: ") and "bad.png: not an image" in errors[0]
    answers = result.stdout.splitlines()
    assert len(answers) == 2 and answers[0].split() == ["image", "verdict", "score", "threshold"]
    assert answers[1].startswith(str(good)) and answers[1].split()[1] in ("genuine", "forged")


def _nan_tiff(path):
    from PIL import Image

    grey = page(stroke_mask()).astype(np.float32)
    grey[5, 7] = np.nan
    Image.fromarray(grey, "F").save(path)
    return path


def test_missing_file_folder_and_nan_image_each_cost_one_record(enrolled, samples_dir, tmp_path):
    model, store = enrolled
    good = [samples_dir / "writer5" / "genuine" / "09.png", samples_dir / "writer5" / "forged" / "01.png"]
    # a folder stands for the images in it (as in speech predict); this one holds none
    missing, folder, nan = tmp_path / "absent.png", tmp_path / "no-images", _nan_tiff(tmp_path / "nan.tif")
    folder.mkdir()
    images = [good[0], missing, folder, nan, good[1]]
    table = run("verify", model, "--writer", "writer5", "--store", store, "--no-cache", *images)
    assert table.exit_code == 1 and "Traceback" not in table.output
    errors = table.stderr.splitlines()
    assert len(errors) == 3 and all(line.startswith("Error: ") for line in errors)
    assert "no-images: the folder holds no image files" in errors[0] and "absent.png: no such image file" in errors[1]
    assert "nan.tif: image holds 1 NaN or infinite pixel value(s)" in errors[2]
    assert len(table.stdout.splitlines()) == 1 + 2
    result = run("verify", model, "--writer", "writer5", "--store", store, "--no-cache", "--json", *images)
    assert result.exit_code == 1
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["image"] for r in records] == [str(p) for p in images if p != folder]
    assert ["error" in r for r in records] == [False, True, True, False]
    assert all(r["verdict"] in ("genuine", "forged") for r in records if "error" not in r)


def test_nan_image_is_one_error_line_in_compare_and_enroll(sample_model, samples_dir, tmp_path):
    model, _ = sample_model
    nan = _nan_tiff(tmp_path / "nan.tif")
    references = sorted((samples_dir / "writer6" / "genuine").iterdir())[:4]
    compared = run("compare", model, *references, nan)
    _one_line_error(compared, "nan.tif: image holds 1 NaN")
    assert len(compared.stderr.splitlines()) == 1 and compared.stdout == ""
    enrolled = run("enroll", model, "--writer", "writer6", "--store", tmp_path / "s.sqlite", "--no-cache", "--json",
                   *references, nan)
    _one_line_error(enrolled, "nothing enrolled for writer 'writer6'")
    records = [json.loads(line) for line in enrolled.stdout.splitlines()]
    assert len(records) == 5 and [("error" in r) for r in records] == [False] * 4 + [True]
    assert not any(r["enrolled"] for r in records)


def test_writer_names_are_normalised_alike_and_long_ones_cut(enrolled, samples_dir, tmp_path):
    model, store = enrolled
    query = samples_dir / "writer5" / "genuine" / "09.png"
    spaced = run("verify", model, "--writer", "  writer5 ", "--store", store, "--json", query)
    assert spaced.exit_code == 0, spaced.output
    assert len(spaced.stdout.splitlines()) == 1
    long_name = "x" * 10_000
    for command in (["verify", model, "--writer", long_name, "--store", store, query],
                    ["enroll", model, "--writer", long_name, "--store", store, query]):
        result = run(*command)
        _one_line_error(result, "writer name must be at most")
        assert len(result.output) < 300


def test_a_nan_threshold_is_refused_and_never_printed(sample_model, samples_dir, tmp_path):
    path, _ = sample_model
    with np.load(path, allow_pickle=False) as archive:
        entries = {key: archive[key] for key in archive.files}
    for value, message in ((float("nan"), "NaN is not a number JSON allows"),
                           ("0.5", "verifier.threshold must be a finite number")):
        metadata = json.loads(str(entries["metadata"]))
        metadata["verifier"]["threshold"] = value
        entries["metadata"] = np.array(json.dumps(metadata))  # Python's json writes NaN; the loader must refuse it
        broken = tmp_path / "broken-threshold.npz"
        np.savez(broken, **entries)
        for command in (["info", broken, "--json"],
                        ["compare", broken, *samples_dir.glob("writer6/genuine/0[1-4].png")]):
            result = run(*command)
            _one_line_error(result, message)
            assert result.stdout == ""
    with pytest.raises(ParameterError, match=r"threshold must be a finite number in \[-1e\+06, 1e\+06\]; got nan"):
        VerifierConfig(check_parameters({}), threshold=float("nan"))


def test_enroll_is_all_or_nothing(sample_model, samples_dir, tmp_path):
    model, _ = sample_model
    store = tmp_path / "store.sqlite"
    blank = save_page(tmp_path / "blank.png", page(np.zeros((100, 200), dtype=bool)))
    references = sorted((samples_dir / "writer6" / "genuine").iterdir())[:4]
    result = run("enroll", model, "--writer", "writer6", "--store", store, "--no-cache", *references, blank)
    _one_line_error(result, "nothing enrolled for writer 'writer6'")
    assert "blank.png: blank page" in result.output
    assert len(result.stderr.splitlines()) == 2
    few = run("enroll", model, "--writer", "writer6", "--store", store, *references[:2])
    _one_line_error(few, "at least 3 are needed")


def test_compare_without_a_store(sample_model, samples_dir):
    model, _ = sample_model
    references = sorted((samples_dir / "writer6" / "genuine").iterdir())[:6]
    result = run("compare", model, *references, samples_dir / "writer6" / "genuine" / "10.png", "--json")
    assert result.exit_code == 0, result.output
    row = json.loads(result.output)
    assert set(row) == {"image", "verdict", "score", "threshold"}


def test_compare_explain_shows_the_reference_files_picture(sample_model, samples_dir, tmp_path):
    model, _ = sample_model
    references = sorted((samples_dir / "writer6" / "genuine").iterdir())[:6]
    result = run("compare", model, *references, samples_dir / "writer6" / "forged" / "01.png", "--json",
                 "--explain", tmp_path / "why")
    assert result.exit_code == 0, result.output
    (row,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert row["explanation"]["reference_shown"] == "picture"
    assert len(list((tmp_path / "why").iterdir())) == 1


def test_evaluate_table_json_and_plot(sample_model, samples_dir, tmp_path):
    model, _ = sample_model
    plot = tmp_path / "curves.png"
    result = run("evaluate", model, samples_dir, "--writers", "writer5,writer6", "--refs", "6", "--plot", plot,
                 "--no-cache")
    assert result.exit_code == 0, result.output
    assert "overall" in result.output and "FAR skilled" in result.output
    assert plot.stat().st_size > 1000
    rows = [json.loads(line) for line in run("evaluate", model, samples_dir, "--writers", "writer5,writer6",
                                             "--refs", "6", "--json").output.splitlines()]
    assert [row["writer"] for row in rows] == ["writer5", "writer6", "overall"]
    assert rows[-1]["n_genuine"] == 8 and rows[-1]["n_skilled"] == 12
    assert 0.0 <= rows[-1]["eer"] <= 0.5
    assert rows[-1]["threshold"] == pytest.approx(sample_model[1].threshold)
    dependent = [json.loads(line) for line in run("evaluate", model, samples_dir, "--writers", "writer5,writer6",
                                                  "--refs", "6", "--json", "--mode", "dependent").output.splitlines()]
    assert dependent[-1]["threshold"] == pytest.approx(sample_model[1].dependent_threshold)
    override = [json.loads(line) for line in run("evaluate", model, samples_dir, "--writers", "writer5,writer6",
                                                 "--refs", "6", "--json", "--mode", "dependent", "--threshold",
                                                 "-1000").output.splitlines()]
    assert override[-1]["threshold"] == -1000.0 and override[-1]["frr"] == 0.0


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_writers_missing_from_the_data_are_one_error(command, sample_model, samples_dir, tmp_path):
    arguments = (["train", samples_dir, "-o", tmp_path / "m.npz"] if command == "train"
                 else ["evaluate", sample_model[0], samples_dir])
    result = run(*arguments, "--writers", "writer98,writer99", "--no-cache")
    _one_line_error(result, "no signatures of 2 writer(s): writer98, writer99")
    typo = run(*arguments, "--writers", "writer1,writer2,writr3", "--no-cache")
    _one_line_error(typo, "no signatures of 1 writer(s): writr3")
    assert not (tmp_path / "m.npz").exists()


def test_too_many_references_are_named(sample_model, samples_dir, tmp_path):
    result = run("evaluate", sample_model[0], samples_dir, "--writers", "writer5,writer6", "--refs", "12")
    _one_line_error(result, "2 writer(s) have 12 or fewer genuine signatures, so 12 references leave none to test")
    assert "use at most 9 references" in result.output
    trained = run("train", samples_dir, "-o", tmp_path / "m.npz", "--writers", "writer1,writer2", "--refs", "12",
                  "--draws", "1", "--no-cache", "--quiet")
    assert trained.exit_code == 0, trained.output
    assert "note: 2 of 2 writers have 12 or fewer genuine signatures (fewest: 10)" in trained.stderr


def test_ctrl_c_in_training_writes_nothing_and_fails(samples_dir, tmp_path, monkeypatch):
    from inkvoice.core.estimator import MlpClassifier

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(MlpClassifier, "fit", interrupted)
    output = tmp_path / "m.npz"
    result = run("train", samples_dir, "-o", output, "--writers", "writer1,writer2", "--no-cache", "--quiet")
    assert result.exit_code != 0 and not output.exists()


def test_bad_model_file(tmp_path, samples_dir):
    fake = tmp_path / "model.npz"
    fake.write_bytes(b"PK not really a zip")
    result = run("compare", fake, samples_dir / "writer1" / "genuine" / "01.png",
                 samples_dir / "writer1" / "genuine" / "02.png")
    _one_line_error(result, "model.npz")


def test_bad_option_is_a_usage_error(sample_model, samples_dir):
    model, _ = sample_model
    result = run("evaluate", model, samples_dir, "--refs", "0")
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_python_dash_m_runs_the_command():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "inkvoice.signature", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "enroll" in result.stdout


def test_verify_explain_writes_a_picture_per_query(enrolled, samples_dir, tmp_path):
    model, store = enrolled
    queries = [samples_dir / "writer5" / "genuine" / "09.png", samples_dir / "writer5" / "forged" / "03.png"]
    folder = tmp_path / "why"
    result = run("verify", model, "--writer", "writer5", "--store", store, "--json", "--explain", folder, *queries)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 2
    pictures = sorted(folder.iterdir())
    assert [record["explanation"]["png"] for record in records] == [str(p) for p in pictures]
    assert all(len(record["explanation"]["groups"]) == 3 for record in records)
    # the store keeps each reference's picture: the explanation shows it, not a sketch
    assert all(record["explanation"]["reference_shown"] == "picture" for record in records)
    table = run("verify", model, "--writer", "writer5", "--store", store, "--explain", folder, *queries)
    assert table.exit_code == 0 and len(table.stdout.splitlines()) == 3
    assert len(table.stderr.splitlines()) == 2 and "weighed" not in table.stdout


def test_verify_scores_are_calibrated_to_the_enrolled_writer_in_the_cli_and_the_api(enrolled, sample_model,
                                                                                      samples_dir):
    from inkvoice.signature.api import verify_files, writer_references
    from inkvoice.signature.features import extract
    from inkvoice.signature.verifier import _decision

    model, store = enrolled
    _, verifier = sample_model
    queries = [samples_dir / "writer5" / "genuine" / "08.png", samples_dir / "writer5" / "forged" / "01.png",
               samples_dir / "writer5" / "forged" / "04.png"]
    result = run("verify", model, "--writer", "writer5", "--store", store, "--json", "--no-cache", *queries)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert len(rows) == 3
    references = writer_references(model, "writer5", store)
    offset = verifier.calibration_offset(references)
    assert offset != 0.0
    features = np.stack([extract(q, **verifier.feature_parameters) for q in queries])
    raw = _decision(verifier.networks, verifier.comparison(features, references)) + verifier.keypoint_scores(
        features, references)
    assert [row["score"] for row in rows] == pytest.approx(raw - offset, abs=1e-3)
    api = verify_files(model, "writer5", queries, store)
    assert [(r["score"], r["verdict"]) for r in api] == [(r["score"], r["verdict"]) for r in rows]
    info = json.loads(run("info", model, "--json").output)
    assert info["verifier"]["calibration"]["weight"] == verifier.config.calibration.weight
    assert info["verifier"]["calibration"]["min_references"] == 3


@pytest.mark.parametrize("url, problem", [("postgresql://u:p@[::1/db", "Invalid IPv6 URL"),
                                          ("postgresql://u:p@host:99999/db", "Port out of range"),
                                          ("postgres://u@host:port/db", "Port could not be cast")])
def test_a_malformed_store_url_is_one_error_line(enrolled, samples_dir, url, problem):
    model, _ = enrolled
    image = samples_dir / "writer5" / "genuine" / "07.png"
    for command in (["verify", model, "--writer", "writer5", "--store", url, image],
                    ["enroll", model, "--writer", "writer5", "--store", url, image]):
        result = run(*command)
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        assert result.output.startswith("Error: enrolment store URL") and problem in result.output
        assert len(result.output.splitlines()) == 1 and ":p@" not in result.output


def test_names_print_as_written_and_control_characters_escaped(enrolled, sample_model, samples_dir, tmp_path):
    import shutil

    model, _ = sample_model
    store = tmp_path / "names.sqlite"
    references = sorted((samples_dir / "writer5" / "genuine").iterdir())[:6]
    assert run("enroll", model, "--writer", "José", "--store", store, "--no-cache", *references).exit_code == 0
    info = run("info", model, "--store", store)
    assert info.exit_code == 0 and 'enrolled: {"José": 6}' in info.output
    # a screen, not a dump: the per-input limits of what training covered are in --json only
    assert max(len(line) for line in info.output.splitlines()) < 2000 and "input_limits" not in info.output
    assert "input_limits" in json.loads(run("info", model, "--json").output)["verifier"]["domain"]
    forged = tmp_path / "a.png\tgenuine\t9.000\nfake.png"
    shutil.copy(samples_dir / "writer5" / "forged" / "03.png", forged)
    result = run("verify", model, "--writer", "José", "--store", store, forged, tmp_path / "gone\x1b.png")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and "a.png\\tgenuine\\t9.000\\nfake.png" in lines[1] and " forged " in lines[1]
    assert result.stderr.count("\n") == 1 and "gone\\x1b.png" in result.stderr


def test_re_enrolment_says_which_images_were_already_there(enrolled, samples_dir):
    model, store = enrolled
    images = sorted((samples_dir / "writer5" / "genuine").iterdir())[5:7]
    result = run("enroll", model, "--writer", "writer5", "--store", store, "--no-cache", *images)
    assert result.exit_code == 0, result.output
    assert "1 reference(s) added (1 already enrolled: 06.png), 7 in total" in result.output


def test_verify_and_enroll_read_folders_as_speech_predict_does(enrolled, sample_model, samples_dir, tmp_path):
    model, store = enrolled
    result = run("verify", model, "--writer", "writer5", "--store", store, "--json", "--no-cache",
                 samples_dir / "writer5" / "forged")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.output.splitlines()]
    assert [record["image"].split("/")[-1] for record in records] == [f"0{i}.png" for i in range(1, 7)]
    (tmp_path / "empty").mkdir()
    empty = run("verify", model, "--writer", "writer5", "--store", store, tmp_path / "empty")
    assert empty.exit_code == 1 and "empty: the folder holds no image files" in empty.output
    folder = tmp_path / "refs"
    folder.mkdir()
    for path in sorted((samples_dir / "writer6" / "genuine").iterdir())[:4]:
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "notes.txt").write_text("not an image")
    enrolled_folder = run("enroll", model, "--writer", "writer6", "--store", store, "--no-cache", folder)
    assert enrolled_folder.exit_code == 0 and "4 reference(s) added, 4 in total" in enrolled_folder.output


def test_an_explanation_never_replaces_an_image_being_read(enrolled, samples_dir, tmp_path):
    import shutil

    model, store = enrolled
    folder = tmp_path / "cheques"
    folder.mkdir()
    # a query whose explanation would be named like another query of the same run
    shutil.copy(samples_dir / "writer5" / "genuine" / "09.png", folder / "b.png")
    shutil.copy(samples_dir / "writer5" / "forged" / "03.png", folder / "001-b.png")
    before = (folder / "001-b.png").read_bytes()
    result = run("verify", model, "--writer", "writer5", "--store", store, "--explain", folder,
                 folder / "b.png", folder / "001-b.png")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "which this command reads" in result.stderr
    assert (folder / "001-b.png").read_bytes() == before
