"""Files: atomic writes (all or nothing, ordinary permissions), outputs checked before the work,
inputs that must be regular files of bounded size, and faults while writing."""

import os

import pytest

from inkvoice.core.errors import DataError, OutputError
from inkvoice.core.files import atomic_path, check_input_file, check_output_path, read_input_bytes


def test_written_file_gets_the_usual_permissions(tmp_path):
    previous = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "out.txt") as temporary:
            temporary.write_text("done")
    finally:
        os.umask(previous)
    assert (tmp_path / "out.txt").read_text() == "done"
    assert (tmp_path / "out.txt").stat().st_mode & 0o777 == 0o644


def test_failure_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temporary:
            temporary.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


# Outputs: refused before any work when they cannot be written; failures while writing end in
# one OutputError and leave the previous file.

@pytest.mark.parametrize("target, message", [
    ("/dev/full", "a character device; only a regular file or a new name"),
    ("/dev/null", "a character device"),
    ("{tmp}/fifo", "a named pipe"),
    ("{tmp}", "a folder"),
    ("{tmp}/plain.txt/model.npz", "plain.txt is a file, not a folder"),
    ("{tmp}/loop", "a loop of symbolic links"),
])
def test_outputs_that_are_not_files_are_refused(tmp_path, target, message):
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "plain.txt").write_text("x")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(OutputError, match=message):
        check_output_path(target.format(tmp=tmp_path))


def test_a_new_path_and_a_regular_file_are_accepted(tmp_path):
    (tmp_path / "old.npz").write_text("old")
    assert check_output_path(tmp_path / "old.npz") == tmp_path / "old.npz"
    assert check_output_path(tmp_path / "new" / "deeper" / "model.npz").name == "model.npz"
    assert [p.name for p in tmp_path.iterdir()] == ["old.npz"]  # the write test leaves nothing behind


def test_a_symbolic_link_to_a_file_is_written_through(tmp_path):
    (tmp_path / "real.txt").write_text("old")
    (tmp_path / "link.txt").symlink_to(tmp_path / "real.txt")
    with atomic_path(tmp_path / "link.txt") as temporary:
        temporary.write_text("new")
    assert (tmp_path / "link.txt").is_symlink() and (tmp_path / "real.txt").read_text() == "new"


def test_a_read_only_filesystem_is_refused_before_the_work():
    if os.access("/proc", os.W_OK) and not os.path.ismount("/proc"):
        pytest.skip("/proc is not a read-only mount here")
    with pytest.raises(OutputError, match="cannot be written"):
        check_output_path("/proc/model.npz")


def _in_subprocess_with_file_size_limit(code, limit):
    import resource
    import subprocess
    import sys

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, preexec_fn=limit_file_size,
                          timeout=60)


def test_a_file_size_limit_is_found_before_the_work(tmp_path):
    code = (f"from inkvoice.core.files import check_output_path\n"
            f"try:\n    check_output_path({str(tmp_path / 'model.npz')!r})\n"
            f"except Exception as error:\n    print(type(error).__name__, error)\n")
    result = _in_subprocess_with_file_size_limit(code, 1000)
    assert "OutputError" in result.stdout and "file-size limit of this process is 1,000 bytes" in result.stdout


def test_a_write_cut_short_by_a_file_size_limit_keeps_the_old_file(tmp_path):
    target = tmp_path / "model.bin"
    target.write_bytes(b"old model")
    code = (f"from inkvoice.core.files import write_bytes_atomic\n"
            f"try:\n    write_bytes_atomic({str(target)!r}, bytes(5 * 2**20))\n"
            f"except Exception as error:\n    print(type(error).__name__, error)\n")
    result = _in_subprocess_with_file_size_limit(code, 2**20 + 10)
    assert result.stdout.startswith("OutputError") and "could not be written (File too large)" in result.stdout
    assert "Traceback" not in result.stderr
    assert target.read_bytes() == b"old model"
    assert [p.name for p in tmp_path.iterdir()] == ["model.bin"]


