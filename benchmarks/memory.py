"""Peak resident memory of a training run: fastbp against the NumPy reference.

    python -m fastbp.benchmarks.memory [--configs small medium large] [--epochs 1]

Each run is a fresh process that builds the same float32 data, trains one network for
``--epochs`` epochs (relu, softmax cross-entropy, SGD momentum 0.9) and reports its peak RSS
(``ru_maxrss``); the data alone is measured too, so the table shows what training added.
"""
import argparse
import json
import subprocess
import sys

CONFIGS = {"tiny": ([64, 32, 10], 32, 8192), "small": ([784, 128, 10], 64, 16384),
           "medium": ([784, 512, 256, 10], 128, 16384),
           "large": ([2048, 2048, 2048, 10], 512, 8192)}

_CHILD = """
import json, resource, sys
import numpy as np
sizes, batch_size, n_samples, epochs, which = json.loads(sys.argv[1])
rng = np.random.default_rng(0)
X = rng.random((n_samples, sizes[0]), dtype=np.float32)
y = rng.integers(0, sizes[-1], size=n_samples)
if which == "fastbp":
    import fastbp as fb
    model = fb.mlp(sizes, loss="cross_entropy", seed=0)
    model.fit(X, y, epochs=epochs, batch_size=batch_size, optimizer=fb.SGD(lr=0.01, momentum=0.9))
elif which == "numpy":
    import fastbp  # the same imports as the fastbp run, so only training differs
    from fastbp.benchmarks.numpy_reference import NumpyMLP
    net = NumpyMLP(sizes, ["relu"] * (len(sizes) - 2) + ["identity"], "cross_entropy", seed=0)
    for _ in range(epochs):
        net.train_epoch(X, y, rng.permutation(n_samples), batch_size, lr=0.01, momentum=0.9)
else:
    import fastbp  # data and imports only
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_rss_mib(config, epochs, which):
    """Peak RSS in MiB of one fresh process training ``config`` with ``which``."""
    sizes, batch_size, n_samples = CONFIGS[config]
    args = json.dumps([sizes, batch_size, n_samples, epochs, which])
    out = subprocess.run([sys.executable, "-c", _CHILD, args], check=True, capture_output=True,
                         text=True).stdout
    return int(out.split()[-1]) / 1024  # ru_maxrss is in KiB on Linux


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args(argv)
    print(f"peak RSS (MiB), {args.epochs} epoch(s), float32")
    print(f"{'config':<8} {'data only':>10} {'fastbp':>10} {'numpy':>10} {'fastbp/numpy':>13}")
    for config in args.configs:
        base, ours, numpy = (peak_rss_mib(config, args.epochs, which)
                             for which in ("data", "fastbp", "numpy"))
        print(f"{config:<8} {base:>10.1f} {ours:>10.1f} {numpy:>10.1f} {ours / numpy:>13.2f}")


if __name__ == "__main__":
    main()
