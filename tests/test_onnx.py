"""fastbp.onnx: the exported graph, run in onnxruntime, computes model.predict for every
activation, loss, layer kind and dtype, and for the scikit-learn estimators; what cannot be
exported is refused by name."""
import json

import numpy as np
import pytest

import fastbp as fb
from fastbp.activations import ActivationCode as Activation

onnx = pytest.importorskip("onnx", reason="the onnx package is not installed "
                                          "(pip install \"fastbp[onnx]\")")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed "
                                                "(it is in the test extra)")
fastbp_onnx = pytest.importorskip("fastbp.onnx")

#: float32: the graph's kernels (onnxruntime's) and fastbp's differ in rounding only; the
#: absolute part covers outputs near zero (gelu, elu, tanh there).
TOLERANCE = {"float32": {"rtol": 1e-5, "atol": 1e-6},
             "float64": {"rtol": 1e-12, "atol": 1e-13}}
ACTIVATIONS = [activation.name.lower() for activation in Activation]
LOSSES = ["mse", "huber", "mae", "poisson", "cross_entropy", "binary_cross_entropy"]


def run_onnx(path, X):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (output,) = session.run(None, {"X": X})
    return output


def trained(layers, loss, dtype, n_samples=64):
    """A model after one epoch (so biases are not all zero), and its input rows."""
    rng = np.random.default_rng(0)
    model = fb.Sequential(layers, loss=loss, dtype=dtype, seed=0)
    n_in, n_out = model.n_features, model.n_outputs
    X = (2 * rng.normal(size=(n_samples, n_in))).astype(dtype)
    if loss == "cross_entropy":
        y = rng.integers(0, n_out, n_samples)
    elif loss == "binary_cross_entropy":
        y = rng.integers(0, 2, (n_samples, n_out)).astype(dtype)
    elif loss == "poisson":
        y = rng.poisson(2.0, (n_samples, n_out))
    else:
        y = rng.normal(size=(n_samples, n_out))
    model.fit(X, y, epochs=1, batch_size=16)
    return model, X


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_every_activation_matches_predict(activation, dtype, tmp_path):
    """Hidden and output layer with the activation (a regression loss takes any output
    activation), at 1 row and 37 rows: the batch dimension is dynamic."""
    model, X = trained([fb.Dense(5, 16, activation), fb.Dense(16, 3, activation)], "mse",
                       dtype)
    fastbp_onnx.export(model, tmp_path / "model.onnx")
    for rows in (X[:1], X[:37]):
        got = run_onnx(tmp_path / "model.onnx", rows)
        assert got.dtype == np.dtype(dtype) and got.shape == (len(rows), 3)
        np.testing.assert_allclose(got, model.predict(rows), **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss", LOSSES)
def test_every_loss_matches_predict(loss, dtype, tmp_path):
    hidden = "tanh" if loss == "huber" else "relu"
    model, X = trained([fb.Dense(6, 12, hidden), fb.Dense(12, 4)], loss, dtype)
    fastbp_onnx.export(model, tmp_path / "model.onnx")
    got = run_onnx(tmp_path / "model.onnx", X)
    np.testing.assert_allclose(got, model.predict(X), **TOLERANCE[dtype])
    if loss == "cross_entropy":
        np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dropout_is_left_out_and_deep_models_match(dtype, tmp_path):
    layers = [fb.Dropout(0.1), fb.Dense(8, 32, "gelu"), fb.Dropout(0.5),
              fb.Dense(32, 16, "swish"), fb.Dense(16, 16, "elu"), fb.Dropout(0.2),
              fb.Dense(16, 5)]
    model, X = trained(layers, "cross_entropy", dtype)
    proto = fastbp_onnx.export(model, tmp_path / "model.onnx")
    assert "Dropout" not in {node.op_type for node in proto.graph.node}
    np.testing.assert_allclose(run_onnx(tmp_path / "model.onnx", X), model.predict(X),
                               **TOLERANCE[dtype])


def test_the_graph_is_standard_onnx_with_a_dynamic_batch(tmp_path):
    model, _ = trained([fb.Dense(4, 8, "relu"), fb.Dense(8, 3)], "cross_entropy", "float32")
    fastbp_onnx.export(model, tmp_path / "model.onnx")
    loaded = onnx.load(str(tmp_path / "model.onnx"))
    onnx.checker.check_model(loaded, full_check=True)
    assert [node.op_type for node in loaded.graph.node] == ["MatMul", "Add", "Relu", "MatMul",
                                                           "Add", "Softmax"]
    (x,), (y,) = loaded.graph.input, loaded.graph.output
    assert [d.dim_param or d.dim_value for d in x.type.tensor_type.shape.dim] == ["n_samples", 4]
    assert [d.dim_param or d.dim_value for d in y.type.tensor_type.shape.dim] == ["n_samples", 3]
    assert {p.key: p.value for p in loaded.metadata_props} == {"loss": "cross_entropy"}


def test_float64_graphs_avoid_operators_onnxruntime_lacks_in_float64():
    layers = [fb.Dense(3, 4, "leaky_relu"), fb.Dense(4, 4, "softplus"), fb.Dense(4, 4, "elu"),
              fb.Dense(4, 2, "gelu")]
    ops64 = {n.op_type for n in fastbp_onnx.to_onnx(fb.Sequential(layers, dtype="float64",
                                                                  seed=0)).graph.node}
    ops32 = {n.op_type for n in fastbp_onnx.to_onnx(fb.Sequential(layers, dtype="float32",
                                                                  seed=0)).graph.node}
    assert {"LeakyRelu", "Softplus", "Elu", "Gelu"} <= ops32
    assert not {"LeakyRelu", "Softplus", "Elu", "Gelu"} & ops64


# ------------------------------------------------------------------ scikit-learn estimators

@pytest.mark.filterwarnings("ignore:Stochastic Optimizer:UserWarning")  # max_iter=5
@pytest.mark.parametrize("problem", ["multiclass", "binary", "multilabel"])
def test_mlp_classifier_exports_predict_proba(problem, tmp_path):
    pytest.importorskip("sklearn")
    from fastbp.sklearn import MLPClassifier

    rng = np.random.default_rng(1)
    X = rng.normal(size=(80, 6)).astype(np.float32)
    y = {"multiclass": np.array(["a", "b", "c", "d"])[rng.integers(0, 4, 80)],
         "binary": rng.integers(0, 2, 80) * 5,
         "multilabel": rng.integers(0, 2, (80, 3))}[problem]
    estimator = MLPClassifier(hidden_layer_sizes=(10,), max_iter=5, random_state=0).fit(X, y)
    fastbp_onnx.export(estimator, tmp_path / "clf.onnx")
    proba = run_onnx(tmp_path / "clf.onnx", X)
    np.testing.assert_allclose(proba, estimator.predict_proba(X), **TOLERANCE["float32"])
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "clf.onnx")).metadata_props}
    classes = np.array(json.loads(props["classes"]))
    if problem != "multilabel":  # the documented way back to labels
        np.testing.assert_array_equal(classes[proba.argmax(axis=1)], estimator.predict(X))


