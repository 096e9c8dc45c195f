"""Training speed of the core MLP against scikit-learn's MLPClassifier and PyTorch on the CPU.

Two tables, on two synthetic 10-class problems (float32, Adam with learning rate 1e-3):

"users": what a user gets. Each fit runs in a fresh process that imports the library, makes
the data and times one ``fit`` from its call to its return, set-up included: for us the public
``MlpClassifier`` with default settings (standardisation, kernel and thread choice) but the
problem's hidden sizes, batch size and epochs and ``early_stopping=False`` (so that every
implementation trains on every sample for the same epochs); scikit-learn's ``MLPClassifier``
with its defaults likewise; PyTorch's usual loop (model, optimiser, tensors and batches).
Rounds alternate the implementations, each round in a new order, and ratios are taken round by
round (the median is printed), so that a machine whose speed drifts moves all of them alike.

"kernels": where the time goes. Every implementation in its own process, our rows with the
kernels forced and loaded before the clock starts and without standardisation: seconds per
epoch, CPU time, memory and, on the large problem, GFLOP/s against numpy's float32 matmul;
what loading the compiled kernels costs a fresh process, cold and cached, on its own line.

"CPU s/epoch" is the process's CPU time: on a machine other programs keep busy, the one-thread
rows' CPU times compare the work itself where wall-clock times mostly measure the wait.

Peers are installed only for this script::

    pip install scikit-learn torch==2.13.0
    python bench/core_speed.py                        # both tables, both problems
    python bench/core_speed.py --table users --problem small --rounds 5
    python bench/core_speed.py --table kernels --profile
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PROBLEMS = {
    # name: (n_train, n_test, n_features, hidden_sizes, n_classes, batch_size, epochs)
    "small": (2250, 3000, 78, (256, 128), 10, 64, 10),
    "large": (60000, 10000, 784, (512, 256), 10, 256, 3),
}
# (implementation, BLAS/OpenMP threads; None = the library's default, every core)
IMPLEMENTATIONS = (
    ("inkvoice", None), ("inkvoice", 1), ("inkvoice-numpy", None),
    ("sklearn", None), ("sklearn", 1), ("torch", None), ("torch", 1),
)


def make_problem(name, seed=0):
    """Ten classes of three clusters each in a 16-dimensional latent space, embedded linearly
    in the feature space with noise: not linearly separable, and a few epochs reach roughly
    85-90% test accuracy rather than a trivial 100%."""
    n_train, n_test, n_features, _, n_classes, _, _ = PROBLEMS[name]
    rng = np.random.default_rng(seed)
    latent = 16
    centres = rng.normal(size=(n_classes * 3, latent))
    n = n_train + n_test
    cluster = rng.integers(0, n_classes * 3, n)
    embedding = rng.normal(size=(latent, n_features)) / np.sqrt(latent)
    X = (centres[cluster] + rng.normal(size=(n, latent))) @ embedding + 0.5 * rng.normal(size=(n, n_features))
    y = cluster % n_classes
    X = ((X - X[:n_train].mean(0)) / X[:n_train].std(0)).astype(np.float32)
    return X[:n_train], y[:n_train], X[n_train:], y[n_train:]


def training_flops(name):
    """Floating-point operations of one training epoch (forward, weight and input gradients)."""
    n_train, _, n_features, hidden, n_classes, _, _ = PROBLEMS[name]
    sizes = [n_features, *hidden, n_classes]
    flops = 0
    for index, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        passes = 2 if index == 0 else 3  # the first layer needs no input gradient
        flops += passes * 2 * n_train * n_in * n_out
    return flops


def matmul_gflops(size=2048, repeats=5):
    """numpy's float32 matrix-multiply speed on this machine: the ceiling for dense layers."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def products_only_seconds(name, threads):
    """One epoch of nothing but the training's matrix products (forward, weight and input
    gradients) at the real batch shapes: what an epoch would cost with free everything else."""
    from threadpoolctl import threadpool_limits

    n_train, _, n_features, hidden, n_classes, batch_size, _ = PROBLEMS[name]
    sizes = [n_features, *hidden, n_classes]
    rng = np.random.default_rng(0)
    weights = [rng.standard_normal((a, b), dtype=np.float32) for a, b in zip(sizes[:-1], sizes[1:])]
    activations = [rng.standard_normal((batch_size, size), dtype=np.float32) for size in sizes]
    with threadpool_limits(limits=threads, user_api="blas"):
        start = time.perf_counter()
        for _ in range(n_train // batch_size):
            for index, w in enumerate(weights):
                activations[index] @ w
                activations[index].T @ activations[index + 1]
                if index:
                    activations[index + 1] @ w.T
        return (time.perf_counter() - start) * n_train / (n_train // batch_size * batch_size)


def time_breakdown(name, epochs=2):
    """Seconds per epoch of our MLP (compiled kernels) in each part of a training step: the
    forward and backward passes (matrix products and the layers' fused kernels), the loss,
    the optimiser, and the rest (batch gather, loop); the layers' kernels also on their own."""
    import inkvoice.core.network
    import inkvoice.core.optimizers
    from inkvoice.core import kernels, losses
    from inkvoice.core.estimator import MlpClassifier

    X, y, _, _ = make_problem(name)
    _, _, _, hidden, _, batch_size, _ = PROBLEMS[name]
    compiled = kernels.numba_kernels()
    compiled.prepare(np.float32)
    spent = {"forward": 0.0, "backward": 0.0, "loss": 0.0, "optimizer": 0.0, "layer kernels": 0.0}

    def timed_method(owner, method, key):
        original = getattr(owner, method)

        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            result = original(*args, **kwargs)
            spent[key] += time.perf_counter() - start
            return result

        setattr(owner, method, wrapper)

    timed_method(inkvoice.core.network.Mlp, "forward", "forward")
    timed_method(inkvoice.core.network.Mlp, "backward", "backward")
    timed_method(losses._CrossEntropy, "value_correct_and_gradient", "loss")
    timed_method(inkvoice.core.optimizers.Adam, "step", "optimizer")
    timed_method(compiled, "dense_forward", "layer kernels")
    timed_method(compiled, "dense_backward", "layer kernels")
    model = MlpClassifier(hidden_sizes=hidden, batch_size=batch_size, max_epochs=epochs, early_stopping=False,
                          standardize=False, random_state=0)
    with kernels.using(compiled):
        start = time.perf_counter()
        model.fit(X, y)
        total = (time.perf_counter() - start) / epochs
    parts = {key: value / epochs for key, value in spent.items()}
    parts["rest"] = total - sum(value for key, value in parts.items() if key != "layer kernels")
    return total, parts


def kernel_seconds(cold):
    """Seconds a fresh process spends importing numba and loading the compiled kernels for
    float32 (``cold``: compiling them into an empty cache, as on a machine's first training)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if cold:
        env["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="inkvoice-numba-")
    script = ("import time; start = time.perf_counter(); import numpy as np; from inkvoice.core import kernels; "
              "kernels.numba_kernels().prepare(np.float32); print(time.perf_counter() - start)")
    try:
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    finally:
        if cold:
            shutil.rmtree(env["NUMBA_CACHE_DIR"], ignore_errors=True)
    return float(done.stdout.split()[-1])


def current_rss_mb():
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def reset_peak_rss():
    """Start a new peak-memory measurement (Linux: writing 5 to clear_refs resets VmHWM)."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def peak_rss_mb():
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_inkvoice(X, y, X_test, y_test, hidden, batch_size, epochs):
    from inkvoice.core import kernels
    from inkvoice.core.estimator import MlpClassifier

    chosen = kernels.choose()  # INKVOICE_KERNELS picks numba or numpy; loading is timed apart
    chosen.prepare(np.float32)

    # Without a thread count in the environment the core chooses (see core/threads.py).
    threads = os.environ.get("OMP_NUM_THREADS")
    model = MlpClassifier(hidden_sizes=hidden, batch_size=batch_size, max_epochs=epochs, learning_rate=1e-3,
                          early_stopping=False, standardize=False, random_state=0,
                          n_threads=int(threads) if threads else None)
    with kernels.using(chosen):
        start = time.perf_counter()
        model.fit(X, y)
        seconds = time.perf_counter() - start
    return seconds, model.score(X_test, y_test)


def run_sklearn(X, y, X_test, y_test, hidden, batch_size, epochs):
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    model = MLPClassifier(hidden_layer_sizes=hidden, batch_size=batch_size, max_iter=epochs, learning_rate_init=1e-3,
                          alpha=0.0, solver="adam", early_stopping=False, tol=0.0, n_iter_no_change=10**6,
                          shuffle=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = time.perf_counter()
        model.fit(X, y)
        seconds = time.perf_counter() - start
    return seconds, model.score(X_test, y_test)


def run_torch(X, y, X_test, y_test, hidden, batch_size, epochs):
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)))
    start = time.perf_counter()
    model = _torch_fit(X, y, hidden, batch_size, epochs)
    seconds = time.perf_counter() - start
    with torch.no_grad():
        predicted = model(torch.from_numpy(X_test)).argmax(1).numpy()
    return seconds, float(np.mean(predicted == y_test))


