"""The README's Python snippets run as written: the quick start on its own, the full
training example as the script that draws its figure, and every other ```python block in
order, in one namespace, as a reader would paste them."""
import contextlib
import gzip
import importlib.util
import io
import pathlib
import re
import struct
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_quick_start_runs():
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Quick start"):text.index("## API tour")]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace = {}
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        exec(compile(code, str(README), "exec"), namespace)
    assert namespace["proba"].shape == (5, 10)
    assert len(namespace["history"].loss) == 10
    assert "accuracy" in printed.getvalue()
    # The number printed is a held-out score: rows the model never trained on.
    assert "model.evaluate(X_test, y_test)" in code and "evaluate(X, y)" not in code
    assert namespace["X"].shape == (8192, 64) and namespace["X_test"].shape == (2048, 64)
    assert namespace["model"].evaluate(namespace["X_test"], namespace["y_test"])["accuracy"] > 0.5


def test_full_training_example_is_the_script_that_draws_its_figure(tmp_path):
    """The README's full example is docs/training_history.py's code (which wrote the PNG the
    README shows), and the script runs."""
    pytest.importorskip("matplotlib")
    text = README.read_text(encoding="utf-8")
    shown = re.search(r"A full run .*?```python\n(.*?)```", text, re.S).group(1)
    script = (ROOT / "docs" / "training_history.py").read_text(encoding="utf-8")
    body = script[script.index("# README example begins\n") + 24:
                  script.index("# README example ends")]
    assert shown == body.replace("history.plot(OUTPUT)", 'history.plot("training_history.png")')
    assert (ROOT / "docs" / "training_history.png").stat().st_size > 10_000
    figure = tmp_path / "history.png"
    done = subprocess.run([sys.executable, str(ROOT / "docs" / "training_history.py"),
                           str(figure)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "best epoch" in done.stdout and figure.stat().st_size > 10_000


def test_dropout_example_runs():
    """The API tour's Dropout example, on the quick start's data."""
    text = README.read_text(encoding="utf-8")
    quick = text[text.index("## Quick start"):text.index("## API tour")]
    tour = text[text.index("**Dropout.**"):]
    namespace = {}
    with contextlib.redirect_stdout(io.StringIO()):
        for section in (quick, tour):
            code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
            exec(compile(code, str(README), "exec"), namespace)
    model = namespace["model"]
    assert [type(layer).__name__ for layer in model.layers] == ["BoundDense", "Dropout",
                                                               "BoundDense"]
    assert model.training_steps == 10 * 128 and namespace["proba"].shape == (5, 10)


def write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def fake_mnist(folder):
    """Small files with MNIST's names and layout, for the load_mnist snippet."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 256), ("t10k", 64)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))


@pytest.mark.filterwarnings("ignore:Stochastic Optimizer:UserWarning")  # sklearn's 200 epochs
def test_every_python_snippet_runs_in_order(tmp_path, monkeypatch):
    blocks = python_blocks()
    assert len(blocks) >= 5
    monkeypatch.chdir(tmp_path)  # CSVLogger("log.csv") and friends write here
    fake_mnist(tmp_path / "mnist")
    # A block that imports an optional package runs only where it is installed.
    optional = {"sklearn": ("sklearn",), "onnxruntime": ("onnx", "onnxruntime")}
    missing = {word for word, modules in optional.items()
               if any(importlib.util.find_spec(module) is None for module in modules)}
    namespace = {}

    def my_batches():  # what "In your own loop" leaves to the reader
        X, y = namespace["X"], namespace["y"]
        for start in range(0, 64, 16):
            yield X[start:start + 16], y[start:start + 16]

    namespace["my_batches"] = my_batches
    ran = skipped = 0
    for index, code in enumerate(blocks):
        if any(word in code for word in missing):
            skipped += 1
            continue
        if "history.plot(" in code:  # the full run: docs/training_history.py, tested above
            continue
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                exec(compile(code, f"{README}, python block {index}", "exec"), namespace)
            except Exception as error:
                pytest.fail(f"README python block {index} failed: {error!r}\n{code}")
        ran += 1
        if "load_mnist(" in code:
            assert namespace["X_train"].shape == (256, 784)  # read from the fake files
    assert ran == len(blocks) - 1 - skipped
    if not missing:
        np.testing.assert_allclose(namespace["proba"], namespace["model"].predict(
            namespace["X32"]), rtol=1e-5, atol=1e-6)  # the ONNX export's block
    assert (tmp_path / "log.csv").exists()  # the callbacks snippet trained and logged
    assert namespace["err"] < 1e-4  # check_gradients in "In your own loop"
