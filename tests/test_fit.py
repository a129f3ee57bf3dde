"""fit's orchestration: chunked compiled calls, validation, callbacks, schedules, history,
progress output, Ctrl-C and the wall-clock budget."""
import csv
import json
import _thread
import os
import signal
import sys
import threading
import time

import numpy as np
import pytest

import fastbp as fb
from fastbp import callbacks as cb
from fastbp import schedules, training
from fastbp.datasets import make_classification
from fastbp.training import epoch_order
from fastbp.validation import split_validation

FIT = dict(batch_size=16, threads=1)


def problem(n=240, seed=0):
    X, y = make_classification(n, 9, 3, seed=seed)
    return X, y


def model(seed=0, dtype="float64"):
    return fb.mlp([9, 12, 3], activation="tanh", loss="cross_entropy", seed=seed, dtype=dtype)


class Recorder(cb.Callback):
    """Records every hook call and the parameters after each epoch."""

    def __init__(self):
        self.calls, self.params = [], []

    def set_model(self, model):
        super().set_model(model)
        self.calls.append("set_model")

    def on_train_begin(self, logs):
        self.calls.append("begin")

    def on_epoch_end(self, epoch, logs):
        self.calls.append(("epoch", epoch, sorted(logs)))
        self.params.append(self.model.parameters.copy())

    def on_train_end(self, logs):
        self.calls.append("end")


# ---------------------------------------------------------------- chunks

def test_chunked_calls_train_exactly_like_whole_epochs(monkeypatch):
    """One batch per compiled call (chunks forced tiny) gives bitwise the same model as
    whole-epoch calls: chunk bounds fall on batch bounds and the rate/step counts carry."""
    X, y = problem()
    results = []
    for seconds in (1e-12, 1e9):
        monkeypatch.setattr(training, "CHUNK_SECONDS", seconds)
        m = model()
        history = m.fit(X, y, epochs=3, optimizer=fb.Adam(
            lr=0.01, schedule=schedules.CosineDecay(20, per="step")), **FIT)
        results.append((m.parameters.copy(), history.loss, m._plan.steps))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    assert results[0][1] == pytest.approx(results[1][1], rel=1e-14)  # summed per chunk
    assert results[0][2] == results[1][2] == 45


def test_train_epoch_hands_on_its_overflow_bounds():
    """train_epoch(bounds=...) measures the bounds when bounds[0] < 0, leaves the bounds
    after its last step there (upper bounds on max|parameter| and max|state slot|), and a
    chunk started from them trains exactly like one that measures afresh."""
    from fastbp._native import core
    X, y = problem()
    X, labels = X.astype(np.float32), y.astype(np.intp)
    runs = []
    for carry in (True, False):
        m, optimizer = model(dtype="float32"), fb.Adam(lr=0.05)
        m._use_optimizer(optimizer)
        plan = m._plan
        plan.ensure_capacity(16)
        bounds = np.full(4, -1.0)
        for row0 in range(0, 240, 48):
            if not carry:
                bounds[:] = -1.0
            status, _, done, _ = core.train_epoch(
                plan, X, np.zeros((0, 0), np.float32), labels, np.zeros(0, np.intp), 16,
                optimizer, np.full(3, 0.05), plan.steps, row0=row0, row1=row0 + 48,
                bounds=bounds)
            assert status == 0 and done == 3
            plan.steps += done
            n = plan.n_params
            assert bounds[0] >= np.abs(plan.params).max()
            assert bounds[1] >= np.abs(plan.state[:n]).max()
            assert bounds[2] >= np.abs(plan.state[n:]).max()
        runs.append((plan.params.copy(), plan.state.copy()))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    with pytest.raises(ValueError, match="bounds must hold 4 values"):
        core.train_epoch(plan, X, np.zeros((0, 0), np.float32), labels, np.zeros(0, np.intp),
                         16, optimizer, np.full(15, 0.05), plan.steps, bounds=np.zeros(3))


# ---------------------------------------------------------------- validation

