"""The README's quick start runs as written."""
import contextlib
import io
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


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
