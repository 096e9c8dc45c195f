"""The API as HTTP: writer names of any text in every endpoint, HEAD, gzip, "starting" before "ready",
and messages written for the client rather than for the command line."""

from urllib.parse import quote

import pytest

from tests.serve.conftest import SPEECH_SAMPLES, TOKEN, genuine
from tests.serve.test_api import AUTH, ApiClient, files_of


@pytest.fixture(scope="module")
def service(speech_model_path, signature_model_path, tmp_path_factory):
    from inkvoice.serve.service import Service

    store = tmp_path_factory.mktemp("http-store") / "writers.sqlite"
    service = Service(speech_model_path, signature_model_path, store=store, token=TOKEN)
    yield service
    service.close()


@pytest.fixture
def client(service):
    from fastapi.testclient import TestClient

    from inkvoice.serve.app import create_app

    with TestClient(create_app(service), raise_server_exceptions=False) as raw:
        yield ApiClient(raw, service)


NAMES = ["team/alice", "/leading", "trailing/", "a/references/1/thumbnail", "x/verify", "Ana María", "李 雷",
         "50% off? #1 & co", "back\\slash", "..hidden", "a/../b", "+plus+"]


@pytest.mark.parametrize("name", NAMES)
def test_writer_names_of_any_text_work_in_every_endpoint(client, name):
    url = f"/api/signature/writers/{quote(name, safe='')}"
    enrolled = client.post(f"{url}/references", headers=AUTH, files=files_of("files", genuine("writer6", range(1, 4))))
    assert enrolled.status_code == 200, enrolled.json()
    assert enrolled.json()["writer"] == name
    assert {"writer": name, "references": 3} in client.get("/api/signature/writers", headers=AUTH).json()
    listing = client.get(f"{url}/references", headers=AUTH)
    assert listing.status_code == 200 and listing.json()["writer"] == name
    for reference in listing.json()["references"]:
        picture = client.get(reference["thumbnail"], headers=AUTH)
        assert picture.status_code == 200 and picture.content.startswith(b"\x89PNG")
    verdict = client.post(f"{url}/verify", files=files_of("file", genuine("writer6", [8])))
    assert verdict.status_code == 200 and verdict.json()["writer"] == name
    removed = client.delete(url, headers=AUTH)
    assert removed.status_code == 200 and removed.json() == {"writer": name, "removed": 3}
    assert client.post(f"{url}/verify", files=files_of("file", genuine("writer6", [8]))).status_code == 404


@pytest.mark.parametrize("name", [".", ".."])
def test_dot_names_are_refused_at_enrolment_by_the_api(client, name):
    # Encoded, so that the client sends them; browsers and most clients would not even do that.
    response = client.post(f"/api/signature/writers/{name.replace('.', '%2E')}/references", headers=AUTH,
                           files=files_of("files", genuine("writer6", range(1, 4))))
    assert response.status_code == 400
    assert response.json()["error"].startswith(f"writer name {name!r} cannot be enrolled: web addresses read")


@pytest.mark.parametrize("name", [".", ".."])
def test_dot_names_are_refused_at_enrolment_by_the_cli(signature_model_path, tmp_path, name):
    from click.testing import CliRunner

    from inkvoice.signature.cli import main

    store = tmp_path / "store.sqlite"
    result = CliRunner().invoke(main, ["enroll", str(signature_model_path),
                                       *[str(p) for p in genuine("writer6", range(1, 4))], "--writer", name,
                                       "--store", str(store)])
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: writer name {name!r} cannot be enrolled: ")
    assert "Traceback" not in result.output


def test_dot_names_are_refused_by_the_store_itself(signature_model_path, tmp_path):
    import numpy as np

    from inkvoice.core.errors import ParameterError
    from inkvoice.signature.enrollment import open_store
    from inkvoice.signature.model_file import load_verifier

    verifier, _ = load_verifier(signature_model_path)
    with open_store(tmp_path / "store.sqlite", verifier.feature_parameters) as store:
        entries = [(f"{n}.png", f"digest{n}", np.ones(verifier.n_features) * n) for n in range(3)]
        with pytest.raises(ParameterError, match="cannot be enrolled"):
            store.add("..", entries, "model")
        assert store.writers() == []