def test_validation_data_is_evaluated_after_every_epoch():
    X, y = problem()
    Xv, yv = problem(60, seed=1)
    m = model()
    recorder = Recorder()
    history = m.fit(X, y, epochs=3, validation_data=(Xv, yv), callbacks=[recorder], **FIT)
    assert set(history.history) >= {"loss", "val_loss", "val_accuracy", "lr", "epoch_time",
                                    "samples_per_second"}
    assert len(history.val_loss) == 3
    final = m.evaluate(Xv, yv)
    assert history.val_loss[-1] == pytest.approx(final["loss"], rel=1e-12)
    assert history.val_accuracy[-1] == final["accuracy"]


def test_validation_split_is_stratified_seeded_and_disjoint():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), [50, 30, 20]).astype(np.intp)
    X = np.arange(100, dtype=np.float64).reshape(100, 1)
    parts = [split_validation(X, np.zeros((0, 3)), labels, None, 0.2,
                              np.random.default_rng(s), True) for s in (5, 5, 6)]
    Xt, _, lt, _, (Xv, _, lv) = parts[0]
    assert np.bincount(lv).tolist() == [10, 6, 4] and np.bincount(lt).tolist() == [40, 24, 16]
    assert sorted(np.concatenate([Xt[:, 0], Xv[:, 0]])) == list(range(100))
    np.testing.assert_array_equal(parts[1][4][0], Xv)           # same seed, same split
    assert not np.array_equal(parts[2][4][0], Xv)                # another seed, another one
    del rng


def test_validation_split_through_fit_reports_val_figures():
    X, y = problem()
    history = model().fit(X, y, epochs=2, validation_split=0.25, **FIT)
    assert len(history.val_loss) == 2 and 0 <= history.val_accuracy[-1] <= 1


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(validation_split=1.0), ValueError, "validation_split must be < 1"),
    (dict(validation_split=-0.1), ValueError, "validation_split must be finite and >= 0"),
    (dict(validation_split=0.001), ValueError, "leaves 240 for training and 0 for validation"),
    (dict(validation_split=0.2, validation_data=(np.zeros((2, 9)), [0, 1])), ValueError,
     "validation_data or validation_split, not both"),
    (dict(validation_data=np.zeros((2, 9))), TypeError, "validation_data must be a pair"),
    (dict(validation_data=(np.zeros((2, 8)), [0, 1])), ValueError,
     "validation_data\\[0\\] has 8 features"),
    (dict(validation_data=(np.zeros((2, 9)), [0, 5])), ValueError, "validation_data\\[1\\] holds"),
    (dict(max_time=0), ValueError, "max_time must be finite and > 0"),
    (dict(callbacks=[object()]), TypeError, "callbacks\\[0\\] must be a fastbp.callbacks"),
    (dict(callbacks=[cb.CSVLogger("unused.csv"), cb.EarlyStopping()]), ValueError,
     "callbacks\\[1\\] \\(EarlyStopping\\) monitors 'val_loss', which this fit does not "
     "report \\(val_\\* need validation_data or validation_split\\)"),
    (dict(callbacks=cb.ReduceLROnPlateau(monitor="val_accuracy")), ValueError,
     "monitors 'val_accuracy', which this fit does not report"),
    (dict(sample_weight=np.ones(5)), ValueError, r"sample_weight must have shape \(240,\)"),
    (dict(sample_weight=-np.ones(240)), ValueError, "sample_weight must be >= 0"),
    (dict(sample_weight=np.zeros(240)), ValueError, "not all zero"),
    (dict(sample_weight=np.full(240, np.nan)), ValueError, "sample_weight"),
    (dict(class_weight="even"), TypeError, "class_weight must be 'balanced', a dict or None"),
    (dict(class_weight={3: 1.0}), ValueError, r"class_weight keys must be class indices in \[0, 2\]"),
    (dict(class_weight={0: -1.0}), ValueError, r"class_weight\[0\] must be finite and >= 0"),
])
def test_bad_fit_arguments_are_refused_untouched(kwargs, exc, match):
    X, y = problem()
    m = model()
    before = m.parameters.copy()
    with pytest.raises(exc, match=match):
        m.fit(X, y, epochs=1, **kwargs, **FIT)
    np.testing.assert_array_equal(m.parameters, before)


def test_monitoring_accuracy_of_a_regression_fit_is_refused_before_training():
    X = np.random.default_rng(0).normal(size=(40, 3))
    m = fb.mlp([3, 4, 2], loss="mse", seed=0)
    before = m.parameters.copy()
    with pytest.raises(ValueError, match="monitors 'accuracy', which this fit does not report"):
        m.fit(X, X[:, :2], epochs=1, callbacks=[cb.EarlyStopping(monitor="accuracy")], **FIT)
    np.testing.assert_array_equal(m.parameters, before)


