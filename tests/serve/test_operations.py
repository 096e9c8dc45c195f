"""``inkvoice serve`` as an operator runs it: stopped by SIGTERM or Ctrl-C at any moment, ready told from starting,
and requests its HTTP layer cannot parse answered with the API's JSON error body."""

import json
import os
import signal
import socket
import time
from pathlib import Path

import pytest

from tests.serve.conftest import TOKEN, RunningServer
from tests.servers import HANG_SECONDS


def session_processes(session):
    """Ids of the live processes of a session (a server started in a session of its own, and all it started)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, session_id = fields[0], int(fields[3])
        if session_id == session and state not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def wait_until_gone(session):
    """The processes of ``session`` still alive once they have had a moment to finish ending (none, when all is well).

    They are not waited for forever: the server has already ended, having waited for its
    workers; what is left after a minute is left for good.
    """
    deadline = time.monotonic() + 60
    while (left := session_processes(session)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def cmdlines(pids):
    texts = []
    for pid in pids:
        try:
            texts.append(Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " "))
        except OSError:
            pass
    return texts


def start(signature_model_path, folder, wait="ready", port=0, extra=()):
    """A server with two worker processes, in a session of its own, its temporary files in ``folder``/tmp."""
    temporary = folder / "tmp"
    temporary.mkdir(exist_ok=True)
    arguments = ["--signature-model", str(signature_model_path), "--store", str(folder / "store.sqlite"),
                 "--token", TOKEN, "--workers", "2", *extra]
    if port:
        arguments = ["--port", str(port), *arguments]
    return RunningServer(arguments, folder, env={"TMPDIR": str(temporary)}, wait=wait, new_session=True)


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_either_signal_stops_the_workers_and_the_tracker_and_removes_the_uploads(signature_model_path, tmp_path,
                                                                                 stop_signal):
    server = start(signature_model_path, tmp_path)
    started = session_processes(server.process.pid)
    commands = cmdlines(started)
    assert sum("resource_tracker" in command for command in commands) == 1, commands
    assert sum("spawn_main" in command and "resource_tracker" not in command for command in commands) == 2, commands
    assert list((tmp_path / "tmp").glob("inkvoice-serve-*"))
    # Only the serving process is signalled, as `kill`, systemd's main-process mode, Docker and Kubernetes do.
    assert server.stop(stop_signal) == 0
    assert wait_until_gone(server.process.pid) == []
    assert not list((tmp_path / "tmp").iterdir())  # the upload folders went with the server
    log = server.log.read_text()
    assert "Traceback" not in log and "leaked" not in log and "Finished server process" in log


def test_workers_end_when_the_server_is_killed(signature_model_path, tmp_path):
    """SIGKILL (or the kernel's out-of-memory killer) gives the server no chance to stop its workers: they
    notice and end by themselves, and the resource tracker with them."""
    server = start(signature_model_path, tmp_path)
    assert len(session_processes(server.process.pid)) == 4  # the server, two workers, the tracker
    server.process.kill()
    server.process.wait()
    assert wait_until_gone(server.process.pid) == []


def wait_for(condition):
    while not condition():
        time.sleep(0.02)


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def listening(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


MOMENTS = {
    # The port is bound before anything else: the models are loading in the serving process.
    "models loading": lambda server, port: wait_for(lambda: listening(port) or server.process.poll() is not None),
    # The address is announced when the worker processes are being started.
    "workers starting": lambda server, port: wait_for(
        lambda: "starting 2 worker processes" in server.output.read_text() or server.process.poll() is not None),
    "ready": lambda server, port: wait_for(
        lambda: (server.address() and server.is_ready()) or server.process.poll() is not None),
}


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_ctrl_c_at_any_moment_of_start_up_ends_cleanly(signature_model_path, tmp_path, moment):
    """Ctrl-C in a terminal signals the whole process group: the server and every worker it has started."""
    port = free_port()
    server = start(signature_model_path, tmp_path, wait="nothing", port=port)
    MOMENTS[moment](server, port)
    assert server.process.poll() is None, server.log.read_text()[-2000:]
    os.killpg(server.process.pid, signal.SIGINT)
    assert server.process.wait(timeout=HANG_SECONDS) == 0, server.output.read_text()[-2000:] + server.log.read_text()[-3000:]
    assert wait_until_gone(server.process.pid) == []
    assert not list((tmp_path / "tmp").iterdir())
    log = server.log.read_text()
    assert "Traceback" not in log and "KeyboardInterrupt" not in log and "leaked" not in log, log[-3000:]


def test_healthz_tells_starting_from_ready(signature_model_path, tmp_path):
    server = start(signature_model_path, tmp_path, wait="address")
    statuses = []
    while True:
        status, body = server.health()
        if status is not None:
            statuses.append((status, body["status"]))
        if status == 200:
            break
        assert server.process.poll() is None, server.log.read_text()[-2000:]
        time.sleep(0.05)
    assert statuses[-1] == (200, "ready")
    assert set(statuses[:-1]) <= {(503, "starting")}
    assert "ready: 2 worker processes answer" in server.output.read_text()
    server.stop()


def raw_request(url, data):
    """The status line, headers and body the server sends back for the bytes ``data``."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(data)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in header_lines)
    return status_line, headers, body


MALFORMED = {
    "not HTTP": b"THIS IS NOT HTTP\r\n\r\n",
    "header without a colon": b"GET /healthz HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
    "bad content length": b"POST /api/speech/predict HTTP/1.1\r\nHost: x\r\nContent-Length: twelve\r\n\r\n",
    "non-ASCII target": "GET /héllo HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
    "HTTP/1.1 without Host": b"GET /healthz HTTP/1.1\r\n\r\n",
}


def test_malformed_requests_get_the_json_error_body(signature_model_path, tmp_path):
    server = RunningServer(["--signature-model", str(signature_model_path), "--store", str(tmp_path / "s.sqlite"),
                            "--workers", "0"], tmp_path)
    try:
        for name, data in MALFORMED.items():
            status_line, headers, body = raw_request(server.url, data)
            assert status_line.startswith("HTTP/1.1 400 "), (name, status_line)
            assert headers["content-type"] == "application/json", name
            assert json.loads(body) == {"error": "the request is not valid HTTP/1.1"}, name
            assert int(headers["content-length"]) == len(body)
        # A well-formed request on a fresh connection is still answered.
        status_line, headers, body = raw_request(server.url, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert status_line.startswith("HTTP/1.1 200 ") and json.loads(body)["status"] == "ready"
    finally:
        assert server.stop() == 0
    assert "Traceback" not in server.log.read_text()
