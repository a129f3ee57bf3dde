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
    monkeypatch.setattr("fastbp.threads.blas_threads", spy)  # fit's, through for_fit
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


class FakeClock:
    """Drives a ThreadTuner with made-up per-batch times; records the counts it sets."""

    def __init__(self, monkeypatch, per_batch):
        self.per_batch, self.set = per_batch, []
        monkeypatch.setattr(threads, "set_blas_threads", self.set.append)

    def chunk(self, tuner, chunk_batches):
        count, batches = tuner.next_chunk(chunk_batches)
        assert self.set[-1] == count
        probe = tuner.record(count, self.per_batch[count] * batches, batches)
        return count, batches, probe


def test_tuner_starts_at_one_thread_then_times_the_other_and_keeps_the_faster(monkeypatch):
    clock = FakeClock(monkeypatch, {1: 2e-3, 2: 1e-3})
    tuner = threads.ThreadTuner(2)
    assert clock.chunk(tuner, 1) == (1, 1, False)  # nothing measured: one thread first
    assert clock.chunk(tuner, 8) == (1, 8, False)  # 18 ms trained, under FIRST_PROBE_S
    assert clock.chunk(tuner, 1) == (1, 1, False)
    # 20 ms trained: probe 2 threads for about PROBE_S at one thread's speed
    assert clock.chunk(tuner, 64) == (2, round(tuner.PROBE_S / 2e-3), True)  # 10 batches
    assert tuner.choice == 2
    # a switch is re-checked after RECHECK_S; one thread loses again, so it is probed
    # next only after PROBE_AFTER_S, then twice that
    for wait in (tuner.RECHECK_S, tuner.PROBE_AFTER_S, 2 * tuner.PROBE_AFTER_S):
        trained = 0.0
        while trained < wait:
            assert clock.chunk(tuner, 64) == (2, 64, False)
            trained += 64e-3
        assert clock.chunk(tuner, 64) == (1, round(tuner.PROBE_S / 1e-3), True)
        assert tuner.choice == 2
    assert tuner.wait[1] == 4 * tuner.PROBE_AFTER_S


def test_tuner_switches_only_to_a_clearly_faster_count(monkeypatch):
    clock = FakeClock(monkeypatch, {1: 1e-3, 2: 0.95e-3})
    tuner = threads.ThreadTuner(2)
    for _ in range(40):
        clock.chunk(tuner, 64)
    assert tuner.choice == 1


def test_tuner_leaves_a_thread_count_that_becomes_slow(monkeypatch):
    """When other work takes the second core, 2 threads turn slow: the next probe of one
    thread wins and training goes on at one thread; the probes of 2 then back off."""
    clock = FakeClock(monkeypatch, {1: 2e-3, 2: 1e-3})
    tuner = threads.ThreadTuner(2)
    for _ in range(3):
        clock.chunk(tuner, 100)
    assert tuner.choice == 2
    clock.per_batch[2] = 60e-3  # the machine got busy
    counts = [clock.chunk(tuner, 100)[0] for _ in range(100)]
    assert tuner.choice == 1 and counts[-1] == 1
    probes_of_two = [i for i, count in enumerate(counts) if count == 2]
    gaps = np.diff(probes_of_two[-4:])
    assert all(later > earlier for earlier, later in zip(gaps, gaps[1:]))  # backing off


def test_tuner_probe_is_never_longer_than_a_chunk(monkeypatch):
    clock = FakeClock(monkeypatch, {1: 1e-6, 2: 1e-6})
    tuner = threads.ThreadTuner(2)
    clock.chunk(tuner, 3)
    tuner.trained_s = 1.0
    assert clock.chunk(tuner, 3) == (2, 3, True)


def test_auto_fit_tunes_threads_only_where_more_can_help(blas_at_two, monkeypatch):
    """fit with "auto" on GEMMs over AUTO_MIN_FLOPS_PER_GEMM tries 1 and the caller's 2
    threads, and leaves the caller's setting; a fixed count or a tiny network never tunes."""
    seen = []
    real = threads.set_blas_threads
    monkeypatch.setattr(threads, "set_blas_threads", lambda n: (seen.append(n), real(n)))
    monkeypatch.setattr(threads.ThreadTuner, "FIRST_PROBE_S", 0.0)
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(2000, 40)).astype(np.float32), np.arange(2000) % 10
    model = fb.mlp([40, 100, 100, 10], loss="cross_entropy", seed=0)
    assert model._plan.largest_gemm_flops(100) >= threads.AUTO_MIN_FLOPS_PER_GEMM
    history = model.fit(X, y, epochs=3, batch_size=100, threads="auto")
    assert set(seen) == {1, 2} and np.isfinite(history.loss).all()
    assert threads.current() == 2
    seen.clear()
    model.fit(X, y, epochs=1, batch_size=100, threads=2)
    fb.mlp([6, 5, 3], loss="cross_entropy").fit(X[:, :6], y % 3, epochs=1, threads="auto")
    assert seen == [] and threads.current() == 2


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
    text = model.summary(batch_size=64, print_fn=None)
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
