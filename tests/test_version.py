"""fastbp reports one version: the one pyproject.toml declares, read from the installed
package's metadata."""
import importlib.metadata
import pathlib
import re

import fastbp

PYPROJECT = pathlib.Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_version_is_the_installed_metadata_version():
    assert fastbp.__version__ == importlib.metadata.version("fastbp")


def test_version_is_pyproject_version():
    declared = re.search(r'^version = "([^"]+)"$', PYPROJECT.read_text(encoding="utf-8"), re.M)
    assert declared, "pyproject.toml declares no static version"
    assert fastbp.__version__ == declared.group(1)