@pytest.mark.filterwarnings("ignore:Stochastic Optimizer:UserWarning")  # max_iter=5
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_mlp_regressor_exports_its_outputs(dtype, tmp_path):
    pytest.importorskip("sklearn")
    from fastbp.sklearn import MLPRegressor

    rng = np.random.default_rng(2)
    X = rng.normal(size=(60, 4))
    y = rng.normal(size=60)
    estimator = MLPRegressor(hidden_layer_sizes=(8, 8), activation="tanh", max_iter=5,
                             random_state=0, dtype=dtype).fit(X, y)
    fastbp_onnx.export(estimator, tmp_path / "reg.onnx")
    got = run_onnx(tmp_path / "reg.onnx", X.astype(dtype))
    assert got.shape == (60, 1)  # predict ravels one output; the graph keeps the column
    np.testing.assert_allclose(got[:, 0], estimator.predict(X.astype(dtype)),
                               **TOLERANCE[dtype])


def test_an_unfitted_estimator_is_refused():
    pytest.importorskip("sklearn")
    from fastbp.sklearn import MLPClassifier

    with pytest.raises(ValueError, match="MLPClassifier is not fitted"):
        fastbp_onnx.to_onnx(MLPClassifier())


# ------------------------------------------------------------------ what cannot be exported

