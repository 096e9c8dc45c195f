"""Privacy and abuse: writer lists and reference pictures need a token, verification is limited per client and
per writer (429 with Retry-After), and every enrolment, removal and verification goes to the audit log."""

import json

import pytest

from tests.serve.conftest import TOKEN, genuine
from tests.serve.test_api import AUTH, ApiClient, files_of

READ_TOKEN = "read-only-token"
READ = {"Authorization": f"Bearer {READ_TOKEN}"}


@pytest.fixture(scope="module")
def service(signature_model_path, tmp_path_factory):
    from inkvoice.serve.service import Service

    store = tmp_path_factory.mktemp("privacy-store") / "writers.sqlite"
    service = Service(signature_model=signature_model_path, store=store, token=TOKEN, read_token=READ_TOKEN)
    yield service
    service.close()


def app_client(service, address="203.0.113.7", **settings):
    from fastapi.testclient import TestClient

    from inkvoice.serve.app import create_app

    return TestClient(create_app(service, **settings), raise_server_exceptions=False, client=(address, 40000))


@pytest.fixture(scope="module")
def enrolled(service):
    """writer6 enrolled from genuine 1-4."""
    with app_client(service) as raw:
        response = raw.post("/api/signature/writers/writer6/references", headers=AUTH,
                            files=files_of("files", genuine("writer6", range(1, 5))))
        assert response.status_code == 200, response.text
    return "writer6"


def test_writer_lists_and_pictures_need_a_token(service, enrolled):
    with app_client(service) as raw:
        client = ApiClient(raw, service)
        for url in ("/api/signature/writers", "/api/signature/writers/writer6/references",
                    "/api/signature/writers/writer6/references/1/thumbnail"):
            anonymous = client.get(url)
            assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == "Bearer", url
            assert client.get(url, headers={"Authorization": "Bearer guess"}).status_code == 403, url
            assert client.get(url, headers=READ).status_code == 200, url
            assert client.get(url, headers=AUTH).status_code == 200, url
        # The read-only token reads, and nothing more.
        refused = client.post("/api/signature/writers/writer5/references", headers=READ,
                              files=files_of("files", genuine("writer5", range(1, 4))))
        assert refused.status_code == 403 and refused.json()["error"] == "the token is wrong"
        assert client.delete("/api/signature/writers/writer6", headers=READ).status_code == 403
        assert client.get("/api/signature/writers", headers=READ).json() == [{"writer": "writer6", "references": 4}]
        # Verification stays open: it answers a question about one signature, and is limited.
        verdict = client.post("/api/signature/writers/writer6/verify", files=files_of("file", genuine("writer6", [8])))
        assert verdict.status_code == 200


def test_without_any_token_lists_and_pictures_are_off(signature_model_path, tmp_path):
    from inkvoice.serve.service import Service

    service = Service(signature_model=signature_model_path, store=tmp_path / "store.sqlite")
    try:
        with app_client(service) as raw:
            client = ApiClient(raw, service)
            for token in (None, TOKEN):
                response = client.get("/api/signature/writers", headers={"Authorization": f"Bearer {token}"} if token
                                      else {})
                assert response.status_code == 403
                assert "private on this server" in response.json()["error"]
            assert client.get("/healthz").json()["enrolment"] is False
    finally:
        service.close()


def test_verification_is_limited_per_client(service, enrolled):
    from inkvoice.serve.guard import VerificationLimits

    limits = VerificationLimits(per_client=3, per_writer=0)
    signature = files_of("file", genuine("writer6", [8]))
    with app_client(service, limits=limits) as raw:
        client = ApiClient(raw, service)
        for _ in range(3):
            assert client.post("/api/signature/writers/writer6/verify", files=signature).status_code == 200
        refused = client.post("/api/signature/writers/writer6/verify", files=signature)
        assert refused.status_code == 429
        # The bucket refills at 3 an hour: one more in 20 minutes.
        assert 1180 <= int(refused.headers["retry-after"]) <= 1200
        assert refused.json()["error"].startswith("too many verifications from this client (at most 3 in an hour); "
                                                  "try again in ")
        # Another writer does not help this client, and other endpoints are not counted.
        assert client.post("/api/signature/writers/nobody/verify", files=signature).status_code == 429
        assert client.get("/healthz").status_code == 200
    with app_client(service, address="198.51.100.9", limits=limits) as raw:  # another client is not held back
        assert ApiClient(raw, service).post("/api/signature/writers/writer6/verify", files=signature).status_code == 200


