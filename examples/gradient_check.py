"""Gradients you can trust, and what vanishing gradients look like.

    python examples/gradient_check.py [--epochs 5] [--plot gradients.png]

First check_gradients compares the compiled backward pass with central finite differences in
float64. Then two deep networks (8 hidden layers) train on the same data, one with sigmoid
and one with relu units, and fit's per-layer telemetry (measured inside the compiled loop)
shows the sigmoid network's gradient shrinking layer by layer towards the input.
"""
import argparse

import fastbp as fb
from fastbp.datasets import make_classification


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=5,
                        help="training epochs of each deep network (default 5)")
    parser.add_argument("--plot", help="save the per-layer gradient norms to this image file")
    args = parser.parse_args(argv)

    X, y = make_classification(2048, 20, 4, seed=1)
    small = fb.mlp([20, 7, 5, 4], activation="tanh", loss="cross_entropy", seed=0)
    error = fb.check_gradients(small, X[:16], y[:16])
    print(f"largest relative error against central differences (float64): {error:.1e}")

    histories = {}
    for activation in ("sigmoid", "relu"):
        deep = fb.mlp([20] + [32] * 8 + [4], activation=activation, loss="cross_entropy", seed=0)
        histories[activation] = deep.fit(X, y, epochs=args.epochs, batch_size=32,
                                         optimizer=fb.SGD(lr=0.05, momentum=0.9))
        last = histories[activation]
        norms = [last.history[f"grad_norm_{layer}"][-1] for layer in range(9)]
        print(f"{activation:>8}: gradient norm per layer, input to output: "
              + " ".join(f"{n:.1e}" for n in norms)
              + f"   (loss {last.loss[-1]:.3f})")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for activation, history in histories.items():
            ax.semilogy(range(9), [history.history[f"grad_norm_{layer}"][-1]
                                   for layer in range(9)], marker="o", label=activation)
        ax.set_xlabel("layer (0 = input side)")
        ax.set_ylabel("weight-gradient norm, last batch")
        ax.set_title("Vanishing gradients in a deep sigmoid network")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot)
        print(f"wrote {args.plot}")
    return error, histories


if __name__ == "__main__":
    main()
