"""The JSON API, called in-process: answers, errors and their statuses, tokens, limits, no server path in any answer."""

import base64
import io
import sqlite3

import pytest

from tests.serve.conftest import SIGNATURE_SAMPLES, SPEECH_SAMPLES, TOKEN, genuine

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def service(speech_model_path, signature_model_path, tmp_path_factory):
    from inkvoice.serve.service import Service

    store = tmp_path_factory.mktemp("api-store") / "writers.sqlite"
    service = Service(speech_model_path, signature_model_path, store=store, token=TOKEN, busy_seconds=0.5)
    yield service
    service.close()


@pytest.fixture
def client(service):
    from fastapi.testclient import TestClient

    from inkvoice.serve.app import create_app

    with TestClient(create_app(service), raise_server_exceptions=False) as client:
        yield ApiClient(client, service)


class ApiClient:
    """A test client that checks every error answer: JSON with a message, and no path of the server."""

    def __init__(self, client, service):
        self.client = client
        self.service = service

    def request(self, method, url, **kwargs):
        response = self.client.request(method, url, **kwargs)
        if response.status_code >= 400:
            body = response.json()
            assert set(body) == {"error"} and body["error"], body
            secrets = [str(self.service._uploads), str(self.service.store_location.parent),
                       str(SIGNATURE_SAMPLES.parent)]
            assert not any(secret in body["error"] for secret in secrets), body
            assert "Traceback" not in body["error"]
        return response

    def get(self, url, **kwargs):
        return self.request("GET", url, **kwargs)

    def post(self, url, **kwargs):
        return self.request("POST", url, **kwargs)

    def delete(self, url, **kwargs):
        return self.request("DELETE", url, **kwargs)


def files_of(field, paths):
    return [(field, (path.name, path.read_bytes(), "application/octet-stream")) for path in paths]


def test_health_names_both_models_and_their_versions(client, speech_model_path, signature_model_path):
    body = client.get("/healthz").json()
    assert body["status"] == "ready"
    assert body["models"]["speech"]["name"] == speech_model_path.name
    assert body["models"]["signature"]["name"] == signature_model_path.name
    assert len(body["models"]["speech"]["version"]) == 16
    assert body["models"]["speech"]["labels"] == [str(d) for d in range(10)]
    assert str(speech_model_path.parent) not in str(body)


@pytest.mark.parametrize("digit, speaker", [("0", "gb_130_35"), ("4", "us_200_65"), ("9", "rp-f2_165_50")])
def test_speech_predict_answers_the_digit(client, service, digit, speaker):
    path = SPEECH_SAMPLES / digit / f"{speaker}.wav"
    response = client.post("/api/speech/predict", files=files_of("file", [path]))
    assert response.status_code == 200
    body = response.json()
    assert body["label"] == digit and body["file"] == path.name
    assert len(body["top"]) == 3
    assert body["top"][0] == {"label": digit, "probability": body["confidence"]}
    probabilities = [entry["probability"] for entry in body["top"]]
    assert probabilities == sorted(probabilities, reverse=True)
    # The same answer as the library gives for the file itself.
    from inkvoice.core.extraction import ExtractionSettings

    (record,) = service.speech.predict_files([path], top_k=3, extraction=ExtractionSettings(n_jobs=1, cache=False))
    assert body["confidence"] == record["confidence"] and body["top"] == record["top"]


def test_speech_predict_top_k_and_its_bounds(client):
    path = SPEECH_SAMPLES / "5" / "gb_165_50.wav"
    assert len(client.post("/api/speech/predict?top_k=10", files=files_of("file", [path])).json()["top"]) == 10
    response = client.post("/api/speech/predict?top_k=0", files=files_of("file", [path]))
    assert response.status_code == 400 and "top_k" in response.json()["error"]


@pytest.mark.parametrize("payload, expected", [
    (b"not audio at all", "not a readable audio file"),
    (b"", "empty"),
    (b"RIFF\x24\x00\x00\x00WAVEfmt ", "not a readable audio file"),
])
def test_speech_predict_bad_files_are_400_naming_the_file(client, payload, expected):
    response = client.post("/api/speech/predict", files=[("file", ("call-0412.wav", payload, "audio/wav"))])
    assert response.status_code == 400
    message = response.json()["error"]
    assert message.startswith("call-0412.wav: ") and expected in message


