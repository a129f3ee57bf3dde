"""Python threads: separate models train independently; one model shared by two threads is
serialised (each call sees the model as it was before or after the other's call), never torn.

The core releases the GIL for a whole epoch, and every call on a model (fit, train_step,
predict, evaluate, gradients) works in that model's one workspace and gradient buffer, so
two calls on one model at once must not overlap. BLAS runs at one thread throughout, set from
the main thread: threadpoolctl lets only one thread change OpenBLAS's process-wide setting,
so a worker thread's own ``threads=`` setting may be ignored.

Without the model's lock the second thread's calls ran inside the first's GIL-free epoch and
corrupted it (a different result, or even a spurious DivergenceError), and a save or pickle
taken meanwhile mixed parameters and optimizer state of different steps. The lock serialises
whole calls, so a read sees the model as it was before or after a fit, which is what these
tests check.
"""
import pickle
import threading

import numpy as np
import pytest

import fastbp as fb
from fastbp import threads

SIZES = [20, 48, 5]


@pytest.fixture(autouse=True)
def one_blas_thread():
    with threads.blas_threads(1):
        yield


def data(n_samples=20000, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n_samples, SIZES[0])), rng.integers(0, SIZES[-1], size=n_samples)


def model(dtype="float32", seed=0):
    return fb.mlp(SIZES, loss="cross_entropy", dtype=dtype, seed=seed, threads=1)


def run_together(*calls):
    """Run each call in its own thread, started together; their results in order (a call's
    exception is re-raised here)."""
    results = [None] * len(calls)
    errors = []
    start = threading.Barrier(len(calls))

    def run(i, call):
        try:
            start.wait()
            results[i] = call()
        except BaseException as error:  # noqa: BLE001 (re-raised below, in the test's thread)
            errors.append(error)

    workers = [threading.Thread(target=run, args=item) for item in enumerate(calls)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert not any(worker.is_alive() for worker in workers), "a thread hung"
    if errors:
        raise errors[0]
    return results


# ------------------------------------------------------------------ two models, two threads

def momentum():
    return fb.SGD(lr=0.05, momentum=0.9)


def adam():
    return fb.Adam(lr=1e-3)


# (dtype, optimizer factory, batch_size) of the first and the second model.
PAIRS = {
    "same settings": (("float32", momentum, 16), ("float32", momentum, 16)),
    "float32 and float64": (("float32", momentum, 16), ("float64", adam, 7)),
    "sgd and adam, batch 1": (("float64", lambda: fb.SGD(lr=0.01), 1), ("float32", adam, 33)),
}


@pytest.mark.parametrize("pair", list(PAIRS))
def test_two_models_in_two_threads_train_as_if_alone(pair):
    X, y = data()
    settings = PAIRS[pair]

    def fit(seed, dtype, optimizer, batch_size):
        trained = model(dtype, seed)
        trained.fit(X, y, epochs=2, batch_size=batch_size, optimizer=optimizer())
        return trained

    alone = [fit(seed, *setting) for seed, setting in enumerate(settings)]
    together = run_together(*(lambda seed=seed, setting=setting: fit(seed, *setting)
                              for seed, setting in enumerate(settings)))
    for a, t in zip(alone, together):
        np.testing.assert_array_equal(t.parameters, a.parameters)
        np.testing.assert_array_equal(t._plan.state, a._plan.state)
    assert threads.current() == 1  # the workers left the main thread's BLAS setting alone


def test_predict_on_one_model_while_another_trains():
    X, y = data()
    trainee, reader = model(seed=0), model(seed=1)
    expected_out = reader.predict(X)
    twin = model(seed=0)
    twin.fit(X, y, epochs=3, batch_size=8, optimizer=momentum())

    def predict_repeatedly():
        return [reader.predict(X) for _ in range(20)]

    _, outs = run_together(
        lambda: trainee.fit(X, y, epochs=3, batch_size=8, optimizer=momentum()),
        predict_repeatedly)
    np.testing.assert_array_equal(trainee.parameters, twin.parameters)
    for out in outs:
        np.testing.assert_array_equal(out, expected_out)


# ------------------------------------------------------------------ one model, two threads

def snapshot(m):
    return m.parameters.copy(), m._plan.state.copy(), m._plan.steps


def fit_call(m, X, y):
    return m.fit(X, y, epochs=2, batch_size=8, shuffle=True)


# What the second thread does, over and over while the first one's fit runs: a call on the
# same model (``folder`` is a scratch folder), whose result must be what it returns wholly
# before or wholly after that fit.
READERS = {
    "predict": lambda m, X, y, folder: m.predict(X[:500]),
    "evaluate": lambda m, X, y, folder: m.evaluate(X[:500], y[:500]),
    "gradients": lambda m, X, y, folder: m.gradients(X[:64], y[:64]),
    "save": lambda m, X, y, folder: saved_and_loaded(m, folder),
    "pickle": lambda m, X, y, folder: snapshot(pickle.loads(pickle.dumps(m))),
}


def saved_and_loaded(m, folder):
    path = folder / f"m-{threading.get_ident()}.npz"
    m.save(path)
    return snapshot(fb.load(path))


def same(a, b):
    """Exact equality of nested results (arrays, tuples, lists, dicts, numbers)."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(same(x, z) for x, z in zip(a, b))
    return np.array_equal(a, b)


@pytest.mark.parametrize("reader", list(READERS))
def test_one_model_used_from_two_threads_is_serialised(reader, tmp_path):
    """While one thread fits, another calls ``reader`` on the same model again and again:
    the fit must end exactly as it would alone, and each read must see the model exactly as
    before or as after the fit, never half-way."""
    X, y = data()

    def read(m):
        return READERS[reader](m, X, y, tmp_path)

    m, alone = model(), model()
    for each in (m, alone):
        each._use_optimizer(momentum())
    before = read(alone)
    fit_call(alone, X, y)
    after = read(alone)
    assert not same(before, after)
    fit_done = threading.Event()

    def fit():
        try:
            return fit_call(m, X, y)
        finally:
            fit_done.set()

    def read_while_fitting():
        seen = [read(m)]
        while not fit_done.is_set():
            seen.append(read(m))
        return seen

    _, seen = run_together(fit, read_while_fitting)
    np.testing.assert_array_equal(m.parameters, alone.parameters)
    np.testing.assert_array_equal(m._plan.state, alone._plan.state)
    torn = [i for i, result in enumerate(seen)
            if not (same(result, before) or same(result, after))]
    assert not torn, f"{len(torn)} of {len(seen)} {reader} calls saw a half-trained model"


def test_one_model_fit_from_two_threads_is_serialised():
    """Two identical fits of one model at once end as the same two fits one after the other."""
    X, y = data()
    m, alone = model(), model()
    for each in (m, alone):
        each._use_optimizer(momentum())
    fit_call(alone, X, y)
    fit_call(alone, X, y)
    run_together(lambda: fit_call(m, X, y), lambda: fit_call(m, X, y))
    np.testing.assert_array_equal(m.parameters, alone.parameters)
    np.testing.assert_array_equal(m._plan.state, alone._plan.state)
    assert m._plan.steps == alone._plan.steps
