"""The stack computes mapped gradients correctly (issue 22): canaries, the XLA workaround, doctor.

On AVX-512 processors XLA:CPU in jaxlib 0.8–0.10.2 returned `vmap(grad)` of a scan LSTM 0.06 away
from the per-member gradients (float64, batch 4, time 6, hidden 5). These canaries are that
reproduction, in plain JAX, through Equinox and through memdyn's public API; `make test-latest`
runs them (marker `canary`) against the newest releases.
"""

import json
import os
import subprocess
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import memdyn
import memlab
from memdyn import _doctor, _xla
from memlab import _results

pytestmark = pytest.mark.canary

B, T, IN, H, MEMBERS = 4, 6, 3, 5, 3  # the sizes where the miscompilation showed


def _issue_reproduction():
    """The issue's code, verbatim but for returning the gap."""
    xs = jax.random.normal(jax.random.key(5), (B, T, IN))
    k = jax.random.split(jax.random.key(1), 3)
    Wi = jax.random.normal(k[0], (3, 4 * H, IN)) * 0.4
    Wh = jax.random.normal(k[1], (3, 4 * H, H)) * 0.4
    b = jax.random.normal(k[2], (3, 4 * H)) * 0.1

    def loss(p):
        wi, wh, bb = p

        def step(c, xt):
            h, s = c
            z = xt @ wi.T + h @ wh.T + bb
            i, f, g, o = jnp.split(z, 4, axis=-1)
            s = jax.nn.sigmoid(f) * s + jax.nn.sigmoid(i) * jnp.tanh(g)
            h = jax.nn.sigmoid(o) * jnp.tanh(s)
            return (h, s), h

        (h, s), hs = jax.lax.scan(step, (jnp.zeros((B, H)),) * 2, jnp.swapaxes(xs, 0, 1))
        return jnp.sum(jnp.sin(h) * s) + jnp.sum(hs**2)

    g = jax.vmap(jax.grad(loss))((Wi, Wh, b))
    return max(
        float(jnp.max(jnp.abs(g[1][i] - jax.grad(loss)((Wi[i], Wh[i], b[i]))[1]))) for i in range(3)
    )


def test_plain_jax_reproduction_is_exact(float64):
    # 0.059 on the broken stack; the same arithmetic per member otherwise (a few ulps).
    assert _issue_reproduction() < 1e-13


class _LSTM(eqx.Module):
    cell: eqx.nn.LSTMCell
    head: jax.Array

    def __call__(self, xs):
        def step(carry, x):
            carry = jax.vmap(self.cell)(x, carry)
            return carry, carry[0]

        zeros = jnp.zeros((xs.shape[0], self.cell.hidden_size), xs.dtype)
        (h, c), hs = jax.lax.scan(step, (zeros, zeros), jnp.swapaxes(xs, 0, 1))
        return jnp.sum(jnp.sin(h @ self.head) * c[:, :1]) + jnp.sum(hs**2)


def _members(dtype):
    keys = jax.random.split(jax.random.key(3), MEMBERS)
    make = lambda key: _LSTM(
        eqx.nn.LSTMCell(IN, H, key=key, dtype=dtype),
        0.3 * jax.random.normal(jax.random.fold_in(key, 1), (H, 2), dtype),
    )
    return eqx.filter_vmap(make)(keys), [make(key) for key in keys]


def _relative_gap(stacked, members) -> float:
    gaps = []
    for index, member in enumerate(members):
        for a, b in zip(jax.tree.leaves(stacked), jax.tree.leaves(member), strict=True):
            a, b = np.asarray(a[index], float), np.asarray(b, float)
            gaps.append(np.max(np.abs(a - b)) / np.max(np.abs(b)))
    return max(gaps)


