"""Property-based bad-input tests of memdyn's array entry points: every drawn input either gives
a finite result or raises `ValueError`/`TypeError` naming the argument (never a silent NaN, never
an unrelated exception). Shapes come from a tiny set, so JAX compiles a handful of programs."""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import memdyn

pytestmark = pytest.mark.usefixtures("float64")

SETTINGS = settings(max_examples=30, deadline=None, derandomize=True)
SPECIAL = [0.0, -1.0, 1.0, 1e300, -1e300, float("nan"), float("inf"), float("-inf")]
DTYPES = [np.float64, np.float32, np.float16, np.int32, np.bool_, np.complex128]


@st.composite
def arrays(draw, shapes, special=tuple(SPECIAL)):
    """An array of a drawn shape and dtype, with `special` values mixed into its entries."""
    shape = draw(st.sampled_from(shapes))
    dtype = draw(st.sampled_from(DTYPES))
    values = draw(
        st.lists(
            st.one_of(st.sampled_from(special), st.floats(-3, 3)),
            min_size=int(np.prod(shape)),
            max_size=int(np.prod(shape)),
        )
    )
    with np.errstate(invalid="ignore", over="ignore"):
        raw = np.asarray(values, np.float64).reshape(shape)
        if np.issubdtype(dtype, np.integer) or dtype is np.bool_:
            raw = np.nan_to_num(raw, posinf=3, neginf=-3)
            raw = np.clip(raw, -3, 3)
        return raw.astype(dtype)


def outcome(call, *names):
    """Run `call`: the result must be finite, or the error a ValueError/TypeError naming one of
    `names` (or, for a value only the compiled program sees, such as an overflow, Equinox's
    runtime error naming it). Returns the result (None after an expected error)."""
    try:
        result = call()
    except (ValueError, TypeError, eqx.EquinoxRuntimeError) as err:
        assert any(name in str(err) for name in names), f"{err!r} names none of {names}"
        return None
    leaves = [np.asarray(leaf) for leaf in jax.tree.leaves(result)]
    assert all(np.all(np.isfinite(leaf)) for leaf in leaves if leaf.dtype.kind == "f"), result
    return result


def quartic(params):
    # Not a quadratic: its Hessian depends on the parameters, so NaN ones would give NaN.
    return jnp.sum(params["x"] ** 4) + jnp.sum(params["x"]) ** 2


@SETTINGS
@given(x=arrays([(2,), (3,), (2, 2)]))
def test_hessian_functions_give_finite_results_or_named_errors(x):
    model = {"x": x}
    valid = x.dtype in (np.float32, np.float64) and np.all(np.abs(x) < 1e30)
    for function in (memdyn.hessian, memdyn.hessian_eigenvalues):
        result = outcome(lambda f=function: f(quartic, model), "model", "loss_fn")
        assert result is not None or not valid  # valid parameters are never refused
    outcome(lambda: memdyn.hvp(quartic, model, model), "model", "tangent", "loss_fn")


def test_hessian_of_a_quadratic_still_checks_its_parameters():
    """The Hessian of a quadratic does not depend on θ: the check must not be pruned."""
    quadratic = lambda p: jnp.sum(p**2)
    with pytest.raises(ValueError, match="model parameters contain"):
        memdyn.hessian(quadratic, jnp.array([np.nan, 1.0]))
    run = jax.jit(lambda p: memdyn.hessian_eigenvalues(quadratic, p))
    with pytest.raises(Exception, match="model parameters contain"):
        run(jnp.array([np.nan, 1.0]))
    np.testing.assert_allclose(run(jnp.array([3.0, 1.0])), [2.0, 2.0])


