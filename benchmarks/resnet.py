"""The "resnet" benchmark configuration: Gorishniy et al.'s tabular ResNet, one epoch.

    python -m fastbp.benchmarks.resnet                   # 1 and 2 threads, 5 repeats
    python -m fastbp.benchmarks.resnet --threads 1 --repeats 3 --rows 4096

The network (NeurIPS 2021, "Revisiting deep learning models for tabular data"): Dense(64,
256), then 4 blocks of BatchNorm -> Dense(256, 512, relu) -> Dropout(0.1) -> Dense(512, 256)
-> Dropout(0.1) added to the block's input, then BatchNorm -> ReLU -> Dense(256, 10);
softmax cross-entropy, AdamW (lr 1e-3, weight decay 1e-5), batch 256, 16384 random rows,
float32. Timed, interleaved with the runner's method (``timing.time_round_robin``: warm-up,
round-robin order, a pause between calls at 2 threads; medians, and medians of ratios to the
roofline paired per repeat):

- ``fastbp``: ``model.fit(X, y, epochs=1)``;
- ``torch``: the same ``nn.Sequential`` of ``nn.Linear``, ``nn.BatchNorm1d``, ``nn.ReLU``,
  ``nn.Dropout`` and a residual module, ``torch.optim.AdamW``, the data preloaded as
  tensors and permuted once per epoch (if torch is installed);
- ``roofline``: only the epoch's GEMMs (each Dense layer's forward, weight gradient and,
  where backward needs it, input gradient) through the same SciPy BLAS as fastbp.

Thread counts are set for every BLAS and OpenMP pool in the process and for torch, and
printed with the CPU.
"""
import argparse
import importlib.util

import numpy as np

import fastbp
from fastbp._native import VARIANT, core as _core
from fastbp.benchmarks.report import cpu_name
from fastbp.benchmarks.run import thread_settings
from fastbp.benchmarks.timing import COOL_DOWN_S, summarize, time_round_robin
from fastbp.benchmarks.threads import all_threads, require_threadpoolctl

WIDTH, HIDDEN, BLOCKS, FEATURES, CLASSES = 256, 512, 4, 64, 10
BATCH, ROWS, DROPOUT, LR, WEIGHT_DECAY = 256, 16384, 0.1, 1e-3, 1e-5


def resnet_layers(width=WIDTH, hidden=HIDDEN, blocks=BLOCKS, dropout=DROPOUT):
    """The network's fastbp layers."""
    block = [fastbp.BatchNorm(width), fastbp.Dense(width, hidden, "relu"),
             fastbp.Dropout(dropout), fastbp.Dense(hidden, width), fastbp.Dropout(dropout)]
    return ([fastbp.Dense(FEATURES, width)] + [fastbp.Residual(block)] * blocks
            + [fastbp.BatchNorm(width), fastbp.Activation("relu"), fastbp.Dense(width, CLASSES)])


def new_model():
    # threads=None on the model; Fastbp passes the row's count (see run.new_fastbp_model).
    return fastbp.Sequential(resnet_layers(), loss="cross_entropy", seed=0, threads=None)


class Fastbp:
    def __init__(self, X, y):
        self.X, self.y, self.model = X, y, new_model()
        self.optimizer = fastbp.AdamW(lr=LR, weight_decay=WEIGHT_DECAY)

    def run_epoch(self):
        self.model.fit(self.X, self.y, epochs=1, batch_size=BATCH, optimizer=self.optimizer,
                       threads=fastbp.threads.current())


class Roofline:
    def __init__(self, X, y):
        self.X, self.model = X, new_model()
        self.model._plan.ensure_capacity(BATCH)

    def run_epoch(self):
        _core.gemm_roofline(self.model._plan, self.X, BATCH)


