"""Saving and loading: exact round trips and resumes, atomic writes, hostile files refused."""
import json
import os
import pickle

import numpy as np
import pytest

import fastbp as fb
from fastbp import io

EPOCHS = dict(batch_size=16, optimizer=None, threads=1)


def problem():
    rng = np.random.default_rng(0)
    return rng.normal(size=(90, 6)), rng.integers(0, 4, size=90)


def trained_model(dtype="float32", momentum=0.9, nesterov=False):
    X, y = problem()
    model = fb.Sequential([fb.Dense(6, 9, "tanh"), fb.Dense(9, 4)], loss="cross_entropy",
                          dtype=dtype, seed=3)
    model.fit(X, y, epochs=2, batch_size=16, threads=1,
              optimizer=fb.SGD(lr=0.05, momentum=momentum, nesterov=nesterov))
    return model


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_resume_after_load_equals_an_uninterrupted_run(tmp_path, dtype, momentum, nesterov):
    X, y = problem()
    straight = trained_model(dtype, momentum, nesterov)
    path = tmp_path / "model.npz"
    straight.save(path)
    resumed = fb.load(path)
    straight.fit(X, y, epochs=2, **EPOCHS)
    resumed.fit(X, y, epochs=2, **EPOCHS)  # same optimizer state, same shuffling stream
    np.testing.assert_array_equal(resumed.parameters, straight.parameters)
    assert resumed.parameters.dtype == np.dtype(dtype)


@pytest.mark.parametrize("optimizer", [
    fb.RMSprop(lr=0.01, momentum=0.9, centered=True),  # three state slots
    fb.RMSprop(lr=0.01, centered=True),
    fb.Adagrad(lr=0.1, lr_decay=0.2),  # the step count sets the rate
], ids=["rmsprop-centered-momentum", "rmsprop-centered", "adagrad-lr_decay"])
def test_resume_after_load_keeps_rmsprop_centered_and_adagrad_lr_decay(tmp_path, optimizer):
    X, y = problem()
    straight = fb.Sequential([fb.Dense(6, 9, "tanh"), fb.Dense(9, 4)], loss="cross_entropy",
                             dtype="float64", seed=3)
    straight.fit(X, y, epochs=2, batch_size=16, threads=1, optimizer=optimizer)
    straight.save(tmp_path / "model.npz")
    resumed = fb.load(tmp_path / "model.npz")
    assert resumed.optimizer == optimizer
    straight.fit(X, y, epochs=2, **EPOCHS)
    resumed.fit(X, y, epochs=2, **EPOCHS)
    np.testing.assert_array_equal(resumed.parameters, straight.parameters)
    np.testing.assert_array_equal(resumed._plan.state, straight._plan.state)


def test_round_trip_keeps_architecture_and_outputs(tmp_path):
    model = trained_model()
    model.threads = 2
    model.save(tmp_path / "m.npz")
    loaded = fb.load(tmp_path / "m.npz")
    assert repr(loaded) == repr(model) and loaded.threads == 2
    X, _ = problem()
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


@pytest.mark.parametrize("loss", ["huber", "l1"])
def test_newer_activations_and_regression_losses_round_trip(tmp_path, loss):
    """Saved by canonical name ("l1" is saved as "mae"), loaded into the same layout (the
    gelu/swish layers' kept pre-activations included), resumed exactly."""
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(40, 6)), rng.normal(size=(40, 2))
    model = fb.Sequential([fb.Dense(6, 8, "gelu"), fb.Dense(8, 7, "silu"), fb.Dense(7, 5, "elu"),
                           fb.Dense(5, 2, "softplus")], loss=loss, seed=2)
    model.fit(X, y, epochs=2, **EPOCHS)
    model.save(tmp_path / "m.npz")
    loaded = fb.load(tmp_path / "m.npz")
    assert loaded.loss == ("mae" if loss == "l1" else "huber")
    assert [layer.activation for layer in loaded.layers] == ["gelu", "swish", "elu", "softplus"]
    assert loaded._plan.row_length == model._plan.row_length
    model.fit(X, y, epochs=1, **EPOCHS)
    loaded.fit(X, y, epochs=1, **EPOCHS)
    np.testing.assert_array_equal(loaded.parameters, model.parameters)