def test_a_full_disk_while_writing_keeps_the_old_file(tmp_path, monkeypatch):
    import errno

    target = tmp_path / "plot.png"
    target.write_bytes(b"old plot")
    with pytest.raises(OutputError, match="plot.png: could not be written .*No space left on device.*unchanged"):
        with atomic_path(target, suffix=".png") as temporary:
            temporary.write_bytes(b"half")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert target.read_bytes() == b"old plot"
    assert [p.name for p in tmp_path.iterdir()] == ["plot.png"]


def test_little_free_space_is_found_before_the_work(tmp_path, monkeypatch):
    class Nearly:
        f_bavail, f_frsize = 10, 4096

    monkeypatch.setattr(os, "statvfs", lambda folder: Nearly)
    with pytest.raises(OutputError, match="40,960 bytes free"):
        check_output_path(tmp_path / "model.npz")


# Inputs: only regular files of bounded size are read.

@pytest.mark.parametrize("kind, message", [
    ("missing", "no such audio file"),
    ("fifo", r"a named pipe \(FIFO\), not an audio file"),
    ("zero", "a character device, not an audio file"),
    ("folder", "a folder, not an audio file"),
    ("loop", "a loop of symbolic links"),
    ("dangling", "a symbolic link to .*, which does not exist"),
    ("large", "over the limit of 100 bytes"),
])
def test_inputs_that_are_not_regular_files_are_refused_before_reading(tmp_path, kind, message):
    path = tmp_path / "input.wav"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "zero":
        path.symlink_to("/dev/zero")
    elif kind == "folder":
        path.mkdir()
    elif kind == "loop":
        path.symlink_to(path)
    elif kind == "dangling":
        path.symlink_to(tmp_path / "gone.wav")
    elif kind == "large":
        path.write_bytes(bytes(101))
    for check in (check_input_file, read_input_bytes):
        with pytest.raises(DataError, match=message):
            check(path, max_bytes=100, what="audio file")


def test_reading_is_bounded_even_when_the_file_grows(tmp_path):
    path = tmp_path / "input.bin"
    path.write_bytes(b"abc")
    assert read_input_bytes(path, max_bytes=3) == b"abc"
    with pytest.raises(DataError, match="over the limit of 2 bytes"):
        read_input_bytes(path, max_bytes=2)


@pytest.mark.parametrize("arguments", [
    ["speech", "train", "data/speech", "-o", "{output}"],
    ["speech", "evaluate", "{model}", "data/speech", "--confusion-png", "{output}"],
    ["speech", "evaluate", "{model}", "data/speech", "--curve-png", "{output}"],
    ["signature", "train", "data/signatures", "-o", "{output}"],
    ["signature", "evaluate", "{model}", "data/signatures", "--plot", "{output}"],
])
@pytest.mark.parametrize("output", ["/dev/full", "{tmp}", "{tmp}/file.txt/out"])
def test_every_output_option_refuses_before_any_work(tmp_path, arguments, output):
    import time
    from pathlib import Path

    from click.testing import CliRunner

    from inkvoice.signature.cli import main as signature_main
    from inkvoice.speech.cli import main as speech_main

    root = Path(__file__).resolve().parents[2]
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "model.npz").write_text("never read: the output is checked first")
    values = {"output": output.format(tmp=tmp_path), "model": str(tmp_path / "model.npz")}
    command = {"speech": speech_main, "signature": signature_main}[arguments[0]]
    started = time.perf_counter()
    result = CliRunner().invoke(command, [a.format(**values).replace("data/", f"{root}/data/") for a in arguments[1:]])
    assert result.exit_code == 2, result.output
    assert "Invalid value for" in result.output and "Traceback" not in result.output
    assert time.perf_counter() - started < 5
    assert Path("/dev/full").is_char_device()