def fit_as_user(implementation, problem):
    """One fit as a user makes it, in this fresh process; prints the import and fit seconds as JSON.

    The fit's clock runs from the call to the return, set-up included (checks, standardisation,
    loading compiled kernels, building the model and its tensors)."""
    import warnings

    X, y, X_test, y_test = make_problem(problem)
    _, _, _, hidden, _, batch_size, epochs = PROBLEMS[problem]
    start = time.perf_counter()
    if implementation == "inkvoice":
        from inkvoice.core.estimator import MlpClassifier

        model = MlpClassifier(hidden_sizes=hidden, batch_size=batch_size, max_epochs=epochs, early_stopping=False,
                              random_state=0)
    elif implementation == "sklearn":
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPClassifier

        warnings.simplefilter("ignore", ConvergenceWarning)
        model = MLPClassifier(hidden_layer_sizes=hidden, batch_size=batch_size, max_iter=epochs, random_state=0)
    else:
        import torch
    imported = time.perf_counter() - start
    start = time.perf_counter()
    if implementation == "torch":
        model = _torch_fit(X, y, hidden, batch_size, epochs)
    else:
        model.fit(X, y)
    seconds = time.perf_counter() - start
    if implementation == "torch":
        with torch.no_grad():
            accuracy = float(np.mean(model(torch.from_numpy(X_test)).argmax(1).numpy() == y_test))
    else:
        accuracy = model.score(X_test, y_test)
    print(json.dumps({"import_seconds": imported, "fit_seconds": seconds, "accuracy": accuracy,
                      "compiled": "numba" in sys.modules}))