def test_untrained_model_saves_without_optimizer(tmp_path):
    model = fb.mlp([3, 2], seed=0)
    model.save(tmp_path / "m.npz")
    loaded = fb.load(tmp_path / "m.npz")
    assert loaded.optimizer is None
    np.testing.assert_array_equal(loaded.parameters, model.parameters)


def test_file_loads_without_pickle_and_documents_itself(tmp_path):
    trained_model().save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as archive:
        config = json.loads(str(archive["config"][()]))
        assert sorted(archive.files) == ["config", "optimizer_state", "parameters", "statistics"]
    assert config["format"] == "fastbp.Sequential" and config["version"] == 4
    assert config["optimizer"]["momentum"] == 0.9


def test_pickle_round_trip_resumes_exactly():
    X, y = problem()
    model = trained_model()
    copy = pickle.loads(pickle.dumps(model))
    model.fit(X, y, epochs=1, **EPOCHS)
    copy.fit(X, y, epochs=1, **EPOCHS)
    np.testing.assert_array_equal(copy.parameters, model.parameters)


def test_failed_save_leaves_the_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    old = trained_model()
    old.save(path)
    before = path.read_bytes()

    def crash_midway(file, **arrays):
        file.write(b"PK\x03\x04 partial archive")
        raise OSError("No space left on device")

    monkeypatch.setattr(io.np, "savez", crash_midway)
    with pytest.raises(OSError, match="No space"):
        fb.mlp([6, 4], seed=1).save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.npz"]  # no temporary file left behind
    np.testing.assert_array_equal(fb.load(path).parameters, old.parameters)


def rewrite(path, **changes):
    """Copy the archive at ``path`` with some arrays replaced (None removes one)."""
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    for name, value in changes.items():
        if value is None:
            arrays.pop(name)
        else:
            arrays[name] = value
    with open(path, "wb") as file:
        np.savez(file, **arrays)


def edited_config(path, **edits):
    with np.load(path, allow_pickle=False) as archive:
        config = json.loads(str(archive["config"][()]))
    config.update(edits)
    return np.array(json.dumps(config))


TAMPERING = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[:200]),
    "pickled object": lambda p: rewrite(p, config=np.array([{"evil": 1}], dtype=object)),
    "missing parameters": lambda p: rewrite(p, parameters=None),
    "extra array": lambda p: rewrite(p, extra=np.zeros(2)),
    "wrong version": lambda p: rewrite(p, config=edited_config(p, version=99)),
    "foreign format": lambda p: rewrite(p, config=edited_config(p, format="other")),
    "config not json": lambda p: rewrite(p, config=np.array("{not json")),
    "unknown activation": lambda p: rewrite(p, config=edited_config(
        p, layers=[{"in_features": 6, "out_features": 9, "activation": "swoosh"},
                   {"in_features": 9, "out_features": 4, "activation": "identity"}])),
    "short parameters": lambda p: rewrite(p, parameters=np.zeros(5, np.float32)),
    "wrong dtype": lambda p: rewrite(p, parameters=np.zeros(103, np.float64)),
    "NaN parameters": lambda p: rewrite(p, parameters=np.full(103, np.nan, np.float32)),
    "state length": lambda p: rewrite(p, optimizer_state=np.zeros(7, np.float32)),
    "bad rng": lambda p: rewrite(p, config=edited_config(p, rng={"bit_generator": "nope"})),
}


@pytest.mark.parametrize("how", list(TAMPERING))
def test_tampered_files_are_refused(tmp_path, how):
    path = tmp_path / "m.npz"
    trained_model().save(path)
    TAMPERING[how](path)
    with pytest.raises(ValueError, match="not a valid fastbp model file"):
        fb.load(path)


def test_missing_file_is_a_file_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        fb.load(tmp_path / "absent.npz")


def test_save_refuses_other_objects(tmp_path):
    with pytest.raises(TypeError, match="model"):
        io.save(object(), tmp_path / "m.npz")
