"""The speech command, driven through click's CliRunner on the repository's demo recordings."""

import hashlib
import json
import re
import subprocess
import sys
import tarfile

import numpy as np
import pytest
from click.testing import CliRunner

from inkvoice.speech.cli import main
from tests.speech.conftest import tone, word, write


@pytest.fixture(scope="session")
def demo_model(tmp_path_factory, demo_dir):
    """A model trained once by ``speech train`` on data/speech with a random split."""
    folder = tmp_path_factory.mktemp("demo")
    model = folder / "digits.npz"
    result = CliRunner().invoke(
        main, ["train", str(demo_dir), "-o", str(model), "--epochs", "30", "--copies", "2", "--test-copies", "2",
               "--no-cache", "--quiet"]
    )
    assert result.exit_code == 0, result.output
    return model, result.output


def run(*arguments):
    return CliRunner().invoke(main, [str(a) for a in arguments])


def test_every_option_has_help():
    for command in main.commands.values():
        for parameter in command.params:
            if parameter.param_type_name == "option":
                assert parameter.help, f"{command.name} {parameter.name} has no help"


def test_help_does_not_import_heavy_libraries():
    code = "import sys, inkvoice.speech.cli; print(sorted(m for m in ('librosa', 'matplotlib', 'scipy') if m in sys.modules))"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"


def test_python_dash_m_speech_runs():
    result = subprocess.run([sys.executable, "-m", "inkvoice.speech", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "train" in result.stdout


def test_train_reports_held_out_accuracy(demo_model):
    model, output = demo_model
    assert "random split: test accuracy" in output
    accuracy = float(output.split("test accuracy ")[1].split()[0])
    assert accuracy >= 0.9
    assert model.is_file()


def test_predict_names_the_digit(demo_model, demo_dir):
    model, _ = demo_model
    result = run("predict", model, demo_dir / "7" / "us_165_50.wav", demo_dir / "3" / "gb_130_35.wav")
    assert result.exit_code == 0
    lines = [line.split("\t") for line in result.output.strip().splitlines()]
    assert [line[1] for line in lines] == ["7", "3"]


def test_predict_json_top_k_and_folders(demo_model, demo_dir):
    model, _ = demo_model
    result = run("predict", model, demo_dir / "4", "--json", "--top-k", "3")
    assert result.exit_code == 0
    records = [json.loads(line) for line in result.output.strip().splitlines()]
    assert len(records) == 24
    assert all(len(r["top"]) == 3 and r["top"][0]["label"] == r["label"] for r in records)
    assert np.mean([r["label"] == "4" for r in records]) >= 0.9


def test_min_confidence_answers_unknown(demo_model, demo_dir, tmp_path):
    model, _ = demo_model
    result = run("predict", model, demo_dir / "5", "--json", "--min-confidence", "0.9")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.output.strip().splitlines()]
    assert len(records) == 24
    low = [r for r in records if r["confidence"] < 0.9]
    assert all(r["label"] == "unknown" and "reason" in r for r in low)
    assert all(r["label"] != "unknown" for r in records if r["confidence"] >= 0.9 and "reason" not in r)
    hum = write(tmp_path / "hum.wav", tone(120.0, seconds=1.0))
    assert run("predict", model, hum, "--min-confidence", "1.5").exit_code == 2


def test_a_batch_goes_on_past_bad_files_and_fails_at_the_end(demo_model, demo_dir, tmp_path):
    model, _ = demo_model
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "notes.wav").write_text("this is not audio" * 10)
    result = CliRunner().invoke(
        main, ["predict", str(model), str(tmp_path / "empty.wav"), str(demo_dir / "2" / "us_165_50.wav"),
               str(tmp_path / "notes.wav"), str(tmp_path / "missing.wav")]
    )
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "\t2\t" in result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 3 and "empty.wav" in errors[0] and "notes.wav" in errors[1]
    assert str(tmp_path / "missing.wav") in errors[2] and "no such" in errors[2]  # audio file, or input file when cached