def _torch_fit(X, y, hidden, batch_size, epochs):
    """PyTorch's usual training loop: the model it returns is trained on (X, y)."""
    import torch

    torch.manual_seed(0)
    sizes = [X.shape[1], *hidden, int(y.max()) + 1]
    layers = []
    for index, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(n_in, n_out))
        if index < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_function = torch.nn.CrossEntropyLoss()
    inputs, targets = torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))
    for _ in range(epochs):
        order = torch.randperm(len(inputs))
        for begin in range(0, len(inputs), batch_size):
            batch = order[begin : begin + batch_size]
            optimiser.zero_grad(set_to_none=True)
            loss = loss_function(model(inputs[batch]), targets[batch])
            loss.backward()
            optimiser.step()
    return model


USER_IMPLEMENTATIONS = ("inkvoice", "sklearn", "torch")


def _thread_variables(threads):
    """The environment that limits BLAS and OpenMP (PyTorch's threads) to ``threads``; {} for None."""
    if not threads:
        return {}
    return {name: str(threads) for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}


def users_table(problems, rounds, chosen=None, epochs=None, threads=None):
    """Print the "users" table: median fit seconds over ``rounds`` alternating rounds, and each
    peer's median ratio to ours taken round by round."""
    implementations = [name for name in USER_IMPLEMENTATIONS if chosen is None or name in chosen]
    where = f"{threads} thread(s) each" if threads else "each library's own thread count"
    print(f"users: fresh process per fit, default settings, {where}; {rounds} rounds; "
          f"load average {os.getloadavg()[0]:.1f}")
    header = "| problem | implementation | fit s (median) | min-max | ratio to inkvoice (median of rounds) | import s | test accuracy | compiled kernels |"
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for problem in problems:
        figures = {name: [] for name in implementations}
        for round_index in range(rounds):
            shift = round_index % len(implementations)
            for name in implementations[shift:] + implementations[:shift]:
                command = [sys.executable, __file__, "--fit-as-user", name, problem]
                if epochs:
                    command += ["--epochs", str(epochs)]
                env = {**os.environ, "PYTHONPATH": str(ROOT), **_thread_variables(threads)}
                done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)
                if done.returncode != 0:
                    last = (done.stderr.strip().splitlines() or ["failed"])[-1]
                    print(f"| {problem} | {name} | not run: {last} | | | | | |", flush=True)
                    continue
                figures[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
        ours = [run["fit_seconds"] for run in figures.get("inkvoice", [])]
        for name, runs in figures.items():
            if not runs:
                continue
            seconds = [run["fit_seconds"] for run in runs]
            ratios = [theirs / mine for theirs, mine in zip(seconds, ours)] if ours else []
            ratio = f"{np.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})" if ratios else ""
            print(f"| {problem} | {name} | {np.median(seconds):.3f} | {min(seconds):.3f}-{max(seconds):.3f} | {ratio} | "
                  f"{np.median([run['import_seconds'] for run in runs]):.2f} | "
                  f"{np.median([run['accuracy'] for run in runs]):.3f} | "
                  f"{'yes' if runs[0]['compiled'] else 'no'} |", flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.1f}\n")


def worker(implementation, problem):
    """Run one implementation on one problem and print its figures as JSON."""
    X, y, X_test, y_test = make_problem(problem)
    _, _, _, hidden, _, batch_size, epochs = PROBLEMS[problem]
    runner = {"inkvoice": run_inkvoice, "inkvoice-numpy": run_inkvoice, "sklearn": run_sklearn,
              "torch": run_torch}[implementation]
    # Imports before the baseline: their memory is not training memory.
    if implementation == "torch":
        import torch  # noqa: F401
    elif implementation == "sklearn":
        import sklearn.neural_network  # noqa: F401
    else:
        import inkvoice.core.estimator  # noqa: F401
        from inkvoice.core import kernels

        os.environ[kernels.ENVIRONMENT_VARIABLE] = "numpy" if implementation == "inkvoice-numpy" else "numba"
        kernels.choose().prepare(np.float32)
    reset_peak_rss()
    before = current_rss_mb()
    cpu = time.process_time()
    seconds, accuracy = runner(X, y, X_test, y_test, hidden, batch_size, epochs)
    cpu = time.process_time() - cpu
    peak = peak_rss_mb()
    print(json.dumps({"seconds_per_epoch": seconds / epochs, "cpu_seconds_per_epoch": cpu / epochs,
                      "accuracy": accuracy, "peak_mb": peak, "training_mb": peak - before}))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problem", choices=["small", "large", "both"], default="both")
    parser.add_argument("--epochs", type=int, help="override the epochs of every problem")
    parser.add_argument("--profile", action="store_true",
                        help="also print where an epoch of ours goes (forward, backward, optimiser)")
    parser.add_argument("--implementations", help="comma-separated subset of: inkvoice, inkvoice-numpy, sklearn, torch")
    parser.add_argument("--table", choices=["users", "kernels", "both"], default="both")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of the users table")
    parser.add_argument("--threads", type=int,
                        help="users table: limit every implementation to this many BLAS/OpenMP threads")
    parser.add_argument("--worker", nargs=2, metavar=("IMPLEMENTATION", "PROBLEM"), help=argparse.SUPPRESS)
    parser.add_argument("--fit-as-user", nargs=2, metavar=("IMPLEMENTATION", "PROBLEM"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.epochs:
        for name, spec in PROBLEMS.items():
            PROBLEMS[name] = (*spec[:-1], args.epochs)
    if args.worker:
        worker(*args.worker)
        return
    if args.fit_as_user:
        fit_as_user(*args.fit_as_user)
        return
    problems = ["small", "large"] if args.problem == "both" else [args.problem]
    chosen = set(args.implementations.split(",")) if args.implementations else None
    if args.table in ("users", "both"):
        users_table(problems, args.rounds, chosen, args.epochs, args.threads)
    if args.table in ("kernels", "both"):
        kernels_table(problems, chosen, args.epochs, args.profile)


def kernels_table(problems, chosen, epochs, profile):
    """Print the "kernels" table: each implementation's epoch with our kernels forced and loaded first."""
    from threadpoolctl import threadpool_limits

    all_cores = matmul_gflops()
    with threadpool_limits(limits=1, user_api="blas"):
        one_thread = matmul_gflops()
    # The ceiling is the better of the two: on some machines one thread multiplies faster.
    ceiling = max(all_cores, one_thread)
    print(f"numpy float32 matmul (2048x2048): {all_cores:.1f} GFLOP/s on {os.cpu_count()} cores, "
          f"{one_thread:.1f} GFLOP/s on one; ceiling {ceiling:.1f}; load average {os.getloadavg()[0]:.1f}")
    print(f"compiled kernels in a fresh process (numba import and float32 kernels): compiled into an empty cache "
          f"{kernel_seconds(cold=True):.2f} s, loaded from the cache {kernel_seconds(cold=False):.2f} s\n")
    header = ("| problem | implementation | threads | s/epoch | vs inkvoice | CPU s/epoch | test accuracy | peak MB | "
              "training MB | GFLOP/s | of matmul |")
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for problem in problems:
        results = {}
        for implementation, threads in IMPLEMENTATIONS:
            if chosen is not None and implementation not in chosen:
                continue
            command = [sys.executable, __file__, "--worker", implementation, problem]
            if epochs:
                command += ["--epochs", str(epochs)]
            env = {**os.environ, "PYTHONPATH": str(ROOT)}
            env.update(_thread_variables(threads))
            label = (implementation, threads or ("auto" if implementation.startswith("inkvoice") else "all"))
            done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)
            if done.returncode != 0:
                last = (done.stderr.strip().splitlines() or ["failed"])[-1]
                print(f"| {problem} | {label[0]} | {label[1]} | not run: {last} | | | | | | | |")
                continue
            results[label] = json.loads(done.stdout.strip().splitlines()[-1])
        ours = results.get(("inkvoice", "auto"), {}).get("seconds_per_epoch")
        for (implementation, threads), figures in results.items():
            speed = figures["seconds_per_epoch"]
            ratio = f"{speed / ours:.2f}x" if ours else ""
            gflops = training_flops(problem) / speed / 1e9
            share = f"{gflops / ceiling:.0%}" if problem == "large" else ""
            print(f"| {problem} | {implementation} | {threads} | {speed:.3f} | {ratio} | "
                  f"{figures['cpu_seconds_per_epoch']:.3f} | {figures['accuracy']:.3f} | "
                  f"{figures['peak_mb']:.0f} | {figures['training_mb']:.0f} | {gflops:.1f} | {share} |", flush=True)
        products = {threads: products_only_seconds(problem, threads) for threads in (1, os.cpu_count() or 1)}
        print("| " + problem + " | matrix products alone | "
              + " / ".join(f"{threads}: {seconds:.3f}" for threads, seconds in products.items()) + " | | | | | | | |")
        if profile:
            total, parts = time_breakdown(problem)
            print(f"| {problem} | inkvoice epoch breakdown | {total:.3f} total: "
                  + ", ".join(f"{key} {value:.3f}" for key, value in parts.items()) + " | | | | | | | |", flush=True)
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
