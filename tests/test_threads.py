"""Per-call BLAS thread control: the requested count inside, the caller's setting after."""
import numpy as np
import pytest

import fastbp as fb
from fastbp import threads


@pytest.fixture
def blas_at_two():
    """Set SciPy's BLAS to 2 threads for the test, whatever the environment said."""
    with threads.blas_threads(2):
        yield


def test_blas_threads_sets_and_restores(blas_at_two):
    assert threads.current() == 2
    with threads.blas_threads(1):
        assert threads.current() == 1
    assert threads.current() == 2
    with threads.blas_threads(None):
        assert threads.current() == 2


@pytest.mark.parametrize("call", ["fit", "predict", "evaluate"])
@pytest.mark.parametrize("model_setting,call_setting,expected", [
    ("auto", None, 1),    # "auto" picks one thread for this tiny network
    (None, None, None),   # the model never touches BLAS
    (None, 1, 1),         # a call overrides the model
    (1, "auto", 1),
])
def test_calls_leave_the_callers_setting(blas_at_two, monkeypatch, call, model_setting,
                                         call_setting, expected):
    seen = []
    real = threads.blas_threads

    def spy(count):
        seen.append(count)
        return real(count)

    monkeypatch.setattr("fastbp.model.blas_threads", spy)
    model = fb.mlp([6, 5, 3], loss="cross_entropy", seed=0, threads=model_setting)
    X, y = np.random.default_rng(0).normal(size=(40, 6)), np.arange(40) % 3
    args = (X,) if call == "predict" else (X, y)
    getattr(model, call)(*args, threads=call_setting)
    assert seen == [expected]
    assert threads.current() == 2


def test_auto_uses_one_thread_only_for_small_gemms():
    assert threads.resolve("auto", 1e4) == 1
    assert threads.resolve("auto", 1e9) is None
    assert threads.resolve(3, 1e4) == 3


@pytest.mark.parametrize("bad,error", [(0, ValueError), (-1, ValueError), (1.5, TypeError),
                                       ("many", TypeError), (True, TypeError)])
def test_bad_threads_are_refused_before_training(bad, error):
    model = fb.mlp([6, 5, 3], loss="cross_entropy", seed=0)
    before = model.parameters.copy()
    X, y = np.ones((10, 6)), np.arange(10) % 3
    with pytest.raises(error, match="threads"):
        model.fit(X, y, epochs=1, threads=bad)
    with pytest.raises(error, match="threads"):
        fb.mlp([6, 3], threads=bad)
    np.testing.assert_array_equal(model.parameters, before)


def test_summary_reports_layers_and_workspace_bytes():
    model = fb.mlp([784, 128, 10], loss="cross_entropy")
    text = model.summary(batch_size=64)
    assert "100,480" in text and "1,290" in text
    # workspace per row: 784 input + 128 + 10 outputs + 128 delta scratch, float32
    assert f"{64 * (784 + 128 + 10 + 128) * 4 / 1024:,.1f} KiB" in text



def test_a_thread_count_that_blas_ignores_in_a_worker_thread_is_reported_once(blas_at_two,
                                                                              monkeypatch):
    """SciPy's OpenBLAS ignores set_num_threads outside the main thread: fastbp warns (once
    per process) instead of failing silently, and the main thread's setting stays."""
    import threading
    import warnings

    monkeypatch.setattr(threads, "_warned", [])
    caught = []

    def work():
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            for _ in range(2):
                with threads.blas_threads(1):
                    caught.append(threads.current())
        caught.extend(seen)

    worker = threading.Thread(target=work)
    worker.start()
    worker.join(20)
    counts, messages = caught[:2], [str(w.message) for w in caught[2:]]
    if counts == [1, 1]:  # a BLAS that honours it: nothing to report
        assert messages == []
    else:
        assert counts == [2, 2] and len(messages) == 1
        assert "ignored threads=1 set from a thread other than the main one" in messages[0]
    assert threads.current() == 2
