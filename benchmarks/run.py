"""Benchmark runner: one training epoch of fastbp against its GEMM-only limit and other libraries.

Run it from the project root (the results go to ``benchmarks/results/``, which git ignores)::

    python -m fastbp.benchmarks.run                       # every config, 1 and 2 BLAS threads
    python -m fastbp.benchmarks.run --quick               # smoke run: training only, < 1 min
    python -m fastbp bench [--quick]                      # the same, as fastbp's command line
    python -m fastbp.benchmarks.run --kernels both        # also with OpenBLAS's default kernels
    python -m fastbp.benchmarks.run --configs small medium --threads 1 --repeats 9 --out DIR

It needs ``threadpoolctl`` (``pip install threadpoolctl``) to set the thread count of every
BLAS in the process; torch, scikit-learn, JAX and matplotlib are used when importable.

What is timed
    Each configuration (float32, ReLU hidden layers, softmax cross-entropy, SGD with momentum
    0.9, shuffled mini-batches, the same random data and initial weights for everyone) is
    trained for one epoch by each implementation: ``fastbp`` (``model.fit(epochs=1)``, the
    whole call), ``numpy`` (the pure-NumPy reference), ``torch``, ``sklearn``
    (``MLPClassifier`` with ``warm_start``, one epoch per ``fit``), ``jax`` (a jitted step per
    batch) and ``jax-scan`` (the epoch as one jitted ``lax.scan``), and ``roofline``.
    Prediction of 16384 rows and float64 training of the small network are timed as well.
    Only when named in ``--implementations``: ``fastbp-dropout``, fastbp's network with a
    ``Dropout(0.5)`` after every hidden layer (what dropout costs an epoch).

The ratio
    ``roofline`` runs only the epoch's GEMMs (forward, weight gradient, input gradient of every
    batch) through the same SciPy BLAS as fastbp, with no activation, loss, gather or update:
    it is the time a training epoch cannot beat with that BLAS. (fastbp itself runs products
    of at most ``SMALL_GEMM_MACS`` multiply-adds in its own C loops, which beat OpenBLAS
    there, so on the tiny network its ratio can fall below 1.) An implementation's ratio is
    its epoch time divided by the roofline's epoch time *of the same repeat*, and the median
    of those per-repeat ratios is reported. Pairing matters because 2-thread timings on a
    shared machine are bimodal: a ratio of medians mixes slow and fast rounds, a median of
    paired ratios compares epochs that ran under the same conditions. 1.0 means "all GEMM";
    the excess is everything else (and, for other libraries, a different BLAS). Prediction is
    reported relative to fastbp's own ``predict``.

How
    After one warm-up epoch each, every repeat runs each implementation once, in an order that
    rotates from repeat to repeat (round-robin), and medians over the repeats are reported.
    Thread counts are set for every BLAS and OpenMP pool in the process (threadpoolctl) and
    for torch (``torch.set_num_threads``). At more than one thread, each timed call waits
    0.2 s first: an idle OpenBLAS worker spins for about 0.1 s after each call, and NumPy's
    and SciPy's OpenBLAS (and torch's OpenMP) each have their own, so without the pause an
    implementation would run against the previous one's spinning threads and lose a core
    (much of the bimodality of 2-thread timings came from that). Short tasks then get one
    untimed call right before the timed one, so that waking their own pool is not timed.
    The CPU time other processes used during each suite is recorded and flagged. JAX sizes
    its CPU pool from ``PJRT_NPROC`` when it is imported, so JAX is timed in a subprocess
    per thread count, interleaved with its own roofline there. ``OPENBLAS_CORETYPE`` (here
    ``Haswell``: AVX2 kernels; unset, OpenBLAS picks AVX-512 ones on this CPU) is read when
    OpenBLAS loads, so ``--kernels default`` or ``both`` re-runs everything in a subprocess
    with the variable removed. It changes only OpenBLAS: torch (MKL, oneDNN) and JAX (XLA)
    pick their own kernels.

Output: ``results.json`` (every raw time, medians, machine, threads, kernels), ``results.md``
(the tables, also printed) and ``results.png`` (ratio to roofline; needs matplotlib).
"""
import argparse
import gc
import importlib.util
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

import fastbp
from fastbp._native import VARIANT as CORE_VARIANT
from fastbp._native import core as _core  # the build fastbp runs (avx512, avx2, baseline)
from fastbp.benchmarks.numpy_reference import NumpyMLP
from fastbp.benchmarks.threads import (all_threads, blas_info, kernel_families,
                                       require_threadpoolctl, thread_pools)

LEARNING_RATE = 0.005  # small enough that no config diverges over many epochs
MOMENTUM = 0.9
DROPOUT_RATE = 0.5  # fastbp-dropout's rate after every hidden layer
PREDICT_SAMPLES = 16384
DEFAULT_REPEATS = 5
QUICK_REPEATS = 3
QUICK_SAMPLES = 2048  # training and prediction rows per config with --quick
QUICK_CONFIGS = ("tiny", "small")
DEFAULT_OUT = Path("benchmarks") / "results"
COOL_DOWN_S = 0.2  # > the ~0.1 s an idle OpenBLAS worker spins; see time_round_robin
PRE_RUN_BELOW_S = 0.5
BUSY_CORES = 0.1  # other processes using more than this many cores get a warning
JAX_THREADS_VARIABLE = "PJRT_NPROC"
CORETYPE_VARIABLE = "OPENBLAS_CORETYPE"


