"""Scaling out: feature extraction locally and on a local Dask cluster, and the enrolment store's
throughput on SQLite and on PostgreSQL with several concurrent clients.

    INKVOICE_DATA=/path/to/data python bench/scale.py [--fsdd-files N] [--tta-files N] [--cedar-files N]
        [--workers 1,2] [--clients 1,2,4] [--postgres URL] [--model SIGNATURE_MODEL] [--skip-extraction] [--skip-store]

Extraction, with no cache: 1 and 2 processes on this machine, then a Dask cluster on this machine
(`dask scheduler` and 1 or 2 `dask worker --nthreads 1` processes, over TCP on 127.0.0.1, started
as the tests start theirs) reading the files at
shared paths, and with 2 workers also with ``send_files``. Each cluster first extracts a few files
unmeasured, as a long-lived cluster would have done, so imports and filterbanks are not counted.
Wall time depends on what else the machine runs; CPU time much less, so the CPU each part
spends (the workers per file, this process per file, the scheduler per task) is what to plan with.
The cluster's CPU while idle (heartbeats, monitoring), measured for 2 s, is taken off the runs'.
Per-task overhead: 500 empty tasks submitted at once, and one empty task's round trip. Bytes
moved per file: the pickled arguments and results of a task of the size the cluster uses, per
file (what crosses the network for it, before the protocol's framing).

Store: each client process opens the store once (as a service does), enrols writers (12
references of the real feature length each, one transaction per writer), then reads the
references of random enrolled writers with their integrity check, which is the store's part of
a verification. SQLite is a file in a temporary folder; PostgreSQL a throw-away server on
127.0.0.1 with fsync on (or --postgres URL, whose tables go into a new schema per run).
"""

import argparse
import multiprocessing
import operator
import pickle
import resource
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inkvoice.core import cluster  # noqa: E402
from inkvoice.core.extraction import extract_many  # noqa: E402
from inkvoice.signature import features as signature_features  # noqa: E402
from inkvoice.signature.dataset import load_signatures  # noqa: E402
from inkvoice.signature.enrollment import open_store  # noqa: E402
from inkvoice.speech import features as speech_features  # noqa: E402
from inkvoice.speech.augment import TEST_AUGMENTATION, augmentation_parameters  # noqa: E402
from inkvoice.speech.dataset import load_dataset  # noqa: E402
from inkvoice.speech.model import DEFAULT_TEST_COPIES, TEST_SEED  # noqa: E402
from real_data import data_folder  # noqa: E402

REFERENCES_PER_WRITER = 12