def test_verification_is_limited_per_writer_whoever_asks(service, enrolled):
    from inkvoice.serve.guard import VerificationLimits

    limits = VerificationLimits(per_client=0, per_writer=2)
    signature = files_of("file", genuine("writer6", [8]))
    for number, address in enumerate(["192.0.2.1", "192.0.2.2", "192.0.2.3"]):
        with app_client(service, address=address, limits=limits) as raw:
            client = ApiClient(raw, service)
            response = client.post("/api/signature/writers/%20writer6/verify", files=signature)
            if number < 2:
                assert response.status_code == 200
            else:
                assert response.status_code == 429 and int(response.headers["retry-after"]) > 0
                assert "too many verifications of writer 'writer6' (at most 2 in an hour)" in response.json()["error"]


def test_the_limits_refill_with_time():
    from inkvoice.serve.guard import TooManyRequests, VerificationLimits

    now = [0.0]
    limits = VerificationLimits(per_client=2, per_writer=0, clock=lambda: now[0])
    limits.check("a", "w")
    limits.check("a", "w")
    with pytest.raises(TooManyRequests) as refused:
        limits.check("a", "w")
    assert refused.value.retry_after == 1800  # 2 an hour: one every 30 minutes
    now[0] = 1799.0
    with pytest.raises(TooManyRequests):
        limits.check("a", "w")
    now[0] = 1800.0
    limits.check("a", "w")


def test_a_refused_verification_is_not_counted_against_the_writer():
    from inkvoice.serve.guard import TooManyRequests, VerificationLimits

    limits = VerificationLimits(per_client=1, per_writer=3, clock=lambda: 0.0)
    limits.check("a", "w")
    for _ in range(5):
        with pytest.raises(TooManyRequests, match="from this client"):
            limits.check("a", "w")
    limits.check("b", "w")
    limits.check("c", "w")
    with pytest.raises(TooManyRequests, match="of writer 'w'"):
        limits.check("d", "w")


def test_the_audit_log_records_every_enrolment_removal_and_verification(service, tmp_path, clearest_forgery):
    from inkvoice.serve.guard import AuditLog, VerificationLimits

    path = tmp_path / "audit.jsonl"
    audit = AuditLog(path)
    try:
        with app_client(service, address="192.0.2.44", audit=audit,
                        limits=VerificationLimits(per_client=2, per_writer=0)) as raw:
            client = ApiClient(raw, service)
            assert client.post("/api/signature/writers/writer5/references", headers=AUTH,
                               files=files_of("files", genuine("writer5", range(1, 7)))).status_code == 200
            assert client.post("/api/signature/writers/writer5/references", headers={"Authorization": "Bearer x"},
                               files=files_of("files", genuine("writer5", range(7, 10)))).status_code == 403
            genuine_answer = client.post("/api/signature/writers/writer5/verify",
                                         files=files_of("file", genuine("writer5", [9]))).json()
            forged_answer = client.post("/api/signature/writers/writer5/verify",
                                        files=files_of("file", [clearest_forgery])).json()
            assert client.post("/api/signature/writers/writer5/verify",
                               files=files_of("file", [clearest_forgery])).status_code == 429
            assert client.delete("/api/signature/writers/writer5", headers=AUTH).status_code == 200
            assert client.get("/api/signature/writers", headers=AUTH).status_code == 200  # reading is not audited
    finally:
        audit.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(line["action"], line["status"]) for line in lines] == [
        ("enrol", 200), ("enrol", 403), ("verify", 200), ("verify", 200), ("verify", 429), ("remove", 200)]
    for line in lines:
        assert {"time", "client", "writer", "action", "verdict", "score"} <= set(line)
        assert line["client"] == "192.0.2.44" and line["writer"] == "writer5"
        assert line["time"].endswith("+00:00")
    assert lines[0]["references"] == 6 and lines[0]["verdict"] is None
    assert lines[1]["error"] == "the token is wrong"
    assert (lines[2]["verdict"], lines[2]["score"]) == (genuine_answer["verdict"], round(genuine_answer["score"], 4))
    assert (lines[3]["verdict"], lines[3]["score"]) == ("forged", round(forged_answer["score"], 4))
    assert lines[4]["verdict"] is None and lines[4]["error"].startswith("too many verifications")
    assert lines[5]["references"] == 6


def test_an_audit_log_that_cannot_be_written_stops_the_server_at_start(signature_model_path, tmp_path):
    from click.testing import CliRunner

    from inkvoice.cli import main

    result = CliRunner().invoke(main, ["serve", "--signature-model", str(signature_model_path), "--port", "0",
                                       "--audit-log", str(tmp_path / "no-such-folder" / "audit.jsonl")])
    assert result.exit_code == 1
    assert result.output.startswith("Error: cannot write the audit log ") and "No such file or directory" in result.output
    assert "Traceback" not in result.output
