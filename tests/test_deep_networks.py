"""BatchNorm, LayerNorm, Residual blocks and the standalone Activation: gradients against
central differences, and forward, gradients, running statistics and training against
torch.nn step for step (float64)."""
import numpy as np
import pytest

import fastbp as fb
from fastbp import _native, threads

RNG = np.random.default_rng(17)
N_FEATURES, N_CLASSES = 7, 3


def problem(rows=13, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(rows, N_FEATURES)) * 2 + 0.5, rng.integers(0, N_CLASSES, rows)


#: Small networks with every new layer kind, non-square widths, blocks nested in a stack.
NETWORKS = {
    "batchnorm": lambda: [fb.Dense(7, 9, "tanh"), fb.BatchNorm(9), fb.Dense(9, 3)],
    "batchnorm-first": lambda: [fb.BatchNorm(7, momentum=0.3, eps=1e-3), fb.Dense(7, 5, "elu"),
                                fb.Dense(5, 3)],
    "batchnorm-no-affine": lambda: [fb.Dense(7, 9), fb.BatchNorm(9, affine=False),
                                    fb.Activation("sigmoid"), fb.Dense(9, 3)],
    "layernorm": lambda: [fb.Dense(7, 9), fb.LayerNorm(9), fb.Activation("gelu"),
                          fb.Dense(9, 3)],
    "layernorm-no-affine": lambda: [fb.Dense(7, 9, "softplus"),
                                    fb.LayerNorm(9, eps=1e-4, elementwise_affine=False),
                                    fb.Dense(9, 3)],
    "residual": lambda: [fb.Dense(7, 8, "relu"),
                         fb.Residual([fb.BatchNorm(8), fb.Dense(8, 5, "swish"), fb.Dense(5, 8)]),
                         fb.Dense(8, 3)],
    "nested": lambda: [fb.LayerNorm(7),
                       fb.Residual([fb.Activation("tanh"), fb.Dense(7, 6, "leaky_relu"),
                                    fb.Residual([fb.LayerNorm(6), fb.Dense(6, 6, "sigmoid")]),
                                    fb.Dense(6, 7)]),
                       fb.Residual([fb.BatchNorm(7), fb.Activation("elu")]),
                       fb.Dense(7, 3)],
    "activation-only-branch": lambda: [fb.Residual([fb.Activation("tanh")]), fb.Dense(7, 3)],
}

#: The same networks with dropout in them (fastbp draws the masks; finite differences
#: through fixed masks check the backward rules).
DROPOUT_NETWORKS = {
    "tabular-resnet-block": lambda: [
        fb.Dense(7, 8), fb.Residual([fb.BatchNorm(8), fb.Dense(8, 12, "relu"), fb.Dropout(0.3),
                                     fb.Dense(12, 8), fb.Dropout(0.2)]),
        fb.BatchNorm(8), fb.Activation("relu"), fb.Dense(8, 3)],
    "layernorm-dropout": lambda: [fb.Dropout(0.2), fb.Dense(7, 9), fb.LayerNorm(9),
                                  fb.Activation("swish"), fb.Dropout(0.4), fb.Dense(9, 3)],
}


def model_of(name, table=NETWORKS, dtype="float64", seed=3, loss="cross_entropy"):
    model = fb.Sequential(table[name](), loss=loss, dtype=dtype, seed=seed)
    # Not the initial γ = 1, β = 0 and running statistics 0 and 1: a test must see them.
    rng = np.random.default_rng(seed)
    for layer in model._bound_layers():
        if isinstance(layer, fb.bound.BoundNorm):
            if layer.weight is not None:
                layer.weight = rng.uniform(0.5, 1.5, layer.num_features)
                layer.bias = rng.normal(size=layer.num_features) * 0.3
            if layer.running_mean is not None:
                layer.running_mean = rng.normal(size=layer.num_features) * 0.2
                layer.running_var = rng.uniform(0.5, 2.0, layer.num_features)
    return model


# ---------------------------------------------------------------- central differences

