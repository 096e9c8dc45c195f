"""The ``inkvoice serve`` command: its errors before serving, and a real server started and stopped."""

import json
import socket
import urllib.error
import urllib.request

from click.testing import CliRunner

from inkvoice.cli import main
from tests.serve.conftest import SPEECH_SAMPLES, TOKEN, genuine


def test_serve_needs_a_model():
    result = CliRunner().invoke(main, ["serve"])
    assert result.exit_code == 1
    assert result.output.strip() == "Error: give a speech model, a signature model or both"


def test_a_bad_model_file_is_one_error_line(tmp_path):
    bad = tmp_path / "speech.npz"
    bad.write_text("not a model")
    result = CliRunner().invoke(main, ["serve", "--speech-model", str(bad), "--port", "0"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and "speech.npz" in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_a_taken_port_is_one_error_line(speech_model_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["serve", "--speech-model", str(speech_model_path), "--port", str(port)])
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: cannot listen on 127.0.0.1:{port}: ")


def test_server_answers_and_stops_on_interrupt(serve, speech_model_path):
    server = serve("--speech-model", speech_model_path, "--max-upload-mb", "1")
    assert server.url.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(f"{server.url}/healthz", timeout=5) as response:
        assert json.load(response)["models"]["speech"]["name"] == speech_model_path.name
    clip = (SPEECH_SAMPLES / "6" / "gb_130_35.wav").read_bytes()
    boundary = "inkvoice-test"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"six.wav\"\r\n"
            f"Content-Type: audio/wav\r\n\r\n").encode() + clip + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(f"{server.url}/api/speech/predict", data=body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.load(response)["label"] == "6"
    assert server.stop() == 0
    log = server.log.read_text()
    assert "Traceback" not in log and "Shutting down" in log


def _call(url, method="GET", files=(), field="files", token=None):
    """(status, JSON) of a request with ``files`` sent as multipart ``field``."""
    boundary = "inkvoice-test"
    body = b"".join(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{p.name}\"\r\n\r\n"
                    .encode() + p.read_bytes() + b"\r\n" for p in files)
    headers = {}
    if files:
        body += f"--{boundary}--\r\n".encode()
        headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=body if files else None, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def test_two_servers_share_one_postgresql_store(serve, signature_model_path, postgres_url):
    first = serve("--signature-model", signature_model_path, "--store", postgres_url, "--token", TOKEN)
    second = serve("--signature-model", signature_model_path, "--store", postgres_url, "--token", TOKEN)
    status, body = _call(f"{first.url}/api/signature/writers/writer6/references", "POST",
                         genuine("writer6", range(1, 5)), token=TOKEN)
    assert status == 200 and body["references"] == 4
    assert _call(f"{second.url}/api/signature/writers", token=TOKEN)[1] == [{"writer": "writer6", "references": 4}]
    status, body = _call(f"{second.url}/api/signature/writers/writer6/verify", "POST", genuine("writer6", [9]),
                         field="file")
    assert status == 200 and body["genuine"] is True
    assert _call(f"{second.url}/api/signature/writers/writer6", "DELETE", token=TOKEN)[0] == 200
    status, body = _call(f"{first.url}/api/signature/writers/writer6/verify", "POST", genuine("writer6", [9]),
                         field="file")
    assert status == 404 and body == {"error": "writer 'writer6' is not enrolled"}
    assert "postgresql" not in json.dumps(_call(f"{first.url}/healthz")[1])


def test_several_worker_processes_answer_and_stop(serve, signature_model_path, tmp_path):
    temporary = tmp_path / "temporary"
    temporary.mkdir()
    server = serve("--signature-model", signature_model_path, "--store", tmp_path / "store.sqlite", "--token", TOKEN,
                   "--workers", "2", env={"TMPDIR": str(temporary)})
    status, _ = _call(f"{server.url}/api/signature/writers/writer6/references", "POST",
                      genuine("writer6", range(1, 4)), token=TOKEN)
    assert status == 200
    for _ in range(6):  # whichever worker answers sees the enrolment
        assert _call(f"{server.url}/api/signature/writers", token=TOKEN)[1] == [{"writer": "writer6", "references": 3}]
    assert len(list(temporary.glob("inkvoice-serve-*/inkvoice-serve-*"))) == 2  # a folder for each worker's uploads
    assert server.stop() == 0
    assert "Traceback" not in server.log.read_text()
    assert not list(temporary.iterdir())  # the uploads' folders went with the server


def test_a_worker_that_dies_costs_a_503_and_the_workers_start_again(serve, signature_model_path, tmp_path):
    import os
    import signal
    import time
    from pathlib import Path

    server = serve("--signature-model", signature_model_path, "--store", tmp_path / "store.sqlite", "--token", TOKEN,
                   "--workers", "1")
    assert _call(f"{server.url}/api/signature/writers/writer6/references", "POST", genuine("writer6", range(1, 4)),
                 token=TOKEN)[0] == 200
    children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children").read_text().split()
    workers = [int(pid) for pid in children
               if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text() and "resource_tracker" not in
               Path(f"/proc/{pid}/cmdline").read_text()]
    assert len(workers) == 1
    os.kill(workers[0], signal.SIGKILL)  # as the kernel's out-of-memory killer would
    time.sleep(1)
    status, body = _call(f"{server.url}/api/signature/writers/writer6/verify", "POST", genuine("writer6", [8]),
                         field="file")
    assert status == 503 and body == {"error": "a worker process of the server stopped; try again in a moment"}
    status, body = _call(f"{server.url}/api/signature/writers/writer6/verify", "POST", genuine("writer6", [8]),
                         field="file")
    assert status == 200 and body["writer"] == "writer6"
    assert server.stop() == 0
    assert "starting the workers again" in server.log.read_text()


def test_answers_leave_at_once():
    """Every connection has Nagle's algorithm off: an answer written in two parts is not held 40 ms for an ACK."""
    from inkvoice.serve.server import bind

    listening = bind("127.0.0.1", 0)
    with listening, socket.create_connection(listening.getsockname()[:2]) as client:
        accepted, _ = listening.accept()
        with accepted:
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    assert client.fileno() == -1
