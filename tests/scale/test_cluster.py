"""Feature extraction on a real local Dask cluster gives the answers of a local run."""

import time
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner

from inkvoice.core import cluster
from inkvoice.core.command import extraction_options
from inkvoice.core.errors import DataError, ParameterError, ProjectError
from inkvoice.core.extraction import ExtractionSettings, extract_many
from inkvoice.signature import features as signature_features
from inkvoice.speech import features as speech_features
from inkvoice.speech.augment import TEST_AUGMENTATION, augmentation_parameters

ROOT = Path(__file__).resolve().parents[2]
SPEECH_PARAMETERS = {**speech_features.feature_parameters(), "max_seconds": 10.0,
                     "feature_version": speech_features.FEATURE_VERSION}
# Test-time augmentation is part of feature extraction, so it runs on the workers too.
AUGMENTED_PARAMETERS = {**SPEECH_PARAMETERS, "seed": 12345,
                        "augmentation": augmentation_parameters(**{**TEST_AUGMENTATION, "copies": 3})}
SIGNATURE_PARAMETERS = {**signature_features.check_parameters({}), "max_pixels": 40_000_000}


def _assert_same(expected, got):
    assert len(got) == len(expected)
    for want, have in zip(expected, got):
        if isinstance(want, ProjectError):
            assert type(have) is type(want) and str(have) == str(want)
        else:
            assert isinstance(have, np.ndarray) and have.dtype == want.dtype
            np.testing.assert_array_equal(have, want)


@pytest.fixture
def speech_files(tmp_path, monkeypatch):
    """Relative paths (as a user types them) to 15 demo clips, a file that is not audio, a missing file."""
    monkeypatch.chdir(ROOT)
    clips = sorted(Path("data/speech").rglob("*.wav"))[::17]
    bad = tmp_path / "noise.wav"
    bad.write_text("not audio at all")
    return [*clips[:7], bad, *clips[7:], tmp_path / "absent.wav"]


@pytest.mark.parametrize("send_files", [False, True])
def test_speech_features_with_test_time_augmentation_match_a_local_run(dask_scheduler, speech_files, send_files):
    local = extract_many(speech_features.extract_augmented, speech_files, AUGMENTED_PARAMETERS, n_jobs=1)
    done = []
    remote = extract_many(speech_features.extract_augmented, speech_files, AUGMENTED_PARAMETERS,
                          scheduler=dask_scheduler, send_files=send_files, progress=done.append)
    _assert_same(local, remote)
    assert sum(done) == len(speech_files)
    errors = [r for r in remote if isinstance(r, ProjectError)]
    assert len(errors) == 2 and str(errors[0]).startswith(str(speech_files[7]))
    augmentation = AUGMENTED_PARAMETERS["augmentation"]
    rows = 1 + augmentation["copies"] + augmentation.get("negatives", 0)
    assert remote[0].shape == (rows, speech_features.feature_length(SPEECH_PARAMETERS))


@pytest.mark.parametrize("send_files", [False, True])
def test_signature_features_match_a_local_run(dask_scheduler, tmp_path, send_files):
    images = sorted((ROOT / "data" / "signatures").rglob("*.png"))[::6]
    bad = tmp_path / "scan.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"cut short")
    paths = [*images[:3], bad, *images[3:]]
    local = extract_many(signature_features.extract, paths, SIGNATURE_PARAMETERS, n_jobs=1)
    remote = ExtractionSettings(cache=False, scheduler=dask_scheduler, send_files=send_files).extract(
        signature_features.extract, paths, SIGNATURE_PARAMETERS)
    _assert_same(local, remote)
    assert sum(isinstance(r, ProjectError) for r in remote) == 1 and isinstance(remote[3], DataError)


def test_the_cache_stays_in_front_of_the_cluster(dask_scheduler, speech_files, tmp_path):
    cache = tmp_path / "cache"
    first = extract_many(speech_features.extract, speech_files, SPEECH_PARAMETERS, cache_dir=cache,
                         scheduler=dask_scheduler)
    # One entry per good file (in folders named by the key's first two characters); errors are never cached.
    entries = sorted(p.name for p in cache.rglob("*.entry") if len(p.parent.name) == 2)
    assert len(entries) == len(speech_files) - 2
    good = [path for path, result in zip(speech_files, first) if not isinstance(result, ProjectError)]
    again = extract_many(speech_features.extract, good[::-1], SPEECH_PARAMETERS, cache_dir=cache,
                         scheduler="tcp://127.0.0.1:9")  # never contacted: every file is cached
    _assert_same([r for r in first if not isinstance(r, ProjectError)][::-1], again)


