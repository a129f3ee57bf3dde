"""The update rules of fastbp's optimizers written plainly in NumPy: the oracle the compiled
rules are tested against (and a readable statement of each rule).

Every function works on flat float64 buffers laid out as fastbp's (weights first, then
biases; decay applies to the first ``n_weights`` entries only) and returns new arrays.
"""
import numpy as np


def transform_gradient(grads, params, n_weights, clip_norm=None, clip_value=None, l1=0.0):
    """Clip by global norm (torch's clip_grad_norm_), by value, then add L1's sign term."""
    g = np.array(grads, dtype=np.float64)
    if clip_norm:
        factor = clip_norm / (np.sqrt(np.sum(g * g)) + 1e-6)
        if factor < 1:
            g *= factor
    if clip_value:
        g = np.clip(g, -clip_value, clip_value)
    g[:n_weights] += l1 * np.sign(params[:n_weights])
    return g


def _decayed(g, p, n_weights, weight_decay):
    g = g.copy()
    g[:n_weights] += weight_decay * p[:n_weights]
    return g


def sgd(p, g, state, n_weights, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    g = _decayed(g, p, n_weights, weight_decay)
    if momentum == 0:
        return p - lr * g, state
    v = momentum * state + g
    return p - lr * (g + momentum * v if nesterov else v), v


def adam(p, g, state, n_weights, lr, step, beta1=0.9, beta2=0.999, eps=1e-8,
         weight_decay=0.0, decoupled=False):
    """Adam (decoupled=False, L2 in the gradient) or AdamW (decoupled shrink of the weights);
    ``state`` is m then v, ``step`` the 1-based update number."""
    m, v = np.split(state, 2)
    if decoupled:
        p = p.copy()
        p[:n_weights] *= 1 - lr * weight_decay
    else:
        g = _decayed(g, p, n_weights, weight_decay)
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    m_hat = m / (1 - beta1 ** step)
    v_hat = v / (1 - beta2 ** step)
    return p - lr * m_hat / (np.sqrt(v_hat) + eps), np.concatenate([m, v])


def rmsprop(p, g, state, n_weights, lr, alpha=0.99, eps=1e-8, momentum=0.0, weight_decay=0.0,
            centered=False):
    """``state`` is the mean square, then the momentum buffer when momentum > 0, then the
    mean gradient when centered (whose variance estimate s - m² counts as 0 below 0)."""
    g = _decayed(g, p, n_weights, weight_decay)
    slots = np.split(state, 1 + (momentum != 0) + centered)
    square = alpha * slots[0] + (1 - alpha) * g * g
    new_state = [square]
    spread = square
    if centered:
        mean = alpha * slots[-1] + (1 - alpha) * g
        spread = np.maximum(square - mean * mean, 0.0)
    direction = g / (np.sqrt(spread) + eps)
    if momentum != 0:
        direction = momentum * slots[1] + direction
        new_state.append(direction)
    if centered:
        new_state.append(mean)
    return p - lr * direction, np.concatenate(new_state)


def adagrad(p, g, state, n_weights, lr, step, eps=1e-10, weight_decay=0.0, lr_decay=0.0):
    """``step`` is the 1-based update number: the rate is lr / (1 + (step - 1)·lr_decay)."""
    g = _decayed(g, p, n_weights, weight_decay)
    total = state + g * g
    rate = lr / (1 + (step - 1) * lr_decay)
    return p - rate * g / (np.sqrt(total) + eps), total


def step(optimizer, p, g, state, n_weights, lr, step_number):
    """One update of a fastbp optimizer's rule at rate ``lr`` (update ``step_number``)."""
    o = optimizer
    g = transform_gradient(g, p, n_weights, o.clip_norm, o.clip_value, o.l1)
    kind = type(o).__name__
    if kind == "SGD":
        return sgd(p, g, state, n_weights, lr, o.momentum, o.nesterov, o.weight_decay)
    if kind in ("Adam", "AdamW"):
        return adam(p, g, state, n_weights, lr, step_number, o.beta1, o.beta2, o.eps,
                    o.weight_decay, decoupled=kind == "AdamW")
    if kind == "RMSprop":
        return rmsprop(p, g, state, n_weights, lr, o.alpha, o.eps, o.momentum, o.weight_decay,
                       o.centered)
    if kind == "Adagrad":
        return adagrad(p, g, state, n_weights, lr, step_number, o.eps, o.weight_decay,
                       o.lr_decay)
    raise ValueError(f"no NumPy rule for {kind}")