@dataclass(frozen=True)
class Config:
    """A benchmark network: layer widths, batch size and training rows."""

    name: str
    sizes: tuple
    batch_size: int
    n_samples: int

    def describe(self):
        return f"{'-'.join(map(str, self.sizes))}, batch {self.batch_size}"


CONFIGS = {config.name: config for config in (
    Config("tiny", (64, 32, 10), 32, 8192),
    Config("small", (784, 128, 10), 64, 16384),
    Config("medium", (784, 512, 256, 10), 128, 16384),
    Config("large", (2048, 2048, 2048, 10), 512, 8192),
)}


@dataclass(frozen=True)
class Suite:
    """One table of results: what is timed, in which dtype, relative to which implementation."""

    name: str
    title: str  # may name {predict_rows}
    dtype: str
    baseline: str
    task: str  # "train" (run_epoch) or "predict"
    implementations: tuple = None  # None: every one that can do the task
    configs: tuple = None  # None: every selected config

    def applies_to(self, config_name):
        return self.configs is None or config_name in self.configs


SUITES = (
    Suite("train", "Training, float32: one epoch", "float32", "roofline", "train"),
    Suite("predict", "Prediction, float32: {predict_rows} rows", "float32", "fastbp", "predict"),
    Suite("train-float64", "Training, float64: one epoch", "float64", "roofline", "train",
          implementations=("fastbp", "numpy", "roofline"), configs=("small",)),
)


@dataclass(frozen=True)
class Problem:
    """Everything an implementation needs to train one config: data, weights, settings.

    ``X`` is a C-contiguous array of shape (n_samples, n_features) in the model dtype, ``y``
    the integer labels of shape (n_samples,), ``weights`` one ``(W, b)`` per layer with ``W``
    of shape (in_features, out_features), shared by every implementation.
    """

    sizes: tuple
    batch_size: int
    X: np.ndarray
    y: np.ndarray
    weights: list
    lr: float = LEARNING_RATE
    momentum: float = MOMENTUM

    @property
    def dtype(self):
        return self.X.dtype

    @property
    def n_samples(self):
        return self.X.shape[0]


def random_inputs(n_samples, n_features, dtype, seed):
    """Standard-normal rows, C-contiguous, of ``dtype``."""
    return np.random.default_rng(seed).standard_normal((n_samples, n_features), dtype=dtype)


def make_problem(config, dtype, n_samples, seed=0):
    """Random data (normal X, uniform integer labels) and fastbp's seeded initial weights."""
    X = random_inputs(n_samples, config.sizes[0], dtype, seed)
    y = np.random.default_rng(seed + 1).integers(0, config.sizes[-1], size=n_samples)
    model = new_fastbp_model(config.sizes, dtype)
    weights = [(layer.weight.copy(), layer.bias.copy()) for layer in model.layers]
    return Problem(config.sizes, config.batch_size, X, y, weights)


def new_fastbp_model(sizes, dtype, dropout=0.0):
    """fastbp's benchmark network (with ``dropout``: a Dropout of that rate after every
    hidden layer). ``threads=None`` on the model; the adapters pass the row's count to each
    call (its default, "auto", would run the tiny network on one thread whatever the
    setting, and the rows for 2 threads would not be 2-thread timings)."""
    model = fastbp.mlp(sizes, activation="relu", loss="cross_entropy",
                       dtype=np.dtype(dtype).name, seed=0, threads=None)
    if not dropout:
        return model
    *hidden, last = model._specs
    layers = [item for spec in hidden for item in (spec, fastbp.Dropout(dropout))]
    return fastbp.Sequential([*layers, last], loss="cross_entropy", dtype=model.dtype.name,
                             seed=0, threads=None)


# ------------------------------------------------------------------------ implementations

class Implementation:
    """One way of training the benchmark network; the common interface of the adapters.

    ``prepare(problem)`` builds the model from the problem's weights and keeps what the other
    two need; ``run_epoch()`` trains one shuffled epoch; ``predict(X)`` returns class
    probabilities of shape (n_samples, n_classes). Adapters that cannot predict set
    ``predicts = False``; ``module`` names an optional dependency.
    """

    name = ""
    module = None
    predicts = True

    @classmethod
    def available(cls):
        return cls.module is None or importlib.util.find_spec(cls.module) is not None

    @classmethod
    def can(cls, task):
        return task == "train" or (task == "predict" and cls.predicts)

    def prepare(self, problem):
        raise NotImplementedError

    def run_epoch(self):
        raise NotImplementedError

    def predict(self, X):
        raise NotImplementedError(f"{self.name} does not predict")


