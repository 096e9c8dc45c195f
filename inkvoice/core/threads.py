"""How many BLAS threads training uses.

Mini-batch matrices of a small network multiply in microseconds; waking and synchronising
BLAS threads then costs more than the work. On a busy machine it is worse: BLAS threads
spin while they wait for a core the other programs hold, and an epoch measured 10-100x
slower on two threads than on one. So training uses one thread for small products or when
the machine is already busy, and every core only for large products on an idle machine.
"""

import contextlib
import os

# Below this many floating-point operations in the largest per-batch product, one thread wins.
SMALL_PRODUCT_FLOPS = 3e7


def training_threads(layer_sizes, batch_size, n_threads=None):
    """BLAS threads for training a network with ``layer_sizes`` on batches of ``batch_size``.

    ``n_threads`` (an int > 0) overrides the choice.
    """
    if n_threads is not None:
        return int(n_threads)
    largest = max(2 * batch_size * n_in * n_out for n_in, n_out in zip(layer_sizes[:-1], layer_sizes[1:]))
    cores = os.cpu_count() or 1
    if largest < SMALL_PRODUCT_FLOPS or _busy(cores):
        return 1
    return cores


def _busy(cores):
    """Whether other programs already keep the cores occupied (one-minute load average)."""
    try:
        return os.getloadavg()[0] > cores - 0.5
    except OSError:
        return False


@contextlib.contextmanager
def blas_threads(n_threads):
    """Limit the BLAS library numpy uses to ``n_threads`` threads inside the block."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=n_threads, user_api="blas"):
        yield
