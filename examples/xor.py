"""The classic: a 2-4-1 network learns XOR by backpropagation.

    python examples/xor.py [--epochs 2000]
"""
import argparse

import numpy as np

import fastbp as fb


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=2000,
                        help="full-batch training epochs (default 2000)")
    args = parser.parse_args(argv)

    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
    y = np.array([[0], [1], [1], [0]], dtype=np.float32)
    model = fb.Sequential([fb.Dense(2, 4, "tanh"), fb.Dense(4, 1)],
                          loss="binary_cross_entropy", seed=0)
    history = model.fit(X, y, epochs=args.epochs, batch_size=4,
                        optimizer=fb.SGD(lr=0.5, momentum=0.9))
    probabilities = model.predict(X)[:, 0]
    for inputs, p in zip(X.astype(int), probabilities):
        print(f"{inputs[0]} xor {inputs[1]} -> {p:.3f}")
    accuracy = np.mean((probabilities > 0.5) == (y[:, 0] > 0.5))
    print(f"loss {history.loss[-1]:.4f} after {history.epochs} epochs, accuracy {accuracy:.0%}")
    return accuracy


if __name__ == "__main__":
    main()