class FastbpImplementation(Implementation):
    """``model.fit(X, y, epochs=1)``: input checks, the permutation and the compiled epoch."""

    name = "fastbp"
    dropout = 0.0

    def prepare(self, problem):
        self.problem = problem
        self.model = new_fastbp_model(problem.sizes, problem.dtype, self.dropout)
        dense = [layer for layer in self.model.layers if hasattr(layer, "weight")]
        for layer, (W, b) in zip(dense, problem.weights):
            layer.weight[...] = W
            layer.bias[...] = b
        # Created once and reused, so the momentum carries over from epoch to epoch.
        self.optimizer = fastbp.SGD(lr=problem.lr, momentum=problem.momentum)

    def run_epoch(self):
        # A team of the row's thread count (which the runner set as BLAS's), BLAS at one
        # thread inside the call.
        p = self.problem
        self.model.fit(p.X, p.y, epochs=1, batch_size=p.batch_size, optimizer=self.optimizer,
                       threads=fastbp.threads.current())

    def predict(self, X):
        return self.model.predict(X, threads=fastbp.threads.current())


class FastbpDropoutImplementation(FastbpImplementation):
    """fastbp's network with ``Dropout(DROPOUT_RATE)`` after every hidden layer (opt-in)."""

    name = "fastbp-dropout"
    dropout = DROPOUT_RATE


class RooflineImplementation(Implementation):
    """Only the GEMMs of a training epoch, through fastbp's BLAS calls (``gemm_roofline``)."""

    name = "roofline"
    predicts = False

    def prepare(self, problem):
        self.problem = problem
        self.model = new_fastbp_model(problem.sizes, problem.dtype)
        self.model._plan.ensure_capacity(problem.batch_size)

    def run_epoch(self):
        _core.gemm_roofline(self.model._plan, self.problem.X, self.problem.batch_size)


class NumpyImplementation(Implementation):
    """The pure-NumPy reference network (``benchmarks/numpy_reference.py``)."""

    name = "numpy"

    def prepare(self, problem):
        self.problem = problem
        activations = ["relu"] * (len(problem.sizes) - 2) + ["identity"]
        self.network = NumpyMLP(problem.sizes, activations, "cross_entropy", dtype=problem.dtype,
                                weights=problem.weights)
        self.rng = np.random.default_rng(0)

    def run_epoch(self):
        p = self.problem
        self.network.train_epoch(p.X, p.y, self.rng.permutation(p.n_samples), p.batch_size,
                                 p.lr, momentum=p.momentum)

    def predict(self, X):
        return self.network.predict(X)


class TorchImplementation(Implementation):
    """``nn.Sequential`` of Linear/ReLU, ``optim.SGD``, ``CrossEntropyLoss``; the data is
    preloaded as tensors, permuted once per epoch, then sliced into batches."""

    name = "torch"
    module = "torch"

    def prepare(self, problem):
        import torch
        self.torch = torch
        self.problem = problem
        dtype = getattr(torch, problem.dtype.name)
        layers = []
        for W, b in problem.weights:
            linear = torch.nn.Linear(*W.shape, dtype=dtype)
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(W.T))  # torch stores (out, in)
                linear.bias.copy_(torch.from_numpy(b))
            layers += [linear, torch.nn.ReLU()]
        self.network = torch.nn.Sequential(*layers[:-1])
        self.optimizer = torch.optim.SGD(self.network.parameters(), lr=problem.lr,
                                         momentum=problem.momentum)
        self.loss = torch.nn.CrossEntropyLoss()
        self.X = torch.from_numpy(problem.X)
        self.y = torch.from_numpy(problem.y.astype(np.int64))
        self.generator = torch.Generator().manual_seed(0)

    def run_epoch(self):
        p = self.problem
        order = self.torch.randperm(p.n_samples, generator=self.generator)
        X, y = self.X[order], self.y[order]
        for start in range(0, p.n_samples, p.batch_size):
            stop = start + p.batch_size
            self.optimizer.zero_grad()
            self.loss(self.network(X[start:stop]), y[start:stop]).backward()
            self.optimizer.step()

    def predict(self, X):
        with self.torch.no_grad():
            logits = self.network(self.torch.from_numpy(X))
            return self.torch.softmax(logits, dim=1).numpy()


class SklearnImplementation(Implementation):
    """``MLPClassifier(solver="sgd", warm_start=True, max_iter=1)``: one epoch per ``fit``
    (its own shuffling and input checks included). It draws its own initial weights."""

    name = "sklearn"
    module = "sklearn"

    def prepare(self, problem):
        from sklearn.neural_network import MLPClassifier
        self.problem = problem
        self.classifier = MLPClassifier(
            hidden_layer_sizes=problem.sizes[1:-1], activation="relu", solver="sgd",
            learning_rate_init=problem.lr, momentum=problem.momentum, nesterovs_momentum=False,
            alpha=0.0, batch_size=problem.batch_size, shuffle=True, max_iter=1,
            warm_start=True, tol=0.0, n_iter_no_change=10**9, random_state=0)
        self.run_epoch()  # the first fit initialises the network, so predict works

    def run_epoch(self):
        from sklearn.exceptions import ConvergenceWarning
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter=1 is on purpose
            self.classifier.fit(self.problem.X, self.problem.y)

    def predict(self, X):
        return self.classifier.predict_proba(X)


