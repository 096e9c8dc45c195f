"""Real servers for the tests: a Dask cluster and a PostgreSQL server on 127.0.0.1, always stopped.

Each starts in a temporary folder or raises ``pytest.skip`` with the reason it cannot run here
(the optional package or the server binaries missing). Start-up is waited for until the server
is ready or has ended, however busy the machine: only a hang (``HANG_SECONDS``) gives up.
"""

import contextlib
import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

# Far beyond any start on a loaded machine: what takes longer has hung.
HANG_SECONDS = 1800


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _stop(process, grace=5):
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def dask_cluster(n_workers=2):
    """A `dask scheduler` and ``n_workers`` one-thread `dask worker` processes; yields the address."""
    pytest.importorskip("distributed", reason="the distributed extra is not installed: pip install -e '.[distributed]'")
    folder = Path(tempfile.mkdtemp(prefix="inkvoice-dask-"))
    scheduler_file = folder / "scheduler.json"
    dask = [sys.executable, "-m", "dask"]
    log = open(folder / "log.txt", "wb")
    processes = []
    try:
        # --idle-timeout and --death-timeout end the servers even if this process is killed.
        processes.append(subprocess.Popen(
            [*dask, "scheduler", "--host", "127.0.0.1", "--port", str(_free_port()), "--no-dashboard",
             "--scheduler-file", str(scheduler_file), "--idle-timeout", "300s"],
            stdout=log, stderr=subprocess.STDOUT, cwd=folder,
        ))
        deadline = time.monotonic() + HANG_SECONDS
        while not scheduler_file.is_file():
            if time.monotonic() > deadline or processes[0].poll() is not None:
                raise RuntimeError(f"the Dask scheduler did not start: {(folder / 'log.txt').read_text()[-2000:]}")
            time.sleep(0.1)
        address = json.loads(scheduler_file.read_text())["address"]
        for number in range(n_workers):
            processes.append(subprocess.Popen(
                [*dask, "worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard", "--host", "127.0.0.1",
                 "--death-timeout", "30s", "--local-directory", str(folder / f"worker{number}"),
                 "--name", f"worker{number}"],
                stdout=log, stderr=subprocess.STDOUT, cwd=folder,
            ))
        from distributed import Client

        with Client(address, timeout=f"{HANG_SECONDS}s", set_as_default=False) as client:
            # Until the workers have joined, or one of the processes has ended.
            while len(client.nthreads()) < n_workers:
                if any(process.poll() is not None for process in processes) or time.monotonic() > deadline:
                    raise RuntimeError(f"the Dask workers did not start: {(folder / 'log.txt').read_text()[-2000:]}")
                time.sleep(0.1)
        yield address
    finally:
        from inkvoice.core.cluster import close_clients

        close_clients()
        for process in reversed(processes):
            _stop(process)
        log.close()
        shutil.rmtree(folder, ignore_errors=True)


def _postgres_binaries():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


@contextlib.contextmanager
def postgres_server(durable=False):
    """A throw-away PostgreSQL server on 127.0.0.1; yields the URL of its ``postgres`` database.

    ``durable`` keeps fsync on, as a production server has it (benchmarks); tests turn it off.
    """
    pytest.importorskip("psycopg", reason="the postgres extra is not installed (pip install -e '.[postgres]')")
    binaries = _postgres_binaries()
    if binaries is None:
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    folder = Path(tempfile.mkdtemp(prefix="inkvoice-pg-"))
    as_user = []
    if os.geteuid() == 0:
        # PostgreSQL refuses to run as root: run it as the postgres user, in a folder it owns.
        import pwd

        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres user to run PostgreSQL as")
        os.chown(folder, account.pw_uid, account.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", _free_port()
    started = False
    try:
        try:
            subprocess.run([*as_user, str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                            "--no-sync", "-E", "UTF8", "--locale=C"],
                           check=True, capture_output=True, timeout=HANG_SECONDS)
            # The unix socket inside the folder; without ``durable``, fsync off.
            options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c max_connections=40"
            options += "" if durable else " -F"
            started = True
            subprocess.run([*as_user, str(binaries / "pg_ctl"), "-D", str(data), "-l", str(folder / "log.txt"),
                            "-o", options, "-w", "-t", str(HANG_SECONDS), "start"],
                           check=True, capture_output=True, timeout=HANG_SECONDS + 10)
        except subprocess.CalledProcessError as error:
            raise RuntimeError(f"PostgreSQL did not start: {error.stderr.decode(errors='replace')[-2000:]}") from None
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        if started:
            subprocess.run([*as_user, str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                           capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)