@pytest.mark.parametrize(("dtype", "tolerance"), [("float64", 1e-12), ("float32", 2e-6)])
def test_equinox_lstm_cells_mapped_gradient_equals_members(dtype, tolerance):
    with jax.enable_x64(dtype == "float64"):
        xs = jax.random.normal(jax.random.key(5), (B, T, IN), dtype)
        stacked, members = _members(jnp.dtype(dtype))
        loss = lambda model: model(xs)
        mapped = eqx.filter_vmap(eqx.filter_grad(loss))(stacked)
        own = [eqx.filter_grad(loss)(member) for member in members]
        assert _relative_gap(mapped, own) < tolerance


@pytest.mark.parametrize(("dtype", "tolerance"), [("float64", 1e-12), ("float32", 2e-6)])
def test_memdyn_learning_rate_sweep_equals_members(dtype, tolerance):
    # One compiled sweep of three learning rates (memdyn's public API: vmap of grad of the scan)
    # against `memdyn.train` at each rate alone; and the first step against a central finite
    # difference of the loss (the per-member gradient is itself right).
    with jax.enable_x64(dtype == "float64"):
        xs = jax.random.normal(jax.random.key(5), (B, T, IN), dtype)
        model = _members(jnp.dtype(dtype))[1][0]
        loss = eqx.Partial(lambda model, xs: model(xs), xs=xs)
        optimizer = memdyn.make_optimizer("gd", 0.1)
        rates = jnp.asarray([0.01, 0.03, 0.07], dtype)
        run = lambda rate=None: memdyn.train(
            loss, model, optimizer, 3, save_every=1, learning_rate=rate
        )
        swept = memdyn.sweep_learning_rates(loss, model, optimizer, rates, 3, save_every=1)
        alone = [run(rate) for rate in rates]
        assert _relative_gap(swept.thetas, [a.thetas for a in alone]) < tolerance
        np.testing.assert_allclose(
            swept.losses, np.stack([a.losses for a in alone]), rtol=tolerance
        )
    if dtype == "float64":
        with jax.enable_x64(True):
            first = alone[0].model_at(1)
            step = jax.tree.map(lambda a, b: (b - a) / -0.01, model, first)
            direction = jax.tree.map(
                lambda leaf: jax.random.normal(jax.random.key(7), leaf.shape, leaf.dtype),
                eqx.filter(model, eqx.is_inexact_array),
            )
            shift = lambda eps: eqx.apply_updates(model, jax.tree.map(lambda d: eps * d, direction))
            numeric = (loss(shift(1e-5)) - loss(shift(-1e-5))) / 2e-5
            analytic = sum(
                jnp.vdot(g, d)
                for g, d in zip(
                    jax.tree.leaves(eqx.filter(step, eqx.is_inexact_array)),
                    jax.tree.leaves(direction),
                    strict=True,
                )
            )
            np.testing.assert_allclose(analytic, numeric, rtol=1e-7)


def test_doctor_canaries_pass_on_this_stack():
    diagnosis = memdyn.doctor()
    assert diagnosis.ok, str(diagnosis)
    text = str(diagnosis)
    assert text.splitlines()[-1].startswith("ok")
    for name in _doctor.DEPENDENCIES[:3]:
        assert f"{name} {diagnosis.versions[name]}" in text
    assert "AVX-512" in text and "XLA_FLAGS" in text
    assert {c.name for c in _doctor.run_canaries()} == set(diagnosis.verdict["canaries"])


def test_doctor_names_what_is_wrong_and_the_fix():
    broken = (
        _doctor.Canary("vmap(grad) = grad per member, float64", 0.059, 1e-12),
        _doctor.Canary("vmap(grad) = grad per member, float32", 1e-8, 1e-5),
    )
    diagnosis = memdyn.doctor(canaries=broken)
    assert not diagnosis.ok
    last = str(diagnosis).splitlines()[-1]
    assert last.startswith("WRONG: vmap(grad) = grad per member, float64 fails")
    assert "float32 fails" not in last and _xla.FLAG in last
    assert "WRONG vmap(grad) = grad per member, float64: relative gap 0.059" in str(diagnosis)
    record = {"environment": {"stack": _doctor.stack_verdict(broken)}}
    assert _results.stack_status(record).startswith("WRONG: vmap(grad) = grad per member, float64")
    assert _results.stack_status({"environment": {}}).startswith("not checked")