def test_non_speech_is_answered_unknown_with_a_reason(demo_model, tmp_path):
    from inkvoice.speech.sounds import non_speech

    model, _ = demo_model
    generator = np.random.default_rng(5)
    paths = [write(tmp_path / f"{kind}.wav", non_speech(kind, 8000, generator)) for kind in ("noise", "hum", "fan", "clicks")]
    result = run("predict", model, *paths, "--json")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.output.strip().splitlines()]
    assert len(records) == 4
    assert sum(r["label"] == "unknown" for r in records) >= 3
    assert all(r["reason"] for r in records if r["label"] == "unknown")


def test_plain_answers_give_unknowns_reason_in_its_own_column(demo_model, tmp_path, demo_dir):
    model, _ = demo_model
    silent = write(tmp_path / "silent.wav", np.zeros(8000))
    spoken = sorted((demo_dir / "7").glob("*.wav"))[0]
    result = run("predict", model, silent, spoken)
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[0].split("\t") == [str(silent), "unknown", "0.000", "(no speech found)"]
    assert lines[1].split("\t")[:2] == [str(spoken), "7"] and "\\" not in lines[1]


def test_transcribe_reads_a_paused_digit_string(demo_model, demo_dir, tmp_path):
    import soundfile

    from inkvoice.speech.sounds import digit_string

    model, _ = demo_model
    clips = [soundfile.read(demo_dir / digit / "gb_165_50.wav", dtype="float32")[0] for digit in "5550173"]
    samples, spans = digit_string(clips, 8000, np.random.default_rng(0), pause_seconds=(0.2, 0.4))
    recording = write(tmp_path / "number.wav", samples)
    result = run("transcribe", model, recording, tmp_path / "missing.wav", "--json")
    assert result.exit_code == 1
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2
    record, missing = (json.loads(line) for line in lines)
    assert len(record["segments"]) == 7 and record["digits"] == "5550173"
    for segment, (start, end) in zip(record["segments"], spans):
        assert abs(segment["start"] - start) < 0.1 and abs(segment["end"] - end) < 0.1
        assert 0 <= segment["confidence"] <= 1
    assert "no such" in missing["error"] and "missing.wav" in missing["error"]
    plain = run("transcribe", model, recording)
    assert plain.exit_code == 0 and plain.output == f"{recording}\t5550173\n"


def test_ctrl_c_in_train_writes_no_model(demo_dir, tmp_path, monkeypatch):
    from inkvoice.core import estimator

    def interrupted(self, *arguments, **options):
        raise KeyboardInterrupt

    monkeypatch.setattr(estimator.MlpClassifier, "fit", interrupted)
    output = tmp_path / "m.npz"
    result = run("train", demo_dir, "-o", output, "--copies", "0", "--quiet")
    assert result.exit_code != 0
    assert not output.exists() and "model written" not in result.output


def test_evaluate_refuses_a_folder_of_one_label(demo_model, demo_dir):
    model, _ = demo_model
    result = run("evaluate", model, demo_dir / "4", "--quiet")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.startswith("Error:") and "not among the model's" in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("content", [b"", b"PK not really a zip", b"\x93NUMPY garbage"])
def test_a_bad_model_file_is_one_error_line(tmp_path, demo_dir, content):
    bad = tmp_path / "model.npz"
    bad.write_bytes(content)
    result = run("predict", bad, demo_dir / "1" / "us_165_50.wav")
    assert result.exit_code == 1
    assert result.output.startswith("Error:") and len(result.output.strip().splitlines()) == 1