@pytest.mark.parametrize(
    "call",
    [
        lambda loss, m: memdyn.hessian(loss, m),
        lambda loss, m: memdyn.hessian_eigenvalues(loss, m),
        lambda loss, m: memdyn.hessian_eigenvalues_along(loss, jnp.stack([m, m])),
        lambda loss, m: memdyn.hvp(loss, m, m),
        lambda loss, m: memdyn.hessian_matvec(loss, m),
        lambda loss, m: memdyn.hessian_extremes(loss, m, 2, key=jax.random.key(0)),
        lambda loss, m: memdyn.hutchinson_trace(loss, m, 2, key=jax.random.key(0)),
        lambda loss, m: memdyn.hessian_spectral_density(
            loss, m, num_iter=2, num_probes=1, key=jax.random.key(0)
        ),
    ],
    ids=["hessian", "eigenvalues", "along", "hvp", "matvec", "extremes", "trace", "density"],
)
def test_every_hessian_function_rejects_a_non_scalar_loss_and_bad_parameters(call):
    model = jnp.array([1.0, 2.0])
    with pytest.raises(ValueError, match="loss_fn must return a real floating-point scalar"):
        call(lambda p: p**2, model)
    with pytest.raises(ValueError, match="model.* contain"):
        call(lambda p: jnp.sum(p**4), model.at[0].set(np.inf))
    with pytest.raises(TypeError, match="model.* parameter"):
        call(lambda p: jnp.sum(p**4), model.astype(jnp.float16))


def test_hessian_nan_from_the_loss_data_is_named():
    data = jnp.array([np.nan, 1.0])
    with pytest.raises(Exception, match="Hessian of loss_fn"):
        memdyn.hessian(lambda p: jnp.sum(data * p**4), jnp.array([1.0, 2.0]))


def test_hvp_tangent_must_match_the_parameters():
    model = {"x": jnp.array([1.0, 2.0])}
    with pytest.raises(ValueError, match="tangent must have the structure"):
        memdyn.hvp(quartic, model, {"x": jnp.ones(3)})
    with pytest.raises(ValueError, match="tangent contains"):
        memdyn.hvp(quartic, model, {"x": jnp.array([np.nan, 1.0])})


@SETTINGS
@given(start=arrays([(3,), (2, 3)]))
def test_lanczos_start_gives_finite_coefficients_or_named_errors(start):
    matrix = jnp.diag(jnp.array([1.0, 2.0, 3.0]))
    try:
        operator = jax.tree_util.Partial(jnp.matmul, matrix)
        alphas, betas, _ = memdyn.lanczos_tridiagonal(operator, start, 2)
    except (ValueError, TypeError) as err:
        assert "start" in str(err) or "matvec" in str(err)
        return
    except eqx.EquinoxRuntimeError as err:  # values are checked inside its jit
        assert "start" in str(err)
        return
    assert np.all(np.isfinite(alphas)) and np.all(np.isfinite(betas))


@SETTINGS
@given(alphas=arrays([(0,), (2,), (3,), (2, 2)]), betas=arrays([(2,), (3,)]))
def test_ritz_values_give_finite_values_or_named_errors(alphas, betas):
    outcome(lambda: memdyn.ritz_values(alphas, betas), "alphas", "betas")
    outcome(lambda: memdyn.ritz_values_and_first_components(alphas, betas), "alphas", "betas")


@SETTINGS
@given(
    times=arrays([(4,), (5,), (2, 2)]),
    losses=arrays([(4,), (2, 2)]),
    delta=st.sampled_from([0.1, 0.0, -1.0, float("nan"), float("inf")]),
    smooth=st.sampled_from([1, 3, 0, 2.5, True]),
)
def test_hitting_time_is_finite_inf_or_a_named_error(times, losses, delta, smooth):
    try:
        result = memdyn.hitting_time(
            times, None, losses, delta=delta, criterion="loss", smooth=smooth
        )
    except (ValueError, TypeError) as err:
        assert any(n in str(err) for n in ("times", "losses", "values", "delta", "smooth"))
        return
    # `inf` with hit False is the documented "never reached"; a hit time is finite.
    assert bool(result.hit) == bool(np.isfinite(result.time))
    assert not np.isnan(result.time)


