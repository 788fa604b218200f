"""curse's vmapped Diffrax flows equal their members solved one by one, unbatched, in float64 and
float32, at a small size (three members, a six-parameter model) and at the paper's; the gradient
they integrate, vmapped over the same members, equals central finite differences (float64).

Paths: `solve_memory_flows` (Figs. 2–3), `flow_escape_time` under `jax.vmap` over curvatures
(App. E, as `curse.experiments.momentum` maps it), and the stability experiment's flows vmapped
over parameterisations and ω (`curse.experiments.stability._plateaus`). Not covered: Fig. 4's
sweep, whose vmapped flow is a closure inside `curse.experiments.fig4.run`.

The curse analyses are float64 by design (`curse/__init__.py`). Float32 runs where it can: the
eq. 125 flow at float32-sized tolerances (rtol 1e-4) finishes to τ = 100 but not to τ = 1e3
(the step budget runs out once the flow turns stiff; measured), so its float32 case stops there.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.tree_util import Partial

import curse
import memdyn
from curse._memory_flow import FLOW_SOLVER, diagonal_objective
from curse._stability import rate_loss_indexed
from curse.experiments.momentum import MomentumConfig
from curse.experiments.stability import StabilityConfig, _plateaus
from tests.mapped import (
    assert_gradient_matches_central_differences,
    assert_mapped_equals_members,
    member,
    precision,
)

# The stack's own correctness: `make test-latest` runs these against the newest releases.
pytestmark = pytest.mark.canary

# (ω, save times, solver tolerances) per case. The realistic case is Figs. 2–3's default grid.
# small-float64 saves where `MemoryFlowConfig().quick()` does (τ to 1e4, 71 saves, at its
# tolerances and step budget): its vmapped solve is the same program as `curse memory --quick`'s
# (tests/curse/test_memory_experiment.py), which a run's persistent compilation cache compiles once.
FLOWS = {
    "small-float64": ((0.5, 1 / 3, 0.25), (1e-3, 1e4, 71), (1e-8, 1e-10)),
    "small-float32": ((0.5, 1 / 3, 0.25), (1e-3, 1e2, 20), (1e-4, 1e-6)),
    "realistic-float64": (curse.MemoryFlowConfig().omegas, (1e-3, 1e6, 181), (1e-8, 1e-10)),
}


# Members and their vmapped solve differ in the last bits of a batched product, which each
# adaptive step carries on: over τ to 1e6 (thousands of implicit steps, with weights a_i that
# diverge in the drift after the escape) that reaches 9e-11 of the weights' scale in float64
# (measured); the solver's own tolerance is rtol 1e-8. The small float64 case, to τ = 1e4, differs
# by at most 2.6e-13 (measured).
RTOL = {"small-float64": 1e-12, "small-float32": 1e-5, "realistic-float64": 1e-9}


@pytest.mark.parametrize(
    "case",
    [
        "small-float64",
        "small-float32",
        pytest.param("realistic-float64", marks=pytest.mark.slow),
    ],
)
def test_solve_memory_flows_equals_members(case):
    omegas, (tau_min, tau_max, num_saves), (rtol, atol) = FLOWS[case]
    name = case.split("-")[1]
    with precision(name):
        config = curse.MemoryFlowConfig(omegas=omegas)
        targets, theta0 = config.targets(), config.start()
        taus = curse.log_save_times(tau_min, tau_max, num_saves)
        options = {"rtol": rtol, "atol": atol, "max_steps": 20_000}
        mapped = curse.solve_memory_flows(targets, theta0, taus, **options)
        members = [
            memdyn.gradient_flow(
                Partial(diagonal_objective, target=member(targets, i)), theta0, taus,
                solver=FLOW_SOLVER, throw=False, **options,
            )
            for i in range(len(omegas))
        ]  # fmt: skip
        assert mapped.losses.dtype == jnp.dtype(name)
        assert np.all(np.asarray(mapped.finished)), mapped.result
        assert_mapped_equals_members(mapped, members, rtol=RTOL[case], size=len(omegas))
        if name == "float64":
            # The force the flows integrate, vmapped over the members and their saves, checked
            # where it is largest (the escape): on the plateaus it is ~e^{−w/ω}, so small that
            # the differences' rounding would dominate.
            # One compiled program: run eagerly, the vmapped gradient compiles each of its ~150
            # operations on its own.
            forces = jax.jit(jax.vmap(jax.vmap(jax.grad(diagonal_objective), in_axes=(0, None))))(
                mapped.thetas, targets
            )
            thetas, forces = jax.tree.map(np.asarray, (mapped.thetas, forces))
            norms = np.linalg.norm(np.concatenate(forces, axis=-1), axis=-1)
            objective = jax.jit(diagonal_objective)
            for index, save in enumerate(np.argmax(norms, axis=1)):
                target = member(targets, index)
                assert_gradient_matches_central_differences(
                    lambda theta, target=target: objective(theta, target),
                    jax.tree.map(lambda x, i=index, k=save: x[i, k], thetas),
                    jax.tree.map(lambda x, i=index, k=save: x[i, k], forces),
                    key=jax.random.key(index),
                )


@pytest.mark.parametrize("heavy_ball", [False, True], ids=["gradient-flow", "heavy-ball"])
@pytest.mark.parametrize(
    ("size", "name"),
    [
        ("small", "float64"),
        ("small", "float32"),
        pytest.param("realistic", "float64", marks=pytest.mark.slow),
    ],
)
def test_flow_escape_times_vmapped_equal_members(size, name, heavy_ball):
    """`flow_escape_time` under `jax.vmap` over curvatures, as the momentum experiment maps it
    (small: four curvatures, 1e-4 to 1e-2, those of tests/curse/test_momentum.py, whose float64
    vmapped solves are the same programs; realistic: the experiment's nine, 1e-5 to 1e-1). In
    float32 its fixed tolerances (rtol 1e-9) are below the precision: the escape times still
    agree with the closed forms to ~1e-7, and the check is that the vmapped solve equals the
    members'."""
    if size == "small":
        curvatures = tuple(np.geomspace(1e-4, 1e-2, 4).tolist())
    else:
        curvatures = MomentumConfig().flow_curvatures
    with precision(name):
        curvatures = jnp.asarray(curvatures)
        escape = lambda curvature: curse.flow_escape_time(curvature, heavy_ball=heavy_ball)
        mapped = jax.vmap(escape)(curvatures)
        members = [escape(curvature) for curvature in curvatures]
        assert mapped.dtype == jnp.dtype(name)
        assert_mapped_equals_members(mapped, members, rtol=RTOL[f"small-{name}"])


@pytest.mark.slow
def test_stability_flows_over_parameterisations_and_omegas_equal_members():
    """The stability experiment's flows, one nested `vmap` over the four rate maps and three ω
    (`rate_loss_indexed` picks the map by `lax.switch`), equal each (map, ω) solved alone.
    Float64 only: the experiment runs in float64 at rtol 1e-8. Slow: the nested vmapped implicit
    solve compiles for ~15 s on one core."""
    config = StabilityConfig(omegas=(1 / 4, 1 / 6, 1 / 8), tau_max=1e2, num_saves=20)
    with precision("float64"):
        taus, _, losses = _plateaus(config)
        flow = curse.MemoryFlowConfig(omegas=config.omegas, tau_max=config.tau_max,
                                      num_saves=config.num_saves)  # fmt: skip
        a0, w0 = flow.start()
        targets = flow.targets()
        expected = []
        for index, parameterisation in enumerate(config.parameterisations):
            v0 = curse.from_rates(parameterisation, w0)
            row = []
            for omega in range(len(config.omegas)):
                loss = Partial(
                    rate_loss_indexed, target=member(targets, omega), index=jnp.asarray(index)
                )
                solved = memdyn.gradient_flow(
                    loss, (a0, v0), taus, max_steps=flow.max_steps, solver=FLOW_SOLVER,
                    throw=False,
                )  # fmt: skip
                row.append(np.asarray(solved.losses))
            expected.append(np.stack(row))
        assert_mapped_equals_members(losses, expected, rtol=RTOL["small-float64"])
