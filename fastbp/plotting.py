"""History.plot: loss and accuracy curves, and per-layer gradient norms when recorded."""


def _pyplot():
    try:
        import matplotlib
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("History.plot needs matplotlib, an optional dependency: "
                          "python -m pip install matplotlib") from None
    return matplotlib, plt


def plot_history(history, path=None):
    """One row of panels: losses, accuracies (if any), per-layer gradient norms (if any)."""
    _, plt = _pyplot()
    figures = history.history
    epochs = range(1, history.epochs + 1)
    panels = [("loss", [key for key in ("loss", "val_loss") if key in figures])]
    accuracy = [key for key in ("accuracy", "val_accuracy") if key in figures]
    if accuracy:
        panels.append(("accuracy", accuracy))
    norms = sorted(key for key in figures if key.startswith("grad_norm_"))
    if norms:
        panels.append(("gradient norm per layer", norms))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.5), squeeze=False)
    for ax, (title, keys) in zip(axes[0], panels):
        for key in keys:
            ax.plot(epochs, figures[key], label=key)
        if title.startswith("gradient"):
            ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.legend()
    fig.tight_layout()
    if path is not None:
        fig.savefig(path)
    return fig
