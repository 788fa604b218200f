import jax
import pytest


@pytest.fixture(autouse=True)
def float64():
    """The curse analyses need float64; scope it to these tests."""
    with jax.enable_x64(True):
        yield
