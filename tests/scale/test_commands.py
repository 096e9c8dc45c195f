"""The speech commands with --scheduler on a real local Dask cluster answer as a local run."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from inkvoice.speech.cli import main
from inkvoice.speech.model import SpeechModel

ROOT = Path(__file__).resolve().parents[2]


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def words(tmp_path):
    """Three of the demo digits, 8 clips each, and a file among them that is not audio."""
    for label in ("1", "2", "3"):
        (tmp_path / "words" / label).mkdir(parents=True)
        for clip in sorted((ROOT / "data" / "speech" / label).glob("*.wav"))[:8]:
            shutil.copy(clip, tmp_path / "words" / label / clip.name)
    (tmp_path / "words" / "3" / "noise.wav").write_text("not audio at all")
    return tmp_path / "words"


def test_train_predict_and_evaluate_on_a_cluster_as_on_this_machine(dask_scheduler, words, tmp_path):
    settings = ["--epochs", "1", "--copies", "1", "--test-copies", "2", "--split", "random", "--no-cache", "--quiet"]
    cluster = ["--scheduler", dask_scheduler]
    trained = {}
    for name, options in {"local": [], "cluster": cluster}.items():
        model = tmp_path / f"{name}.npz"
        code, out, errors = run("train", words, "-o", model, *settings, *options)
        trained[name] = (code, out.replace(str(model), "MODEL"), errors)
    assert trained["cluster"] == trained["local"]
    train_code, _, train_errors = trained["local"]
    assert train_code == 1 and train_errors.count("Error: ") == 1 and "noise.wav" in train_errors
    # The same features, so the same network: equal up to the order in which BLAS sums, which
    # may differ between two trainings (its thread count follows the machine's load).
    local, remote = (SpeechModel.load(tmp_path / f"{name}.npz") for name in ("local", "cluster"))
    for one, other in zip(local.networks, remote.networks):
        np.testing.assert_allclose(one.network_.flat_parameters, other.network_.flat_parameters, atol=1e-5)

    # One model, its answers computed here and on the cluster: the same, to the last digit.
    model = tmp_path / "local.npz"
    answers = {
        name: [run("predict", model, words, tmp_path / "absent.wav", "--json", "--no-cache", "--quiet", *options),
               run("evaluate", model, words, "--json", "--no-cache", "--quiet", *options)]
        for name, options in {"local": [], "cluster": cluster}.items()
    }
    (code, out, _), (evaluate_code, report, _) = answers["local"]
    records = [json.loads(line) for line in out.splitlines()]
    assert code == 1 and len(records) == 26 and sum("error" in record for record in records) == 2
    assert evaluate_code == 1 and json.loads(report)["n_clips"] == 24
    assert answers["cluster"] == answers["local"]
    # Test-time augmentation on files the workers receive rather than read.
    sent = run("predict", model, words, tmp_path / "absent.wav", "--json", "--no-cache", "--quiet", *cluster,
               "--send-files")
    assert sent == answers["local"][0]