def test_a_canary_with_a_nan_gap_is_wrong():
    assert not _doctor.Canary("x", float("nan"), 1e-12).ok
    assert _doctor.Canary("x", 0.0, 1e-12).ok


def test_every_record_stores_the_verdict():
    stack = memlab.environment()["stack"]
    assert stack["ok"] is True
    assert stack["xla_flags"] == os.environ.get("XLA_FLAGS", "")
    assert set(stack["cpu"]) == {"model", "machine", "avx512"}
    json.dumps(memdyn.internal.to_jsonable(stack))


AVX512 = _xla.Processor("Intel Xeon", "x86_64", True)
AVX2 = _xla.Processor("AMD EPYC", "x86_64", False)
ARM = _xla.Processor("Apple M2", "arm64", None)


@pytest.mark.parametrize(
    ("environ", "cpu", "jaxlib", "started", "applied", "reason"),
    [
        ({}, AVX512, (0, 10, 2), False, True, "added"),
        (
            {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
            AVX512,
            (0, 10, 2),
            False,
            True,
            "added",
        ),
        ({"MEMDYN_XLA_WORKAROUND": "0"}, AVX512, (0, 10, 2), False, False, "turned it off"),
        ({"XLA_FLAGS": "--xla_cpu_max_isa=AVX512"}, AVX512, (0, 10, 2), False, False, "already"),
        (
            {"XLA_FLAGS": "--xla_cpu_use_fusion_emitters=false"},
            AVX512,
            (0, 9),
            False,
            False,
            "already",
        ),
        ({}, AVX2, (0, 10, 2), False, False, "no AVX-512"),
        ({}, ARM, (0, 10, 2), False, False, "arm64"),
        ({}, AVX512, (0, 7, 2), False, False, "jaxlib < 0.8"),
        ({}, AVX512, (0, 10, 2), True, False, "import memdyn first"),
    ],
)
def test_workaround_decision(environ, cpu, jaxlib, started, applied, reason):
    decision = _xla.decide(environ, cpu, jaxlib, started)
    assert decision.applied is applied
    assert reason in decision.reason


def _cpuinfo(cores: list[tuple[int, int]]) -> str:
    """`/proc/cpuinfo` text of logical CPUs 0, 1, ... on (physical id, core id) `cores`."""
    return "\n\n".join(
        f"processor\t: {i}\nphysical id\t: {package}\ncore id\t\t: {core}\nflags\t: fpu"
        for i, (package, core) in enumerate(cores)
    )


@pytest.mark.parametrize(
    ("cores", "allowed", "expected"),
    [
        ([(0, 0), (0, 1)], {0, 1}, 2),  # this project's machine
        ([(0, 0), (0, 1), (0, 0), (0, 1)], {0, 1, 2, 3}, 2),  # two hyperthreads per core
        ([(0, 0), (0, 1), (0, 0), (0, 1)], {0, 2}, 1),  # taskset to one core's two threads
        ([(0, 0), (1, 0)], {0, 1}, 2),  # two packages, core 0 each
        ([(0, 0), (0, 1), (0, 2)], {1}, 1),  # taskset -c 1
    ],
)
def test_physical_cores_count_hyperthreads_once_within_the_affinity(cores, allowed, expected):
    assert _xla.physical_cores(_cpuinfo(cores), allowed) == expected
    # Without core ids (some ARM kernels): the allowed logical CPUs.
    assert _xla.physical_cores("processor\t: 0\n\nprocessor\t: 1", allowed) == len(allowed)


@pytest.mark.parametrize(
    ("environ", "cores", "started", "count", "reason"),
    [
        ({}, 2, False, 2, "one per physical core, 2 cores"),
        ({}, 1, False, None, "one core"),
        ({"MEMDYN_HOST_DEVICES": "4"}, 2, False, 4, "MEMDYN_HOST_DEVICES=4"),
        ({"MEMDYN_HOST_DEVICES": "0"}, 8, False, None, "JAX's default"),
        ({"XLA_FLAGS": "--xla_force_host_platform_device_count=3"}, 2, False, None, "left as"),
        (
            {"XLA_FLAGS": "--xla_force_host_platform_device_count=3", "MEMDYN_HOST_DEVICES": "5"},
            2,
            False,
            None,
            "left as",
        ),
        ({}, 2, True, None, "import memdyn first"),
    ],
)
def test_host_devices_decision(environ, cores, started, count, reason):
    decision = _xla.decide_devices(environ, cores, started)
    assert decision.count == count
    assert reason in decision.reason


@pytest.mark.parametrize("value", ["two", "-1", "1.5"])
def test_a_bad_host_device_count_names_the_variable(value):
    with pytest.raises(ValueError, match="MEMDYN_HOST_DEVICES must be a whole number"):
        _xla.decide_devices({"MEMDYN_HOST_DEVICES": value}, 2, False)


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", _xla.OPT_OUT)}
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**environ, "JAX_PLATFORMS": "cpu", **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_import_adds_the_flag_to_a_users_flags_and_opt_out_leaves_them():
    code = "import os, memdyn; print(os.environ.get('XLA_FLAGS', ''))"
    user = "--xla_force_host_platform_device_count=2"
    expected = _xla.decide({}, _xla.processor(), _xla._version("jaxlib"), False)
    added = _python(code, XLA_FLAGS=user)
    assert added.returncode == 0, added.stderr
    flags = added.stdout.split()
    assert flags[0] == user  # the user's flags stay, first
    assert (_xla.FLAG in flags) is expected.applied
    left = _python(code, XLA_FLAGS=user, MEMDYN_XLA_WORKAROUND="0")
    assert left.stdout.split() == [user]


def test_import_asks_for_the_host_devices_it_is_told():
    code = "import memdyn, jax; print(len(jax.devices('cpu')))"
    done = _python(code, MEMDYN_HOST_DEVICES="3")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["3"]


def test_doctor_command_on_the_raw_stack_agrees_with_its_canaries():
    # With the workaround off, `memdyn doctor` reports the raw stack: on an AVX-512 CPU with
    # jaxlib 0.8–0.10.2 that is the miscompilation (exit status 1, "WRONG" and the fix), elsewhere
    # "ok". Either way its verdict and exit status must match the gap it prints.
    done = subprocess.run(
        [sys.executable, "-m", "memlab.cli", "doctor"],
        env={**os.environ, "JAX_PLATFORMS": "cpu", "MEMDYN_XLA_WORKAROUND": "0", "XLA_FLAGS": ""},
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = done.stdout.splitlines()
    float64 = next(line for line in lines if "per member, float64" in line)
    gap = float(float64.split("relative gap ")[1].split()[0])
    wrong = gap > _doctor.TOLERANCES["float64"]
    assert done.returncode == (1 if wrong else 0), done.stdout + done.stderr
    assert lines[-1].startswith("WRONG" if wrong else "ok")
    assert "turned it off" in done.stdout
    print(done.stdout)  # the report, for the log (-s)


def test_importing_memdyn_after_jax_computed_warns_where_the_flag_is_needed():
    code = (
        "import warnings, jax.numpy as jnp; jnp.ones(1).block_until_ready()\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always'); import memdyn\n"
        "print([str(w.message) for w in caught if 'memdyn' in str(w.message)])"
    )
    done = _python(code)
    assert done.returncode == 0, done.stderr
    needed = _xla.decide({}, _xla.processor(), _xla._version("jaxlib"), False).applied
    assert ("import memdyn first" in done.stdout) is needed