@SETTINGS
@given(
    times=arrays([(6,), (5,), (2, 3)]),
    losses=arrays([(6,), (2, 3)]),
    tolerance=st.sampled_from([0.05, 0.0, -1.0, float("nan")]),
    scale=st.sampled_from(["log", "linear", "cubic"]),
)
def test_plateau_intervals_are_finite_or_a_named_error(times, losses, tolerance, scale):
    result = outcome(
        lambda: memdyn.plateau_intervals(times, losses, tolerance=tolerance, scale=scale),
        "times",
        "losses",
        "tolerance",
        "scale",
    )
    for plateau in result or []:
        assert np.isfinite([plateau.start, plateau.end, plateau.level]).all()
        assert plateau.start <= plateau.end


@SETTINGS
@given(x=arrays([(4,), (3,), (2, 2)]), y=arrays([(4,), (2, 2)]))
def test_linear_fit_is_finite_or_named_or_reports_too_few_points(x, y):
    try:
        fit = memdyn.linear_fit(x, y)
    except (ValueError, TypeError) as err:
        assert "x" in str(err) or "y" in str(err)
        return
    used = np.isfinite(x) & np.isfinite(y)
    assert fit["points"] == int(used.sum())
    if np.unique(x[used]).size >= 2:
        assert np.isfinite(fit["slope"]) and np.isfinite(fit["intercept"])
    else:  # the documented outcome: NaNs, with the count that says why
        assert np.isnan(fit["slope"])


# --- config values ------------------------------------------------------------------------------
# tests/memlab/test_config_audit.py checks each field against NaN, inf and a wrong type; here any
# drawn value (0, negatives, huge numbers, empty and mixed tuples, None, strings) must give a
# config or a ValueError/TypeError naming the field.

CONFIGS = [
    experiment.config
    for package in ("curse", "decaynet")
    for experiment in __import__(f"{package}.experiments", fromlist=["EXPERIMENTS"]).EXPERIMENTS
]
FIELDS = [(cls, field.name) for cls in CONFIGS for field in memdyn.internal.flat_fields(cls)]

scalars = st.one_of(
    st.integers(-3, 3),
    st.sampled_from([10**6, 10**30, -(10**30), 0]),
    st.sampled_from(SPECIAL + [1e-300, 0.5, 2.5]),
    st.booleans(),
    st.sampled_from(["", "x", "lstm", "paper", None]),
)
config_values = st.one_of(scalars, st.lists(scalars, max_size=3).map(tuple), st.just(()))


def _names(message: str, path: str) -> bool:
    """Whether an error names the field: its dotted path, or (a rule between a part's fields)
    the part (`Config.train: ...`) and the field's name in it."""
    part, _, name = path.rpartition(".")
    return path in message or (f".{part}: " in message and name in message)


@settings(max_examples=50, deadline=None, derandomize=True)
@given(data=st.data())
def test_config_fields_construct_or_raise_naming_the_field(data):
    cls, name = data.draw(st.sampled_from(FIELDS))
    value = data.draw(config_values)
    try:
        config = memdyn.internal.replace_fields(cls(), {name: value})
    except (ValueError, TypeError) as err:
        assert _names(str(err), name), f"{cls.__name__}.{name}={value!r}: {err!r}"
        return
    memdyn.internal.check_fields(config)  # what constructs has the annotated types


@pytest.mark.parametrize(
    "cls, name",
    [pytest.param(c, n, id=f"{c.__module__}.{c.__name__}.{n}") for c, n in FIELDS],
)
def test_zero_negative_and_huge_values_construct_or_raise_naming_the_field(cls, name):
    """Every field, exhaustively, with the values a sweep of ranges would try first."""
    default = functools.reduce(getattr, name.split("."), cls())
    if isinstance(default, bool) or not isinstance(default, int | float | tuple):
        return
    kind = type(default[0]) if isinstance(default, tuple) and default else type(default)
    values = [kind(0), kind(-1), kind(10**30) if kind is float else 10**30]
    values = [(v,) if isinstance(default, tuple) else v for v in values]
    values += [()] if isinstance(default, tuple) else []
    for value in values:
        try:
            memdyn.internal.replace_fields(cls(), {name: value})
        except (ValueError, TypeError) as err:
            assert _names(str(err), name), f"{cls.__name__}.{name}={value!r}: {err!r}"
