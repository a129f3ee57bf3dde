"""Benchmark runner: one training epoch of fastbp against its GEMM-only limit and other libraries.

Run it from the project root (the results go to ``benchmarks/results/``, which git ignores)::

    python -m fastbp.benchmarks.run                       # every config, 1 and 2 threads
    python -m fastbp.benchmarks.run --threads 1 4 8 16    # with a thread-scaling table
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
    for torch (``torch.set_num_threads``); fastbp is called with ``threads=`` that count (its
    own team, BLAS at one thread inside the call), and the roofline runs the GEMMs through
    BLAS at that count. With several counts starting at 1, the report adds a scaling table
    (speed-up and efficiency against 1 thread). At more than one thread, each timed call waits
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
import importlib
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fastbp.benchmarks.configs import CONFIGS, SUITES, make_problem, random_inputs
from fastbp.benchmarks.implementations import IMPLEMENTATIONS, JAX_IMPLEMENTATIONS, OPT_IN
from fastbp.benchmarks.report import BUSY_CORES, machine_info, write_reports
from fastbp.benchmarks.timing import (COOL_DOWN_S, cpu_snapshot, other_processes_cores,
                                      summarize, time_round_robin, warn_if_busy)
from fastbp.benchmarks.threads import (all_threads, blas_info, kernel_families,
                                       require_threadpoolctl, thread_pools)

PREDICT_SAMPLES = 16384
DEFAULT_REPEATS = 5
QUICK_REPEATS = 3
QUICK_SAMPLES = 2048  # training and prediction rows per config with --quick
QUICK_CONFIGS = ("tiny", "small")
DEFAULT_OUT = Path("benchmarks") / "results"
JAX_THREADS_VARIABLE = "PJRT_NPROC"
CORETYPE_VARIABLE = "OPENBLAS_CORETYPE"


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
        text = (f"Timing {what}.\nConfigs: {configs}.\nThreads: "
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
                        help="thread counts, e.g. 1 2 4 8 16 for the scaling table "
                             "(default: 1 2)")
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
