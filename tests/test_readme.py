"""The README's quick start runs as written."""
import contextlib
import io
import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


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
