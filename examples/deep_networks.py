"""A 20-hidden-layer sigmoid network on the 8x8 digits: plain, with BatchNorm, with residual
blocks. The plain network's gradients vanish on their way down and it learns nothing; the
other two keep them alive and learn.

    python examples/deep_networks.py [--epochs 40] [--plot deep.png]

The digits are scikit-learn's bundled copy (1797 images, no download), standardised and
split 75/25, stratified. Every network has 20 hidden layers of 64 sigmoid units, the same
initial weights for the Dense layers they share (seed 0) and the same optimizer (Adam, lr
3e-3, batches of 32):

- plain: Dense(64, 64, "sigmoid") x 20;
- batchnorm: the first Dense layer, then Dense(64, 64) -> BatchNorm(64) -> Activation
  ("sigmoid") x 19 (batch statistics while training, running ones for the test score);
- residual: the first Dense layer, then Residual([Dense(64, 64, "sigmoid")]) x 19.

The table shows each network's test accuracy and, from fit's per-layer telemetry
(``History.grad_norm_<l>``), the norm of the weight gradient of a few layers on the last
batch of the first epoch: the plain network's first layer gets a gradient about 1e-12 of
its last layer's. ``--plot`` draws every layer's gradient norm for the three networks
(needs matplotlib).
"""
import argparse

import fastbp as fb

WIDTH, DEPTH = 64, 20
SHOWN_LAYERS = (0, 5, 10, 15, 19, 20)


def networks():
    """The three networks' layer lists (see the module docstring)."""
    first, last = fb.Dense(64, WIDTH, "sigmoid"), fb.Dense(WIDTH, 10)
    hidden = DEPTH - 1
    return {
        "plain": [first] + [fb.Dense(WIDTH, WIDTH, "sigmoid")] * hidden + [last],
        "batchnorm": [first] + [fb.Dense(WIDTH, WIDTH), fb.BatchNorm(WIDTH),
                                fb.Activation("sigmoid")] * hidden + [last],
        "residual": [first] + [fb.Residual([fb.Dense(WIDTH, WIDTH, "sigmoid")])] * hidden
        + [last],
    }


def load_data():
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        raise SystemExit("examples/deep_networks.py trains on scikit-learn's digits: "
                         "python -m pip install scikit-learn") from None
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0,
                                                        stratify=y)
    mean, scale = X_train.mean(axis=0), X_train.std(axis=0) + 1e-3
    return (X_train - mean) / scale, (X_test - mean) / scale, y_train, y_test


def gradient_norms(history, epoch):
    """Every Dense layer's weight-gradient norm on the last batch of ``epoch``."""
    return [history.history[f"grad_norm_{layer}"][epoch] for layer in range(DEPTH + 1)]


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, axis = plt.subplots(figsize=(7, 4))
    for name, result in results.items():
        axis.semilogy(range(DEPTH + 1), result["first_epoch_norms"], marker="o", label=name)
    axis.set_xlabel("Dense layer (0 = first)")
    axis.set_ylabel("||dLoss/dW|| after the first epoch")
    axis.set_title(f"{DEPTH} hidden sigmoid layers on the digits")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=40, help="epochs per network (default 40)")
    parser.add_argument("--plot", metavar="PNG", help="draw every layer's gradient norm to PNG")
    args = parser.parse_args(argv)
    X_train, X_test, y_train, y_test = load_data()
    print(f"digits: {len(X_train)} training / {len(X_test)} test images; {DEPTH} hidden "
          f"sigmoid layers of {WIDTH}; Adam(lr=3e-3), batch 32, {args.epochs} epochs")
    header = "  ".join(f"{f'layer {layer}':>8}" for layer in SHOWN_LAYERS)
    print(f"\n{'':25}gradient norm of each layer's weights after epoch 1")
    print(f"{'network':<10} {'test accuracy':>13}  {header}")
    results = {}
    for name, layers in networks().items():
        model = fb.Sequential(layers, loss="cross_entropy", seed=0)
        history = model.fit(X_train, y_train, epochs=args.epochs, batch_size=32,
                            optimizer=fb.Adam(lr=3e-3))
        accuracy = model.evaluate(X_test, y_test)["accuracy"]
        norms = gradient_norms(history, 0)
        results[name] = {"accuracy": accuracy, "first_epoch_norms": norms}
        cells = "  ".join(f"{norms[layer]:8.1e}" for layer in SHOWN_LAYERS)
        print(f"{name:<10} {accuracy:13.1%}  {cells}")
    if args.plot:
        plot(results, args.plot)
        print(f"\nwrote {args.plot}")
    return results


if __name__ == "__main__":
    main()
