"""fastbp.sklearn.MLPClassifier on sparse TF-IDF-like input, against itself on the densified
input and against scikit-learn's MLPClassifier on the same sparse input, at one BLAS thread.

    python -m fastbp.benchmarks.sklearn_sparse [--epochs 3] [--repeats 3] [--sklearn-epochs 1]

The data imitate TF-IDF features of short texts (``tfidf_like``): 50,000 columns, about 100
stored entries per row (0.2%), the words drawn from a Zipf-Mandelbrot law over a shuffled
vocabulary, a share of each row's words from its class's topic vocabulary (10 classes, a
learnable signal: multinomial naive Bayes scores 90%), sublinear tf times smooth idf, rows
L2-normalised; 20,000 training rows and 4,000 test rows (a fixed split). Every estimator gets scikit-learn's adam with hidden
(256,), batch 200, the same ``random_state`` (so the same initial weights) and a fixed number
of epochs (``max_iter``; ``n_iter_no_change`` past it, so none stops early). Each row times
whole fits and reports seconds per epoch (fit time / epochs, the median of its repeats) and
the test accuracy:

* fastbp sparse: float32 (the estimators' default), X as scipy's CSR;
* fastbp dense: float32, the same X densified once (4 GB), outside the timing;
* scikit-learn sparse: the same CSR in float64 (scikit-learn computes in X's dtype, and
  float64 is what its users pass; ``--sklearn-dtype float32`` to compare like with like).

scikit-learn's and the dense fits are slow: they run ``--sklearn-epochs`` / ``--dense-epochs``
epochs (default 1) and one repeat each, which the output says; per-epoch times are comparable
across rows, accuracies only between rows with the same epochs. Every BLAS pool in the
process is pinned to one thread (threadpoolctl); the settings are printed. Not a test:
nothing is asserted.
"""
import argparse
import statistics
import subprocess
import sys
import time
import warnings

import numpy as np

try:
    import scipy.sparse
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier as SklearnMLP
except ImportError:  # pragma: no cover
    raise SystemExit("this benchmark needs scikit-learn: python -m pip install 'fastbp[sklearn]'")

from fastbp import _native, threads as fastbp_threads
from fastbp.benchmarks.threads import blas_info, require_threadpoolctl
from fastbp.sklearn import MLPClassifier as FastbpMLP