def jax_functions(lr, momentum):
    """The jitted SGD step on one batch of row indices, and the jitted epoch as a ``lax.scan``
    of that step over an (n_batches, batch_size) array of row indices."""
    import jax
    import jax.numpy as jnp
    from jax.scipy.special import logsumexp

    def loss(params, X, y):
        A = X
        for W, b in params[:-1]:
            A = jax.nn.relu(A @ W + b)
        W, b = params[-1]
        logits = A @ W + b
        picked = jnp.take_along_axis(logits, y[:, None], axis=1)[:, 0]
        return jnp.mean(logsumexp(logits, axis=1) - picked)

    def step(params, velocity, X, y, rows):
        grads = jax.grad(loss)(params, X[rows], y[rows])
        velocity = jax.tree_util.tree_map(lambda v, g: momentum * v + g, velocity, grads)
        params = jax.tree_util.tree_map(lambda p, v: p - lr * v, params, velocity)
        return params, velocity

    def epoch(params, velocity, X, y, batches):
        def body(carry, rows):
            return step(*carry, X, y, rows), None
        (params, velocity), _ = jax.lax.scan(body, (params, velocity), batches)
        return params, velocity

    return jax.jit(step, donate_argnums=(0, 1)), jax.jit(epoch, donate_argnums=(0, 1))


class JaxStepImplementation(Implementation):
    """A jitted step per batch (it gathers the batch's rows itself), called from Python.

    JAX reads ``PJRT_NPROC`` at import, so this runs only in a subprocess started for one
    thread count (see :func:`jax_results`)."""

    name = "jax"
    module = "jax"
    predicts = False

    def prepare(self, problem):
        import jax
        import jax.numpy as jnp
        self.jax = jax
        self.problem = problem
        self.params = [(jnp.asarray(W), jnp.asarray(b)) for W, b in problem.weights]
        self.velocity = jax.tree_util.tree_map(jnp.zeros_like, self.params)
        self.X, self.y = jnp.asarray(problem.X), jnp.asarray(problem.y.astype(np.int32))
        self.step, self.epoch = jax_functions(problem.lr, problem.momentum)
        self.rng = np.random.default_rng(0)

    def run_epoch(self):
        p = self.problem
        order = self.rng.permutation(p.n_samples).astype(np.int32)
        state = (self.params, self.velocity)
        for start in range(0, p.n_samples, p.batch_size):
            state = self.step(*state, self.X, self.y, order[start:start + p.batch_size])
        self.finish(state)

    def finish(self, state):
        self.params, self.velocity = self.jax.block_until_ready(state)


class JaxScanImplementation(JaxStepImplementation):
    """The whole epoch's full batches as one jitted ``lax.scan``; a last partial batch, if
    any, goes through the per-batch step."""

    name = "jax-scan"

    def run_epoch(self):
        p = self.problem
        order = self.rng.permutation(p.n_samples).astype(np.int32)
        full = p.n_samples - p.n_samples % p.batch_size
        state = self.epoch(self.params, self.velocity, self.X, self.y,
                           order[:full].reshape(-1, p.batch_size))
        if full < p.n_samples:
            state = self.step(*state, self.X, self.y, order[full:])
        self.finish(state)


IMPLEMENTATIONS = {cls.name: cls for cls in (
    FastbpImplementation, FastbpDropoutImplementation, RooflineImplementation,
    NumpyImplementation, TorchImplementation, SklearnImplementation, JaxStepImplementation,
    JaxScanImplementation)}
JAX_IMPLEMENTATIONS = ("jax", "jax-scan")
OPT_IN = ("fastbp-dropout",)  # timed only when --implementations names them


# ------------------------------------------------------------------------------- timing

def time_call(task):
    started = time.perf_counter()
    task()
    return time.perf_counter() - started


def time_round_robin(tasks, repeats, cool_down=0.0):
    """Time each task after one warm-up call each, interleaved, rotating the order per repeat.

    Parameters
    ----------
    tasks : dict of str to callable
    repeats : int
    cool_down : float, default 0.0
        Seconds to sleep before each timed call, so that the thread pools of the task timed
        before it stop spinning (an idle OpenBLAS worker spins for about 0.1 s, taking a core
        from whatever runs next). A task whose warm-up took less than
        ``PRE_RUN_BELOW_S`` then gets one untimed call right before its timed one, to wake
        its own pools.

    Returns
    -------
    dict of str to list of float
        Seconds of each call, one per repeat, in repeat order.
    """
    names = list(tasks)
    warm_up = {name: time_call(tasks[name]) for name in names}
    pre_run = {name: cool_down > 0 and warm_up[name] < PRE_RUN_BELOW_S for name in names}
    times = {name: [] for name in names}
    gc.collect()
    gc.disable()
    try:
        for repeat in range(repeats):
            shift = repeat % len(names)
            for name in names[shift:] + names[:shift]:
                time.sleep(cool_down)
                if pre_run[name]:
                    tasks[name]()
                times[name].append(time_call(tasks[name]))
    finally:
        gc.enable()
    return times


def summarize(times, baseline):
    """Median time and median paired ratio to ``baseline`` (per repeat, then the median).

    Returns
    -------
    dict of str to dict
        Per implementation: ``times_s``, ``median_s``, ``baseline``, ``baseline_times_s``,
        ``ratios`` and ``median_ratio``.
    """
    base = times[baseline]
    summary = {}
    for name, values in times.items():
        ratios = [value / reference for value, reference in zip(values, base)]
        summary[name] = {"times_s": values, "median_s": statistics.median(values),
                         "baseline": baseline, "baseline_times_s": base, "ratios": ratios,
                         "median_ratio": statistics.median(ratios)}
    return summary