def test_results_that_cannot_be_written_end_in_one_line(tmp_path):
    import subprocess
    import sys

    with open("/dev/full", "w") as full:
        result = subprocess.run([sys.executable, "-m", "inkvoice", "cache", "info"], stdout=full, stderr=subprocess.PIPE,
                                text=True, env={**os.environ, "INKVOICE_CACHE": str(tmp_path)}, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip() == "Error: could not write the results (No space left on device)"


@pytest.mark.parametrize("arguments, victim", [
    (["speech", "evaluate", "{model}", "{speech}", "--curve-png", "{model}"], "{model}"),
    (["speech", "evaluate", "{model}", "{speech}", "--curve-png", "{link}"], "{model}"),
    (["speech", "evaluate", "{model}", "{speech}", "--confusion-png", "{speech}/7/a.wav"], "{speech}/7/a.wav"),
    (["speech", "evaluate", "{model}", "{speech}", "--curve-png", "{tmp}/x.png", "--confusion-png", "{tmp}/x.png"],
     "{model}"),
    (["speech", "train", "{speech}", "-o", "{speech}/7/a.wav"], "{speech}/7/a.wav"),
    (["speech", "train", "{speech}", "--init", "{model}", "-o", "{model}"], "{model}"),
    (["speech", "train", "{speech}", "--extra", "{tmp}/extra", "-o", "{tmp}/extra/3/b.wav"], "{tmp}/extra/3/b.wav"),
    (["signature", "evaluate", "{model}", "{signatures}", "--plot", "{model}"], "{model}"),
    (["signature", "train", "{signatures}", "-o", "{signatures}/w1/genuine/01.png"], "{signatures}/w1/genuine/01.png"),
], ids=["curve onto the model", "curve onto a link to the model", "confusion onto a recording", "two outputs, one file",
        "model onto a recording", "fine-tuned model onto its start", "model onto an extra recording",
        "plot onto the model", "model onto a signature"])
def test_no_output_replaces_what_the_command_reads(tmp_path, arguments, victim):
    import shutil
    from pathlib import Path

    from click.testing import CliRunner

    from inkvoice.signature.cli import main as signature_main
    from inkvoice.speech.cli import main as speech_main

    root = Path(__file__).resolve().parents[2]
    for label in ("3", "7"):
        for folder in ("speech", "extra"):
            (tmp_path / folder / label).mkdir(parents=True)
            shutil.copy(sorted((root / "data" / "speech" / label).glob("*.wav"))[0], tmp_path / folder / label / "a.wav")
            shutil.copy(sorted((root / "data" / "speech" / label).glob("*.wav"))[1], tmp_path / folder / label / "b.wav")
    for writer in ("w1", "w2"):
        source = root / "data" / "signatures" / f"writer{writer[1]}"
        shutil.copytree(source, tmp_path / "signatures" / writer)
    (tmp_path / "model.npz").write_text("never read: the outputs are checked first")
    (tmp_path / "link.npz").symlink_to(tmp_path / "model.npz")
    values = {"model": tmp_path / "model.npz", "link": tmp_path / "link.npz", "speech": tmp_path / "speech",
              "signatures": tmp_path / "signatures", "tmp": tmp_path}
    victim = Path(victim.format(**values))
    before = victim.read_bytes()
    command = {"speech": speech_main, "signature": signature_main}[arguments[0]]
    result = CliRunner().invoke(command, [a.format(**values) for a in arguments[1:]])
    assert result.exit_code == 2, result.output
    assert "Invalid value for" in result.output
    assert "write the output elsewhere" in result.output or "two outputs" in result.output
    assert "Traceback" not in result.output
    assert victim.read_bytes() == before


def test_a_new_file_inside_the_data_folder_is_allowed(tmp_path):
    from inkvoice.core.files import check_not_an_input

    (tmp_path / "data" / "7").mkdir(parents=True)
    (tmp_path / "data" / "7" / "a.wav").write_bytes(b"x")
    check_not_an_input(tmp_path / "data" / "model.npz", [tmp_path / "data"])
    hard = tmp_path / "hard.wav"
    os.link(tmp_path / "data" / "7" / "a.wav", hard)
    with pytest.raises(OutputError, match="which this command reads"):
        check_not_an_input(hard, [tmp_path / "data" / "7" / "a.wav"])