def tfidf_like(n_rows, n_features=50_000, words_per_row=100, n_classes=10, topic_share=0.05,
               topic_words=400, seed=0):
    """(X, y): CSR float64 rows that look like TF-IDF features of short texts.

    Each row draws about ``words_per_row`` words (with repeats, so somewhat fewer distinct
    columns): a ``topic_share`` of them from its class's ``topic_words`` (mid-frequency
    words, overlapping between classes), the rest from a Zipf-Mandelbrot law ``1/(rank +
    2.7)^1.07`` over a shuffled vocabulary. Values: ``(1 + log count) * idf`` with the
    smooth idf ``log((1 + n) / (1 + df)) + 1`` over these rows, then each row over its L2
    norm (scikit-learn's TfidfVectorizer with sublinear_tf=True)."""
    rng = np.random.default_rng(seed)
    column_of_rank = rng.permutation(n_features)
    weights = 1.0 / (np.arange(n_features) + 2.7) ** 1.07
    cdf = np.cumsum(weights / weights.sum())
    y = rng.integers(0, n_classes, n_rows)
    # ~20% of the draws repeat a word of the row: draw more, for ~words_per_row columns
    lengths = rng.poisson(1.25 * words_per_row, n_rows).clip(10)
    rows = np.repeat(np.arange(n_rows), lengths)
    ranks = np.minimum(np.searchsorted(cdf, rng.random(rows.size)), n_features - 1)
    # topic words: ranks 200..10,000 of 50,000 (neither stop words nor the rarest), per class
    topics = rng.integers(n_features // 250, n_features // 5, (n_classes, topic_words))
    topical = rng.random(rows.size) < topic_share
    ranks[topical] = topics[y[rows[topical]], rng.integers(0, topic_words, topical.sum())]
    counts = scipy.sparse.csr_matrix(
        (np.ones(rows.size), (rows, column_of_rank[ranks])), shape=(n_rows, n_features))
    counts.sum_duplicates()
    df = np.bincount(counts.indices, minlength=n_features)
    idf = np.log((1.0 + n_rows) / (1.0 + df)) + 1.0
    counts.data = (1.0 + np.log(counts.data)) * idf[counts.indices]
    norms = np.sqrt(np.asarray(counts.multiply(counts).sum(axis=1)).ravel())
    counts.data /= np.repeat(norms, np.diff(counts.indptr))
    return counts, y


def densify(X, dtype=np.float32):
    """X as a dense C-contiguous array of ``dtype``, without a float64 copy in between."""
    dense = np.zeros(X.shape, dtype=dtype)
    rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
    dense[rows, X.indices] = X.data
    return dense


def cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown (no lscpu)"
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    flags = fields.get("Flags", "").split()
    simd = [flag for flag in ("avx2", "fma", "avx512f") if flag in flags]
    return (f"{fields.get('Model name', '?').strip()}, {fields.get('CPU(s)', '?').strip()} "
            f"CPU(s), {' '.join(simd) or 'no avx2'}")


def time_fits(cls, params, X_train, y_train, repeats):
    """(median seconds per epoch over ``repeats`` fits, the last fitted model)."""
    per_epoch, model = [], None
    for _ in range(repeats):
        model = cls(**params)
        started = time.perf_counter()
        model.fit(X_train, y_train)
        per_epoch.append((time.perf_counter() - started) / model.n_iter_)
    return statistics.median(per_epoch), model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="fastbp sparse's epochs")
    parser.add_argument("--repeats", type=int, default=3, help="fastbp sparse's fits")
    parser.add_argument("--dense-epochs", type=int, default=1)
    parser.add_argument("--sklearn-epochs", type=int, default=1)
    parser.add_argument("--sklearn-dtype", default="float64", choices=["float64", "float32"])
    parser.add_argument("--rows", type=int, default=20_000, help="training rows")
    parser.add_argument("--test-rows", type=int, default=4_000)
    parser.add_argument("--features", type=int, default=50_000)
    parser.add_argument("--density", type=float, default=0.002,
                        help="stored entries per row over features (before repeats merge)")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--no-dense", action="store_true", help="skip the dense row")
    parser.add_argument("--seed", type=int, default=0, help="data and random_state")
    parser.add_argument("--threads", type=int, nargs="+", default=[1],
                        help="BLAS threads for extra fastbp sparse rows (its default "
                             "threads='auto' then picks between one thread and a team of "
                             "that many as it trains); every other row runs at one")
    args = parser.parse_args(argv)
    threadpoolctl = require_threadpoolctl()
    warnings.simplefilter("ignore", ConvergenceWarning)
    import sklearn

    started = time.perf_counter()
    X, y = tfidf_like(args.rows + args.test_rows, args.features,
                      max(1, round(args.density * args.features)), seed=args.seed)
    X_train, X_test = X[:args.rows], X[args.rows:]
    y_train, y_test = y[:args.rows], y[args.rows:]
    made = time.perf_counter() - started
    shared = dict(hidden_layer_sizes=(args.hidden,), solver="adam", batch_size=200,
                  random_state=args.seed, shuffle=True)

    def fixed(epochs):
        return dict(shared, max_iter=epochs, n_iter_no_change=epochs + 1)

    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        print(f"TF-IDF-like data: {X_train.shape[0]} train / {X_test.shape[0]} test rows, "
              f"{X.shape[1]} features, {X.nnz / X.shape[0]:.1f} stored entries per row "
              f"({100 * X.nnz / (X.shape[0] * X.shape[1]):.3f}%), {len(np.unique(y))} "
              f"classes; made in {made:.1f} s")
        print(f"adam, hidden ({args.hidden},), batch 200, shuffle, random_state {args.seed}")
        print(f"CPU: {cpu_model()}")
        print(f"Python {sys.version.split()[0]}, NumPy {np.__version__}, SciPy "
              f"{scipy.__version__}, scikit-learn {sklearn.__version__}, fastbp core variant "
              f"{_native.VARIANT}, fastbp sees {fastbp_threads.current()} BLAS thread(s)")
        for line in blas_info():
            print("  BLAS:", line)
        rows = []
        seconds, model = time_fits(FastbpMLP, fixed(args.epochs), X_train, y_train,
                                   args.repeats)
        rows.append(("fastbp sparse", "float32", args.epochs, args.repeats, seconds,
                     model.score(X_test, y_test)))
        for count in sorted(set(args.threads) - {1}):
            with threadpoolctl.threadpool_limits(limits=count, user_api="blas"):
                seconds, model = time_fits(FastbpMLP, fixed(args.epochs), X_train, y_train,
                                           args.repeats)
            rows.append((f"fastbp sparse, {count} thr", "float32", args.epochs, args.repeats,
                         seconds, model.score(X_test, y_test)))
        # the accuracy at the slow rows' epochs too, so that each has a row to compare with
        for epochs in sorted({args.dense_epochs, args.sklearn_epochs} - {args.epochs}):
            seconds, model = time_fits(FastbpMLP, fixed(epochs), X_train, y_train, 1)
            rows.append(("fastbp sparse", "float32", epochs, 1, seconds,
                         model.score(X_test, y_test)))
        if not args.no_dense:
            dense_train, dense_test = densify(X_train), densify(X_test)
            seconds, model = time_fits(FastbpMLP, fixed(args.dense_epochs), dense_train,
                                       y_train, 1)
            rows.append(("fastbp dense", "float32", args.dense_epochs, 1, seconds,
                         model.score(dense_test, y_test)))
            del dense_train, dense_test
        sk_train = X_train.astype(args.sklearn_dtype)
        seconds, model = time_fits(SklearnMLP, fixed(args.sklearn_epochs), sk_train, y_train, 1)
        rows.append(("scikit-learn sparse", args.sklearn_dtype, args.sklearn_epochs, 1, seconds,
                     model.score(X_test.astype(args.sklearn_dtype), y_test)))
    base = {epochs: seconds for name, _, epochs, _, seconds, _ in rows
            if name == "fastbp sparse"}
    print(f"\n{'':<22} {'dtype':<8} {'epochs':>6} {'fits':>4} {'s/epoch':>9} "
          f"{'vs sparse':>9} {'test accuracy':>13}")
    for name, dtype, epochs, fits, seconds, accuracy in rows:
        print(f"{name:<22} {dtype:<8} {epochs:>6} {fits:>4} {seconds:9.3f} "
              f"{seconds / base[epochs]:8.1f}x {100 * accuracy:12.2f} %")
    print("s/epoch: fit time / epochs (the whole fit: validation, initial weights, every "
          "epoch), median over the fits; vs sparse: that over fastbp sparse's at the same epochs "
          "(how many times slower). Accuracies compare only at equal epochs.")
    if args.sklearn_epochs != args.epochs or (args.dense_epochs != args.epochs
                                              and not args.no_dense):
        print(f"scikit-learn's and the dense fits are slow: they ran {args.sklearn_epochs} and "
              f"{args.dense_epochs} epoch(s), one fit each (--sklearn-epochs, --dense-epochs "
              f"{args.epochs} for equal epochs: about {args.epochs} times longer).")


if __name__ == "__main__":
    main()