@pytest.mark.parametrize("name", list(NETWORKS))
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_gradients_match_central_differences(name, loss):
    X, y = problem()
    if loss == "mse":
        y = np.random.default_rng(1).normal(size=(13, N_CLASSES))
    model = model_of(name, loss=loss)
    assert fb.check_gradients(model, X, y, weight_decay=0.01) < 1e-6


@pytest.mark.parametrize("name", list(DROPOUT_NETWORKS))
@pytest.mark.parametrize("step", [0, 7])
def test_gradients_through_dropout_masks_match_central_differences(name, step):
    X, y = problem(15)
    model = model_of(name, DROPOUT_NETWORKS)
    assert fb.check_gradients(model, X, y, dropout_step=step) < 1e-6


def test_own_central_differences_of_norm_parameters_and_a_block_weight():
    """Independent of check_gradients: perturb γ, β and a weight inside a Residual block
    through the bound views, difference gradients()'s loss (batch statistics)."""
    X, y = problem(11)
    model = model_of("residual")
    block_norm, block_dense = model.layers[1].layers[0], model.layers[1].layers[1]
    loss, grads = model.gradients(X, y)
    dgamma, dbeta = grads[1]
    dW = grads[2][0]
    eps = 1e-6
    for view, analytic, index in ((block_norm.weight, dgamma, (3,)),
                                  (block_norm.bias, dbeta, (5,)),
                                  (block_dense.weight, dW, (2, 4))):
        original = view[index]
        view[index] = original + eps
        upper = model.gradients(X, y)[0]
        view[index] = original - eps
        lower = model.gradients(X, y)[0]
        view[index] = original
        assert (upper - lower) / (2 * eps) == pytest.approx(analytic[index], rel=1e-6, abs=1e-9)
    assert model.gradients(X, y)[0] == loss


# ---------------------------------------------------------------- torch parity

torch = pytest.importorskip("torch")
nn = torch.nn

TORCH_ACTIVATIONS = {
    "identity": nn.Identity, "relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid,
    "leaky_relu": lambda: nn.LeakyReLU(0.01), "gelu": lambda: nn.GELU(approximate="tanh"),
    "softplus": nn.Softplus, "elu": nn.ELU, "swish": nn.SiLU,
}


class TorchResidual(nn.Module):
    def __init__(self, body):
        super().__init__()
        self.body = body

    def forward(self, x):
        return x + self.body(x)


def torch_copy(model):
    """The torch.nn network of ``model``, with its parameters and running statistics; also
    the decayed parameters (Linear weights: fastbp decays Dense weights only)."""
    decayed, others = [], []

    def build(layers):
        modules = []
        for layer in layers:
            if isinstance(layer, fb.bound.BoundResidual):
                modules.append(TorchResidual(build(layer.layers)))
            elif isinstance(layer, fb.bound.BoundDense):
                linear = nn.Linear(layer.in_features, layer.out_features).double()
                with torch.no_grad():
                    linear.weight.copy_(torch.from_numpy(layer.weight.T.copy()))
                    linear.bias.copy_(torch.from_numpy(layer.bias.copy()))
                decayed.append(linear.weight)
                others.append(linear.bias)
                modules.extend([linear, TORCH_ACTIVATIONS[layer.activation]()])
            elif isinstance(layer, fb.Activation):
                modules.append(TORCH_ACTIVATIONS[layer.activation]())
            elif isinstance(layer, fb.bound.BoundNorm):
                spec = layer.spec
                if isinstance(spec, fb.BatchNorm):
                    norm = nn.BatchNorm1d(spec.num_features, eps=spec.eps,
                                          momentum=spec.momentum, affine=spec.affine).double()
                    norm.running_mean.copy_(torch.from_numpy(layer.running_mean.copy()))
                    norm.running_var.copy_(torch.from_numpy(layer.running_var.copy()))
                else:
                    norm = nn.LayerNorm(spec.num_features, eps=spec.eps,
                                        elementwise_affine=spec.affine).double()
                if spec.affine:
                    with torch.no_grad():
                        norm.weight.copy_(torch.from_numpy(layer.weight.copy()))
                        norm.bias.copy_(torch.from_numpy(layer.bias.copy()))
                    others.extend([norm.weight, norm.bias])
                modules.append(norm)
            else:
                raise AssertionError(f"no torch twin for {layer!r}")
        return nn.Sequential(*modules)

    return build(model.layers), decayed, others


