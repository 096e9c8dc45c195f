"""Where the benchmarks find a real data set: an explicit folder, or $INKVOICE_DATA/<name>."""

import os
import sys
from pathlib import Path


def data_folder(option, name):
    """The folder given on the command line, else ``$INKVOICE_DATA/name``; exits with a message if neither."""
    if option is not None:
        return Path(option)
    root = os.environ.get("INKVOICE_DATA")
    if not root:
        sys.exit(f"set INKVOICE_DATA to the folder holding {name}/, or pass --data")
    return Path(root) / name
