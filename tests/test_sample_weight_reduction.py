"""sample_weight_reduction="weights": a weighted batch's loss, gradient and weight_decay term
divided by the batch's sum of weights (scikit-learn's rule) instead of its rows. Oracles:
torch (losses, gradients, SGD and Adam steps), central finite differences in float64, and
repeating rows; non-square layers and odd batch sizes throughout."""
import numpy as np
import pytest

import fastbp as fb

torch = pytest.importorskip("torch")

N_ROWS, N_FEATURES, N_CLASSES = 37, 7, 3


def _problem(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N_ROWS, N_FEATURES))
    y = rng.integers(0, N_CLASSES, N_ROWS)
    weights = rng.uniform(0.0, 3.0, N_ROWS)
    weights[5:9] = 0.0  # some rows weigh nothing
    return X, y, weights


def _model(dtype="float64"):
    return fb.Sequential([fb.Dense(N_FEATURES, 9, "tanh"), fb.Dense(9, N_CLASSES)],
                         loss="cross_entropy", dtype=dtype, seed=3)


def _torch_copy(model):
    layers = [(torch.tensor(layer.weight.copy(), requires_grad=True),
               torch.tensor(layer.bias.copy(), requires_grad=True)) for layer in model.layers]
    return layers


def _torch_objective(layers, X, y, w, weight_decay):
    """scikit-learn's rule in torch: Σ w·loss / Σw + weight_decay·rows/Σw / 2 · ΣW²."""
    a = torch.tensor(X)
    for i, (W, b) in enumerate(layers):
        a = a @ W + b
        if i < len(layers) - 1:
            a = torch.tanh(a)
    rows = torch.nn.functional.cross_entropy(a, torch.tensor(y), reduction="none")
    w = torch.tensor(w)
    total = w.sum()
    penalty = sum((W * W).sum() for W, _ in layers)
    return (w * rows).sum() / total + 0.5 * weight_decay * len(y) / total * penalty


def test_gradients_divide_by_the_weight_sum_as_torch_computes():
    X, y, w = _problem()
    model = _model()
    layers = _torch_copy(model)
    loss, grads = model.gradients(X, y, weight_decay=0.03, sample_weight=w,
                                  sample_weight_reduction="weights")
    expected = _torch_objective(layers, X, y, w, 0.03)
    expected.backward()
    assert loss == pytest.approx(expected.item(), rel=1e-12)
    for (dW, db), (W, b) in zip(grads, layers):
        np.testing.assert_allclose(dW, W.grad.numpy(), rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(db, b.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_gradients_match_central_differences():
    X, y, w = _problem(1)
    model = _model()
    kwargs = dict(weight_decay=0.1, sample_weight=w, sample_weight_reduction="weights")
    _, grads = model.gradients(X, y, **kwargs)
    flat = model.parameters
    analytic = np.concatenate([dW.ravel() for dW, _ in grads] + [db for _, db in grads])
    numeric = np.empty_like(analytic)
    h = 1e-6
    for i in range(flat.size):
        saved = flat[i]
        flat[i] = saved + h
        up, _ = model.gradients(X, y, **kwargs)
        flat[i] = saved - h
        down, _ = model.gradients(X, y, **kwargs)
        flat[i] = saved
        numeric[i] = (up - down) / (2 * h)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-9)


def test_without_weights_both_reductions_are_the_same():
    X, y, _ = _problem(2)
    results = []
    for reduction in ("rows", "weights"):
        model = _model()
        history = model.fit(X, y, epochs=2, batch_size=10, shuffle=False,
                            optimizer=fb.SGD(lr=0.1, momentum=0.9, weight_decay=0.01),
                            sample_weight_reduction=reduction)
        results.append((model.parameters.copy(), history.loss))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    assert results[0][1] == results[1][1]


@pytest.mark.parametrize("make_optimizers", [
    lambda params: (fb.SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.02),
                    torch.optim.SGD(params, lr=0.1, momentum=0.9, nesterov=True)),
    lambda params: (fb.Adam(lr=0.01, weight_decay=0.02),
                    torch.optim.Adam(params, lr=0.01)),
], ids=["sgd-nesterov", "adam"])
def test_fit_steps_as_torch_with_the_weight_sum_rule(make_optimizers):
    # 37 rows in batches of 10: the last holds 7 rows, and one batch has zero weights
    X, y, w = _problem(3)
    model = _model()
    layers = _torch_copy(model)
    optimizer, reference = make_optimizers([p for pair in layers for p in pair])
    history = model.fit(X, y, epochs=2, batch_size=10, shuffle=False, optimizer=optimizer,
                        sample_weight=w, sample_weight_reduction="weights")
    losses = []
    for _ in range(2):
        epoch_loss = 0.0
        for start in range(0, N_ROWS, 10):
            rows = slice(start, start + 10)
            reference.zero_grad()
            objective = _torch_objective(layers, X[rows], y[rows], w[rows], 0.02)
            penalty = sum((W * W).sum() for W, _ in layers).item()
            total = w[rows].sum()
            epoch_loss += (objective.item() - 0.01 * len(y[rows]) / total * penalty) \
                * len(y[rows])
            objective.backward()
            reference.step()
        losses.append(epoch_loss / N_ROWS)
    for layer, (W, b) in zip(model.layers, layers):
        np.testing.assert_allclose(layer.weight, W.detach().numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(layer.bias, b.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(history.loss, losses, rtol=1e-10)  # without the decay term


def test_doubling_a_weight_equals_repeating_the_row_in_a_full_batch():
    X, y, _ = _problem(4)
    w = np.where(np.arange(N_ROWS) % 3 == 0, 2.0, 1.0)
    repeated = np.repeat(np.arange(N_ROWS), w.astype(int))
    weighted, copied = _model(), _model()
    alpha = 2.0  # scikit-learn's: weight_decay = alpha / rows, divided by Σw / rows in fit
    weighted.train_step(X, y, optimizer=fb.SGD(lr=0.5, weight_decay=alpha / N_ROWS),
                        sample_weight=w, sample_weight_reduction="weights")
    copied.train_step(X[repeated], y[repeated],
                      optimizer=fb.SGD(lr=0.5, weight_decay=alpha / len(repeated)))
    np.testing.assert_allclose(weighted.parameters, copied.parameters, rtol=1e-12, atol=1e-14)


def test_a_batch_of_zero_weights_adds_nothing():
    X, y, _ = _problem(5)
    w = np.where(np.arange(N_ROWS) < 10, 1.0, 0.0)
    weighted, first = _model(), _model()
    optimizer = dict(lr=0.1, weight_decay=0.3)  # no momentum: a zero gradient moves nothing
    weighted.fit(X, y, epochs=1, batch_size=10, shuffle=False, sample_weight=w,
                 optimizer=fb.SGD(**optimizer), sample_weight_reduction="weights")
    first.fit(X[:10], y[:10], epochs=1, batch_size=10, shuffle=False,
              optimizer=fb.SGD(**optimizer))
    np.testing.assert_array_equal(weighted.parameters, first.parameters)


@pytest.mark.parametrize("call", ["fit", "train_step", "gradients"])
@pytest.mark.parametrize("bad", ["mean", "ROWS", None, 1])
def test_a_bad_reduction_raises_naming_the_argument(call, bad):
    X, y, w = _problem()
    model = _model()
    with pytest.raises(ValueError, match="sample_weight_reduction must be 'rows' or 'weights'"):
        getattr(model, call)(X, y, sample_weight=w, sample_weight_reduction=bad)