@pytest.mark.parametrize("url", ["/healthz", "/", "/static/app.js", "/openapi.json", "/api/signature/writers"])
def test_head_answers_where_get_does(client, url):
    got = client.get(url, headers=AUTH)
    head = client.client.head(url, headers=AUTH)
    assert got.status_code == head.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == got.headers["content-type"]
    assert head.headers["content-length"] == got.headers["content-length"]


def test_json_answers_are_gzipped_for_clients_that_accept_it(client, service):
    writers = [f"gzip-writer-{n}" for n in range(12)]
    for writer in writers:
        assert client.post(f"/api/signature/writers/{writer}/references", headers=AUTH,
                           files=files_of("files", genuine("writer5", range(1, 4)))).status_code == 200
    for url in ("/openapi.json", "/api/signature/writers", "/static/app.js"):
        compressed = client.client.get(url, headers={**AUTH, "Accept-Encoding": "gzip"})
        assert compressed.headers["content-encoding"] == "gzip", url
        assert int(compressed.headers["content-length"]) < len(compressed.content)  # sent smaller than it reads
        plain = client.client.get(url, headers={**AUTH, "Accept-Encoding": "identity"})
        assert "content-encoding" not in plain.headers and plain.content == compressed.content
    explained = client.client.post(f"/api/signature/writers/{writers[0]}/verify?explain=1",
                                   headers={"Accept-Encoding": "gzip"}, files=files_of("file", genuine("writer5", [8])))
    assert explained.status_code == 200 and explained.headers["content-encoding"] == "gzip"
    assert explained.json()["explanation"]["image"].startswith("data:image/png;base64,")
    # PNG pictures are compressed already: they go out as they are.
    thumbnail = client.client.get(f"/api/signature/writers/{writers[0]}/references/1/thumbnail",
                                  headers={**AUTH, "Accept-Encoding": "gzip"})
    assert thumbnail.status_code == 200 and "content-encoding" not in thumbnail.headers
    for writer in writers:
        client.delete(f"/api/signature/writers/{writer}", headers=AUTH)


def test_a_starting_app_says_so_until_ready(service):
    from fastapi.testclient import TestClient

    from inkvoice.serve.app import create_app, set_ready
    from inkvoice.serve.workers import InProcess

    app = create_app(service, starting=True)
    with TestClient(app, raise_server_exceptions=False) as raw:
        client = ApiClient(raw, service)
        health = raw.get("/healthz")  # the health answer, not an error body: it says what is starting
        assert health.status_code == 503 and health.json()["status"] == "starting"
        assert health.headers["retry-after"] == "2"
        assert health.json()["models"].keys() == {"speech", "signature"}
        clip = files_of("file", [SPEECH_SAMPLES / "1" / "gb_130_35.wav"])
        busy = client.post("/api/speech/predict", files=clip)
        assert busy.status_code == 503 and busy.json() == {"error": "the server is starting; try again in a moment"}
        assert client.get("/").status_code == 200  # the page loads, and says the server is starting
        set_ready(app, InProcess(service))
        health = client.get("/healthz")
        assert health.status_code == 200 and health.json()["status"] == "ready"
        assert client.post("/api/speech/predict", files=clip).json()["label"] == "1"


def test_messages_name_no_command_line_option(client, tmp_path):
    import numpy as np
    import soundfile

    long_clip = tmp_path / "long.wav"
    soundfile.write(long_clip, np.zeros(8000 * 30, dtype=np.float32) + 0.01, 8000)
    response = client.post("/api/speech/predict", files=files_of("file", [long_clip]))
    assert response.status_code == 400
    message = response.json()["error"]
    assert message.startswith("long.wav: the clip lasts 30.0 s, longer than the limit of ") and "--" not in message
    too_large = client.post("/api/speech/predict", headers={"content-length": str(10**9)}, content=b"")
    assert too_large.status_code == 413 and "--" not in too_large.json()["error"]