def test_evaluate_prints_the_report_and_draws_pngs(demo_model, demo_dir, tmp_path):
    pytest.importorskip("matplotlib")
    model, _ = demo_model
    result = run("evaluate", model, demo_dir, "--confusion-png", tmp_path / "c.png", "--curve-png", tmp_path / "t.png", "--quiet")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("accuracy")
    assert "us-klatt" in result.output and "confusion" in result.output
    for png in ("c.png", "t.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_json(demo_model, demo_dir):
    model, _ = demo_model
    result = run("evaluate", model, demo_dir, "--json", "--quiet")
    assert result.exit_code == 0, result.output
    assert len(result.output.strip().splitlines()) == 1
    report = json.loads(result.output)
    assert report["n_clips"] == 240 and report["accuracy"] >= 0.9
    assert np.array(report["confusion"]).sum() == 240
    assert set(report["per_speaker"]) >= {"us", "gb", "us-klatt"}


def test_info_shows_training_and_figures(demo_model):
    model, _ = demo_model
    result = run("info", model, "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["labels"] == [str(d) for d in range(10)] and document["rejects"] is True
    assert document["layers"][1:] == [256, 11] and document["output"] == "softmax"
    assert document["features"]["sample_rate"] == 8000
    assert "random_accuracy" in document["figures"]
    plain = run("info", model)
    assert plain.exit_code == 0 and plain.output.startswith("labels")
    assert f"{document['layers'][0]} -> 256 -> 11 (relu, softmax)" in plain.output


def test_train_on_own_words_and_fine_tune(tone_folders, tmp_path, demo_model):
    words = tmp_path / "words.npz"
    result = run("train", tone_folders, "-o", words, "--split", "none", "--epochs", "30", "--hidden", "32", "--quiet")
    assert result.exit_code == 0, result.output
    low = write(tmp_path / "new" / "low" / "carl_1.wav", word("low", 1.05))
    write(tmp_path / "new" / "high" / "carl_2.wav", word("high", 0.95))
    tuned = tmp_path / "tuned.npz"
    result = run("train", tmp_path / "new", "-o", tuned, "--init", words, "--split", "none", "--quiet")
    assert result.exit_code == 0, result.output
    assert "\tlow\t" in run("predict", tuned, low).output
    digits, _ = demo_model
    result = run("train", tmp_path / "new", "-o", tmp_path / "x.npz", "--init", digits, "--split", "none", "--quiet")
    assert result.exit_code == 1 and "Error: fine-tuning cannot add labels" in result.output


def test_extra_clips_train_but_are_never_held_out(tone_folders, tmp_path):
    extra = tmp_path / "extra"
    for label in ("low", "mid", "high"):
        for take in range(2):
            write(extra / label / f"carl_{take}.wav", word(label, 1.1 + 0.05 * take))
    model = tmp_path / "m.npz"
    result = run("train", tone_folders, "-o", model, "--split", "speaker", "--test-speaker", "anna", "--extra", extra,
                 "--epochs", "5", "--hidden", "16", "--copies", "1", "--quiet")
    assert result.exit_code == 0, result.output
    assert "trained on 18 clips, 6 of them from --extra" in result.output
    assert "on 12 held-out clips" in result.output
    data = json.loads(run("info", model, "--json").output)["data"]
    assert data["clips"] == 24 and data["train"] == 18 and data["test"] == 12
    assert data["extra"] == {"folders": ["extra"], "clips": 6}
    missing = run("train", tone_folders, "-o", tmp_path / "x.npz", "--extra", tmp_path / "nowhere")
    assert missing.exit_code == 2 and "Traceback" not in missing.output


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--split", "speaker", "--test-speaker", "nobody"], "Error: test speaker must be one of"),
        (["--split", "official"], "Error: the official split needs FSDD file names"),
        (["--hidden", "12,x"], "expected comma-separated values"),
        (["--copies", "60"], "Invalid value for '--copies'"),
        (["--epochs", "0"], "Invalid value for '--epochs'"),
        (["--max-seconds", "0"], "Invalid value for '--max-seconds'"),
        (["--test-fraction", "1.5"], "Error: test_fraction must be a number in (0, 1)"),
    ],
)
def test_bad_training_options(demo_dir, tmp_path, arguments, message):
    result = run("train", demo_dir, "-o", tmp_path / "m.npz", *arguments)
    assert result.exit_code in (1, 2) and message in result.output and "Traceback" not in result.output


