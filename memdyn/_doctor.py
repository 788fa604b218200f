"""Is this stack computing memdyn's numbers correctly? Canaries, the environment, and `doctor`.

memdyn's core mechanism is a compiled sweep: many members of a model under one `vmap`. A compiler
that changes a mapped gradient silently changes every number computed that way (issue 22: XLA:CPU
in jaxlib 0.8–0.10.2 on AVX-512 processors, `memdyn._xla`). So the check runs where the numbers
are computed: `doctor()` (and the `memdyn doctor` command) reports versions, devices, XLA flags
and the processor, then runs the canaries in a few seconds; `stack_verdict()` is what every
record stores, so a result computed on a bad stack is marked.

The canary is the issue's reproduction: the gradient of a `lax.scan` LSTM loss, `jax.vmap`ped
over three members, against each member's own `jax.grad`, in float64 and float32, at the small
odd sizes where the miscompilation shows (batch 4, time 6, input 3, hidden 5); and each member's
gradient against a central finite difference, so the reference itself is checked.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import os
import platform
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from memdyn import _xla

# The numerical dependencies whose versions go into every record and `doctor`'s report.
DEPENDENCIES = (
    "memdyn",
    "jax",
    "jaxlib",
    "equinox",
    "diffrax",
    "optimistix",
    "lineax",
    "optax",
    "numpy",
    "scipy",
    "matplotlib",
    "jaxtyping",
    "torch",
)
# memdyn's own environment variables, shown by `doctor`.
SETTINGS = (_xla.OPT_OUT, _xla.DEVICES, "MEMDYN_DATA", "MEMDYN_NO_PROGRESS", "JAX_PLATFORMS")

_MEMBERS, _BATCH, _TIME, _INPUT, _HIDDEN = 3, 4, 6, 3, 5
# Relative gap allowed between a member's mapped and own gradient: the same arithmetic in another
# order (a few ulps of the largest entry), far below the 0.06 absolute gap of the miscompilation.
TOLERANCES = {"float64": 1e-12, "float32": 1e-5}
_FINITE_DIFFERENCE_TOLERANCE = 1e-7  # float64, step 1e-5: truncation ~1e-10, rounding ~1e-11


def versions() -> dict[str, str | None]:
    """The installed version of each of `DEPENDENCIES` (`None` where it is not installed)."""
    found = {}
    for name in DEPENDENCIES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def _lstm_loss(parameters, xs):
    w_in, w_rec, bias = parameters

    def step(carry, x):
        h, s = carry
        z = x @ w_in.T + h @ w_rec.T + bias
        i, f, g, o = jnp.split(z, 4, axis=-1)
        s = jax.nn.sigmoid(f) * s + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(s)
        return (h, s), h

    zeros = jnp.zeros((xs.shape[0], w_rec.shape[1]), xs.dtype)
    (h, s), hs = jax.lax.scan(step, (zeros, zeros), jnp.swapaxes(xs, 0, 1))
    return jnp.sum(jnp.sin(h) * s) + jnp.sum(hs**2)


def _canary_problem(dtype):
    normals = _canary_normals(jnp.dtype(dtype))
    # Scaled outside the compiled draw: inside it XLA fuses the product into the sampler, which
    # moves the canary's inputs (and its recorded gaps) by an ulp.
    parameters = tuple(scale * x for scale, x in zip((0.4, 0.4, 0.1), normals[:3], strict=True))
    return parameters, normals[3]


@functools.partial(jax.jit, static_argnums=0)
def _canary_normals(dtype):
    """The canary's standard normal draws, in one compiled program (four shapes)."""
    keys = jax.random.split(jax.random.key(1), 4)
    four = 4 * _HIDDEN
    shapes = ((_MEMBERS, four, _INPUT), (_MEMBERS, four, _HIDDEN), (_MEMBERS, four))
    shapes += ((_BATCH, _TIME, _INPUT),)
    return tuple(jax.random.normal(k, shape, dtype) for k, shape in zip(keys, shapes, strict=True))