@pytest.mark.parametrize("make, exc, match", [
    (lambda: cb.EarlyStopping(patience=0), ValueError, "patience must be >= 1"),
    (lambda: cb.EarlyStopping(patience=2.5), TypeError, "patience must be an integer"),
    (lambda: cb.EarlyStopping(min_delta=-1), ValueError, "min_delta must be finite and >= 0"),
    (lambda: cb.EarlyStopping(min_delta=float("nan")), ValueError, "min_delta must be finite"),
    (lambda: cb.EarlyStopping(mode="largest"), ValueError, "mode must be 'auto', 'min' or 'max'"),
    (lambda: cb.EarlyStopping(monitor=None), TypeError, "monitor must be a str"),
    (lambda: cb.EarlyStopping(restore_best_weights="no"), TypeError,
     "restore_best_weights must be True or False"),
    (lambda: cb.ReduceLROnPlateau(factor=1.0), ValueError, "factor must be < 1"),
    (lambda: cb.ReduceLROnPlateau(factor=0), ValueError, "factor must be finite and > 0"),
    (lambda: cb.ReduceLROnPlateau(cooldown=-1), ValueError, "cooldown must be >= 0"),
    (lambda: cb.ReduceLROnPlateau(cooldown=True), TypeError, "cooldown must be an integer"),
    (lambda: cb.ReduceLROnPlateau(min_lr=float("inf")), ValueError, "min_lr must be finite"),
    (lambda: cb.ModelCheckpoint(None), TypeError, "path must be a file path"),
    (lambda: cb.ModelCheckpoint(3), TypeError, "path must be a file path"),
    (lambda: cb.ModelCheckpoint("m.npz", save_best_only="yes"), TypeError,
     "save_best_only must be True or False"),
    (lambda: cb.CSVLogger(["log.csv"]), TypeError, "path must be a file path"),
    (lambda: cb.CSVLogger("log.csv", append=1), TypeError, "append must be True or False"),
])
def test_bad_callback_settings_are_refused_naming_them(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


# ---------------------------------------------------------------- callbacks

def test_callback_protocol_order():
    X, y = problem()
    recorder = Recorder()
    model().fit(X, y, epochs=2, callbacks=recorder, **FIT)
    keys = sorted(["accuracy", "epoch_time", "loss", "lr", "samples_per_second", "grad_norm_0",
                   "grad_norm_1", "update_ratio_0", "update_ratio_1", "saturated_fraction_0"])
    assert recorder.calls == ["set_model", "begin", ("epoch", 0, keys), ("epoch", 1, keys), "end"]


def test_early_stopping_stops_and_restores_the_best_weights():
    X, y = problem()
    Xv, yv = problem(60, seed=1)
    recorder, stopper = Recorder(), cb.EarlyStopping(patience=2)
    # A rate this high makes validation loss bounce, so a best epoch is followed by worse ones.
    history = model().fit(X, y, epochs=60, optimizer=fb.SGD(lr=2.0, momentum=0.9),
                          validation_data=(Xv, yv), callbacks=[recorder, stopper], **FIT)
    assert history.stop_reason == "early_stopping" and history.epochs < 60
    best = int(np.argmin(history.val_loss))
    assert stopper.best_epoch == best and stopper.stopped_epoch == history.epochs - 1
    assert history.epochs - 1 - best == 2
    np.testing.assert_array_equal(stopper.model.parameters, recorder.params[best])


@pytest.mark.parametrize("monitor", ["val_los", "grad_norm_2", "accuracy_0"])
def test_a_monitor_that_fit_does_not_report_is_refused_before_training(monitor):
    X, y = problem()
    m = model()
    before = m.parameters.copy()
    with pytest.raises(ValueError, match=f"monitors '{monitor}', which this fit does not "
                                         "report.*; it reports accuracy, dead_fraction_0"):
        m.fit(X, y, epochs=1, validation_split=0.2,
              callbacks=[cb.EarlyStopping(monitor=monitor)], **FIT)
    np.testing.assert_array_equal(m.parameters, before)


def test_a_fraction_figure_missing_at_run_time_is_named():
    """reported_figures allows both unit fractions per layer; the one a layer lacks (tanh
    layers report saturation, not dead units) is named once the epoch's logs show it."""
    X, y = problem()
    with pytest.raises(ValueError, match="monitors 'dead_fraction_0', which fit does not "
                                         "report here"):
        model().fit(X, y, epochs=1, callbacks=[cb.EarlyStopping(monitor="dead_fraction_0")],
                    **FIT)


def test_early_stopping_restores_best_weights_when_max_time_ends_training():
    X, y = problem(2000)
    stopper, recorder = cb.EarlyStopping(monitor="loss", patience=1000), Recorder()
    m = model()
    history = m.fit(X, y, epochs=10**6, max_time=0.5, optimizer=fb.SGD(lr=0.5),
                    callbacks=[recorder, stopper], **FIT)
    assert history.stop_reason == "max_time"
    np.testing.assert_array_equal(m.parameters, recorder.params[stopper.best_epoch])


def test_reduce_lr_on_plateau_lowers_the_base_rate():
    class Stub:
        optimizer = fb.SGD(lr=1.0)

    reducer = cb.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=2, cooldown=1,
                                   min_lr=0.2)
    reducer.set_model(Stub)
    reducer.on_train_begin({})
    rates = []
    for loss in [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]:
        reducer.on_epoch_end(0, {"loss": loss})
        rates.append(Stub.optimizer.lr)
    # Keras's counting: the epoch that ends a cooldown already counts as a bad one.
    assert rates == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.2, 0.2, 0.2]


