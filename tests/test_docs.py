"""The documents stay true: the site builds strictly, and every command of the README's quick start runs."""

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# Installing packages is what set-up does; the test environment already holds every extra.
INSTALL = re.compile(r"^(pip|python -m pip|python3 -m venv) ")
READY_SECONDS = 600  # an upper bound for a very busy machine; the wait ends as soon as the server answers


def quick_start():
    """The README's quick start: its shell commands in order, and its Python blocks."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", section, flags=re.S):
        for line in block.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not INSTALL.match(line):
                commands.append(line)
    python = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    return commands, python


def test_documentation_site_builds_strictly(tmp_path):
    pytest.importorskip("mkdocs", reason="the docs extra is not installed: pip install -e '.[docs]'")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            cwd=ROOT, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "site" / "reference" / "core" / "index.html").read_text().count("MlpClassifier") > 3


def test_readme_links_point_at_files():
    for target in re.findall(r"\]\((docs/[^)#]+)", README.read_text(encoding="utf-8")):
        assert (ROOT / target).is_file(), target


def _my_digits(folder):
    """What a user fine-tuning on their own voice has: five takes per digit, named the FSDD way."""
    voice = sorted((ROOT / "data" / "speech" / "0").glob("*.wav"))[0].name.split("_")[0]
    for digit in range(10):
        takes = sorted((ROOT / "data" / "speech" / str(digit)).glob(f"{voice}_*.wav"))
        (folder / str(digit)).mkdir(parents=True)
        for number, take in enumerate(takes[:5]):
            shutil.copy(take, folder / str(digit) / f"{digit}_me_{number}.wav")


def _run(command, cwd):
    # The README's commands are for a shell (globs); the shell runs them with this environment's tools.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(command, shell=True, cwd=cwd, capture_output=True, text=True, env=env)


def _serve(command, cwd):
    """Start the README's server on a free port; return it and the address it printed once ready."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    process = subprocess.Popen(f"{command} --port 0", shell=True, cwd=cwd, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    lines = []
    address = None
    # The server prints its address as soon as it listens, and "ready:" once its workers have
    # loaded the models (until then its jobs answer 503).
    for line in process.stdout:
        lines.append(line)
        found = re.search(r"http://127\.0\.0\.1:\d+", line)
        address = address or (found.group(0) if found else None)
        if address and line.startswith("ready:"):
            return process, address
    raise AssertionError("the server stopped before it was ready:\n" + "".join(lines))


@pytest.mark.skipif(shutil.which("sh") is None, reason="the README's commands are shell commands")
def test_every_quick_start_command_runs_and_answers_right(tmp_path):
    pytest.importorskip("fastapi", reason="the quick start's service needs the 'serve' extra")
    os.symlink(ROOT / "data", tmp_path / "data")
    _my_digits(tmp_path / "my_digits")
    commands, python = quick_start()
    assert len(commands) >= 12 and python
    server = None
    outputs = {}
    try:
        for command in commands:
            if " serve " in f" {command} ":
                server, address = _serve(command, tmp_path)
                continue
            if command.startswith("curl "):
                if shutil.which("curl") is None:
                    continue
                command = command.replace("http://127.0.0.1:8000", address)
            result = _run(command, tmp_path)
            assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
            assert "Traceback" not in result.stderr, command
            outputs[command] = result.stdout
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=READY_SECONDS)
    namespace = {}
    previous = os.getcwd()
    os.chdir(tmp_path)
    try:
        for block in python:
            exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 - the README's own example
    finally:
        os.chdir(previous)

    def answer(prefix):
        return next(out for command, out in outputs.items() if command.startswith(prefix))

    # What the README promises the demo models answer.
    assert answer("speech predict digits.npz data/speech/7/").split("\t")[1] == "7"
    assert answer("speech transcribe digits.npz data/speech_strings/us_5551234.wav").strip().split("\t")[1] == "5551234"
    table = answer("signature verify demo.npz --writer writer5 data/signatures/writer5/genuine/07.png").splitlines()
    assert [line.split()[:2] for line in table[1:]] == [["data/signatures/writer5/genuine/07.png", "genuine"],
                                                        ["data/signatures/writer5/forged/03.png", "forged"]]
    assert list((tmp_path / "why").glob("*.png"))
    assert (tmp_path / "mine.npz").is_file() and (tmp_path / "confusion.png").is_file()