def workloads(arguments):
    """(name, function, paths, parameters) of each extraction job that is timed."""
    speech = {**speech_features.feature_parameters(), "max_seconds": 10.0,
              "feature_version": speech_features.FEATURE_VERSION}
    fsdd = load_dataset(data_folder(None, "fsdd")).paths
    cedar = [s.path for s in load_signatures(data_folder(None, "cedar"))]
    # Every 3rd or so, so that all writers and speakers are in the sample.
    step = max(1, len(cedar) // arguments.cedar_files)
    # Test-time augmentation as prediction runs it.
    tta = {**speech, "augmentation": augmentation_parameters(**{**TEST_AUGMENTATION, "copies": DEFAULT_TEST_COPIES}),
           "seed": TEST_SEED}
    return [
        ("FSDD MFCC", speech_features.extract, fsdd[: arguments.fsdd_files], speech),
        (f"FSDD MFCC + {DEFAULT_TEST_COPIES} test-time copies", speech_features.extract_augmented,
         fsdd[:: max(1, len(fsdd) // arguments.tta_files)][: arguments.tta_files], tta),
        ("CEDAR HOG", signature_features.extract, cedar[::step][: arguments.cedar_files],
         {**signature_features.check_parameters({}), "max_pixels": 40_000_000}),
    ]


def bytes_per_file(function, paths, parameters, send_files, n_threads):
    """Mean pickled size of a task's arguments and results per file, in tasks of the size the cluster uses."""
    size = max(1, min(32, -(-len(paths) // (cluster.CHUNKS_PER_THREAD * n_threads))))
    chunk = paths[:size]
    task = pickle.dumps((function, [cluster._item(Path(path), send_files) for path in chunk], parameters))
    results = pickle.dumps(extract_many(function, chunk, parameters, n_jobs=1))
    return (len(task) + len(results)) / len(chunk)


def cpu_seconds(client=None):
    """CPU seconds used so far: (this process, its finished children or the Dask workers, the Dask scheduler)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    workers, scheduler = children.ru_utime + children.ru_stime, 0.0
    if client is not None:
        workers = sum(client.run(time.process_time).values())
        scheduler = client.run_on_scheduler(time.process_time)
    return np.array([own.ru_utime + own.ru_stime, workers, scheduler])


def measured(run, client=None):
    """(wall seconds, CPU seconds of this process, the workers and the scheduler) of ``run()``."""
    cpu, started = cpu_seconds(client), time.perf_counter()
    run()
    return time.perf_counter() - started, cpu_seconds(client) - cpu


def extraction_table(arguments):
    from tests.servers import dask_cluster

    jobs = workloads(arguments)
    rows = []
    for name, function, paths, parameters in jobs:
        function(paths[0], **parameters)  # this process's filterbank, as the workers' warm-up builds theirs
        for processes in (1, 2):
            # Short lists run in this process even with 2 (a pool costs more than it saves): count both.
            wall, (own, children, _) = measured(lambda: extract_many(function, paths, parameters, n_jobs=processes))
            rows.append((name, f"{processes} local process{'es' if processes > 1 else ''}", len(paths), wall,
                         own + children, None, None, None, None))
    overheads = []
    sizes = [int(n) for n in arguments.workers.split(",")]
    for n_workers in sizes:
        with dask_cluster(n_workers) as address:
            client = cluster.connect(address)
            for _, function, paths, parameters in jobs:  # warm-up: imports and filterbanks on every worker
                extract_many(function, paths[: 4 * n_workers], parameters, scheduler=address, chunk_size=1)
            idle, idle_cpu = measured(lambda: time.sleep(2), client)
            empty = client.map(operator.abs, range(500), pure=False)
            batch, batch_cpu = measured(lambda: client.gather(empty), client)
            round_trips = []
            for number in range(20):
                started = time.perf_counter()
                client.submit(operator.abs, -number, pure=False).result()
                round_trips.append(time.perf_counter() - started)
            overheads.append((n_workers, batch / 500, batch_cpu / 500, idle_cpu / idle,
                              statistics.median(round_trips)))
            for name, function, paths, parameters in jobs:
                for send_files in [False, True] if n_workers == max(sizes) else [False]:
                    wall, cpu = measured(
                        lambda: extract_many(function, paths, parameters, scheduler=address, send_files=send_files),
                        client)
                    # Less what the cluster spends idle (heartbeats, monitoring) over the same time.
                    own, workers, scheduler = cpu - idle_cpu / idle * wall
                    label = f"Dask, {n_workers} worker{'s' if n_workers > 1 else ''}" + (
                        ", --send-files" if send_files else ", shared paths")
                    size = max(1, min(32, -(-len(paths) // (cluster.CHUNKS_PER_THREAD * n_workers))))
                    rows.append((name, label, len(paths), wall, workers, own, scheduler, -(-len(paths) // size),
                                 bytes_per_file(function, paths, parameters, send_files, n_workers)))
    print("\n### Feature extraction (no cache)\n")
    print("| files | run | n | seconds | files/s | worker CPU per file | this process's CPU per file "
          "| scheduler CPU per task | bytes moved per file |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")

    def ms(value, count):
        return "-" if value is None else f"{value / count * 1000:.2f} ms"

    for name, label, count, wall, workers, own, scheduler, tasks, moved in rows:
        moved_text = "-" if moved is None else f"{moved / 1000:,.1f} kB"
        print(f"| {name} | {label} | {count} | {wall:.2f} | {count / wall:,.0f} | {ms(workers, count)} | "
              f"{ms(own, count)} | {ms(scheduler, tasks or 1) if tasks else '-'} | {moved_text} |")
    print("\n| Dask workers | wall per task, 500 empty tasks at once | CPU per empty task (this process, workers, "
          "scheduler) | CPU of the idle cluster | one empty task's round trip |")
    print("|---:|---:|---:|---:|---:|")
    for n_workers, batch, batch_cpu, idle_rate, round_trip in overheads:
        cpu = " + ".join(f"{value * 1000:.2f}" for value in batch_cpu)
        print(f"| {n_workers} | {batch * 1000:.2f} ms | {cpu} ms | {idle_rate.sum() * 100:.0f}% of a core | "
              f"{round_trip * 1000:.2f} ms |")


def _store_client(location, number, n_writers, n_reads, n_features, barrier, results):
    generator = np.random.default_rng(number)
    with open_store(location, signature_features.check_parameters({})) as store:
        barrier.wait()
        started = time.perf_counter()
        for writer in range(n_writers):
            entries = [(f"{k}.png", f"c{number}-w{writer}-{k}", generator.standard_normal(n_features))
                       for k in range(REFERENCES_PER_WRITER)]
            store.add(f"client{number}-writer{writer}", entries, "model")
        enrolled = time.perf_counter()
        barrier.wait()
        names = [name for name, _ in store.writers()]
        reads_started = time.perf_counter()
        for _ in range(n_reads):
            store.references(names[generator.integers(len(names))])
        results.put((number, started, enrolled, reads_started, time.perf_counter()))


def store_run(location, n_clients, n_writers, n_reads, n_features):
    """(enrolments per second, verifications per second) of ``n_clients`` processes on one store."""
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(n_clients), context.Queue()
    workers = [context.Process(target=_store_client,
                               args=(location, number, n_writers, n_reads, n_features, barrier, results))
               for number in range(n_clients)]
    for worker in workers:
        worker.start()
    answers = [results.get(timeout=600) for _ in workers]
    for worker in workers:
        worker.join()
    enrol = min(a[1] for a in answers), max(a[2] for a in answers)
    read = min(a[3] for a in answers), max(a[4] for a in answers)
    return n_clients * n_writers / (enrol[1] - enrol[0]), n_clients * n_reads / (read[1] - read[0])


def store_table(arguments):
    import psycopg

    n_features = signature_features.extract(
        sorted((ROOT / "data" / "signatures").rglob("*.png"))[0], **signature_features.check_parameters({})).size
    rows = []
    with tempfile.TemporaryDirectory() as folder, _postgres(arguments.postgres) as server:
        for n_clients in [int(n) for n in arguments.clients.split(",")]:
            sqlite = Path(folder) / f"store-{n_clients}.sqlite"
            open_store(sqlite, signature_features.check_parameters({})).close()
            schema = f"bench_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(server, autocommit=True) as connection:
                connection.execute(f"CREATE SCHEMA {schema}")
            postgres = f"{server}{'&' if '?' in server else '?'}options=-csearch_path%3D{schema}"
            open_store(postgres, signature_features.check_parameters({})).close()
            for engine, location in (("SQLite", sqlite), ("PostgreSQL", postgres)):
                enrolments, reads = store_run(location, n_clients, arguments.writers_per_client,
                                              arguments.reads_per_client, n_features)
                rows.append((engine, n_clients, enrolments, reads))
    print(f"\n### Enrolment store ({REFERENCES_PER_WRITER} references of {n_features} features per writer)\n")
    print("| engine | clients | enrolments/s | verifications/s (store reads) |")
    print("|---|---:|---:|---:|")
    for engine, n_clients, enrolments, reads in sorted(rows):
        print(f"| {engine} | {n_clients} | {enrolments:,.0f} | {reads:,.0f} |")
    if arguments.model:
        from inkvoice.signature.model_file import load_verifier

        verifier, _ = load_verifier(arguments.model)
        generator = np.random.default_rng(0)
        references = generator.standard_normal((REFERENCES_PER_WRITER, n_features)).astype(np.float32)
        query = generator.standard_normal((1, n_features)).astype(np.float32)
        verifier.scores(query, references)
        started = time.perf_counter()
        for _ in range(200):
            verifier.scores(query, references)
        print(f"\nScoring one query against {REFERENCES_PER_WRITER} references with {arguments.model}: "
              f"{(time.perf_counter() - started) / 200 * 1000:.2f} ms")


def _postgres(url):
    import contextlib

    if url:
        return contextlib.nullcontext(url)
    from tests.servers import postgres_server

    return postgres_server(durable=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fsdd-files", type=int, default=2500, help="FSDD clips for plain MFCC extraction")
    parser.add_argument("--tta-files", type=int, default=200, help="FSDD clips for extraction with test-time copies")
    parser.add_argument("--cedar-files", type=int, default=400, help="CEDAR scans (spread over all writers)")
    parser.add_argument("--workers", default="1,2", help="Dask cluster sizes, comma-separated")
    parser.add_argument("--clients", default="1,2,4", help="concurrent store clients, comma-separated")
    parser.add_argument("--writers-per-client", type=int, default=25, help="writers each store client enrols")
    parser.add_argument("--reads-per-client", type=int, default=400, help="verifications each store client reads")
    parser.add_argument("--postgres", default=None, help="a PostgreSQL URL instead of a throw-away server")
    parser.add_argument("--model", default=None, help="a signature model: also time scoring one verification")
    parser.add_argument("--skip-extraction", action="store_true")
    parser.add_argument("--skip-store", action="store_true")
    arguments = parser.parse_args()
    if not arguments.skip_extraction:
        extraction_table(arguments)
    if not arguments.skip_store:
        store_table(arguments)


if __name__ == "__main__":
    main()