def test_model_checkpoint_best_only_and_every_epoch(tmp_path):
    X, y = problem()
    Xv, yv = problem(60, seed=1)
    every = cb.ModelCheckpoint(tmp_path / "m-{epoch:02d}.npz")
    best = cb.ModelCheckpoint(tmp_path / "best.npz", save_best_only=True)
    m = model()
    history = m.fit(X, y, epochs=3, validation_data=(Xv, yv), callbacks=[every, best], **FIT)
    assert sorted(os.listdir(tmp_path)) == ["best.npz", "m-01.npz", "m-02.npz", "m-03.npz"]
    np.testing.assert_array_equal(fb.load(tmp_path / "m-03.npz").parameters, m.parameters)
    best_epoch = int(np.argmin(history.val_loss))
    assert fb.load(tmp_path / "best.npz").evaluate(Xv, yv)["loss"] == pytest.approx(
        history.val_loss[best_epoch], rel=1e-12)


def test_csv_logger_writes_one_row_per_epoch(tmp_path):
    X, y = problem()
    path = tmp_path / "log.csv"
    model().fit(X, y, epochs=3, callbacks=[cb.CSVLogger(path)], **FIT)
    model().fit(X, y, epochs=2, callbacks=[cb.CSVLogger(path, append=True)], **FIT)
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    assert [row["epoch"] for row in rows] == ["0", "1", "2", "0", "1"]
    assert all(float(row["loss"]) > 0 for row in rows)


def diverging():
    """A regression whose huge targets and rate overflow within a few epochs."""
    X, _ = problem()
    y = 1e3 * np.random.default_rng(1).normal(size=(X.shape[0], 2))
    return fb.mlp([9, 12, 2], loss="mse", seed=0), X, y, fb.SGD(lr=1e6, momentum=0.9)


def test_terminate_on_nan_stops_quietly_with_finite_parameters(capsys):
    m, X, y, optimizer = diverging()
    history = m.fit(X, y, epochs=50, optimizer=optimizer, callbacks=[cb.TerminateOnNaN()],
                    **FIT)
    assert history.stop_reason == "nan" and np.all(np.isfinite(m.parameters))
    assert "TerminateOnNaN" in capsys.readouterr().err


def test_divergence_without_terminate_on_nan_raises_after_train_end():
    m, X, y, optimizer = diverging()
    recorder = Recorder()
    with pytest.raises(fb.DivergenceError):
        m.fit(X, y, epochs=50, optimizer=optimizer, callbacks=[recorder], **FIT)
    assert recorder.calls[-1] == "end"


# ---------------------------------------------------------------- telemetry

@pytest.mark.parametrize("optimizer", [fb.SGD(lr=0.1, momentum=0.9, clip_norm=0.05),
                                       fb.AdamW(lr=0.01)], ids=["sgd-clipped", "adamw"])
