"""The runner's chart: training time over roofline as grouped bars (needs matplotlib)."""
import numpy as np

from fastbp.benchmarks.implementations import IMPLEMENTATION_ORDER


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
