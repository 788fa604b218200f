import jax
import pytest


@pytest.fixture
def float64():
    """Float64 for the tests that ask for it (`pytestmark = pytest.mark.usefixtures("float64")`):
    the Hessian and spectral references need it, the infrastructure tests do not."""
    with jax.enable_x64(True):
        yield
