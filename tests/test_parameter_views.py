"""Writing parameters: model.layers returns the same objects, assigning ``weight``/``bias``
copies into the flat buffer after checks, and get_weights/set_weights (Keras's names) are
all or nothing."""
import copy
import pickle

import numpy as np
import pytest

import fastbp as fb
from fastbp.bound import BoundDense, BoundLayer, ParameterView


def model(dtype="float32"):
    return fb.Sequential([fb.Dense(3, 4, "relu"), fb.Dropout(0.25), fb.Dense(4, 2)],
                         loss="mse", dtype=dtype, seed=0)


def test_layers_are_the_same_objects_on_every_access():
    m = model()
    assert m.layers is m.layers
    assert m.layers[0] is m.layers[0] and m.layers[2] is m.layers[2]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_assigning_weight_and_bias_writes_into_the_parameter_buffer(dtype):
    m = model(dtype)
    weight = np.arange(12, dtype=np.float64).reshape(3, 4) / 10
    m.layers[0].weight = weight
    m.layers[2].bias = [1, 2]  # a list of ints is converted
    np.testing.assert_array_equal(m.parameters[:12], weight.ravel().astype(dtype))
    np.testing.assert_array_equal(m.parameters[-2:], [1, 2])
    assert m.layers[0].weight.dtype == np.dtype(dtype)
    assert np.shares_memory(m.layers[0].weight, m.parameters)  # still a view afterwards
    np.testing.assert_allclose(m.predict(np.ones((1, 3))),
                               np.maximum(np.ones((1, 3)) @ weight + m.layers[0].bias, 0)
                               @ m.layers[2].weight + [1, 2], rtol=1e-6)


@pytest.mark.parametrize("value, error, words", [
    (np.zeros((4, 3)), ValueError, ["layers[0].weight", "shape (3, 4)", "(4, 3)", ".T"]),
    (np.zeros(4), ValueError, ["layers[0].weight", "shape (3, 4)", "[...] = value"]),
    (np.zeros((3, 5)), ValueError, ["layers[0].weight", "shape (3, 4)", "(3, 5)"]),
    (np.full((3, 4), np.nan), ValueError, ["layers[0].weight", "NaN or infinity"]),
    (np.full((3, 4), 1e300), ValueError, ["NaN or infinity", "float32"]),  # overflows float32
    (np.zeros((3, 4), dtype=bool), TypeError, ["layers[0].weight", "real numbers", "bool"]),
    (np.zeros((3, 4), dtype=complex), TypeError, ["real numbers", "complex"]),
    ([["a"] * 4] * 3, TypeError, ["layers[0].weight", "real numbers"]),
    ([[1, 2], [3]], ValueError, ["layers[0].weight", "could not be converted"]),
], ids=["transposed", "one row", "wrong width", "nan", "overflow", "bool", "complex",
        "strings", "ragged"])
def test_bad_assignments_raise_and_leave_the_model_untouched(value, error, words):
    m = model()
    before = m.parameters.copy()
    with pytest.raises(error) as raised:
        m.layers[0].weight = value
    for word in words:
        assert word in str(raised.value)
    np.testing.assert_array_equal(m.parameters, before)


def test_a_layer_copies_and_pickles():
    layer = model().layers[0]
    for again in (copy.copy(layer), pickle.loads(pickle.dumps(layer))):
        assert type(again) is BoundDense and again.spec == layer.spec and again.index == 0
        np.testing.assert_array_equal(again.weight, layer.weight)


def test_only_parameters_can_be_assigned():
    m = model()
    with pytest.raises(AttributeError, match=r"layers\[0\].activation.*frozen"):
        m.layers[0].activation = "tanh"
    with pytest.raises(AttributeError, match=r"layers\[0\].wieght.*not a parameter.*weight, bias"):
        m.layers[0].wieght = np.zeros((3, 4))
    assert m.layers[0].activation == "relu" and m.layers[0].in_features == 3