def test_a_non_model_is_refused():
    with pytest.raises(TypeError, match="model must be a fastbp.Sequential .* not dict"):
        fastbp_onnx.to_onnx({"layers": []})


def test_a_layer_kind_without_converter_is_named(monkeypatch):
    """What a layer kind added to the core but not to the exporter would meet."""
    model = fb.Sequential([fb.Dense(3, 4, "relu"), fb.Dropout(0.5), fb.Dense(4, 2)], seed=0)
    monkeypatch.delitem(fastbp_onnx.LAYER_CONVERTERS, fb.Dropout)
    with pytest.raises(NotImplementedError,
                       match=r"model.layers\[1\] is a Dropout, which has no ONNX converter"):
        fastbp_onnx.to_onnx(model)


def test_an_activation_without_converter_is_named(monkeypatch):
    model = fb.Sequential([fb.Dense(3, 4, "gelu"), fb.Dense(4, 2)], seed=0)
    monkeypatch.delitem(fastbp_onnx.ACTIVATION_CONVERTERS, Activation.GELU)
    with pytest.raises(NotImplementedError, match=r"activation 'gelu' of model.layers\[0\]"):
        fastbp_onnx.to_onnx(model)


def test_a_loss_without_converter_is_named(monkeypatch):
    model = fb.Sequential([fb.Dense(3, 2)], loss="huber", seed=0)
    monkeypatch.delitem(fastbp_onnx.OUTPUT_CONVERTERS, fb.Loss.HUBER)
    with pytest.raises(NotImplementedError, match="loss 'huber' has no ONNX output"):
        fastbp_onnx.to_onnx(model)


def test_every_core_code_has_a_converter():
    """A new activation or loss in the core's enums fails here until the exporter has it."""
    assert set(fastbp_onnx.ACTIVATION_CONVERTERS) == set(Activation)
    assert set(fastbp_onnx.OUTPUT_CONVERTERS) == set(fb.Loss)


def test_import_fastbp_does_not_import_onnx():
    import subprocess
    import sys

    code = ("import sys, fastbp; import fastbp.onnx; "
            "print('onnx' in sys.modules, 'onnxruntime' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd="/")
    assert done.stdout.split() == ["False", "False"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_batchnorm_layernorm_activation_and_residual_blocks_match_predict(dtype, tmp_path):
    """Every layer kind the core has: BatchNorm (its running statistics), LayerNorm, a
    standalone Activation, nested Residual blocks, norms without affine."""
    layers = [fb.Dense(6, 8), fb.BatchNorm(8), fb.Activation("gelu"),
              fb.Residual([fb.LayerNorm(8), fb.Dense(8, 5, "relu"), fb.Dropout(0.2),
                           fb.Dense(5, 8), fb.Residual([fb.Activation("tanh")])]),
              fb.BatchNorm(8, affine=False, eps=1e-3), fb.LayerNorm(8, elementwise_affine=False),
              fb.Activation("swish"), fb.Dense(8, 3)]
    model, X = trained(layers, "cross_entropy", dtype)
    assert np.any(model.layers[1].running_var != 1)  # statistics moved while training
    fastbp_onnx.export(model, tmp_path / "m.onnx")
    ops = [node.op_type for node in onnx.load(str(tmp_path / "m.onnx")).graph.node]
    assert ops.count("BatchNormalization") == 2 and ops.count("LayerNormalization") == 2
    assert ops.count("Add") >= 2 + 2  # two residual adds, two Dense biases at least
    # float64: the norms' arithmetic differs in order (fastbp folds BatchNorm's running
    # statistics into one scale and shift per feature; onnxruntime does not), 1e-12 apart.
    tolerance = {"rtol": 1e-10, "atol": 1e-12} if dtype == "float64" else TOLERANCE[dtype]
    np.testing.assert_allclose(run_onnx(tmp_path / "m.onnx", X), model.predict(X), **tolerance)