def make_archive(tmp_path, members):
    source = tmp_path / "source"
    for name, samples in members.items():
        write(source / "free-spoken-digit-dataset-1.0.9" / "recordings" / name, samples)
    archive = tmp_path / "fsdd.tar.gz"
    with tarfile.open(archive, "w:gz") as handle:
        handle.add(source / "free-spoken-digit-dataset-1.0.9", arcname="free-spoken-digit-dataset-1.0.9")
    return archive, hashlib.sha256(archive.read_bytes()).hexdigest()


def test_download_checks_the_archive_and_unpacks_it(tmp_path):
    archive, digest = make_archive(tmp_path, {"0_ann_0.wav": tone(300.0), "1_ann_0.wav": tone(500.0)})
    cache = tmp_path / "cache"
    result = run("download", "fsdd", "--url", archive.as_uri(), "--sha256", digest, "--cache-dir", cache)
    assert result.exit_code == 0, result.output
    folder = cache / "fsdd"
    assert result.stdout.strip() == str(folder)
    assert sorted(p.name for p in (folder / "recordings").iterdir()) == ["0_ann_0.wav", "1_ann_0.wav"]
    again = run("download", "fsdd", "--url", str(archive), "--cache-dir", cache)
    assert again.exit_code == 0 and again.stdout.strip() == str(folder)


def test_download_refuses_a_checksum_mismatch(tmp_path):
    archive, digest = make_archive(tmp_path, {"0_ann_0.wav": tone(300.0)})
    wrong = ("0" if digest[0] != "0" else "1") + digest[1:]
    result = run("download", "fsdd", "--url", str(archive), "--sha256", wrong, "--cache-dir", tmp_path / "cache")
    assert result.exit_code == 1 and "Error: checksum mismatch" in result.output
    assert not (tmp_path / "cache" / "fsdd").exists()


def test_download_from_the_default_location_checks_the_pinned_digest(tmp_path, monkeypatch):
    from inkvoice.speech import download

    archive, digest = make_archive(tmp_path, {"0_ann_0.wav": tone(300.0)})
    monkeypatch.setitem(download.SOURCES["fsdd"], "url", archive.as_uri())
    result = run("download", "fsdd", "--cache-dir", tmp_path / "cache")
    assert result.exit_code == 1 and "Error: checksum mismatch" in result.output
    assert download.SOURCES["fsdd"]["sha256"] in result.output and digest in result.output
    assert not (tmp_path / "cache" / "fsdd").exists()


def test_download_refuses_paths_leaving_the_folder(tmp_path):
    evil = tmp_path / "evil.tar"
    payload = tmp_path / "payload.wav"
    write(payload, tone(300.0))
    with tarfile.open(evil, "w") as handle:
        handle.add(payload, arcname="../../escaped.wav")
    result = run("download", "fsdd", "--url", str(evil), "--cache-dir", tmp_path / "cache")
    assert result.exit_code == 1 and "outside its folder" in result.output
    assert not (tmp_path / "escaped.wav").exists()


def _answers(result):
    """The records of a --json run, without the file names."""
    return [{key: value for key, value in json.loads(line).items() if key != "file"}
            for line in result.stdout.strip().splitlines()]


