"""Weight initialisers: each one's distribution, seeded repeatability, the unchanged default,
per-layer choices, validation, and persistence (including files from before initialisers)."""
import json
import math

import numpy as np
import pytest

import fastbp as fb
from fastbp import initializers

FAN_IN, FAN_OUT = 400, 300  # non-square, so fan_in and fan_out cannot be swapped unnoticed
C = 0.87962566103423978    # std of a standard normal cut to [-2, 2] (Keras's constant)

# name -> (uniform?, target standard deviation)
EXPECTED = {
    "glorot_uniform": (True, math.sqrt(2 / (FAN_IN + FAN_OUT))),
    "glorot_normal": (False, math.sqrt(2 / (FAN_IN + FAN_OUT))),
    "he_uniform": (True, math.sqrt(2 / FAN_IN)),
    "he_normal": (False, math.sqrt(2 / FAN_IN)),
    "lecun_uniform": (True, math.sqrt(1 / FAN_IN)),
    "lecun_normal": (False, math.sqrt(1 / FAN_IN)),
}


def weights_of(init, seed=0, activation="identity", dtype="float64"):
    model = fb.Sequential([fb.Dense(FAN_IN, FAN_OUT, activation, init=init)], dtype=dtype, seed=seed)
    return model.layers[0].weight


def test_truncation_constant_is_the_truncated_standard_deviation():
    assert initializers._TRUNCATED_STD == pytest.approx(C, rel=1e-15)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_distribution_matches_the_formula(name):
    uniform, std = EXPECTED[name]
    W = weights_of(name)
    n = W.size
    assert abs(W.mean()) < 5 * std / math.sqrt(n)
    assert W.std() == pytest.approx(std, rel=0.01)
    if uniform:
        limit = std * math.sqrt(3)  # = sqrt(6 / fan) for glorot/he, sqrt(3 / fan) for lecun
        assert np.abs(W).max() <= limit and np.abs(W).max() > 0.999 * limit
        assert np.mean(np.abs(W) < std) == pytest.approx(1 / math.sqrt(3), abs=0.01)
    else:
        bound = 2 * std / C  # two standard deviations of the normal before truncation
        assert np.abs(W).max() <= bound and np.abs(W).max() > 0.98 * bound
        inside = math.erf(C / math.sqrt(2)) / math.erf(2 / math.sqrt(2))  # P(|w| < std)
        assert np.mean(np.abs(W) < std) == pytest.approx(inside, abs=0.01)


def test_zeros():
    model = fb.Sequential([fb.Dense(5, 4, "relu", init="zeros"), fb.Dense(4, 3, init="zeros")], seed=0)
    assert not np.any(model.parameters)


@pytest.mark.parametrize("name", initializers.WEIGHT_INITIALIZERS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_same_seed_same_weights(name, dtype):
    first = weights_of(name, seed=42, dtype=dtype)
    np.testing.assert_array_equal(weights_of(name, seed=42, dtype=dtype), first)
    if name != "zeros":
        assert not np.array_equal(weights_of(name, seed=43, dtype=dtype), first)


def todays_initialisation(layers, seed):
    """A copy of fastbp's initialisation from before initialisers could be chosen; returns
    the weights and the generator after drawing them."""
    rng = np.random.default_rng(seed)
    weights = []
    for fan_in, fan_out, activation in layers:
        if activation in ("relu", "leaky_relu"):
            bound = np.sqrt(6.0 / fan_in)
        else:
            bound = np.sqrt(6.0 / (fan_in + fan_out))
        weights.append(rng.uniform(-bound, bound, size=(fan_in, fan_out)))
    return weights, rng


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("seed", [0, 7, 12345])
def test_default_is_bitwise_unchanged(dtype, seed):
    layers = [(13, 21, "relu"), (21, 8, "tanh"), (8, 9, "leaky_relu"), (9, 5, "sigmoid"),
              (5, 3, "identity")]
    model = fb.Sequential([fb.Dense(*layer) for layer in layers], dtype=dtype, seed=seed)
    weights, rng = todays_initialisation(layers, seed)
    for layer, expected in zip(model.layers, weights):
        assert layer.spec.init == "auto" and layer.spec.bias_init == "zeros"
        np.testing.assert_array_equal(layer.weight, expected.astype(dtype))
        assert not np.any(layer.bias)
    # ...and shuffling continues from the same generator state as before.
    assert model._rng.bit_generator.state == rng.bit_generator.state


@pytest.mark.parametrize("activation,same_as", [("relu", "he_uniform"), ("leaky_relu", "he_uniform"),
                                                ("tanh", "glorot_uniform"), ("sigmoid", "glorot_uniform"),
                                                ("identity", "glorot_uniform")])
def test_auto_resolves_by_activation(activation, same_as):
    np.testing.assert_array_equal(weights_of("auto", 3, activation), weights_of(same_as, 3, activation))


def test_each_layer_uses_its_own_initialiser():
    model = fb.Sequential([fb.Dense(FAN_IN, FAN_OUT, "relu", init="he_normal"),
                           fb.Dense(FAN_OUT, 200, "tanh", init="zeros", bias_init=0.25),
                           fb.Dense(200, 50, init="lecun_uniform", bias_init=-1.5)],
                          dtype="float64", seed=5)
    first, second, third = model.layers
    assert first.weight.std() == pytest.approx(math.sqrt(2 / FAN_IN), rel=0.01)
    assert np.abs(first.weight).max() <= 2 * math.sqrt(2 / FAN_IN) / C
    assert not np.any(first.bias)
    assert not np.any(second.weight) and np.all(second.bias == 0.25)
    limit = math.sqrt(3 / 200)
    assert np.abs(third.weight).max() <= limit and third.weight.std() == pytest.approx(
        limit / math.sqrt(3), rel=0.03)
    assert np.all(third.bias == -1.5)


def test_draw_is_usable_on_its_own():
    rng = np.random.default_rng(0)
    W = initializers.draw("glorot_normal", (30, 20), rng)
    assert W.shape == (30, 20) and W.dtype == np.float64
    with pytest.raises(ValueError, match="resolve 'auto'"):
        initializers.draw("auto", (3, 2), rng)


# ---------------------------------------------------------------- the Dense spec
def test_dense_repr_shows_initialisers_only_when_not_default():
    assert repr(fb.Dense(3, 4, "relu")) == "Dense(3, 4, activation='relu')"
    assert repr(fb.Dense(3, 4, init="he_normal", bias_init=0.1)) == (
        "Dense(3, 4, activation='identity', init='he_normal', bias_init=0.1)")
    assert fb.Dense(3, 4, bias_init=0) == fb.Dense(3, 4) == fb.Dense(3, 4, "identity", "auto", "zeros")
    assert fb.Dense(3, 4, bias_init=2).bias_init == 2.0


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(init="xavier_uniform"), ValueError,
     "init='xavier_uniform' is not known; valid initialisers: 'auto', 'glorot_uniform', "
     "'glorot_normal', 'he_uniform', 'he_normal', 'lecun_uniform', 'lecun_normal', 'zeros'"),
    (dict(init=None), ValueError, "init=None is not known; valid initialisers"),
    (dict(init="HE_NORMAL"), ValueError, "valid initialisers"),
    (dict(bias_init="ones"), ValueError,
     "bias_init='ones' is not known; valid bias initialisers: 'zeros' or a finite number"),
    (dict(bias_init=math.nan), ValueError, "bias_init must be finite"),
    (dict(bias_init=True), TypeError, "bias_init must be 'zeros' or a number, got bool"),
    (dict(bias_init=None), TypeError, "bias_init must be 'zeros' or a number"),
])
def test_bad_initialisers_raise(kwargs, error, match):
    with pytest.raises(error, match=match):
        fb.Dense(3, 4, **kwargs)