# Compiled once per process and shape (each canary's arrays in one program, and the same
# gradient program for the mapped comparison and the finite difference).
_loss = jax.jit(_lstm_loss)
_gradient = jax.jit(jax.grad(_lstm_loss))
_mapped_gradient = jax.jit(jax.vmap(jax.grad(_lstm_loss), in_axes=(0, None)))


@jax.jit
def _direction(member):
    keys = jax.random.split(jax.random.key(2), 3)
    return tuple(jax.random.normal(k, p.shape, p.dtype) for k, p in zip(keys, member, strict=True))


@dataclasses.dataclass(frozen=True)
class Canary:
    """One canary's outcome: the largest relative gap it measured and whether that is allowed."""

    name: str
    gap: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return bool(np.isfinite(self.gap) and self.gap <= self.tolerance)


def vmapped_gradient_gap(dtype: str) -> float:
    """max over members of ‖vmap(grad)ᵢ − grad(memberᵢ)‖_∞ / ‖grad(memberᵢ)‖_∞ for the canary
    LSTM in `dtype` ("float32" or "float64"): 0 up to rounding on a correct stack."""
    with jax.enable_x64(dtype == "float64"):
        parameters, xs = _canary_problem(jnp.dtype(dtype))
        mapped = _mapped_gradient(parameters, xs)
        gaps = []
        for member in range(_MEMBERS):
            own = _gradient(tuple(p[member] for p in parameters), xs)
            for m, o in zip(jax.tree.leaves(mapped), jax.tree.leaves(own), strict=True):
                m, o = np.asarray(m[member], float), np.asarray(o, float)
                gaps.append(np.max(np.abs(m - o)) / max(np.max(np.abs(o)), np.finfo(float).tiny))
    return float(max(gaps))


def finite_difference_gap() -> float:
    """Relative gap between member 0's float64 `jax.grad` along a random direction and the central
    finite difference of the loss along it (step 1e-5)."""
    with jax.enable_x64(True):
        parameters, xs = _canary_problem(jnp.float64)
        member = tuple(p[0] for p in parameters)
        direction = _direction(member)
        grad = _gradient(member, xs)
        analytic = sum(float(jnp.vdot(g, d)) for g, d in zip(grad, direction, strict=True))
        step = 1e-5
        shifted = [
            float(_loss(tuple(p + sign * d for p, d in zip(member, direction, strict=True)), xs))
            for sign in (step, -step)
        ]
    numeric = (shifted[0] - shifted[1]) / (2 * step)
    return abs(analytic - numeric) / max(abs(numeric), 1.0)


@functools.cache
def run_canaries() -> tuple[Canary, ...]:
    """The canaries (seconds, compiled once per process): mapped against per-member gradients in
    float64 and float32, and the per-member gradient against finite differences."""
    return (
        Canary("vmap(grad) = grad per member, float64", vmapped_gradient_gap("float64"), 1e-12),
        Canary("vmap(grad) = grad per member, float32", vmapped_gradient_gap("float32"), 1e-5),
        Canary(
            "grad = central finite difference, float64",
            finite_difference_gap(),
            _FINITE_DIFFERENCE_TOLERANCE,
        ),
    )


def _xla_flags() -> str:
    return os.environ.get("XLA_FLAGS", "")


def stack_verdict(canaries: tuple[Canary, ...] | None = None) -> dict[str, Any]:
    """What a record stores about its stack: `ok`, each canary's gap, the XLA flags in force and
    the workaround's and the host devices' decisions (`memdyn._xla`), and the processor."""
    canaries = run_canaries() if canaries is None else canaries
    cpu = _xla.processor()
    return {
        "ok": all(c.ok for c in canaries),
        "canaries": {
            c.name: {"gap": c.gap, "tolerance": c.tolerance, "ok": c.ok} for c in canaries
        },
        "xla_flags": _xla_flags(),
        "xla_workaround": dataclasses.asdict(_xla.WORKAROUND),
        "host_devices": dataclasses.asdict(_xla.HOST_DEVICES),
        "cpu": dataclasses.asdict(cpu),
    }