class Torch:
    """The same network in torch.nn, from the fastbp model's initial weights."""

    def __init__(self, X, y):
        import torch
        from torch import nn

        class Residual(nn.Module):
            def __init__(self, body):
                super().__init__()
                self.body = body

            def forward(self, x):
                return x + self.body(x)

        def linear(layer):
            module = nn.Linear(layer.in_features, layer.out_features)
            with torch.no_grad():
                module.weight.copy_(torch.from_numpy(layer.weight.T.copy()))
                module.bias.copy_(torch.from_numpy(layer.bias.copy()))
            return module

        def block(bound):
            norm, first, _, second, _ = bound.layers
            return Residual(nn.Sequential(nn.BatchNorm1d(WIDTH), linear(first), nn.ReLU(),
                                          nn.Dropout(DROPOUT), linear(second),
                                          nn.Dropout(DROPOUT)))

        layers = new_model().layers
        self.torch = torch
        self.network = nn.Sequential(linear(layers[0]), *[block(b) for b in layers[1:-3]],
                                     nn.BatchNorm1d(WIDTH), nn.ReLU(), linear(layers[-1]))
        decayed = [m.weight for m in self.network.modules() if isinstance(m, nn.Linear)]
        others = [p for p in self.network.parameters() if all(p is not w for w in decayed)]
        self.optimizer = torch.optim.AdamW([{"params": decayed, "weight_decay": WEIGHT_DECAY},
                                            {"params": others, "weight_decay": 0.0}], lr=LR)
        self.loss = nn.CrossEntropyLoss()
        self.X, self.y = torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))
        self.generator = torch.Generator().manual_seed(0)

    def run_epoch(self):
        order = self.torch.randperm(self.X.shape[0], generator=self.generator)
        X, y = self.X[order], self.y[order]
        self.network.train()
        for start in range(0, X.shape[0], BATCH):
            self.optimizer.zero_grad()
            self.loss(self.network(X[start:start + BATCH]), y[start:start + BATCH]).backward()
            self.optimizer.step()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fastbp.benchmarks.resnet",
                                     description=__doc__.split("\n\n")[1])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                        help="thread counts to time (default: 1 2)")
    parser.add_argument("--repeats", type=int, default=5, help="timed epochs per implementation")
    parser.add_argument("--rows", type=int, default=ROWS, help="training rows (default 16384)")
    args = parser.parse_args(argv)
    require_threadpoolctl()
    rng = np.random.default_rng(0)
    X = rng.standard_normal((args.rows, FEATURES), dtype=np.float32)
    y = rng.integers(0, CLASSES, args.rows)
    kinds = {"fastbp": Fastbp, "roofline": Roofline}
    if importlib.util.find_spec("torch") is not None:
        kinds["torch"] = Torch
    implementations = {name: kind(X, y) for name, kind in kinds.items()}
    print(f"resnet: {BLOCKS} blocks, width {WIDTH}, hidden {HIDDEN}, batch {BATCH}, "
          f"{args.rows} rows, float32; CPU: {cpu_name()}; fastbp core: {VARIANT}")
    rows = []
    for threads in args.threads:
        with all_threads(threads):
            if "torch" in implementations:
                implementations["torch"].torch.set_num_threads(threads)
            thread_settings(threads)
            times = time_round_robin({name: impl.run_epoch
                                      for name, impl in implementations.items()},
                                     args.repeats, COOL_DOWN_S if threads > 1 else 0.0)
        for name, result in summarize(times, "roofline").items():
            rows.append((threads, name, result["median_s"] * 1e3, result["median_ratio"]))
            print(f"  {threads} thr  {name:<9} {result['median_s'] * 1e3:9.1f} ms  "
                  f"{result['median_ratio']:.3f}x roofline", flush=True)
    print("\n| threads | implementation | ms (median) | ratio to roofline (paired median) |")
    print("|---|---|---|---|")
    for threads, name, ms, ratio in rows:
        print(f"| {threads} | {name} | {ms:.1f} | {ratio:.3f} |")


if __name__ == "__main__":
    main()