def test_layer_telemetry_matches_numpy(optimizer):
    """One batch per epoch: the recorded gradient norms equal model.gradients' (before
    clipping), update ratios equal the weights' change, dead fractions the hidden units that
    are silent on every row."""
    X, y = problem(40)
    m = fb.mlp([9, 30, 7, 3], activation="relu", loss="cross_entropy", seed=4, dtype="float64")
    m.layers[0].bias[:5] = -50.0  # five units that never fire
    _, grads = m.gradients(X, y)
    before = [layer.weight.copy() for layer in m.layers]
    hidden = [np.maximum(X @ before[0] + m.layers[0].bias, 0)]
    hidden.append(np.maximum(hidden[0] @ before[1] + m.layers[1].bias, 0))
    history = m.fit(X, y, epochs=1, batch_size=40, shuffle=False, optimizer=optimizer,
                    threads=1)
    for layer, ((dW, _), old) in enumerate(zip(grads, before)):
        assert history.history[f"grad_norm_{layer}"][0] == pytest.approx(
            np.linalg.norm(dW), rel=1e-10)
        change = np.linalg.norm(m.layers[layer].weight - old) / np.linalg.norm(old)
        assert history.history[f"update_ratio_{layer}"][0] == pytest.approx(change, rel=1e-8)
    for layer, a in enumerate(hidden):
        assert history.history[f"dead_fraction_{layer}"][0] == np.mean(np.all(a <= 0, axis=0))
    assert history.dead_fraction_0[0] >= 5 / 30
    assert "dead_fraction_2" not in history.history  # the output layer has none


def test_telemetry_shows_vanishing_gradients_in_a_deep_sigmoid_network():
    X, y = problem(256)
    deep = fb.mlp([9] + [32] * 8 + [3], activation="sigmoid", loss="cross_entropy", seed=0)
    history = deep.fit(X, y, epochs=1, **FIT)
    assert history.grad_norm_0[0] < 1e-2 * history.grad_norm_8[0]


# ---------------------------------------------------------------- time and interrupts

@pytest.mark.parametrize("team", [1, 2])
def test_max_time_stops_within_a_chunk(team):
    X, y = problem(4000)
    started = time.monotonic()
    history = model().fit(X, y, epochs=10**6, max_time=0.4, **{**FIT, "threads": team})
    assert history.stop_reason == "max_time"
    assert time.monotonic() - started < 0.4 + 1.0


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to oneself is POSIX")
@pytest.mark.parametrize("team", [1, 2])
def test_ctrl_c_stops_within_a_second_and_returns_the_history(capsys, team):
    X, y = problem(4000)
    m = model()
    stopper, recorder = cb.EarlyStopping(monitor="loss", patience=10**6), Recorder()
    sent, handler = [], signal.getsignal(signal.SIGINT)

    def interrupt():
        sent.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGINT)

    timer = threading.Timer(1.0, interrupt)
    timer.start()
    history = m.fit(X, y, epochs=10**6, callbacks=[recorder, stopper],
                    **{**FIT, "threads": team})
    returned = time.monotonic()
    timer.join()
    assert history.stop_reason == "interrupted" and history.epochs >= 1
    assert returned - sent[0] < 1.0
    assert "interrupted by Ctrl-C" in capsys.readouterr().err
    np.testing.assert_array_equal(m.parameters, recorder.params[stopper.best_epoch])
    assert m.evaluate(X, y)["loss"] < 5  # a usable model
    assert signal.getsignal(signal.SIGINT) is handler


@pytest.mark.parametrize("team", [1, 2])
def test_interrupt_main_stops_fit_within_a_second_with_finite_weights(capsys, team):
    """Ctrl-C as _thread.interrupt_main() raises it (Python's SIGINT handling, no OS signal),
    without early stopping: the model keeps its last completed step."""
    X, y = problem(4000)
    m = model()
    sent = []

    def interrupt():
        sent.append(time.monotonic())
        _thread.interrupt_main()

    timer = threading.Timer(0.5, interrupt)
    timer.start()
    history = m.fit(X, y, epochs=10**6, **{**FIT, "threads": team})
    returned = time.monotonic()
    timer.join()
    assert history.stop_reason == "interrupted"
    assert returned - sent[0] < 1.0
    assert "interrupted by Ctrl-C" in capsys.readouterr().err
    assert np.all(np.isfinite(m.parameters)) and m._plan.steps > 0
    assert m.evaluate(X, y)["loss"] < 5


