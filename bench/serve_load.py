"""Load on `inkvoice serve`: a bounded number of mixed requests, a few at a time, against a server on 127.0.0.1.

    python bench/serve_load.py --speech-model digits.npz --signature-model demo.npz \
        [--requests 1000] [--concurrency 8] [--server-option=--test-copies=0]

The script starts the server itself (on a free loopback port, with a temporary enrolment store),
enrols sample writers 5 and 6 from data/signatures, warms up, then sends the requests: speech
predictions of data/speech clips, verifications of writer 5 and 6 signatures (genuine and
forged), writer lists and health checks, in a seeded random order. It prints throughput,
p50/p99 latency per endpoint, failed requests, and the server's memory (resident set) after the
warm-up, during and at the end of the run. The server is always stopped.
"""

import argparse
import http.client
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOKEN = uuid.uuid4().hex
MIX = {"speech predict": 50, "signature verify": 35, "signature writers": 10, "healthz": 5}


def multipart(field_files):
    """(body, content type) of a multipart form with ``field_files`` = [(field, path), ...]."""
    boundary = uuid.uuid4().hex
    parts = []
    for field, path in field_files:
        parts.append(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{path.name}\"\r\n"
                     "Content-Type: application/octet-stream\r\n\r\n".encode() + path.read_bytes() + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def process_tree(pid):
    """``pid`` and its descendants (a server with --workers runs its workers as child processes)."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        for child in children:
            found.extend(process_tree(int(child)))
    return found


def resident_mb(pid):
    """Resident set size of process ``pid`` and its descendants, in MB (Linux /proc)."""
    total = 0
    for member in process_tree(pid):
        for line in Path(f"/proc/{member}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


def cpu_seconds(pid, children=True):
    """User + system CPU time of process ``pid`` (and its descendants) so far, in seconds."""
    total = 0
    for member in process_tree(pid) if children else [pid]:
        fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


class Server:
    def __init__(self, arguments, folder):
        # The verification limits are for clients, not for a load test that verifies on purpose.
        command = [sys.executable, "-c", "from inkvoice.cli import main; main()", "serve", "--port", "0",
                   "--token", TOKEN, "--client-limit", "0", "--writer-limit", "0", *arguments]
        self.out = open(folder / "server.out", "w+")
        self.err = open(folder / "server.log", "w+")
        self.process = subprocess.Popen(command, stdout=self.out, stderr=self.err)
        # Until ready or ended: the server gives up by itself on workers that do not start.
        while True:
            self.out.seek(0)
            found = re.search(r"http://([\d.]+):(\d+)/", self.out.read())
            if found:
                self.host, self.port = found.group(1), int(found.group(2))
                if self.ready():
                    return
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        self.stop()
        self.err.seek(0)
        raise SystemExit(f"the server did not start:\n{self.err.read()[-3000:]}")

    def ready(self):
        """Whether the server answers /healthz with 200 (503 while its workers start)."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            return request(connection, "GET", "/healthz")[0] == 200
        except OSError:
            return False
        finally:
            connection.close()

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def request(connection, method, path, body=None, content_type=None):
    # The token goes with every request: listing writers needs it, the rest ignore it.
    headers = {"Authorization": f"Bearer {TOKEN}"}
    if content_type:
        headers["Content-Type"] = content_type
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    payload = response.read()
    return response.status, payload


def plan(n_requests, seed):
    """The seeded sequence of (endpoint, method, path, body, content type) to send."""
    speech_files = sorted((ROOT / "data" / "speech").rglob("*.wav"))
    signatures = ROOT / "data" / "signatures"
    queries = [(writer, path) for writer in ("writer5", "writer6")
               for path in sorted((signatures / writer / "genuine").glob("*.png"))[6:]
               + sorted((signatures / writer / "forged").glob("*.png"))]
    rng = random.Random(seed)
    speech_bodies = [multipart([("file", path)]) for path in speech_files]
    query_bodies = [(writer, multipart([("file", path)])) for writer, path in queries]
    endpoints = list(MIX)
    sequence = []
    for endpoint in rng.choices(endpoints, weights=[MIX[e] for e in endpoints], k=n_requests):
        if endpoint == "speech predict":
            body, kind = rng.choice(speech_bodies)
            sequence.append((endpoint, "POST", "/api/speech/predict", body, kind))
        elif endpoint == "signature verify":
            writer, (body, kind) = rng.choice(query_bodies)
            sequence.append((endpoint, "POST", f"/api/signature/writers/{writer}/verify", body, kind))
        elif endpoint == "signature writers":
            sequence.append((endpoint, "GET", "/api/signature/writers", None, None))
        else:
            sequence.append((endpoint, "GET", "/healthz", None, None))
    return sequence


def run(server, sequence, concurrency):
    """Send ``sequence`` with ``concurrency`` persistent connections; returns per-request records."""
    records = []
    lock = threading.Lock()
    position = iter(range(len(sequence)))
    local = threading.local()
    memory = []

    def worker():
        local.connection = http.client.HTTPConnection(server.host, server.port, timeout=60)
        while True:
            with lock:
                index = next(position, None)
            if index is None:
                break
            endpoint, method, path, body, kind = sequence[index]
            started = time.perf_counter()
            try:
                status, _ = request(local.connection, method, path, body, kind)
            except (OSError, http.client.HTTPException):
                status = None
                local.connection.close()
                local.connection = http.client.HTTPConnection(server.host, server.port, timeout=60)
            elapsed = time.perf_counter() - started
            with lock:
                records.append((endpoint, status, elapsed))
                if len(records) % 100 == 0:
                    memory.append(resident_mb(server.process.pid))
        local.connection.close()

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(worker) for _ in range(concurrency)]:
            future.result()
    return records, time.perf_counter() - started, memory


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speech-model", required=True, type=Path, help="Speech model file.")
    parser.add_argument("--signature-model", required=True, type=Path, help="Signature model file.")
    parser.add_argument("--requests", type=int, default=1000, help="Requests to send (after the warm-up).")
    parser.add_argument("--concurrency", type=int, default=8, help="Requests in flight at once.")
    parser.add_argument("--warm-up", type=int, default=40, help="Requests sent first and not counted.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the request order.")
    parser.add_argument("--server-option", action="append", default=[],
                        help="An option passed on to inkvoice serve (repeatable), e.g. "
                             "--server-option=--test-copies=0.")
    arguments = parser.parse_args()
    if not 1 <= arguments.requests <= 100_000 or not 1 <= arguments.concurrency <= 64:
        raise SystemExit("--requests must be in 1-100000 and --concurrency in 1-64")

    with tempfile.TemporaryDirectory(prefix="serve-load-") as folder:
        folder = Path(folder)
        server = Server(["--speech-model", str(arguments.speech_model), "--signature-model",
                         str(arguments.signature_model), "--store", str(folder / "store.sqlite"),
                         *arguments.server_option], folder)
        try:
            connection = http.client.HTTPConnection(server.host, server.port, timeout=60)
            for writer in ("writer5", "writer6"):
                references = sorted((ROOT / "data" / "signatures" / writer / "genuine").glob("*.png"))[:6]
                body, kind = multipart([("files", path) for path in references])
                status, payload = request(connection, "POST", f"/api/signature/writers/{writer}/references", body,
                                          kind)
                if status != 200:
                    raise SystemExit(f"enrolling {writer} failed: {status} {payload[:300]!r}")
            connection.close()
            run(server, plan(arguments.warm_up, arguments.seed + 1), arguments.concurrency)
            memory_start = resident_mb(server.process.pid)
            cpu_start = cpu_seconds(server.process.pid)
            front_start = cpu_seconds(server.process.pid, children=False)
            records, seconds, memory = run(server, plan(arguments.requests, arguments.seed), arguments.concurrency)
            cpu_used = cpu_seconds(server.process.pid) - cpu_start
            front_used = cpu_seconds(server.process.pid, children=False) - front_start
            memory_end = resident_mb(server.process.pid)
        finally:
            server.stop()

    print(f"{len(records)} requests, {arguments.concurrency} at a time, in {seconds:.1f} s: "
          f"{len(records) / seconds:.1f} requests/s; server CPU {cpu_used:.1f} s "
          f"({1000 * cpu_used / len(records):.1f} ms a request, {1000 * front_used / len(records):.1f} ms of it in the "
          f"serving process, the rest in its workers); {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}")
    print()
    print("| endpoint | requests | failed | p50 ms | p99 ms | mean ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for endpoint in [*MIX, "all"]:
        chosen = [r for r in records if endpoint in (r[0], "all")]
        if not chosen:
            continue
        latencies = [1000 * r[2] for r in chosen]
        failed = sum(1 for r in chosen if r[1] != 200)
        print(f"| {endpoint} | {len(chosen)} | {failed} | {percentile(latencies, 0.5):.0f} | "
              f"{percentile(latencies, 0.99):.0f} | {statistics.fmean(latencies):.0f} |")
    print()
    during = ", ".join(f"{m:.0f}" for m in memory)
    print(f"server resident memory: {memory_start:.0f} MB after the warm-up, {memory_end:.0f} MB at the end "
          f"(every 100 requests: {during})")
    failures = sum(1 for r in records if r[1] != 200)
    if failures:
        raise SystemExit(f"{failures} request(s) failed")


if __name__ == "__main__":
    main()
