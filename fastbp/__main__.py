"""``python -m fastbp``: a demo that trains a network and times it next to pure NumPy."""
import argparse
import time

import numpy as np

import fastbp as fb
from fastbp.benchmarks.numpy_reference import NumpyMLP
from fastbp.benchmarks.threads import blas_info
from fastbp.datasets import make_classification


def demo(epochs):
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


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fastbp", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    demo_parser = commands.add_parser("demo", help="train a small network (the default)")
    demo_parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args(argv)
    demo(getattr(args, "epochs", 10))


if __name__ == "__main__":
    main()