def suite_members(suite, names):
    """The implementations among ``names`` that take part in ``suite``: none if its baseline
    is missing or would be alone."""
    members = [name for name in names if IMPLEMENTATIONS[name].can(suite.task)
               and (suite.implementations is None or name in suite.implementations)]
    return members if suite.baseline in members and len(members) > 1 else []


def run_suite(suite, config, threads, implementations, X_predict, repeats):
    """Time one suite for one config at one thread count; returns its result records.

    ``implementations`` maps each member of the suite to its prepared adapter."""
    if suite.task == "train":
        tasks = {name: impl.run_epoch for name, impl in implementations.items()}
    else:
        tasks = {name: (lambda impl=impl: impl.predict(X_predict))
                 for name, impl in implementations.items()}
    cool_down = COOL_DOWN_S if threads > 1 else 0.0
    before = cpu_snapshot()
    times = time_round_robin(tasks, repeats, cool_down)
    others = other_processes_cores(before, cpu_snapshot())
    records = [dict(suite=suite.name, config=config.name, dtype=suite.dtype, threads=threads,
                    implementation=name, other_processes_cores=others, **values)
               for name, values in summarize(times, suite.baseline).items()]
    print_progress(records)
    return records


def print_progress(records):
    first = records[0]
    cells = "  ".join(f"{r['implementation']} {r['median_s'] * 1e3:.2f} ms "
                      f"({r['median_ratio']:.2f}x)" for r in records)
    busy = first["other_processes_cores"]
    note = f"  [other processes used {busy:.2f} cores]" if busy and busy > BUSY_CORES else ""
    print(f"  {first['suite']:<13} {first['config']:<6} {first['threads']} thr: {cells}{note}",
          flush=True)


def cpu_snapshot():
    """(CPU seconds all processes have used, CPU seconds this process has used, wall time);
    the first is None where /proc/stat is missing (not Linux)."""
    try:
        ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        busy = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # all but idle, iowait
    except (OSError, ValueError):
        busy = None
    return busy, time.process_time(), time.perf_counter()


def other_processes_cores(before, after):
    """Mean number of cores that other processes (and the hypervisor's steal) kept busy
    between two :func:`cpu_snapshot` calls, or None if unknown."""
    if before[0] is None or after[0] is None:
        return None
    others = (after[0] - before[0]) - (after[1] - before[1])
    return max(others, 0.0) / max(after[2] - before[2], 1e-9)


# -------------------------------------------------------------------------- orchestration

@dataclass(frozen=True)
class Settings:
    """What one benchmark process runs, resolved from the command line."""

    configs: tuple
    threads: tuple
    repeats: int
    implementations: tuple
    quick: bool

    def training_rows(self, config):
        return min(config.n_samples, QUICK_SAMPLES) if self.quick else config.n_samples

    @property
    def predict_rows(self):
        return QUICK_SAMPLES if self.quick else PREDICT_SAMPLES

    def suites(self):
        """Every suite; with ``--quick`` only float32 training (the README's table)."""
        return tuple(s for s in SUITES if not self.quick or s.name == "train")

    def describe(self):
        """One paragraph saying what this run times, printed before it starts."""
        configs = "; ".join(f"{name} ({CONFIGS[name].describe()}, "
                            f"{self.training_rows(CONFIGS[name])} rows)" for name in self.configs)
        what = ", ".join(suite.title.format(predict_rows=self.predict_rows)
                         for suite in self.suites())
        text = (f"Timing {what}.\nConfigs: {configs}.\nBLAS threads: "
                f"{' '.join(map(str, self.threads))}; {self.repeats} timed repeats after one "
                f"warm-up; implementations: {' '.join(self.implementations)} (those importable).")
        if self.quick:
            text += ("\nThis is the quick run (--quick): fewer configs, rows and repeats, training "
                     f"only. The full run (no --quick; about {FULL_RUN_MINUTES} minutes, "
                     f"{FULL_RUN_BOTH_KERNELS_MINUTES} with --kernels both) times all four "
                     "configs with every row, prediction and float64 training too.")
        return text


#: How long the full run takes, approximately: ``--kernels both`` took 898 s (15 minutes) on
#: the 2-core machine of the README's Speed section, with torch, scikit-learn and JAX
#: installed; one kernel family (the default, ``--kernels env``) is about half of that. The
#: time grows on slower machines and shrinks with fewer libraries installed. The command
#: line's help, the quick run's note and the README quote these figures (a test checks).
FULL_RUN_MINUTES = 8
FULL_RUN_BOTH_KERNELS_MINUTES = 15


def jax_in_this_process(settings):
    """JAX can be timed here only if its pool was sized for the single thread count asked."""
    return (len(settings.threads) == 1
            and os.environ.get(JAX_THREADS_VARIABLE) == str(settings.threads[0]))


def usable_implementations(settings):
    """Names to time in this process: requested, importable, and JAX only where allowed."""
    names = []
    for name in settings.implementations:
        if not IMPLEMENTATIONS[name].available():
            print(f"{name}: not importable, skipped")
        elif name not in JAX_IMPLEMENTATIONS or jax_in_this_process(settings):
            names.append(name)
    return names


