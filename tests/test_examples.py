"""Every script in examples/ runs (with few epochs) and shows what it claims."""
import importlib.util
import pathlib
import sys

import numpy as np
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


def test_digits_compares_fastbp_with_scikit_learn(capsys):
    pytest.importorskip("sklearn")
    results = example("digits").main(["--epochs", "5", "--repeats", "1"])
    assert set(results) == {"scikit-learn", "fastbp"}
    for result in results.values():
        assert result["epochs"] == 5 and result["seconds"] > 0
        assert result["accuracy"] > 0.5  # 10 classes: chance is 0.1
    out = capsys.readouterr().out
    assert "BLAS: " in out and "1 thread(s)" in out and "test accuracy" in out


def test_digits_without_scikit_learn_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn now fails
    with pytest.raises(SystemExit, match="pip install scikit-learn"):
        example("digits").main(["--epochs", "1"])


def test_mnist1d_learns(capsys):
    pytest.importorskip("mnist1d")
    state = np.random.get_state()
    accuracy = example("mnist1d").main(["--epochs", "5"])
    assert accuracy > 0.35  # chance is 0.1; the full 100 epochs reach 68-71 %
    out = capsys.readouterr().out
    assert "4000 training / 1000 test rows of 40 values" in out and "test accuracy" in out
    np.testing.assert_equal(np.random.get_state(), state)  # the global generator is restored


def test_mnist1d_without_the_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mnist1d", None)
    monkeypatch.setitem(sys.modules, "mnist1d.data", None)
    with pytest.raises(SystemExit, match="pip install mnist1d"):
        example("mnist1d").main(["--epochs", "1"])


@pytest.mark.parametrize("name", sorted(path.stem for path in EXAMPLES.glob("*.py")))
def test_help_shows_the_whole_description_and_every_option_s_help(name, capsys, monkeypatch):
    import argparse

    module = example(name)
    with pytest.raises(SystemExit) as exit_:
        module.main(["--help"])
    assert exit_.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    first_paragraph = module.__doc__.strip().split("\n\n")[0]
    assert " ".join(first_paragraph.split()) in out  # not cut at its first line
    parsers = []

    def capture(parser, args=None, namespace=None):
        parsers.append(parser)
        raise SystemExit(0)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    with pytest.raises(SystemExit):
        module.main([])
    options = [action for action in parsers[0]._actions if action.option_strings]
    assert len(options) >= 2  # --help and at least one of the example's own
    assert [action.dest for action in options if not action.help] == []


def test_deep_networks_train_with_batchnorm_or_residual_blocks(tmp_path, capsys):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    plot = tmp_path / "deep.png"
    results = example("deep_networks").main(["--epochs", "3", "--plot", str(plot)])
    plain, norm, residual = (results[name] for name in ("plain", "batchnorm", "residual"))
    assert plain["accuracy"] < 0.2  # chance is 0.1: the plain network learns nothing
    assert norm["accuracy"] > 0.7 and residual["accuracy"] > 0.7  # 92% and 97% at 40 epochs
    vanished = plain["first_epoch_norms"]
    assert vanished[0] < 1e-6 * vanished[-1]  # its gradient vanishes on the way down
    for kept in (norm["first_epoch_norms"], residual["first_epoch_norms"]):
        assert kept[0] > 1e-2 * kept[-1]
    assert plot.stat().st_size > 0 and "test accuracy" in capsys.readouterr().out


def test_dask_search_streams_and_searches_on_a_cluster(capsys):
    for package in ("sklearn", "dask", "distributed", "dask_ml"):
        pytest.importorskip(package)
    streamed, search = example("dask_search").main(["--chunks", "2", "--rows", "150"])
    assert 0 <= streamed <= 1 and search.best_score_ > 0.5  # 4 classes: chance is 0.25
    out = capsys.readouterr().out
    assert "cluster: 2 workers" in out and "GridSearchCV on the workers" in out
