"""The ``inkvoice serve`` command: its errors before serving, and a real server started and stopped."""

import json
import socket
import urllib.request

from click.testing import CliRunner

from inkvoice.cli import main
from tests.serve.conftest import SPEECH_SAMPLES


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