def test_the_answer_is_a_function_of_the_bytes_not_the_file_name(demo_model, demo_dir, tmp_path, monkeypatch):
    import soundfile

    model, _ = demo_model
    # Two digits said at once: an uncertain clip, whose averaged variants decide the answer.
    first, _ = soundfile.read(demo_dir / "3" / "gb_130_35.wav", dtype="float32")
    second, _ = soundfile.read(demo_dir / "8" / "gb_165_50.wav", dtype="float32")
    n = min(first.size, second.size)
    payload = write(tmp_path / "mix.wav", (first[:n] + second[:n]) / 2).read_bytes()
    names = [tmp_path / "names" / name for name in ("a.wav", "b.wav", "clip.wav", "7_x_0.wav", "Z.WAV", "mix copy.wav",
                                                    "1.wav", "zzzzzzzzzzzz.wav", "x.flac", "d/e.wav", "f/g/h.wav", ".w.wav")]
    for path in names:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(payload)
    uncached = run("predict", model, *names, "--json", "--test-copies", "8", "--no-cache")
    assert uncached.exit_code == 0, uncached.output
    records = _answers(uncached)
    assert len(records) == 12 and all(record == records[0] for record in records)
    # A cache filled under one name answers every other name as a run without it does.
    monkeypatch.setenv("INKVOICE_CACHE", str(tmp_path / "cache"))
    for path in (names[0], names[5]):
        cached = run("predict", model, path, "--json", "--test-copies", "8")
        assert cached.exit_code == 0 and _answers(cached) == records[:1]
    strings = [run("transcribe", model, path, "--json", "--test-copies", "4", *extra)
               for path, extra in ((names[1], ["--no-cache"]), (names[2], []), (names[3], []))]
    assert all(result.exit_code == 0 for result in strings)
    assert _answers(strings[0]) == _answers(strings[1]) == _answers(strings[2])


def _edited_model(source, target, change):
    """A copy of the model file ``source`` at ``target`` after ``change(entries, metadata)``."""
    with np.load(source, allow_pickle=False) as archive:
        entries = {key: archive[key] for key in archive.files}
    metadata = json.loads(str(entries["metadata"]))
    change(entries, metadata)
    entries["metadata"] = np.array(json.dumps(metadata))
    np.savez(target, **entries)
    return target


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda e, m: e.__setitem__("model/network0/standardizer.scale", np.full_like(e["model/network0/standardizer.scale"], 1e-300)),
         "standardizer.scale holds values from 1e-300"),
        (lambda e, m: e.__setitem__("model/network0/layer0.weights", e["model/network0/layer0.weights"] * 1e8),
         "layer0.weights holds values"),
        (lambda e, m: m["prediction"].update(reject_threshold=5.0), r"prediction.reject_threshold must be a number in \[0, 1\]"),
        (lambda e, m: m["prediction"].update(test_copies=10**6), r"prediction.test_copies must be an integer in \[0, 50\]"),
        (lambda e, m: e.__setitem__("array/mel_basis", e["array/mel_basis"] * 1e30), "mel_basis' holds values up to"),
        (lambda e, m: e.__setitem__("array/rehearsal_X", e["array/rehearsal_X"] * 1e30), "rehearsal_X' holds values up to"),
    ],
    ids=["scale 1e-300", "weights x 1e8", "reject threshold 5", "10^6 test copies", "mel filters x 1e30",
         "rehearsal x 1e30"],
)
def test_numbers_out_of_range_in_a_model_file_are_refused(demo_model, demo_dir, tmp_path, change, message):
    model, _ = demo_model
    crafted = _edited_model(model, tmp_path / "crafted.npz", change)
    result = run("predict", crafted, demo_dir / "7" / "us_165_50.wav", "--json")
    assert result.exit_code == 1 and result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: ") and "crafted.npz" in line and re.search(message, line), line


def test_json_output_never_holds_nan(demo_model, demo_dir, monkeypatch):
    from inkvoice.speech.model import SpeechModel

    model, _ = demo_model
    monkeypatch.setattr(SpeechModel, "decide", lambda self, p, **k: {"label": "7", "confidence": float("nan"), "top": []})
    result = run("predict", model, demo_dir / "7" / "us_165_50.wav", "--json")
    assert result.exit_code == 1 and "NaN" not in result.stdout and "Traceback" not in result.output
    assert result.stderr.strip().startswith("Error: an answer holds NaN")


