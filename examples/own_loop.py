"""fastbp inside your own training loop: train_step per batch, a hand-made learning-rate
schedule, and gradients() for a look at the gradient before each epoch.

    python examples/own_loop.py [--epochs 15]

Each train_step is one compiled forward + backward + update on exactly the batch you pass
(no copies beyond converting the batch once to the model's dtype), so the loop below costs
a Python iteration per batch; fit() runs whole epochs in C when you do not need this control.
"""
import argparse
import math
import time

import numpy as np

import fastbp as fb
from fastbp.datasets import make_classification


def my_rate(epoch, base=0.1, warmup=2, total=15):
    """Linear warm-up, then cosine decay to 5% of the base rate: any Python you like."""
    if epoch < warmup:
        return base * (epoch + 1) / warmup
    progress = (epoch - warmup) / max(1, total - warmup)
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=15,
                        help="epochs of the hand-written loop (default 15)")
    args = parser.parse_args(argv)

    X, y = make_classification(4096, 32, 10, seed=0)
    X_train, y_train, X_test, y_test = X[:3584], y[:3584], X[3584:], y[3584:]
    model = fb.mlp([32, 128, 64, 10], activation="relu", loss="cross_entropy", seed=0)
    optimizer = fb.SGD(lr=0.1, momentum=0.9, nesterov=True)
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    for epoch in range(args.epochs):
        optimizer.lr = my_rate(epoch, total=args.epochs)
        loss, grads = model.gradients(X_train[:256], y_train[:256])
        norms = ", ".join(f"{np.linalg.norm(dW):.3f}" for dW, _ in grads)
        order = rng.permutation(len(X_train))
        for start in range(0, len(order), 64):
            rows = order[start:start + 64]
            model.train_step(X_train[rows], y_train[rows], optimizer)
        test = model.evaluate(X_test, y_test)
        print(f"epoch {epoch + 1:2d}  lr {optimizer.lr:.4f}  |dW| per layer [{norms}]  "
              f"test loss {test['loss']:.4f}  test accuracy {test['accuracy']:.3f}")
    print(f"{time.perf_counter() - started:.2f} s")
    return test["accuracy"]


if __name__ == "__main__":
    main()