# ---------------------------------------------------------------- schedules through fit

def test_fit_applies_the_schedule_rates_step_by_step():
    """fit with a per-step warm-up + cosine equals train_step calls at the schedule's rates."""
    X, y = problem(64)
    schedule = schedules.Warmup(5, then=schedules.CosineDecay(10, per="step"),
                                start_factor=0.1)
    fitted = model()
    fitted._rng = np.random.default_rng(3)
    history = fitted.fit(X, y, epochs=3, optimizer=fb.SGD(lr=0.3, momentum=0.9,
                                                           schedule=schedule), **FIT)
    expected_rates = 0.3 * schedule.factor(np.arange(12))
    stepped, optimizer, rng = model(), fb.SGD(lr=0.3, momentum=0.9), np.random.default_rng(3)
    for epoch in range(3):
        order = epoch_order(rng, 64)  # as fit draws each epoch's order
        for k in range(4):
            optimizer.lr = expected_rates[4 * epoch + k]
            rows = order[16 * k:16 * k + 16]
            stepped.train_step(X[rows], y[rows], optimizer=optimizer)
    np.testing.assert_allclose(fitted.parameters, stepped.parameters, rtol=1e-9, atol=1e-12)
    assert history.lr == [expected_rates[3], expected_rates[7], expected_rates[11]]


def test_reduce_on_plateau_schedule_watches_validation_loss():
    X, y = problem()
    Xv, yv = problem(60, seed=1)
    schedule = schedules.ReduceOnPlateau(factor=0.5, patience=0)
    history = model().fit(X, y, epochs=6, optimizer=fb.SGD(lr=2.0, schedule=schedule),
                          validation_data=(Xv, yv), **FIT)
    factors = [lr / 2.0 for lr in history.lr]
    best = np.minimum.accumulate(history.val_loss)
    expected, factor = [], 1.0
    for epoch in range(6):
        expected.append(factor)
        if epoch == 0 or not history.val_loss[epoch] < best[epoch - 1] * (1 - 1e-4):
            factor = factor * 0.5 if epoch else factor
    assert factors == expected


def test_save_load_resumes_a_scheduled_adam_run_exactly(tmp_path):
    X, y = problem()
    opt = fb.Adam(lr=0.01, schedule=schedules.StepDecay(1, gamma=0.5))
    straight = model()
    straight.fit(X, y, epochs=2, optimizer=opt, **FIT)
    straight.save(tmp_path / "m.npz")
    resumed = fb.load(tmp_path / "m.npz")
    assert resumed._plan.steps == 30 and resumed._plan.epochs == 2
    straight.fit(X, y, epochs=2, **FIT)
    resumed.fit(X, y, epochs=2, **FIT)
    np.testing.assert_array_equal(resumed.parameters, straight.parameters)


# ---------------------------------------------------------------- output and history

def test_verbose_prints_one_line_per_epoch_when_not_a_terminal(capsys):
    X, y = problem()
    model().fit(X, y, epochs=2, verbose=1, validation_split=0.2, **FIT)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("epoch 1/2") and "val_loss" in lines[0]
    model().fit(X, y, epochs=2, verbose=0, **FIT)
    assert capsys.readouterr().out == ""


def test_history_to_dict_is_json_and_attributes_name_figures():
    X, y = problem()
    history = model().fit(X, y, epochs=2, **FIT)
    data = json.loads(json.dumps(history.to_dict()))
    assert data["epochs"] == 2 and data["stop_reason"] == "completed"
    assert data["history"]["loss"] == history.loss
    with pytest.raises(AttributeError, match="History has no figure 'val_loss'"):
        history.val_loss


def test_history_plot(tmp_path, monkeypatch):
    X, y = problem()
    history = model().fit(X, y, epochs=2, validation_split=0.2, **FIT)
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    figure = history.plot(tmp_path / "h.png")
    assert (tmp_path / "h.png").stat().st_size > 0
    assert [ax.get_title() for ax in figure.axes] == ["loss", "accuracy", "gradient norm per layer"]
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match="History.plot needs matplotlib"):
        history.plot()


