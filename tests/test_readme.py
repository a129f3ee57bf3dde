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