def test_send_files_without_a_scheduler_is_refused():
    with pytest.raises(ParameterError, match="send_files needs a scheduler"):
        ExtractionSettings(send_files=True)
    with pytest.raises(ParameterError, match="send_files needs a scheduler"):
        extract_many(speech_features.extract, [], SPEECH_PARAMETERS, send_files=True)


def test_an_unreachable_scheduler_is_one_clear_error(tmp_path, monkeypatch):
    pytest.importorskip("distributed", reason="the distributed extra is not installed")
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT_SECONDS", 1)
    clip = tmp_path / "a.wav"
    clip.write_bytes(b"RIFF")
    with pytest.raises(ProjectError, match="cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'"):
        extract_many(speech_features.extract, [clip], SPEECH_PARAMETERS, scheduler="tcp://127.0.0.1:9")


def test_a_worker_that_cannot_see_a_file_says_so(tmp_path):
    """What a worker answers when the path it is given is not there (no shared file system)."""
    [answer] = cluster.run_items(speech_features.extract, [("clip.wav", str(tmp_path / "clip.wav"), None)], {})
    assert isinstance(answer, cluster.Unseen) and answer.location == str(tmp_path / "clip.wav")


def test_a_worker_names_a_sent_file_as_the_user_gave_it():
    given = "recordings/not-audio.wav"
    [answer] = cluster.run_items(speech_features.extract, [(given, "not-audio.wav", b"plain text")],
                                 SPEECH_PARAMETERS)
    assert isinstance(answer, DataError) and str(answer).startswith(given) and "inkvoice-" not in str(answer)


def test_workers_that_do_not_share_the_paths_stop_the_run_with_the_remedy(dask_scheduler, tmp_path, monkeypatch):
    # /proc/self/cwd is this process's folder here and each worker's own folder there: a path
    # this machine sees and the workers do not, as on a cluster without a shared file system.
    monkeypatch.chdir(tmp_path)
    clip = sorted((ROOT / "data" / "speech").rglob("*.wav"))[0]
    (tmp_path / "clip.wav").write_bytes(clip.read_bytes())
    unseen = Path("/proc/self/cwd/clip.wav")
    with pytest.raises(ProjectError, match="cannot see /proc/self/cwd/clip.wav .*share them at the same paths or "
                                           "pass --send-files"):
        extract_many(speech_features.extract, [unseen], SPEECH_PARAMETERS, scheduler=dask_scheduler)
    [sent] = extract_many(speech_features.extract, [unseen], SPEECH_PARAMETERS, scheduler=dask_scheduler,
                          send_files=True)
    np.testing.assert_array_equal(sent, speech_features.extract(clip, **SPEECH_PARAMETERS))


class _Client:
    """Stands in for a Dask client whose one worker answers ``versions``."""

    def __init__(self, versions):
        self.versions = versions

    def run(self, function):
        return {"tcp://10.0.0.7:4000": self.versions}


def test_workers_with_other_feature_code_are_refused():
    here = cluster.package_versions()
    cluster._check_versions(_Client(dict(here)))
    with pytest.raises(ProjectError, match="worker tcp://10.0.0.7:4000 has numpy 1.0 but this machine has"):
        cluster._check_versions(_Client({**here, "numpy": "1.0"}))


@click.command()
@extraction_options
def _show(extraction):
    click.echo(f"{extraction.scheduler} {extraction.send_files}")


def test_the_shared_options_carry_the_scheduler_from_the_option_or_the_environment(monkeypatch):
    runner = CliRunner()
    assert runner.invoke(_show, ["--scheduler", "tcp://10.0.0.5:8786", "--send-files"]).output.split() == [
        "tcp://10.0.0.5:8786", "True"]
    monkeypatch.setenv("INKVOICE_SCHEDULER", "tcp://10.0.0.6:8786")
    assert runner.invoke(_show, []).output.split() == ["tcp://10.0.0.6:8786", "False"]
    monkeypatch.delenv("INKVOICE_SCHEDULER")
    assert runner.invoke(_show, []).output.split() == ["None", "False"]
    refused = runner.invoke(_show, ["--send-files"])
    assert refused.exit_code == 2 and "--send-files needs --scheduler" in refused.output


@pytest.mark.parametrize("address", ["foo", "tcp://", "http://127.0.0.1:8786", "10.0.0.5:87x"])
def test_what_is_not_a_scheduler_address_is_refused_at_once(address):
    pytest.importorskip("distributed", reason="the distributed extra is not installed")
    started = time.monotonic()
    with pytest.raises(ProjectError, match="is not a Dask scheduler address such as tcp://10.0.0.5:8786"):
        cluster.connect(address)
    assert time.monotonic() - started < 2
