"""Fixtures of the service tests: small models trained on the project's sample data, a running server, a browser."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.servers import HANG_SECONDS

pytest.importorskip("fastapi", reason="the service needs the 'serve' extra: pip install -e '.[serve]'")

ROOT = Path(__file__).resolve().parents[2]
SPEECH_SAMPLES = ROOT / "data" / "speech"
SIGNATURE_SAMPLES = ROOT / "data" / "signatures"
TRAINING_WRITERS = ("writer1", "writer2", "writer3", "writer4")
TOKEN = "test-token"


@pytest.fixture(scope="session")
def speech_model_path(tmp_path_factory):
    """A digit model trained on data/speech, kept small so the session stays fast."""
    from inkvoice.core.extraction import ExtractionSettings
    from inkvoice.speech.dataset import load_dataset
    from inkvoice.speech.model import train

    dataset = load_dataset(SPEECH_SAMPLES)
    model, failures = train(dataset, np.arange(len(dataset)), augmentation={"copies": 2},
                            training={"epochs": 20, "test_copies": 2}, extraction=ExtractionSettings(n_jobs=1, cache=False))
    assert not failures
    path = tmp_path_factory.mktemp("speech-model") / "digits.npz"
    model.save(path)
    return path


@pytest.fixture(scope="session")
def signature_model_path(tmp_path_factory):
    """A verifier learnt from sample writers 1-4; writers 5 and 6 stay unseen, for enrolment."""
    from inkvoice.signature.dataset import load_signatures
    from inkvoice.signature.features import check_parameters, extract
    from inkvoice.signature.model_file import save_verifier
    from inkvoice.signature.training import train_verifier

    parameters = check_parameters({})
    signatures = [s for s in load_signatures(SIGNATURE_SAMPLES) if s.writer in TRAINING_WRITERS]
    X = np.stack([extract(s.path, **parameters) for s in signatures])
    verifier, figures, settings = train_verifier(
        X, np.array([s.writer for s in signatures]), np.array([s.genuine for s in signatures]), parameters,
        {"n_references": 6, "dependent_threshold": False}, np.random.default_rng(0),
    )
    path = tmp_path_factory.mktemp("signature-model") / "signatures.npz"
    save_verifier(path, verifier, {**settings.to_dict(), "writers": list(TRAINING_WRITERS)}, figures)
    return path


def genuine(writer, numbers):
    return [SIGNATURE_SAMPLES / writer / "genuine" / f"{n:02d}.png" for n in numbers]


def store_without_pictures(model_path, location, writer, numbers):
    """An SQLite store as the version before reference pictures made it, with ``writer`` enrolled."""
    import sqlite3

    from inkvoice.signature.api import enroll_files
    from inkvoice.signature.enrollment import references_digest

    assert enroll_files(model_path, writer, genuine(writer, numbers), location)["enrolled"]
    connection = sqlite3.connect(location, isolation_level=None)
    connection.execute("ALTER TABLE refs DROP COLUMN thumbnail")
    connection.execute("UPDATE settings SET value = '2' WHERE key = 'schema'")
    # The digest as that version made it: over the references without their pictures.
    settings = connection.execute("SELECT value FROM settings WHERE key = 'features'").fetchone()[0]
    rows = connection.execute("SELECT source, image_digest, model_digest, features FROM refs WHERE writer = ? "
                              "ORDER BY id", (writer,)).fetchall()
    connection.execute("UPDATE writers SET digest = ? WHERE name = ?", (references_digest(writer, settings, rows), writer))
    connection.close()
    return location


@pytest.fixture(scope="session")
def clearest_forgery(signature_model_path):
    """The forgery of writer5 that the test verifier scores lowest against genuine 1-6 (a sure rejection)."""
    from inkvoice.signature.features import extract
    from inkvoice.signature.model_file import load_verifier

    verifier, _ = load_verifier(signature_model_path)
    references = np.stack([extract(p, **verifier.feature_parameters) for p in genuine("writer5", range(1, 7))])
    forgeries = sorted((SIGNATURE_SAMPLES / "writer5" / "forged").glob("*.png"))
    scores = [verifier.scores(extract(p, **verifier.feature_parameters), references)[0] for p in forgeries]
    assert min(scores) < verifier.threshold, "the test verifier accepts every forgery of writer5"
    return forgeries[int(np.argmin(scores))]


class RunningServer:
    """``inkvoice serve`` in a child process on a free loopback port; its output goes to files in ``folder``.

    Waits until the server says it is ready (``/healthz`` 200), however long its workers take
    to start on a busy machine: only the server's ending (it gives up by itself on workers
    that do not start) ends the wait. ``wait`` "address" returns as soon as the address is
    known, "nothing" at once; ``new_session`` starts the server in a session of its own.
    """

    def __init__(self, arguments, folder, env=None, wait="ready", new_session=False):
        command = [sys.executable, "-c", "from inkvoice.cli import main; main()", "serve", "--port", "0", *arguments]
        self.log = folder / "server.log"
        self.output = folder / "server.out"
        with open(self.output, "w") as out, open(self.log, "w") as log:
            self.process = subprocess.Popen(command, stdout=out, stderr=log, env={**os.environ, **(env or {})},
                                            start_new_session=new_session)
        self.url = None
        if wait == "nothing":
            return
        while self.address() is None and self.process.poll() is None:
            time.sleep(0.05)
        while wait == "ready" and self.url and self.process.poll() is None and not self.is_ready():
            time.sleep(0.1)
        if self.process.poll() is not None:
            raise RuntimeError(f"the server did not start: {self.output.read_text()[-500:]} {self.log.read_text()[-2000:]}")

    def address(self):
        """The server's URL once it has printed it, else None."""
        if self.url is None:
            found = re.search(r"(http://\S+?)/? ", self.output.read_text())
            self.url = found.group(1) if found else None
        return self.url

    def health(self):
        """(status, JSON body) of ``/healthz``; (None, None) while nothing answers."""
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=30) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            return error.code, json.load(error)
        except OSError:
            return None, None

    def is_ready(self):
        return self.health()[0] == 200

    def children(self):
        """Process ids of the server's child processes (its workers and the resource tracker)."""
        return [int(pid) for pid in
                Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()]

    def stop(self, signal_number=signal.SIGINT):
        """Stop the server with ``signal_number`` (Ctrl-C by default); kill it only if it hangs.

        A busy machine may take long to stop the workers: the wait ends when the server does, and
        only a hang (``HANG_SECONDS``) gives up.
        """
        if self.process.poll() is None:
            self.process.send_signal(signal_number)
            try:
                self.process.wait(timeout=HANG_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return self.process.returncode


@pytest.fixture
def serve(tmp_path):
    """Start servers with ``serve(arguments)``; every one is stopped after the test."""
    started = []

    def start(*arguments, env=None):
        folder = tmp_path / f"server-{len(started)}"
        folder.mkdir()
        server = RunningServer([str(a) for a in arguments], folder, env=env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1400,1000",
]


def find_chromium():
    """(browser, driver) paths of the system's Chromium, or a skip saying what is missing."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        pytest.skip("Chromium and its driver are not installed (Debian packages chromium and chromium-driver)")
    pytest.importorskip("selenium", reason="the browser tests need selenium (the 'test' extra)")
    return browser, driver


@pytest.fixture
def browser_factory(tmp_path):
    """``browser_factory(*extra_flags)`` opens headless Chromium with a fresh profile; all are closed afterwards."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    browser_path, driver_path = find_chromium()
    opened = []

    def open_browser(*extra_flags):
        options = webdriver.ChromeOptions()
        options.binary_location = browser_path
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        profile = tmp_path / f"profile-{len(opened)}"
        for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra_flags]:
            options.add_argument(flag)
        driver = webdriver.Chrome(options=options, service=DriverService(executable_path=driver_path))
        driver.set_page_load_timeout(30)
        opened.append(driver)
        return driver

    yield open_browser
    for driver in opened:
        driver.quit()
