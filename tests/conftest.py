"""Shared fixtures."""
import pytest


@pytest.fixture(scope="session")
def reference():
    """The pure-NumPy reference network, as installed with the package."""
    from fastbp.benchmarks import numpy_reference
    return numpy_reference
