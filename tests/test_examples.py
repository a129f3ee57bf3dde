"""Every script in examples/ runs (with few epochs) and shows what it claims."""
import importlib.util
import pathlib

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def example(name):
    path = EXAMPLES / f"{name}.py"
    assert path.exists(), f"{path} is missing (tests run from a checkout of the repository)"
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_xor_learns_xor(capsys):
    assert example("xor").main([]) == 1.0
    assert "accuracy 100%" in capsys.readouterr().out


def test_own_loop_trains(capsys):
    assert example("own_loop").main(["--epochs", "2"]) > 0.5
    assert "epoch  2" in capsys.readouterr().out


def test_gradient_check_shows_vanishing_gradients(tmp_path):
    pytest.importorskip("matplotlib")
    plot = tmp_path / "g.png"
    error, histories = example("gradient_check").main(["--epochs", "1", "--plot", str(plot)])
    assert error < 1e-6 and plot.stat().st_size > 0
    sigmoid, relu = histories["sigmoid"], histories["relu"]
    assert sigmoid.grad_norm_0[-1] < 1e-2 * relu.grad_norm_0[-1]
