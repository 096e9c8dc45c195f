"""Signature feature extraction speed: images per second, one process and in parallel, cold and cached.

    python bench/signature_extraction.py [--data CEDAR_FOLDER] [--limit N]

The data folder defaults to $INKVOICE_DATA/cedar; the cache lives in a temporary folder.
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

from inkvoice.core.extraction import ExtractionSettings
from inkvoice.signature.dataset import load_signatures
from inkvoice.signature.features import check_parameters, extract_files
from real_data import data_folder


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="CEDAR folder (default: $INKVOICE_DATA/cedar)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N images")
    parser.add_argument("--jobs", default="1,2", help="process counts to time, comma-separated (default 1,2)")
    args = parser.parse_args()
    data = data_folder(args.data, "cedar")
    paths = [s.path for s in load_signatures(data)][: args.limit]
    parameters = check_parameters({})
    print(f"{len(paths)} images, features {parameters}")
    print("| processes | cache | seconds | images/s |")
    print("|---|---|---|---|")
    for jobs in [int(j) for j in args.jobs.split(",")]:
        with tempfile.TemporaryDirectory() as cache:
            os.environ["INKVOICE_CACHE"] = cache  # a fresh cache for each process count
            for state in ("cold", "warm"):
                start = time.perf_counter()
                extract_files(paths, parameters, ExtractionSettings(n_jobs=jobs))
                seconds = time.perf_counter() - start
                print(f"| {jobs} | {state} | {seconds:.1f} | {len(paths) / seconds:.0f} |")


if __name__ == "__main__":
    main()