FIX = (
    f"Fix: run with XLA_FLAGS={_xla.FLAG}. memdyn adds it itself on AVX-512 processors when it is "
    "imported before JAX computes anything, unless MEMDYN_XLA_WORKAROUND=0 is set or XLA_FLAGS "
    "already choose --xla_cpu_max_isa or --xla_cpu_use_fusion_emitters; otherwise start Python "
    "with it. See the README, 'Tested stack'."
)


@dataclasses.dataclass(frozen=True)
class Diagnosis:
    """`doctor`'s report: the environment and the canaries; `str()` is the text it prints."""

    versions: dict[str, str | None]
    python: str
    platform: str
    backend: str
    devices: tuple[str, ...]
    x64_default: bool
    settings: dict[str, str | None]
    verdict: dict[str, Any]

    @property
    def ok(self) -> bool:
        return bool(self.verdict["ok"])

    def __str__(self) -> str:
        cpu = self.verdict["cpu"]
        avx512 = {True: "yes", False: "no", None: "unknown"}[cpu["avx512"]]
        workaround = self.verdict["xla_workaround"]
        lines = [
            f"memdyn {self.versions['memdyn']} on Python {self.python}, {self.platform}",
            "versions: "
            + ", ".join(f"{name} {version}" for name, version in self.versions.items() if version),
            f"backend: {self.backend}; devices: {', '.join(self.devices)}",
            f"cpu: {cpu['model']} ({cpu['machine']}), AVX-512: {avx512}",
            f"XLA_FLAGS: {self.verdict['xla_flags'] or '(none)'}",
            f"memdyn's XLA workaround: {workaround['reason']}",
            f"memdyn's host devices: {self.verdict['host_devices']['reason']}",
            f"float64 by default (jax_enable_x64): {self.x64_default}",
            "settings: " + ", ".join(f"{k}={v}" for k, v in self.settings.items() if v is not None),
            "canaries:",
        ]
        for name, canary in self.verdict["canaries"].items():
            mark = "ok" if canary["ok"] else "WRONG"
            lines.append(
                f"  {mark:5s} {name}: relative gap {canary['gap']:.3g} "
                f"(allowed {canary['tolerance']:.0e})"
            )
        if self.ok:
            lines.append("ok: this stack computes memdyn's mapped gradients correctly")
        else:
            wrong = [n for n, c in self.verdict["canaries"].items() if not c["ok"]]
            lines.append(f"WRONG: {'; '.join(wrong)} fails on this stack. {FIX}")
        return "\n".join(lines)


def doctor(canaries: tuple[Canary, ...] | None = None) -> Diagnosis:
    """Check the stack memdyn runs on, as `jax.print_environment_info()` and
    `torch.utils.collect_env` describe theirs, and run the canaries.

    `print(memdyn.doctor())` shows versions, devices, XLA flags, the processor, float64's
    default and memdyn's settings, each canary's gap, then "ok" or what is wrong and the fix;
    `.ok` is the verdict.

    Args:
        canaries: outcomes to report instead of running the canaries (to show a report);
            `None` runs them (once per process).

    Returns:
        The `Diagnosis`; `str()` of it is the report.
    """
    return Diagnosis(
        versions=versions(),
        python=platform.python_version(),
        platform=platform.platform(),
        backend=jax.default_backend(),
        devices=tuple(str(d) for d in jax.devices()),
        x64_default=bool(jax.config.read("jax_enable_x64")),
        settings={name: os.environ.get(name) for name in SETTINGS},
        verdict=stack_verdict(canaries),
    )
