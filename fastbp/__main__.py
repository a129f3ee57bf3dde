"""fastbp's command line: a demo that trains a network next to pure NumPy, and the benchmark.

    fastbp [demo [--epochs N]]       (or python -m fastbp ...)
    fastbp bench [--quick] [...]
    fastbp --help
"""
import argparse
import os
import sys
import time

import numpy as np

import fastbp as fb
from fastbp.benchmarks.numpy_reference import NumpyMLP
from fastbp.benchmarks.threads import blas_info
from fastbp.datasets import make_classification


DEMO_EPOCHS = 10


def demo(epochs=DEMO_EPOCHS):
    """Train a 64-128-10 network with fastbp and the NumPy reference; print both results."""
    n_train, n_test, sizes, batch_size, lr = 16384, 4096, [64, 128, 10], 64, 0.05
    X, y = make_classification(n_train + n_test, sizes[0], sizes[-1], noise=3.0, seed=0)
    X_train, y_train, X_test, y_test = X[:n_train], y[:n_train], X[n_train:], y[n_train:]
    print(f"fastbp {fb.__version__} demo: {sizes[-1]}-class problem generated in code, "
          f"{n_train} training / {n_test} test samples, network {'-'.join(map(str, sizes))} "
          f"(relu, softmax cross-entropy), float32, batch {batch_size}, SGD momentum 0.9")
    for line in blas_info():
        print("BLAS:", line)

    model = fb.mlp(sizes, activation="relu", loss="cross_entropy", seed=0)
    reference = NumpyMLP(sizes, ["relu", "identity"], "cross_entropy",
                         weights=[(layer.weight, layer.bias) for layer in model.layers])
    print("\nfastbp:")
    history = model.fit(X_train, y_train, epochs=epochs, batch_size=batch_size,
                        optimizer=fb.SGD(lr=lr, momentum=0.9), verbose=1)
    fastbp_time = sum(history.epoch_time)

    print("\nNumPy reference (same data, same initial weights):")
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    for epoch in range(1, epochs + 1):
        loss = reference.train_epoch(X_train, y_train, rng.permutation(n_train), batch_size,
                                     lr=lr, momentum=0.9)
        print(f"epoch {epoch}/{epochs}  loss {loss:.4f}")
    numpy_time = time.perf_counter() - started

    accuracy = model.evaluate(X_test, y_test)["accuracy"]
    ref_accuracy = np.mean(reference.predict(X_test).argmax(axis=1) == y_test)
    print(f"\ntest accuracy: fastbp {accuracy:.2%}, NumPy reference {ref_accuracy:.2%}")
    print(f"training time: fastbp {fastbp_time:.2f} s, NumPy reference {numpy_time:.2f} s "
          f"({numpy_time / fastbp_time:.1f}x)")


def positive_int(text):
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def program_name():
    """``fastbp`` when run as the console script, else ``python -m fastbp``."""
    return "fastbp" if os.path.basename(sys.argv[0]) == "fastbp" else "python -m fastbp"


def build_parser():
    """The top-level parser and its ``bench`` subparser (which reports bench's errors)."""
    from fastbp.benchmarks import run

    parser = argparse.ArgumentParser(
        prog=program_name(), description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  fastbp                    the demo (the default command)\n"
               "  fastbp demo --epochs 3    a shorter demo\n"
               "  fastbp bench --quick      a benchmark smoke run, well under a minute\n"
               f"  fastbp bench              the full benchmark (about {run.FULL_RUN_MINUTES} "
               "minutes)\n"
               f"  fastbp bench --kernels both   and again with OpenBLAS's own kernels (about "
               f"{run.FULL_RUN_BOTH_KERNELS_MINUTES} minutes)\n"
               "  fastbp bench --help       every benchmark option")
    parser.add_argument("--version", action="version", version=f"%(prog)s {fb.__version__}",
                        help="print fastbp's version and exit")
    commands = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND")
    demo_parser = commands.add_parser(
        "demo", help="train a small network next to pure NumPy (the default)",
        description="Train a 64-128-10 network on a generated 10-class problem with fastbp "
                    "and with the pure-NumPy reference (same data, same initial weights), "
                    "then print both test accuracies and training times.")
    demo_parser.add_argument("--epochs", type=positive_int, default=DEMO_EPOCHS,
                             help=f"training epochs (default {DEMO_EPOCHS})")
    bench_parser = commands.add_parser(
        "bench", parents=[run.build_parser(add_help=False)],
        help="time one training epoch against pure-GEMM time and other libraries",
        description="Run the benchmark runner (fastbp.benchmarks.run) on this machine: one "
                    "training epoch of fastbp, the pure-NumPy reference and, where installed, "
                    "PyTorch, scikit-learn and JAX, each against the roofline (the epoch's "
                    "GEMMs alone). Prints the BLAS libraries, kernels and thread settings, "
                    "then the tables, and writes results.json/.md/.png to --out.")
    return parser, bench_parser


def main(argv=None):
    """The ``fastbp`` command; ``argv`` defaults to the command line. Returns 0."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, bench_parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "bench":
        from fastbp.benchmarks import run

        run.check_args(bench_parser, args)
        run.main(argv[1:])  # the same options, parsed again by the runner itself
    else:
        demo(getattr(args, "epochs", DEMO_EPOCHS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