@pytest.mark.parametrize("damage", [b"{broken", b"\xff\xfe\x00", b"[]", b'{"sha256": 5}', b""])
def test_download_with_a_damaged_source_record_downloads_again(tmp_path, damage):
    archive, digest = make_archive(tmp_path, {"0_ann_0.wav": tone(300.0)})
    cache = tmp_path / "cache"
    assert run("download", "fsdd", "--url", str(archive), "--cache-dir", cache).exit_code == 0
    (cache / "fsdd" / "source.json").write_bytes(damage)
    (cache / "fsdd" / "recordings" / "0_ann_0.wav").unlink()  # what a damaged download may also lack
    result = run("download", "fsdd", "--url", str(archive), "--sha256", digest, "--cache-dir", cache)
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    assert result.stdout.strip() == str(cache / "fsdd") and f"sha256 {digest}" in result.stderr
    assert (cache / "fsdd" / "recordings" / "0_ann_0.wav").is_file()
    again = run("download", "fsdd", "--url", str(archive), "--cache-dir", cache)
    assert again.exit_code == 0 and f"sha256 {digest}" in again.stderr


@pytest.mark.parametrize("names", ["fsdd", "other"])
def test_fine_tuning_uses_every_recording_unless_a_split_is_asked_for(demo_model, demo_dir, tmp_path, names):
    model, _ = demo_model
    mine = tmp_path / "mine"
    for digit in "0123456789":
        for take, source in enumerate(sorted((demo_dir / digit).glob("*.wav"))[:2]):
            target = mine / f"{digit}_me_{take}.wav" if names == "fsdd" else mine / digit / f"take {take}.wav"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
    tuned = tmp_path / "mine.npz"
    result = run("train", mine, "-o", tuned, "--init", model, "--epochs", "2", "--copies", "1", "--quiet")
    assert result.exit_code == 0, result.output
    assert "trained on 20 clips" in result.output and "held-out" not in result.output
    data = json.loads(run("info", tuned, "--json").output)["data"]
    assert data["split"] == "none" and data["train"] == 20 and data["test"] == 0
    asked = run("train", mine, "-o", tmp_path / "split.npz", "--init", model, "--split", "random", "--epochs", "2",
                "--copies", "1", "--quiet")
    assert asked.exit_code == 0, asked.output
    assert "held-out clips" in asked.output and "trained on 20 clips" not in asked.output


def test_a_name_that_is_not_utf8_is_answered_alike_with_and_without_the_cache(demo_model, demo_dir, tmp_path, monkeypatch):
    import os

    model, _ = demo_model
    path = tmp_path / os.fsdecode(b"d\xe9mo-\xff.wav")
    path.write_bytes((demo_dir / "3" / "gb_130_35.wav").read_bytes())
    monkeypatch.setenv("INKVOICE_CACHE", str(tmp_path / "cache"))
    answers = [run("predict", model, path, "--json", *extra) for extra in (["--no-cache"], [], [])]
    assert [result.exit_code for result in answers] == [0, 0, 0], answers[0].output
    assert _answers(answers[0]) == _answers(answers[1]) == _answers(answers[2])
    assert _answers(answers[0])[0]["label"] == "3"


def test_a_file_name_with_control_characters_cannot_forge_a_line(demo_model, demo_dir, tmp_path):
    import shutil

    model, _ = demo_model
    forged = tmp_path / "x.wav\t9\t1.000\nfake.wav"
    shutil.copy(demo_dir / "7" / "us_165_50.wav", forged)
    result = run("predict", model, forged, tmp_path / "gone\x1b[2J.wav")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("x.wav\\t9\\t1.000\\nfake.wav".join([str(tmp_path) + "/", ""]))
    assert lines[0].count("\t") == 2
    assert result.stderr.count("\n") == 1 and "gone\\x1b[2J.wav" in result.stderr