def import_optional_libraries(names):
    """Import the libraries of the chosen implementations now, so that threadpoolctl sees
    (and limits) their thread pools and their import time stays out of the timings."""
    for name in names:
        module = IMPLEMENTATIONS[name].module
        if module:
            importlib.import_module(module)


def prepare_implementations(names, problem):
    implementations = {}
    for name in names:
        implementations[name] = IMPLEMENTATIONS[name]()
        implementations[name].prepare(problem)
    return implementations


def thread_settings(threads):
    """Print and return every pool's thread count while limited to ``threads``."""
    with all_threads(threads):
        pools = thread_pools()
        torch = sys.modules.get("torch")
        torch_threads = torch.get_num_threads() if torch is not None else None
        lines = [f"BLAS: {line}" for line in blas_info()]
    lines += [f"OpenMP: {os.path.basename(pool['filepath'])}, {pool['num_threads']} threads"
              for pool in pools if pool["user_api"] == "openmp"]
    if torch_threads is not None:
        lines.append(f"torch: {torch_threads} intra-op threads")
    print(f"threads: {threads}\n  " + "\n  ".join(lines), flush=True)
    return {"pools": pools, "torch": torch_threads}


def benchmark_config(config, settings, names):
    """Every suite of one config at every thread count; returns the result records."""
    members = {suite: suite_members(suite, names) for suite in settings.suites()
               if suite.applies_to(config.name)}
    members = {suite: chosen for suite, chosen in members.items() if chosen}
    print(f"\n{config.name}: {config.describe()}, {settings.training_rows(config)} rows",
          flush=True)
    needed = {}
    for suite, chosen in members.items():
        needed.setdefault(suite.dtype, set()).update(chosen)
    prepared = {}
    for dtype, chosen in needed.items():
        problem = make_problem(config, dtype, settings.training_rows(config))
        prepared[dtype] = prepare_implementations([n for n in names if n in chosen], problem)
    X_predict = random_inputs(settings.predict_rows, config.sizes[0], np.float32, seed=2)
    records = []
    for threads in settings.threads:
        with all_threads(threads):
            for suite, chosen in members.items():
                adapters = {name: prepared[suite.dtype][name] for name in chosen}
                records += run_suite(suite, config, threads, adapters, X_predict,
                                     settings.repeats)
    return records


def run_benchmark(settings, argv):
    """The whole benchmark with the BLAS kernels this process loaded.

    Returns
    -------
    dict
        ``kernels`` (``OPENBLAS_CORETYPE`` and each OpenBLAS's kernel family), ``threads``
        (per thread count, every pool as set for it) and ``results`` (one record per suite,
        config, thread count and implementation).
    """
    names = usable_implementations(settings)
    import_optional_libraries(names)
    run = {"kernels": kernel_description(), "results": []}
    print(f"\nOpenBLAS kernels: {run['kernels']['label']}")
    run["other_processes_cores_at_start"] = warn_if_busy()
    run["threads"] = {str(threads): thread_settings(threads) for threads in settings.threads}
    for config_name in settings.configs:
        run["results"] += benchmark_config(CONFIGS[config_name], settings, names)
    run["results"] += jax_results(settings, argv)
    return run


def warn_if_busy(window=0.5):
    """Say so if other processes are using the CPU (measured over ``window`` seconds while
    this one sleeps): on a 2-core machine they distort 2-thread timings most."""
    before = cpu_snapshot()
    time.sleep(window)
    busy = other_processes_cores(before, cpu_snapshot())
    if busy is not None and busy > BUSY_CORES:
        print(f"warning: other processes are using {busy:.2f} cores; timings will be noisy",
              flush=True)
    return busy


def kernel_description():
    """The ``OPENBLAS_CORETYPE`` in force and the kernel family each OpenBLAS reports."""
    coretype = os.environ.get(CORETYPE_VARIABLE)
    families = kernel_families()
    chosen = f"{CORETYPE_VARIABLE}={coretype}" if coretype else f"{CORETYPE_VARIABLE} unset"
    label = f"{'/'.join(sorted(set(map(str, families.values()))))} ({chosen})"
    return {"coretype": coretype, "families": families, "label": label}


# --------------------------------------------------------------------------- subprocesses

def run_child(argv, env):
    """Run this benchmark in a fresh Python with ``env``; returns the run dict it wrote.

    The child inherits stdout, so its progress shows as it goes.
    """
    with tempfile.TemporaryDirectory() as scratch:
        raw = Path(scratch) / "run.json"
        command = [sys.executable, "-m", "fastbp.benchmarks.run", *argv, "--raw-json", str(raw)]
        subprocess.run(command, env=env, check=True)
        return json.loads(raw.read_text())


def jax_results(settings, argv):
    """JAX's records, each from a subprocess whose ``PJRT_NPROC`` is the thread count."""
    wanted = [name for name in JAX_IMPLEMENTATIONS if name in settings.implementations]
    if not wanted or jax_in_this_process(settings) or not IMPLEMENTATIONS["jax"].available():
        return []
    records = []
    for threads in settings.threads:
        print(f"\njax at {threads} threads, in a subprocess ({JAX_THREADS_VARIABLE}={threads})",
              flush=True)
        child_argv = [*argv, "--threads", str(threads), "--kernels", "env",
                      "--implementations", "roofline", *wanted]
        env = {**os.environ, JAX_THREADS_VARIABLE: str(threads)}
        run = run_child(child_argv, env)
        records += [r for r in run["results"] if r["implementation"] in wanted]
    return records


