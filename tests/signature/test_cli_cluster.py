"""`signature enroll` and `verify` with --scheduler on a real local Dask cluster answer as a local run."""

import json

from click.testing import CliRunner

from inkvoice.signature.cli import main


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def test_enrol_and_verify_on_a_cluster_as_on_this_machine(dask_scheduler, sample_model, samples_dir, tmp_path):
    model, _ = sample_model
    genuine = sorted((samples_dir / "writer5" / "genuine").iterdir())
    bad = tmp_path / "scan.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    queries = [genuine[7], tmp_path / "absent.png", bad, *sorted((samples_dir / "writer5" / "forged").iterdir())[:3]]
    cluster = ["--scheduler", dask_scheduler]
    answers = {}
    for name, options in {"local": [], "cluster": cluster, "sent": [*cluster, "--send-files"]}.items():
        store = tmp_path / f"{name}.sqlite"
        code, out, err = run("enroll", model, "--writer", "writer5", "--store", store, "--no-cache", *options,
                             *genuine[:6])
        assert (code, out.strip()) == (0, "writer writer5: 6 reference(s) added, 6 in total"), err
        answers[name] = run("verify", model, "--writer", "writer5", "--store", store, "--json", "--no-cache", *options,
                            *queries)
    code, out, err = answers["local"]
    assert code == 1 and "Traceback" not in err
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) == len(queries) and sum("error" in record for record in records) == 2
    assert err.count("Error: ") == 2
    assert answers["cluster"] == answers["local"] and answers["sent"] == answers["local"]
