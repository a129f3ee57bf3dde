"""The conventions users bring from Keras, PyTorch and scikit-learn: summary() prints,
``fastbp --version`` and ``fastbp.__version__``, Adam's ``betas``, the warm-up's first rate."""
import importlib.metadata
import json
import warnings

import numpy as np
import pytest

import fastbp as fb
from fastbp import schedules
from fastbp.__main__ import main
from fastbp.optimizers import optimizer_from_config


def test_summary_prints_and_returns_nothing(capsys):
    model = fb.mlp([4, 8, 3], loss="cross_entropy", seed=0)
    assert model.summary() is None
    printed = capsys.readouterr().out
    assert printed.startswith("Sequential, loss='cross_entropy'") and "parameters" in printed
    assert printed == model.summary(print_fn=None) + "\n"  # print_fn=None: the text instead
    lines = []
    model.summary(64, print_fn=lines.append)  # Keras's convention: one call per line
    assert lines == model.summary(64, print_fn=None).splitlines() and len(lines) == 6
    assert capsys.readouterr().out == ""
    with pytest.raises(TypeError, match="print_fn must be a callable"):
        model.summary(print_fn="stdout")


def test_version_is_the_installed_distribution_s(capsys):
    assert fb.__version__ == importlib.metadata.version("fastbp")
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip().endswith(f" {fb.__version__}")


@pytest.mark.parametrize("cls", [fb.Adam, fb.AdamW])
def test_adam_takes_torch_s_betas(cls):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # betas= warns about nothing
        optimizer = cls(lr=1e-3, betas=(0.8, 0.95))
    assert optimizer.betas == (0.8, 0.95)
    assert (optimizer.beta1, optimizer.beta2) == (0.8, 0.95)  # what the core reads
    assert "betas=(0.8, 0.95)" in repr(optimizer)
    assert cls().betas == (0.9, 0.999)
    assert cls(1e-2, [0.5, 0.6]).betas == (0.5, 0.6)  # torch's positional order: lr, betas
    assert fb.AdamW().weight_decay == 0.01 and fb.Adam().weight_decay == 0.0


@pytest.mark.parametrize("cls", [fb.Adam, fb.AdamW])
def test_old_beta_names_still_work_with_a_deprecation_warning(cls):
    with pytest.warns(DeprecationWarning, match=r"betas=\(beta1, beta2\)"):
        old = cls(lr=1e-3, beta1=0.8, beta2=0.95)
    assert old == cls(lr=1e-3, betas=(0.8, 0.95))
    with pytest.warns(DeprecationWarning):
        assert cls(beta2=0.9).betas == (0.9, 0.9)
    with pytest.warns(DeprecationWarning, match="setting beta1 is deprecated"):
        old.beta1 = 0.7
    assert old.betas == (0.7, 0.95)


def test_betas_train_like_the_old_names_and_survive_save_and_load(tmp_path):
    X = np.random.default_rng(0).normal(size=(40, 4))
    y = np.arange(40) % 3
    new, old = (fb.mlp([4, 6, 3], loss="cross_entropy", seed=0) for _ in range(2))
    new.fit(X, y, epochs=3, batch_size=8, optimizer=fb.AdamW(lr=0.01, betas=(0.8, 0.95)))
    with pytest.warns(DeprecationWarning):
        legacy = fb.AdamW(lr=0.01, beta1=0.8, beta2=0.95)
    old.fit(X, y, epochs=3, batch_size=8, optimizer=legacy)
    np.testing.assert_array_equal(new.parameters, old.parameters)
    new.save(tmp_path / "m.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # loading is not using a deprecated name
        loaded = fb.load(tmp_path / "m.npz")
    assert loaded.optimizer == new.optimizer and loaded.optimizer.betas == (0.8, 0.95)
    config = new.optimizer.to_config()  # the file keeps format version 3's keys
    assert (config["beta1"], config["beta2"]) == (0.8, 0.95) and "betas" not in config
    assert optimizer_from_config(json.loads(json.dumps(config))) == new.optimizer


@pytest.mark.parametrize("betas, error, words", [
    (0.9, TypeError, "betas must be a pair"), ((0.9,), TypeError, "betas must be a pair"),
    ("ab", TypeError, "betas must be a pair"), ((1.0, 0.9), ValueError, "betas[0] (beta1)"),
    ((0.9, "x"), TypeError, "betas[1] (beta2)")])
def test_bad_betas_are_named(betas, error, words):
    with pytest.raises(error) as raised:
        fb.Adam(betas=betas)
    assert words in str(raised.value)


def test_warmup_starts_at_a_small_non_zero_rate():
    """The default start_factor is 1 / (length + 1): the first epoch trains (it ran at rate
    0 before), and the ramp is linear up to the full rate at t = length."""
    warmup = schedules.Warmup(5, then=schedules.CosineDecay(100))
    factors = warmup.factor(np.arange(7))
    np.testing.assert_allclose(factors[:6], np.arange(1, 7) / 6)
    assert factors[0] > 0 and warmup.start_factor == pytest.approx(1 / 6)
    assert schedules.Warmup(4, start_factor=0.0).factor(np.array([0]))[0] == 0.0  # still possible
    X = np.random.default_rng(0).normal(size=(32, 4))
    model = fb.mlp([4, 3], seed=0)
    before = model.parameters.copy()
    model.fit(X, X[:, :3], epochs=1, optimizer=fb.SGD(lr=0.1, schedule=schedules.Warmup(5)))
    assert not np.array_equal(model.parameters, before)  # the first epoch updates