def test_get_weights_returns_copies_in_layer_order():
    m = model()
    weights = m.get_weights()
    assert [w.shape for w in weights] == [(3, 4), (4,), (4, 2), (2,)]
    np.testing.assert_array_equal(np.concatenate([w.ravel() for w in weights[::2]]
                                                 + [w for w in weights[1::2]]), m.parameters)
    weights[0][...] = 99  # a copy: the model does not change
    assert not np.any(m.parameters == 99)


def test_set_weights_round_trips_between_models():
    source, target = model(), fb.Sequential(
        [fb.Dense(3, 4, "relu"), fb.Dropout(0.25), fb.Dense(4, 2)], dtype="float64", seed=5)
    target.set_weights(source.get_weights())
    np.testing.assert_array_equal(target.parameters, source.parameters.astype(np.float64))
    X = np.random.default_rng(0).normal(size=(5, 3))
    np.testing.assert_allclose(target.predict(X), source.predict(X), rtol=1e-5)
    target.set_weights(tuple(w.tolist() for w in source.get_weights()))  # lists, a tuple
    np.testing.assert_array_equal(target.parameters, source.parameters.astype(np.float64))


@pytest.mark.parametrize("edit, error, words", [
    (lambda w: w[:3], ValueError, ["3 arrays", "4 parameters", "layers[2].bias (2,)"]),
    (lambda w: w + [np.zeros(2)], ValueError, ["5 arrays", "4 parameters"]),
    (lambda w: w[:3] + [np.zeros(3)], ValueError, ["weights[3]", "layers[2].bias", "(2,)"]),
    (lambda w: [w[0].T] + w[1:], ValueError, ["weights[0]", "layers[0].weight", ".T"]),
    (lambda w: w[:1] + [np.array([np.inf] * 4)] + w[2:], ValueError, ["weights[1]", "NaN"]),
    (lambda w: w[:2] + [w[2].astype(complex)] + w[3:], TypeError, ["weights[2]", "real"]),
    (lambda w: np.concatenate([x.ravel() for x in w]), TypeError, ["list of arrays"]),
    (lambda w: {"weight": w[0]}, TypeError, ["list of arrays", "dict"]),
], ids=["too few", "too many", "bad shape last", "transposed", "inf", "complex", "flat array",
        "dict"])
def test_bad_set_weights_leave_the_model_untouched(edit, error, words):
    m = model()
    before = m.parameters.copy()
    weights = [w + 1 for w in m.get_weights()]  # every array would change the model
    with pytest.raises(error) as raised:
        m.set_weights(edit(weights))
    for word in words:
        assert word in str(raised.value)
    np.testing.assert_array_equal(m.parameters, before)


def test_written_weights_train_save_load_and_pickle():
    m = model()
    m.layers[0].weight = np.full((3, 4), 0.5)
    m.fit(np.ones((8, 3)), np.zeros((8, 2)), epochs=1, batch_size=4)
    for again in (pickle.loads(pickle.dumps(m)),):
        np.testing.assert_array_equal(again.parameters, m.parameters)
        assert again.layers[0] is again.layers[0]
        again.layers[2].bias = [3, 4]
        np.testing.assert_array_equal(again.parameters[-2:], [3, 4])
        assert not np.array_equal(m.parameters[-2:], [3, 4])  # a separate buffer


def test_a_new_layer_kind_reuses_the_parameter_view():
    """What a new layer kind (e.g. batch norm with running statistics) declares to get the
    same checked assignment for every view it exposes."""
    class BoundNorm(BoundLayer):
        __slots__ = ()
        parameter_names = ("gamma", "running_mean")
        gamma = ParameterView()
        running_mean = ParameterView()

    buffer, stats = np.zeros(3, np.float32), np.zeros(3, np.float32)
    layer = BoundNorm(fb.Dropout(0.0), {"gamma": buffer, "running_mean": stats}, index=4)
    layer.running_mean = [1, 2, 3]
    np.testing.assert_array_equal(stats, [1, 2, 3])
    with pytest.raises(ValueError, match=r"layers\[4\].gamma must have shape \(3,\)"):
        layer.gamma = np.ones(4)
    with pytest.raises(ValueError, match="must name exactly"):
        BoundNorm(fb.Dropout(0.0), {"gamma": buffer})
    assert isinstance(model().layers[0], BoundDense)
