"""Per-call thread control: fastbp's team size, SciPy's BLAS at one thread inside the call
and the caller's setting after."""
import numpy as np
import pytest

import fastbp as fb
from fastbp import threads
from fastbp._native import core


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


@pytest.fixture
def team_sizes(monkeypatch):
    """The n_threads of every core call that takes one (train_epoch, forward, evaluate)."""
    seen = []
    for name in ("train_epoch", "forward", "evaluate"):
        real = getattr(core, name)

        def spy(*args, _real=real, **kwargs):
            seen.append(kwargs.get("n_threads", 1))
            return _real(*args, **kwargs)

        monkeypatch.setattr(core, name, spy)
    return seen


@pytest.fixture
def blas_settings(monkeypatch):
    """The counts fastbp sets SciPy's BLAS to."""
    seen = []
    real = threads.blas_threads

    def spy(count):
        seen.append(count)
        return real(count)

    monkeypatch.setattr(threads, "blas_threads", spy)
    monkeypatch.setattr("fastbp.model_training.blas_threads", spy)
    return seen


@pytest.mark.parametrize("call", ["fit", "train_step", "predict", "evaluate"])
@pytest.mark.parametrize("model_setting,call_setting,team,blas", [
    ("auto", None, 1, [1]),     # "auto": one thread for this tiny network's calls
    (None, None, 1, []),        # the model never touches BLAS, and runs one thread
    (None, 1, 1, [1]),          # a call overrides the model
    (1, "auto", 1, [1]),
    (None, 3, 1, [1]),          # its GEMMs are too small for a team: one thread
    (None, "big", 3, [1]),      # a team of 3, BLAS held at one thread inside
])
def test_calls_set_the_team_and_leave_the_callers_setting(
        blas_at_two, team_sizes, blas_settings, call, model_setting, call_setting, team,
        blas, monkeypatch):
    if call_setting == "big":  # as if the network's GEMMs were large enough for a team
        monkeypatch.setattr(threads, "MIN_FLOPS_PER_GEMM", 0)
        call_setting = 3
    model = fb.mlp([6, 5, 3], loss="cross_entropy", seed=0, threads=model_setting)
    X, y = np.random.default_rng(0).normal(size=(40, 6)), np.arange(40) % 3
    args = (X,) if call == "predict" else (X, y)
    getattr(model, call)(*args, threads=call_setting)
    if call == "fit" and model_setting == "auto":
        team = None  # the tuner's choice (below)
    else:
        assert set(team_sizes) == {team}
    assert blas_settings == blas
    assert threads.current() == 2


def test_teams_run_only_where_the_gemms_are_large_enough(blas_at_two):
    assert threads.team_size("auto", 1e4) == 1
    assert threads.team_size("auto", 1e9) == 2  # the caller's BLAS count
    assert threads.team_size(3, 1e4) == 1
    assert threads.team_size(3, 1e9) == 3
    assert threads.team_size(None, 1e9) == 1
    assert threads.blas_count("auto", 1e4) == 1
    assert threads.blas_count("auto", 1e9) is None
    assert threads.blas_count(3, 1e4) == 3


def test_gradients_sets_blas_threads_and_runs_on_one_fastbp_thread(blas_at_two,
                                                                 blas_settings):
    model = fb.mlp([6, 5, 3], loss="cross_entropy", seed=0, threads=None)
    X, y = np.random.default_rng(0).normal(size=(40, 6)), np.arange(40) % 3
    model.gradients(X, y, threads=2)
    model.gradients(X, y, threads="auto")
    model.gradients(X, y)
    assert blas_settings == [2, 1, None] and threads.current() == 2


class FakeClock:
    """Drives a ThreadTuner with made-up per-batch times."""

    def __init__(self, per_batch):
        self.per_batch = per_batch

    def chunk(self, tuner, chunk_batches):
        count, batches = tuner.next_chunk(chunk_batches)
        probe = tuner.record(count, self.per_batch[count] * batches, batches)
        return count, batches, probe


def test_tuner_starts_at_one_thread_then_times_the_other_and_keeps_the_faster():
    clock = FakeClock({1: 2e-3, 2: 1e-3})
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


def test_tuner_switches_only_to_a_clearly_faster_count():
    clock = FakeClock({1: 1e-3, 2: 0.95e-3})
    tuner = threads.ThreadTuner(2)
    for _ in range(40):
        clock.chunk(tuner, 64)
    assert tuner.choice == 1


def test_tuner_leaves_a_thread_count_that_becomes_slow():
    """When other work takes the second core, 2 threads turn slow: the next probe of one
    thread wins and training goes on at one thread; the probes of 2 then back off."""
    clock = FakeClock({1: 2e-3, 2: 1e-3})
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


def test_tuner_probe_is_never_longer_than_a_chunk():
    clock = FakeClock({1: 1e-6, 2: 1e-6})
    tuner = threads.ThreadTuner(2)
    clock.chunk(tuner, 3)
    tuner.trained_s = 1.0
    assert clock.chunk(tuner, 3) == (2, 3, True)


def test_auto_fit_times_a_team_against_one_thread(blas_at_two, team_sizes, monkeypatch):
    """fit with "auto" tries teams of 1 and of the caller's 2 threads, with BLAS at one
    thread inside and the caller's setting after; a fixed count or a tiny network never
    tunes."""
    monkeypatch.setattr(threads.ThreadTuner, "FIRST_PROBE_S", 0.0)
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(2000, 40)).astype(np.float32), np.arange(2000) % 10
    model = fb.mlp([40, 100, 100, 10], loss="cross_entropy", seed=0)
    history = model.fit(X, y, epochs=3, batch_size=100, threads="auto")
    assert set(team_sizes) == {1, 2} and np.isfinite(history.loss).all()
    assert threads.current() == 2
    team_sizes.clear()
    model.fit(X, y, epochs=1, batch_size=100, threads=2)
    assert set(team_sizes) == {2} and threads.current() == 2
    team_sizes.clear()
    with threads.blas_threads(1):  # "auto" with a caller at one thread: nothing to tune
        model.fit(X, y, epochs=1, batch_size=100, threads="auto")
    fb.mlp([6, 5, 3], loss="cross_entropy").fit(X[:, :6], y % 3, epochs=1, threads="auto")
    assert set(team_sizes) == {1}


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


def test_team_is_one_thread_where_blas_ignores_the_setting(blas_at_two, monkeypatch):
    """From a worker thread SciPy's OpenBLAS keeps its count: a team calling a BLAS that
    starts threads of its own would oversubscribe the cores, so the call runs on one."""
    import threading
    import warnings

    monkeypatch.setattr(threads, "_warned", [])
    sizes = []

    def work():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with threads.team(2, 1e9) as size:
                sizes.append((size, threads.current()))

    worker = threading.Thread(target=work)
    worker.start()
    worker.join(20)
    size, blas = sizes[0]
    assert size == (2 if blas == 1 else 1)
