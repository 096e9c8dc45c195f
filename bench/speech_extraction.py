"""Feature extraction speed on FSDD: cold (no cache), first run filling the cache, cached re-runs
(the per-file cache, and the whole-set cache an unchanged list of files hits), and the time
`speech predict` takes on one file in a fresh process.

    python bench/speech_extraction.py [--data FOLDER] [--jobs 2] [--repeat 3]

FOLDER defaults to $INKVOICE_DATA/fsdd.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inkvoice.core.extraction import extract_many  # noqa: E402
from inkvoice.speech.audio import DEFAULT_MAX_SECONDS  # noqa: E402
from inkvoice.speech.dataset import load_dataset  # noqa: E402
from inkvoice.speech.features import extract, feature_parameters  # noqa: E402
from inkvoice.speech.model import DEFAULT_TEST_COPIES  # noqa: E402
from real_data import data_folder  # noqa: E402


def timed(function):
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="FSDD folder (default: $INKVOICE_DATA/fsdd).")
    parser.add_argument("--jobs", type=int, default=2, help="Worker processes.")
    parser.add_argument("--repeat", type=int, default=3, help="Runs per measurement (the best is kept).")
    arguments = parser.parse_args()
    paths = load_dataset(data_folder(arguments.data, "fsdd")).paths
    parameters = {**feature_parameters(), "max_seconds": DEFAULT_MAX_SECONDS}
    rows = []
    extract(paths[0], **parameters)  # build the filterbank once, as a long-lived process would

    def best_of(label, run):
        seconds = min(timed(run)[0] for _ in range(arguments.repeat))
        rows.append((label, seconds, len(paths) / seconds))
        return seconds

    best_of("1 process, no cache", lambda: extract_many(extract, paths, parameters, n_jobs=1))
    cold = best_of(f"{arguments.jobs} processes, no cache", lambda: extract_many(extract, paths, parameters, n_jobs=arguments.jobs))
    with tempfile.TemporaryDirectory() as cache:
        seconds, results = timed(lambda: extract_many(extract, paths, parameters, cache_dir=cache, n_jobs=arguments.jobs))
        rows.append((f"{arguments.jobs} processes, filling the cache", seconds, len(paths) / seconds))
        # Another list of the same files misses the whole-set entry and reads one entry per file
        # (once: that run stores the new list as a whole, so a repeat would hit the whole-set cache).
        reordered = paths[::-1]
        warm, _ = timed(lambda: extract_many(extract, reordered, parameters, cache_dir=cache, n_jobs=arguments.jobs))
        rows.append((f"{arguments.jobs} processes, same files in another order (per-file cache)", warm, len(paths) / warm))
        whole = best_of(f"{arguments.jobs} processes, re-run on the unchanged list (whole-set cache)",
                        lambda: extract_many(extract, paths, parameters, cache_dir=cache, n_jobs=arguments.jobs))
    failures = sum(isinstance(r, Exception) for r in results)
    print(f"FSDD feature extraction, {len(paths)} files, {failures} failures, {os.cpu_count()} cores")
    print()
    print("| run | seconds | files/s |")
    print("|---|---:|---:|")
    for label, seconds, rate in rows:
        print(f"| {label} | {seconds:.3f} | {rate:,.0f} |")
    print()
    print(f"cached re-run: {cold / warm:.1f}x faster than cold extraction with the per-file cache, "
          f"{cold / whole:.0f}x with the whole-set cache")

    with tempfile.TemporaryDirectory() as folder:
        model = Path(folder) / "digits.npz"
        env = {**os.environ, "INKVOICE_CACHE": str(Path(folder) / "cache")}
        subprocess.run(
            [sys.executable, "-m", "inkvoice.speech", "train", str(data_folder(arguments.data, "fsdd")), "-o", str(model),
             "--copies", "1", "--test-copies", str(DEFAULT_TEST_COPIES), "--epochs", "5", "--quiet", "--jobs", str(arguments.jobs)],
            check=True, capture_output=True, env=env,
        )
        for label, extra in ((f"default, {DEFAULT_TEST_COPIES} test-time copies", []), ("--test-copies 0", ["--test-copies", "0"])):
            times = []
            for _ in range(5):
                seconds, _ = timed(lambda: subprocess.run(
                    [sys.executable, "-m", "inkvoice.speech", "predict", str(model), str(paths[0]), *extra],
                    check=True, capture_output=True, env=env,
                ))
                times.append(seconds)
            print(f"`speech predict MODEL FILE` ({label}) in a fresh process: median {statistics.median(times):.2f} s "
                  f"over 5 runs (min {min(times):.2f} s)")


if __name__ == "__main__":
    main()