# ---------------------------------------------------------------- persistence
def model_with_initialisers():
    return fb.Sequential([fb.Dense(6, 9, "relu", init="he_normal", bias_init=0.1),
                          fb.Dense(9, 7, "tanh", init="lecun_uniform"),
                          fb.Dense(7, 4, init="zeros")], loss="cross_entropy", seed=3)


def test_save_load_keeps_initialisers(tmp_path):
    model = model_with_initialisers()
    model.save(tmp_path / "m.npz")
    loaded = fb.load(tmp_path / "m.npz")
    assert [l.spec for l in loaded.layers] == [l.spec for l in model.layers]
    assert repr(loaded) == repr(model)
    np.testing.assert_array_equal(loaded.parameters, model.parameters)
    with np.load(tmp_path / "m.npz", allow_pickle=False) as archive:
        layers = json.loads(str(archive["config"][()]))["layers"]
    assert [(l["init"], l["bias_init"]) for l in layers] == [
        ("he_normal", 0.1), ("lecun_uniform", "zeros"), ("zeros", "zeros")]


def write_with_layers(path, edit):
    """Rewrite the saved model at ``path`` with its layer configs passed through ``edit``."""
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    config = json.loads(str(arrays["config"][()]))
    config["layers"] = [edit(dict(layer)) for layer in config["layers"]]
    arrays["config"] = np.array(json.dumps(config))
    with open(path, "wb") as file:
        np.savez(file, **arrays)


def test_file_from_before_initialisers_loads_with_defaults(tmp_path):
    X = np.random.default_rng(0).normal(size=(40, 6))
    y = np.arange(40) % 4
    model = fb.Sequential([fb.Dense(6, 9, "tanh"), fb.Dense(9, 4)], loss="cross_entropy", seed=3)
    model.fit(X, y, epochs=1, batch_size=8, threads=1)
    path = tmp_path / "old.npz"
    model.save(path)

    def old_layer(layer):
        del layer["init"], layer["bias_init"]
        return layer

    write_with_layers(path, old_layer)
    loaded = fb.load(path)
    assert [(l.init, l.bias_init) for l in loaded.layers] == [("auto", "zeros")] * 2
    np.testing.assert_array_equal(loaded.parameters, model.parameters)
    model.fit(X, y, epochs=1, batch_size=8, threads=1)
    loaded.fit(X, y, epochs=1, batch_size=8, threads=1)
    np.testing.assert_array_equal(loaded.parameters, model.parameters)


@pytest.mark.parametrize("edit", [lambda layer: {**layer, "init": "orthogonal"},
                                  lambda layer: {**layer, "bias_init": "ones"},
                                  lambda layer: [layer["in_features"], layer["out_features"]]],
                         ids=["unknown init", "unknown bias_init", "layer not an object"])
def test_bad_initialisers_in_a_file_are_refused(tmp_path, edit):
    path = tmp_path / "m.npz"
    model_with_initialisers().save(path)
    write_with_layers(path, edit)
    with pytest.raises(ValueError, match="not a valid fastbp model file"):
        fb.load(path)