# ---------------------------------------------------------------- sample and class weights

def regression_targets(loss, n, rng):
    if loss == "cross_entropy":
        return rng.integers(0, 3, size=n)
    if loss == "binary_cross_entropy":
        return rng.integers(0, 2, size=(n, 3)).astype(float)
    return rng.normal(size=(n, 3))


@pytest.mark.parametrize("loss", ["mse", "cross_entropy", "binary_cross_entropy", "huber", "mae"])
def test_weighted_step_is_the_weighted_mean_of_per_sample_gradients(loss):
    """train_step with sample_weight w on B rows moves the parameters by
    lr · Σ w_r g_r / B, where g_r is the gradient of row r alone, and returns Σ w_r l_r / B."""
    rng = np.random.default_rng(7)
    X, y = rng.normal(size=(6, 9)), regression_targets(loss, 6, rng)
    w = np.array([0.0, 1.0, 2.5, 0.5, 3.0, 1.0])
    m = fb.mlp([9, 5, 3], activation="tanh", loss=loss, seed=0, dtype="float64")
    start = m.parameters.copy()
    expected_loss, expected_step = 0.0, np.zeros_like(start)
    for r in range(6):
        row_loss, grads = m.gradients(X[r:r + 1], y[r:r + 1])
        flat = np.concatenate([dW.ravel() for dW, _ in grads] + [db for _, db in grads])
        expected_loss += w[r] * row_loss / 6
        expected_step += w[r] * flat / 6
    loss_value = m.train_step(X, y, optimizer=fb.SGD(lr=0.5), sample_weight=w)
    assert loss_value == pytest.approx(expected_loss, rel=1e-12)
    np.testing.assert_allclose(m.parameters, start - 0.5 * expected_step, rtol=1e-12,
                               atol=1e-14)


def test_unit_weights_train_like_no_weights():
    X, y = problem()
    plain, weighted = model(), model()
    plain.fit(X, y, epochs=2, **FIT)
    weighted.fit(X, y, epochs=2, sample_weight=np.ones(len(y)), **FIT)
    np.testing.assert_allclose(weighted.parameters, plain.parameters, rtol=1e-12, atol=1e-14)


def test_class_weight_balanced_and_dict_equal_their_sample_weights():
    X, y = problem()
    y = np.where(np.arange(len(y)) % 5 == 0, 2, y % 2)  # unbalanced classes
    counts = np.bincount(y)
    balanced = (len(y) / (3 * counts))[y]
    results = []
    for kwargs in (dict(class_weight="balanced"), dict(sample_weight=balanced),
                   dict(class_weight={2: 3.0}, sample_weight=np.full(len(y), 0.5)),
                   dict(sample_weight=np.where(y == 2, 1.5, 0.5))):
        m = model()
        m.fit(X, y, epochs=2, **kwargs, **FIT)
        results.append(m.parameters.copy())
    np.testing.assert_allclose(results[0], results[1], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(results[2], results[3], rtol=1e-12, atol=1e-14)


def test_class_weight_needs_class_labels():
    X, _ = problem()
    m = fb.mlp([9, 4, 2], loss="mse", seed=0)
    with pytest.raises(ValueError, match="class_weight needs loss='cross_entropy'"):
        m.fit(X, np.zeros((len(X), 2)), epochs=1, class_weight="balanced", **FIT)


def test_weighted_gradients_equal_the_weighted_mean_of_per_sample_gradients():
    rng = np.random.default_rng(8)
    X, y = rng.normal(size=(5, 9)), rng.integers(0, 3, size=5)
    w = np.array([1.0, 0.0, 2.0, 0.5, 3.0])
    m = model()
    loss, grads = m.gradients(X, y, sample_weight=w)
    expected_loss, expected = 0.0, [np.zeros_like(dW) for dW, _ in grads]
    for r in range(5):
        row_loss, row_grads = m.gradients(X[r:r + 1], y[r:r + 1])
        expected_loss += w[r] * row_loss / 5
        for e, (dW, _) in zip(expected, row_grads):
            e += w[r] * dW / 5
    assert loss == pytest.approx(expected_loss, rel=1e-12)
    for (dW, _), e in zip(grads, expected):
        np.testing.assert_allclose(dW, e, rtol=1e-12, atol=1e-14)
