"""Matplotlib for the optional PNGs: one import check and one atomic save for every plot."""

from inkvoice.core.errors import DependencyError
from inkvoice.core.files import atomic_path


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend, or a DependencyError saying how to install it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise DependencyError("plots need matplotlib: pip install 'inkvoice[plots]'") from None
    return plt


def save_figure(figure, path, dpi=100):
    """Write ``figure`` to ``path`` as a PNG through a temporary file, then close it."""
    plt = pyplot()
    try:
        with atomic_path(path, suffix=".png") as temporary:
            figure.savefig(temporary, format="png", dpi=dpi)
    finally:
        plt.close(figure)