def test_file_names_from_clients_are_neutralised(client):
    response = client.post("/api/speech/predict", files=[("file", ("../../etc/passwd", b"x", "audio/wav"))])
    assert response.status_code == 400
    assert response.json()["error"].startswith("passwd: ")
    response = client.post("/api/speech/predict", files=[("file", ("Anruf Müller.wav", b"x", "audio/wav"))])
    assert response.json()["error"].startswith("Anruf Müller.wav: ")


@pytest.mark.parametrize("given, kept", [("a\x07b.wav", "a_b.wav"), ("C:\\scans\\x.png", "x.png"), ("..", "upload"),
                                         ("", "upload"), ("n" * 300 + ".wav", "n" * 80)])
def test_public_names(given, kept):
    from inkvoice.serve.service import public_name

    assert public_name(given) == kept


def test_missing_upload_field_is_400(client):
    response = client.post("/api/speech/predict", files=[("wrong", ("a.wav", b"x", "audio/wav"))])
    assert response.status_code == 400
    assert response.json()["error"] == "the multipart field 'file' is missing"
    response = client.post("/api/speech/predict", content=b"plain body", headers={"content-type": "text/plain"})
    assert response.status_code == 400


def test_enrolment_needs_the_token(client):
    references = files_of("files", genuine("writer6", range(1, 4)))
    response = client.post("/api/signature/writers/writer6/references", files=references)
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    response = client.post("/api/signature/writers/writer6/references", files=references,
                           headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 403 and response.json()["error"] == "the token is wrong"
    response = client.post("/api/signature/writers/writer6/references", files=references,
                           headers={"Authorization": f"Basic {TOKEN}"})
    assert response.status_code == 401
    assert client.delete("/api/signature/writers/writer6").status_code == 401
    assert client.delete("/api/signature/writers/writer6", headers={"Authorization": "Bearer no"}).status_code == 403
    assert "writer6" not in [w["writer"] for w in client.get("/api/signature/writers", headers=AUTH).json()]


def test_enrol_verify_and_remove_a_writer(client, clearest_forgery):
    response = client.post("/api/signature/writers/writer5/references",
                           files=files_of("files", genuine("writer5", range(1, 7))), headers=AUTH)
    assert response.status_code == 200
    assert response.json() == {"writer": "writer5", "added": 6, "references": 6}
    assert {"writer": "writer5", "references": 6} in client.get("/api/signature/writers", headers=AUTH).json()

    for number in (7, 8, 9, 10):
        response = client.post("/api/signature/writers/writer5/verify",
                               files=files_of("file", genuine("writer5", [number])))
        body = response.json()
        assert response.status_code == 200, body
        assert body["genuine"] is True and body["verdict"] == "genuine" and body["score"] >= body["threshold"]
        assert body["references"] == 6 and body["mode"] == "independent" and body["file"] == f"{number:02d}.png"
    body = client.post("/api/signature/writers/writer5/verify", files=files_of("file", [clearest_forgery])).json()
    assert body["genuine"] is False and body["verdict"] == "forged" and body["score"] < body["threshold"]
    dependent = client.post("/api/signature/writers/writer5/verify?mode=dependent",
                            files=files_of("file", [clearest_forgery]))
    assert dependent.status_code == 200 and dependent.json()["mode"] == "dependent"
    explained = client.post("/api/signature/writers/writer5/verify?explain=1",
                            files=files_of("file", [clearest_forgery]))
    body = explained.json()
    assert explained.status_code == 200 and body["verdict"] == "forged"
    assert body["explanation"]["image"].startswith("data:image/png;base64,")
    picture = base64.b64decode(body["explanation"]["image"].split(",", 1)[1])
    assert picture.startswith(b"\x89PNG") and len(picture) > 5000
    assert body["explanation"]["groups"] and body["explanation"]["summary"]
    assert 0 <= body["explanation"]["nearest_reference"] < 6
    assert body["explanation"]["reference_shown"] == "picture"
    bad_mode = client.post("/api/signature/writers/writer5/verify?mode=strict",
                           files=files_of("file", [clearest_forgery]))
    assert bad_mode.status_code == 400 and "mode" in bad_mode.json()["error"]

    response = client.delete("/api/signature/writers/writer5", headers=AUTH)
    assert response.status_code == 200 and response.json() == {"writer": "writer5", "removed": 6}
    response = client.post("/api/signature/writers/writer5/verify", files=files_of("file", genuine("writer5", [7])))
    assert response.status_code == 404 and response.json()["error"] == "writer 'writer5' is not enrolled"
    assert client.delete("/api/signature/writers/writer5", headers=AUTH).status_code == 404


def test_enrolment_is_all_or_nothing(client):
    good = files_of("files", genuine("writer6", range(1, 4)))
    response = client.post("/api/signature/writers/writer6/references", headers=AUTH,
                           files=good + [("files", ("scan-4.png", b"no picture here", "image/png"))])
    assert response.status_code == 400
    message = response.json()["error"]
    assert message.startswith("nothing enrolled for writer 'writer6': scan-4.png: ") and "not an image" in message
    assert "writer6" not in [w["writer"] for w in client.get("/api/signature/writers", headers=AUTH).json()]
    too_few = client.post("/api/signature/writers/writer6/references", headers=AUTH, files=good[:2])
    assert too_few.status_code == 400 and "at least 3 are needed" in too_few.json()["error"]
    assert "writer6" not in [w["writer"] for w in client.get("/api/signature/writers", headers=AUTH).json()]
    no_files = client.post("/api/signature/writers/writer6/references", headers=AUTH, data={"other": "1"})
    assert no_files.status_code == 400


def test_verify_errors(client):
    enrol = client.post("/api/signature/writers/writer4/references", headers=AUTH,
                        files=files_of("files", genuine("writer4", range(1, 4))))
    assert enrol.status_code == 200
    unknown = client.post("/api/signature/writers/nobody/verify", files=files_of("file", genuine("writer4", [5])))
    assert unknown.status_code == 404
    blank = io.BytesIO()
    from PIL import Image

    Image.new("L", (300, 120), 240).save(blank, format="PNG")
    response = client.post("/api/signature/writers/writer4/verify",
                           files=[("file", ("blank.png", blank.getvalue(), "image/png"))])
    assert response.status_code == 400 and response.json()["error"].startswith("blank.png: blank page")
    long_name = client.post("/api/signature/writers/" + "x" * 300 + "/verify",
                            files=files_of("file", genuine("writer4", [5])))
    assert long_name.status_code == 400 and "at most 200 characters" in long_name.json()["error"]
    spaced = client.post("/api/signature/writers/%20writer4%20/verify", files=files_of("file", genuine("writer4", [5])))
    assert spaced.status_code == 200 and spaced.json()["writer"] == "writer4"


def test_uploads_over_the_limit_are_413(service):
    from fastapi.testclient import TestClient

    from inkvoice.serve.app import create_app

    with TestClient(create_app(service, max_upload_mb=0.1), raise_server_exceptions=False) as client:
        big = b"\0" * 300_000
        response = client.post("/api/speech/predict", files=[("file", ("long.wav", big, "audio/wav"))])
        assert response.status_code == 413 and "0.1 MB" in response.json()["error"]

        def chunks():  # no Content-Length: counted as it arrives
            for _ in range(30):
                yield b"\0" * 10_000

        response = client.post("/api/speech/predict", content=chunks(),
                               headers={"content-type": "multipart/form-data; boundary=x"})
        assert response.status_code == 413
        small = client.post("/api/speech/predict", files=files_of("file", [SPEECH_SAMPLES / "1" / "gb_130_35.wav"]))
        assert small.status_code == 200


def test_a_busy_store_is_503(client, service):
    client.post("/api/signature/writers/writer3/references", headers=AUTH,
                files=files_of("files", genuine("writer3", range(1, 4))))
    blocker = sqlite3.connect(service.store_location)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        response = client.get("/api/signature/writers", headers=AUTH)
        assert response.status_code == 503 and "busy" in response.json()["error"]
        response = client.post("/api/signature/writers/writer2/references", headers=AUTH,
                               files=files_of("files", genuine("writer2", range(1, 4))))
        assert response.status_code == 503 and "busy" in response.json()["error"]
    finally:
        blocker.rollback()
        blocker.close()
    assert client.get("/api/signature/writers", headers=AUTH).status_code == 200


def test_unexpected_failures_reach_the_client_as_internal_error(client, service, monkeypatch):
    def broken():
        raise RuntimeError(f"{service._uploads}/secret state")

    monkeypatch.setattr(service, "writers", broken)
    response = client.get("/api/signature/writers", headers=AUTH)
    assert response.status_code == 500
    assert response.json() == {"error": "internal error; the server's log has the details"}


def digit_string(folder, digits, voice="gb_165_50", pause=0.35):
    """A recording of ``digits`` said one after another by one sample voice, with pauses."""
    import numpy as np
    import soundfile

    parts = []
    for digit in digits:
        samples, rate = soundfile.read(SPEECH_SAMPLES / digit / f"{voice}.wav", dtype="float32")
        parts += [np.zeros(int(pause * rate), dtype=np.float32), samples]
    path = folder / f"{digits}.wav"
    soundfile.write(path, np.concatenate(parts + [np.zeros(int(pause * rate), dtype=np.float32)]), rate)
    return path


def test_transcribe_reads_a_digit_string(client, service, tmp_path):
    path = digit_string(tmp_path, "371")
    response = client.post("/api/speech/transcribe", files=files_of("file", [path]))
    assert response.status_code == 200
    body = response.json()
    assert body["file"] == "371.wav" and body["digits"] == "371"
    assert [segment["label"] for segment in body["segments"]] == ["3", "7", "1"]
    starts = [segment["start"] for segment in body["segments"]]
    assert starts == sorted(starts) and all(s["end"] > s["start"] for s in body["segments"])
    (record,) = service.speech.transcribe_files([path], extraction=service._extraction())
    assert body["segments"] == record["segments"]
    bad = client.post("/api/speech/transcribe", files=[("file", ("line.wav", b"noise", "audio/wav"))])
    assert bad.status_code == 400 and bad.json()["error"].startswith("line.wav: ")


def test_schema_page_and_unknown_routes(client):
    schema = client.get("/openapi.json").json()
    for path in ("/healthz", "/api/speech/predict", "/api/speech/transcribe", "/api/signature/writers",
                 "/api/signature/writers/{writer}/references", "/api/signature/writers/{writer}",
                 "/api/signature/writers/{writer}/verify"):
        assert path in schema["paths"]
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    page = client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    for asset in ("app.js", "style.css", "icon.svg"):
        assert client.get(f"/static/{asset}").status_code == 200
    missing = client.get("/api/nothing")
    assert missing.status_code == 404 and missing.json() == {"error": "Not Found"}
    assert client.request("PUT", "/healthz").status_code == 405


def test_a_server_without_token_refuses_enrolment(speech_model_path, signature_model_path, tmp_path):
    from fastapi.testclient import TestClient

    from inkvoice.serve.app import create_app
    from inkvoice.serve.service import Service

    service = Service(None, signature_model_path, store=tmp_path / "store.sqlite")
    try:
        with TestClient(create_app(service), raise_server_exceptions=False) as client:
            response = client.post("/api/signature/writers/w/references", headers=AUTH,
                                   files=files_of("files", genuine("writer6", range(1, 4))))
            assert response.status_code == 403 and response.json()["error"] == (
                "enrolment and removal are turned off on this server (it has no enrolment token)")
            assert client.get("/healthz").json()["models"].keys() == {"signature"}
            speech = client.post("/api/speech/predict",
                                 files=files_of("file", [SPEECH_SAMPLES / "1" / "gb_130_35.wav"]))
            assert speech.status_code == 404 and "no speech model" in speech.json()["error"]
    finally:
        service.close()


def test_reference_pictures_of_a_writer(client, service):
    from PIL import Image

    client.delete("/api/signature/writers/writer6", headers=AUTH)
    response = client.post("/api/signature/writers/writer6/references", headers=AUTH,
                           files=files_of("files", genuine("writer6", range(1, 5))))
    assert response.status_code == 200
    assert client.get("/api/signature/writers/writer6/references").status_code == 401  # private
    listing = client.get("/api/signature/writers/writer6/references", headers=AUTH)
    assert listing.status_code == 200
    body = listing.json()
    assert body["writer"] == "writer6"
    assert [(r["number"], r["source"]) for r in body["references"]] == [(n, f"0{n}.png") for n in range(1, 5)]
    for reference in body["references"]:
        assert reference["thumbnail"] == f"/api/signature/writers/writer6/references/{reference['number']}/thumbnail"
        picture = client.get(reference["thumbnail"], headers=AUTH)
        assert picture.status_code == 200 and picture.headers["content-type"] == "image/png"
        assert picture.headers["cache-control"] == "private, no-cache"
        assert client.get(reference["thumbnail"]).status_code == 401
        image = Image.open(io.BytesIO(picture.content))
        assert image.width <= 200 and image.height <= 100 and len(picture.content) < 8192
    assert client.get("/api/signature/writers/writer6/references/5/thumbnail", headers=AUTH).status_code == 404
    assert client.get("/api/signature/writers/writer6/references/0/thumbnail", headers=AUTH).status_code == 400
    assert client.get("/api/signature/writers/nobody/references", headers=AUTH).status_code == 404
    assert client.get("/api/signature/writers/nobody/references/1/thumbnail", headers=AUTH).status_code == 404
    # Pictures removed behind inkvoice's back are damage, as changed features are.
    sqlite3.connect(service.store_location, isolation_level=None).execute(
        "UPDATE refs SET thumbnail = NULL WHERE writer = 'writer6'")
    damaged = client.get("/api/signature/writers/writer6/references", headers=AUTH)
    assert damaged.status_code == 500 and "damaged" in damaged.json()["error"]  # changed behind inkvoice's back
    client.delete("/api/signature/writers/writer6", headers=AUTH)


def test_a_store_made_before_pictures_were_kept_lists_references_without_them(signature_model_path, tmp_path):
    from fastapi.testclient import TestClient

    from inkvoice.serve.app import create_app
    from inkvoice.serve.service import Service
    from tests.serve.conftest import store_without_pictures

    store = store_without_pictures(signature_model_path, tmp_path / "old.sqlite", "writer4", range(1, 4))
    service = Service(signature_model=signature_model_path, store=store, token=TOKEN)
    try:
        with TestClient(create_app(service), raise_server_exceptions=False) as raw:
            client = ApiClient(raw, service)
            body = client.get("/api/signature/writers/writer4/references", headers=AUTH).json()
            assert [(r["number"], r["thumbnail"]) for r in body["references"]] == [(1, None), (2, None), (3, None)]
            missing = client.get("/api/signature/writers/writer4/references/2/thumbnail", headers=AUTH)
            assert missing.status_code == 404
            assert "enrolled before the store kept pictures" in missing.json()["error"]
            verdict = client.post("/api/signature/writers/writer4/verify", files=files_of("file", genuine("writer4", [7])))
            assert verdict.status_code == 200 and verdict.json()["references"] == 3
    finally:
        service.close()


def test_the_service_fails_closed_as_the_cli_does(client, tmp_path):
    import numpy as np
    from PIL import Image

    rows = np.full((120, 300), 255, np.uint8)
    rows[0:20:2, :] = 0  # ten black rows at the top of a white page: once "genuine" at 81
    probe = tmp_path / "rows.png"
    Image.fromarray(rows).save(probe)
    rng = np.random.default_rng(0)
    noise = tmp_path / "noise.png"
    Image.fromarray((rng.random((120, 300)) * 255).astype(np.uint8)).save(noise)
    response = client.post("/api/signature/writers/poisoned/references",
                           files=files_of("files", [*genuine("writer6", range(1, 6)), noise]), headers=AUTH)
    assert response.status_code in (400, 422) and "noise.png" in response.json()["error"]
    assert "refused as a reference" in response.json()["error"]
    response = client.post("/api/signature/writers/writer6/references",
                           files=files_of("files", genuine("writer6", range(1, 7))), headers=AUTH)
    assert response.status_code == 200, response.json()
    body = client.post("/api/signature/writers/writer6/verify", files=files_of("file", [probe])).json()
    assert body["verdict"] == "forged" and body["genuine"] is False
    assert "not like any signature the model was trained on" in body["reason"]
