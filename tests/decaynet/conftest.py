"""Fixtures of the DecayNet tests."""

import pytest

from decaynet import find_local


@pytest.fixture(scope="session")
def mnist_files():
    """The MNIST files; tests that need them are skipped, before they run, where no local source
    (`$MEMDYN_DATA`, ../shared/data, the download cache) has them."""
    files = find_local("mnist")
    if files is None:
        pytest.skip("MNIST unavailable: no local copy (set MEMDYN_DATA or place ../shared/data)")
    return files