def torch_grads(net, model):
    """Per fastbp gradient pair, torch's (in fastbp's layout)."""
    pairs = []
    for module in net.modules():
        if isinstance(module, nn.Linear):
            pairs.append((module.weight.grad.numpy().T, module.bias.grad.numpy()))
        elif isinstance(module, (nn.BatchNorm1d, nn.LayerNorm)) and module.weight is not None:
            pairs.append((module.weight.grad.numpy(), module.bias.grad.numpy()))
    return pairs


@pytest.mark.parametrize("name", list(NETWORKS))
def test_forward_loss_and_every_gradient_match_torch_in_train_mode(name):
    X, y = problem(13, seed=2)
    model = model_of(name)
    net, _, _ = torch_copy(model)
    net.train()
    loss = nn.functional.cross_entropy(net(torch.from_numpy(X)), torch.from_numpy(y))
    loss.backward()
    ours, grads = model.gradients(X, y)
    assert ours == pytest.approx(loss.item(), rel=1e-9)
    expected = torch_grads(net, model)
    assert len(grads) == len(expected)
    for (a, b), (ta, tb) in zip(grads, expected):
        np.testing.assert_allclose(a, ta, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(b, tb, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", ["batchnorm", "residual", "nested", "batchnorm-first"])
@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_twenty_steps_end_where_torch_ends(name, optimizer):
    """20 train_steps on batches of odd sizes: the same parameters, the same running
    statistics (momentum, unbiased variance), then eval-mode predictions as torch's."""
    X, y = problem(240, seed=4)
    model = model_of(name)
    net, decayed, others = torch_copy(model)
    if optimizer == "sgd":
        ours = fb.SGD(lr=0.05, momentum=0.9, weight_decay=1e-3)
        theirs = torch.optim.SGD([{"params": decayed, "weight_decay": 1e-3},
                                  {"params": others, "weight_decay": 0.0}], lr=0.05, momentum=0.9)
    else:
        ours = fb.AdamW(lr=1e-2, weight_decay=1e-2)
        theirs = torch.optim.AdamW([{"params": decayed, "weight_decay": 1e-2},
                                    {"params": others, "weight_decay": 0.0}], lr=1e-2)
    net.train()
    start = 0
    for step in range(20):
        rows = 7 + step % 5
        Xb, yb = X[start:start + rows], y[start:start + rows]
        start += rows
        loss = model.train_step(Xb, yb, optimizer=ours)
        theirs.zero_grad()
        reference = nn.functional.cross_entropy(net(torch.from_numpy(Xb)), torch.from_numpy(yb))
        reference.backward()
        theirs.step()
        assert loss == pytest.approx(reference.item(), rel=1e-9)
    twin, _, _ = torch_copy(model)
    for mine, reference in zip(twin.state_dict().items(), net.state_dict().items()):
        assert mine[0] == reference[0]
        if mine[0].endswith("num_batches_tracked"):  # torch's count, for momentum=None only
            continue
        np.testing.assert_allclose(mine[1].numpy(), reference[1].numpy(), rtol=1e-9,
                                   atol=1e-12, err_msg=mine[0])
    net.eval()
    with torch.no_grad():
        expected = torch.softmax(net(torch.from_numpy(X[-50:])), dim=1).numpy()
    np.testing.assert_allclose(model.predict(X[-50:]), expected, rtol=1e-9, atol=1e-12)


def test_batchnorm_predictions_use_the_running_statistics():
    X, y = problem(40)
    model = model_of("batchnorm-first")
    layer = model.layers[0]
    normalised = ((X - layer.running_mean) / np.sqrt(layer.running_var + 1e-3) * layer.weight
                  + layer.bias)
    twin = fb.Sequential(model._specs[1:], loss="cross_entropy", dtype="float64")
    twin.set_weights(model.get_weights()[4:])
    np.testing.assert_allclose(model.predict(X), twin.predict(normalised), rtol=1e-12)
    before = [layer.running_mean.copy(), layer.running_var.copy()]
    model.evaluate(X, y)
    model.gradients(X, y)
    np.testing.assert_array_equal(layer.running_mean, before[0])  # neither moves them
    np.testing.assert_array_equal(layer.running_var, before[1])


# ---------------------------------------------------------------- behaviour and errors

def test_a_one_row_training_batch_with_batchnorm_is_refused_untouched():
    X, y = problem(9)
    model = model_of("residual")
    before = model.parameters.copy(), model._plan.stats.copy()
    with pytest.raises(ValueError, match="BatchNorm needs at least 2 rows"):
        model.train_step(X[:1], y[:1])
    with pytest.raises(ValueError, match="batch of 1 row"):
        model.fit(X, y, batch_size=4, epochs=1)  # 9 rows: batches 4, 4, 1
    with pytest.raises(ValueError, match="BatchNorm needs at least 2 rows"):
        model.gradients(X[:1], y[:1])
    np.testing.assert_array_equal(model.parameters, before[0])
    np.testing.assert_array_equal(model._plan.stats, before[1])
    model.predict(X[:1])  # prediction takes any number of rows
    model.fit(X, y, batch_size=3, epochs=1)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_constant_features_do_not_produce_nan(dtype):
    X = np.ones((16, N_FEATURES))
    X[:, 0] = np.arange(16)
    y = np.arange(16) % N_CLASSES
    model = fb.Sequential([fb.BatchNorm(7), fb.Dense(7, 7), fb.LayerNorm(7), fb.Dense(7, 3)],
                          loss="cross_entropy", dtype=dtype, seed=0)
    model.fit(np.ones((16, N_FEATURES)), y, epochs=2, batch_size=8)  # every row alike
    history = model.fit(X, y, epochs=3, batch_size=8)
    assert np.all(np.isfinite(history.loss)) and np.all(np.isfinite(model.parameters))
    assert np.all(np.isfinite(model.predict(X)))


def test_residual_widths_must_match_naming_both():
    with pytest.raises(ValueError, match=r"layers\[1\].*input width 8.*output width 5"):
        fb.Sequential([fb.Dense(4, 8), fb.Residual([fb.Dense(8, 5)]), fb.Dense(5, 2)])
    with pytest.raises(ValueError, match="at least one layer"):
        fb.Residual([])
    with pytest.raises(TypeError, match=r"layers\[1\].layers\[0\] must be a fastbp layer"):
        fb.Sequential([fb.Dense(4, 8), fb.Residual(["relu"]), fb.Dense(8, 2)])
    with pytest.raises(ValueError, match=r"layers\[1\].layers\[1\].in_features=9 does not match"):
        fb.Sequential([fb.Dense(4, 8), fb.Residual([fb.BatchNorm(8), fb.Dense(9, 8)]),
                       fb.Dense(8, 2)])


def test_the_last_layer_must_be_dense():
    for last in (fb.BatchNorm(3), fb.Activation("relu"), fb.Residual([fb.Dense(3, 3)])):
        with pytest.raises(ValueError, match="last layer must be a Dense layer"):
            fb.Sequential([fb.Dense(4, 3), last])


@pytest.mark.parametrize("bad, error", [
    (lambda: fb.BatchNorm(0), ValueError), (lambda: fb.BatchNorm(4, momentum=0), ValueError),
    (lambda: fb.BatchNorm(4, eps=-1), ValueError), (lambda: fb.BatchNorm(4, affine=1), TypeError),
    (lambda: fb.LayerNorm(4, eps=float("nan")), ValueError), (lambda: fb.Activation("nope"), ValueError),
    (lambda: fb.Residual(fb.Dense(2, 2)), TypeError),
])
def test_bad_settings_are_refused(bad, error):
    with pytest.raises(error):
        bad()


def test_layers_show_their_views_and_weight_decay_skips_norms():
    model = model_of("residual")
    block = model.layers[1]
    assert model.layers[1] is block and [type(layer).__name__ for layer in block.layers] == [
        "BoundNorm", "BoundDense", "BoundDense"]
    norm = block.layers[0]
    assert norm.weight.shape == norm.running_var.shape == (8,)
    norm.running_mean = np.arange(8.0)  # writes through
    assert model._plan.stats[3] == 3.0
    with pytest.raises(ValueError, match=r"layers\[1\].layers\[0\].weight must have shape"):
        norm.weight = np.ones(3)
    assert len(model.get_weights()) == 2 + 4 + 2 + 2 + 2
    X, y = problem()
    plain = model.gradients(X, y)[1]
    decayed = model.gradients(X, y, weight_decay=0.5)[1]
    np.testing.assert_array_equal(plain[1][0], decayed[1][0])  # γ: no decay
    assert not np.array_equal(plain[0][0], decayed[0][0])      # a Dense weight: decayed


def test_save_load_keeps_every_layer_kind_and_the_running_statistics(tmp_path):
    X, y = problem(60)
    model = model_of("tabular-resnet-block", DROPOUT_NETWORKS, dtype="float32")
    model.fit(X, y, epochs=2, batch_size=8, optimizer=fb.AdamW(lr=1e-3, weight_decay=1e-5))
    model.save(tmp_path / "m.npz")
    again = fb.load(tmp_path / "m.npz")
    assert repr(again) == repr(model)
    np.testing.assert_array_equal(again._plan.stats, model._plan.stats)
    np.testing.assert_array_equal(again.predict(X), model.predict(X))
    model.fit(X, y, epochs=1, batch_size=8)
    again.fit(X, y, epochs=1, batch_size=8)
    np.testing.assert_array_equal(again.parameters, model.parameters)
    np.testing.assert_array_equal(again._plan.stats, model._plan.stats)


def test_summary_lists_the_new_layers():
    text = model_of("nested").summary(print_fn=None)
    for word in ("layernorm", "residual (4)", "act tanh", "batchnorm", "running statistics"):
        assert word in text
    assert "\n1.2      " in text and "\n1.2.0    " in text


def test_mlp_norm_option():
    model = fb.mlp([5, 8, 6, 2], norm="batch", dropout=0.1, loss="cross_entropy")
    assert [type(spec).__name__ for spec in model._specs] == [
        "Dense", "BatchNorm", "Activation", "Dropout"] * 2 + ["Dense"]
    assert isinstance(fb.mlp([5, 8, 2], norm="layer")._specs[1], fb.LayerNorm)
    with pytest.raises(ValueError, match="norm must be None, 'batch' or 'layer'"):
        fb.mlp([5, 8, 2], norm="group")


@pytest.mark.parametrize("name", ["layernorm", "nested", "batchnorm"])
def test_batches_split_over_threads_train_alike(name):
    """The core's team: 3 threads split each batch's rows (a BatchNorm's features), with
    the arithmetic of one thread (tests/test_team.py covers every layer kind)."""
    X, y = problem(37)
    results = []
    for n_threads in (1, 3):
        model = model_of(name)
        model._use_optimizer(fb.SGD(lr=0.1, momentum=0.9))
        model._plan.ensure_capacity(16)
        Xc, Y, labels = model._check_Xy(X, y)
        with threads.blas_threads(1):
            status, loss_sum, n_batches, _ = _native.core.train_epoch(
                model._plan, Xc, Y, labels, np.random.default_rng(0).permutation(37), 16,
                model.optimizer, np.full(3, 0.1), 0, n_threads=n_threads)
        assert status == 0 and n_batches == 3
        results.append((loss_sum, model.parameters.copy(), model._plan.stats.copy()))
    assert results[1][0] == pytest.approx(results[0][0], rel=1e-12)
    np.testing.assert_allclose(results[1][1], results[0][1], rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(results[1][2], results[0][2])