def without_coretype():
    """This process's environment minus ``OPENBLAS_CORETYPE`` (OpenBLAS picks kernels)."""
    return {key: value for key, value in os.environ.items() if key != CORETYPE_VARIABLE}


def collect_runs(settings, kernels, argv):
    """One run per kernel family asked for: this process's, and/or a child's without
    ``OPENBLAS_CORETYPE``."""
    runs = []
    if kernels in ("env", "both"):
        runs.append(run_benchmark(settings, argv))
    if kernels in ("default", "both"):
        if kernels == "both" and CORETYPE_VARIABLE not in os.environ:
            print(f"\n{CORETYPE_VARIABLE} is not set: the default kernels are the ones above")
        else:
            print(f"\nRe-running in a subprocess without {CORETYPE_VARIABLE}", flush=True)
            runs.append(run_child([*argv, "--kernels", "env"], without_coretype()))
    return runs


# ------------------------------------------------------------------------------ reporting

IMPLEMENTATION_ORDER = tuple(IMPLEMENTATIONS)


def sort_key(record):
    return (list(CONFIGS).index(record["config"]), record["threads"],
            IMPLEMENTATION_ORDER.index(record["implementation"]))


def markdown_table(records):
    """One row per config and thread count, one column per implementation (the baseline
    first): median ms, and for the others the median paired ratio to the baseline."""
    baseline = records[0]["baseline"]
    names = sorted({r["implementation"] for r in records},
                   key=lambda name: (name != baseline, IMPLEMENTATION_ORDER.index(name)))
    cells = {}
    for r in sorted(records, key=sort_key):
        cell = format_ms(r["median_s"] * 1e3)
        if r["implementation"] != baseline:
            cell += f" ({r['median_ratio']:.2f}×)"
        cells.setdefault((r["config"], r["threads"]), {})[r["implementation"]] = cell
    lines = ["| config | threads | " + " | ".join(names) + " |",
             "|---|---|" + "---|" * len(names)]
    for (config, threads), row in cells.items():
        lines.append(f"| {config} | {threads} | "
                     + " | ".join(row.get(name, "–") for name in names) + " |")
    return "\n".join(lines)


def format_ms(ms):
    """Milliseconds to three significant figures, without exponents."""
    return f"{ms:.{max(0, 2 - math.floor(math.log10(ms)))}f}" if ms >= 1 else f"{ms:.3f}"


def busy_note(records):
    """A line naming the timings during which other processes kept the CPU busy, if any."""
    busy = {(r["config"], r["threads"], r.get("other_processes_cores")) for r in records
            if (r.get("other_processes_cores") or 0) > BUSY_CORES}
    if not busy:
        return []
    cells = ", ".join(f"{config} at {threads} thread(s): {cores:.2f}"
                      for config, threads, cores in sorted(busy))
    return ["", f"Other processes kept cores busy during these timings (mean cores): {cells}."]


def markdown_report(report):
    """The whole Markdown document: settings, then one table per kernel family and suite."""
    settings = report["settings"]
    machine = report["machine"]
    lines = ["# fastbp benchmarks", "",
             f"{machine['cpu']}, {machine['cpus']} CPUs; Python {machine['python']}; "
             + ", ".join(f"{name} {version}" for name, version in machine["versions"].items())
             + f"; fastbp core build: {machine['fastbp_core']}",
             "",
             f"Median of {settings['repeats']} repeats after one warm-up, implementations "
             "interleaved round-robin; cells are median ms, and in brackets the median over "
             "repeats of (time / the baseline's time in the same repeat). Configs: "
             + "; ".join(f"{c} {CONFIGS[c].describe()}" for c in settings["configs"]) + "."]
    for run in report["runs"]:
        lines += ["", f"## OpenBLAS kernels: {run['kernels']['label']}"]
        for suite in SUITES:
            records = [r for r in run["results"] if r["suite"] == suite.name]
            if records:
                title = suite.title.format(predict_rows=settings["predict_rows"])
                lines += ["", f"### {title}", "", markdown_table(records), *busy_note(records)]
    return "\n".join(lines) + "\n"


