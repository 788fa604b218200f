"""Fixtures of the DecayNet tests."""

import pytest

from decaynet import locate


@pytest.fixture(scope="session")
def mnist_files():
    """The MNIST files; tests that need them are skipped, before they run, where they are absent."""
    try:
        return locate("mnist")
    except ValueError as err:
        pytest.skip(f"MNIST unavailable: {err}")