def plot_ratios(report, path):
    """Grouped bars of the training ratio to roofline: one panel per kernel family and thread
    count, configs along x, one bar per implementation. Returns False without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    runs, threads = report["runs"], report["settings"]["threads"]
    figure, axes = plt.subplots(len(runs), len(threads), squeeze=False, sharey=True,
                                figsize=(5.5 * len(threads), 3.8 * len(runs)))
    for row, run in enumerate(runs):
        for column, count in enumerate(threads):
            records = [r for r in run["results"] if r["suite"] == "train"
                       and r["threads"] == count and r["implementation"] != "roofline"]
            draw_grouped_bars(axes[row][column], records, report["settings"]["configs"])
            axes[row][column].set_title(f"{run['kernels']['label']}, {count} thread(s)",
                                        fontsize=9)
    axes[0][0].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True


def draw_grouped_bars(axis, records, configs):
    """One group of bars per config, one bar (labelled with its ratio) per implementation,
    on a log axis (ratios run from about 1 to about 100) with the roofline at 1."""
    from matplotlib.ticker import FuncFormatter, LogLocator
    names = [n for n in IMPLEMENTATION_ORDER if any(r["implementation"] == n for r in records)]
    width = 0.8 / max(len(names), 1)
    for i, name in enumerate(names):
        ratio = {r["config"]: r["median_ratio"] for r in records if r["implementation"] == name}
        positions = [c + (i - (len(names) - 1) / 2) * width for c in range(len(configs))]
        bars = axis.bar(positions, [ratio.get(c, np.nan) for c in configs], width, label=name)
        axis.bar_label(bars, fmt="%.2g", fontsize=6)
    axis.axhline(1.0, color="black", linewidth=0.8)
    axis.set_yscale("log")
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    axis.yaxis.set_major_formatter(plain)
    axis.yaxis.set_minor_locator(LogLocator(base=10, subs=(2.0, 5.0)))
    axis.yaxis.set_minor_formatter(plain)
    axis.tick_params(axis="y", which="minor", labelsize=7)
    axis.set_xticks(range(len(configs)), configs)
    axis.set_ylabel("epoch time / roofline")


def machine_info():
    """CPU, core count, Python and the versions of the libraries involved."""
    versions = {}
    for package in ("fastbp", "numpy", "scipy", "threadpoolctl", "torch", "scikit-learn", "jax"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return {"cpu": cpu_name(), "cpus": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "versions": versions,
            "fastbp_core": CORE_VARIANT}


def cpu_name():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def write_reports(report, out):
    """results.json, results.md (also printed) and, with matplotlib, results.png in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(report, indent=1))
    markdown = markdown_report(report)
    (out / "results.md").write_text(markdown)
    print("\n" + markdown)
    if plot_ratios(report, out / "results.png"):
        print(f"wrote {out / 'results.json'}, {out / 'results.md'}, {out / 'results.png'}")
    else:
        print(f"wrote {out / 'results.json'}, {out / 'results.md'} "
              "(no results.png: pip install matplotlib)")


# ------------------------------------------------------------------------------------ CLI

def build_parser(prog="python -m fastbp.benchmarks.run", add_help=True):
    """The runner's command line; ``python -m fastbp bench`` reuses it (``add_help=False``,
    as an argparse parent), so both take the same options."""
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__.split("\n\n")[0], add_help=add_help,
        epilog="See the module docstring (pydoc fastbp.benchmarks.run) for what is timed.")
    parser.add_argument("--quick", action="store_true",
                        help=f"a smoke run: the training table only, {QUICK_SAMPLES} rows, "
                             f"{QUICK_REPEATS} repeats, configs {' '.join(QUICK_CONFIGS)} "
                             "unless given")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                        help="BLAS thread counts (default: 1 2)")
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS),
                        help=f"default: all ({' '.join(QUICK_CONFIGS)} with --quick)")
    parser.add_argument("--repeats", type=int,
                        help=f"timed epochs per implementation (default {DEFAULT_REPEATS}, "
                             f"{QUICK_REPEATS} with --quick)")
    parser.add_argument("--implementations", nargs="+", choices=list(IMPLEMENTATIONS),
                        default=[name for name in IMPLEMENTATIONS if name not in OPT_IN],
                        help="default: all that are importable but "
                             f"{' '.join(OPT_IN)} (roofline is always timed)")
    parser.add_argument("--kernels", choices=("env", "default", "both"), default="env",
                        help=f"env: OpenBLAS kernels as the environment sets them; default: "
                             f"re-run without {CORETYPE_VARIABLE}; both (default: env)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"directory for results.json/.md/.png (default {DEFAULT_OUT}, "
                             "relative to the current directory)")
    parser.add_argument("--raw-json", type=Path, help=argparse.SUPPRESS)  # child processes
    return parser


def check_args(parser, args):
    """Reject values argparse's types let through (exits with status 2, as argparse does)."""
    if args.repeats is not None and args.repeats < 1:
        parser.error("--repeats must be >= 1")
    if min(args.threads) < 1:
        parser.error("--threads must be >= 1")


def parse_args(argv):
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(parser, args)
    return args


def settings_from(args):
    configs = args.configs or (QUICK_CONFIGS if args.quick else tuple(CONFIGS))
    repeats = args.repeats or (QUICK_REPEATS if args.quick else DEFAULT_REPEATS)
    names = tuple(dict.fromkeys(["roofline", *args.implementations]))  # baseline first
    return Settings(tuple(configs), tuple(args.threads), repeats, names, args.quick)


def main(argv=None):
    """Run the benchmark; see the module docstring. Returns the report dict."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    require_threadpoolctl()
    settings = settings_from(args)
    if args.raw_json:  # a child run: just the results, for the parent to report
        run = run_benchmark(settings, argv)
        args.raw_json.write_text(json.dumps(run))
        return run
    print(settings.describe(), flush=True)
    report = {"machine": machine_info(),
              "settings": {**vars(settings), "predict_rows": settings.predict_rows,
                           "kernels": args.kernels},
              "runs": collect_runs(settings, args.kernels, argv)}
    write_reports(report, args.out)
    return report


if __name__ == "__main__":
    main()
