"""Hessian spectra at scale: dense `eigh`, HVP-Lanczos and SLQ against a PyTorch double backward.

The loss is the mean cross-entropy of an LSTM classifier (`decaynet.SequenceClassifier` with
`LSTMCell`, PyTorch's initialisation) on one fixed batch of random MNIST-shaped inputs (28 rows of
28 pixels) and random labels; its width sets the parameter count n (10² … 10⁶). Per width, JAX
times, each compiled once with `eqx.filter_jit` (compile time apart) and timed until ready:

- `hvp`: one Hessian-vector product, `memdyn.hessian_matvec` (forward-over-reverse, the package's
  default; `jax`) and reverse-over-reverse on the same vector loss (`jax_rr`);
- `dense`: `memdyn.hessian` and a full `eigh`, only while n ≤ `Config.dense_cap`;
- `lanczos`: `memdyn.hessian_extremes` at `Config.lanczos_steps` HVPs;
- `slq`: `memdyn.hessian_spectral_density`, `Config.slq_steps` Lanczos steps, one probe.

The PyTorch peer, measured in the same run, is the same classifier (`torch.nn.LSTM` and
`torch.nn.Linear` holding the JAX weights; the LSTM's second bias is a constant zero, so both
differentiate the same n parameters) with HVPs by double backward as PyHessian computes them:
`g = autograd.grad(loss, params, create_graph=True)`, then `autograd.grad(g · v, params)`. `torch`
in `hvp` is one whole HVP (forward, both backward passes); `torch_r` is PyHessian's per-step cost,
the second backward alone on a retained graph. The torch SLQ builds the graph once and runs the
same Lanczos as `memdyn.lanczos_tridiagonal` line for line (same steps, the same full
re-orthogonalisation `w − Bᵀ(B w)` against the whole k × n basis with Kahan–Parlett's second pass,
the same breakdown restart) from the same start vector, then `eigh` of the tridiagonal.

Peak memory: for JAX, XLA's buffer assignment of the compiled executable (`memory_analysis()` of
`eqx.filter_jit(f).lower(...).compile()`: arguments + outputs + temporaries − aliases),
and for every implementation the resident-set peak of one steady-state call over the resident set
before it (Linux `VmHWM`, reset through `/proc/self/clear_refs`). Run with
`python -m benchmarks --only spectra`; it also draws `spectra.png` next to the JSON. On a shared
CPU pass `--torch-threads 1`: PyTorch's OpenMP barriers wait on descheduled threads (the thread
counts are recorded either way).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray

import memdyn
from benchmarks.peers import import_torch, strict_float32, torch_device, torch_wait
from benchmarks.timing import Timing, compare, measure
from decaynet import LSTMCell, PyTorchInit, SequenceClassifier, parameter_count
from memdyn.internal import check_fields, check_positive
from memlab import save_figure

# Float32 through 28 recurrent steps: the two HVPs differ by ~1e-6 of their largest entry.
LOSS_TOLERANCE = 1e-5
HVP_TOLERANCE = 1e-4
"""Largest |HVP_torch − HVP_jax| allowed, relative to the largest |HVP_jax| entry."""
RITZ_TOLERANCE = 1e-3
"""Largest relative difference of the two SLQs' largest Ritz values (converged after 90 steps;
the interior nodes of two float32 Lanczos runs drift apart and are not compared)."""
SLQ_TARGET_S = 60.0
SLQ_TARGET_PARAMETERS = 10**6
RATIO_TARGET = 2.0
PEAK_MEMORY_NOTE = (
    "xla_bytes: the compiled executable's memory_analysis() (argument + output + temp - alias "
    "bytes; JAX only); rss_peak_delta_bytes: peak resident set (VmHWM, reset via "
    "/proc/self/clear_refs) during one steady-state call minus the resident set before it, for "
    "JAX and PyTorch alike (memory an allocator already holds from earlier calls is not counted)"
)


@dataclasses.dataclass(frozen=True)
class Config:
    """LSTM widths (n = 4H(28 + H) + 4H + 10H + 10: 140, 1088, 9730, 101098, 1002020), steady-state
    repeats per width (one at 10⁶: a torch SLQ there takes minutes), the batch, Lanczos steps and
    the dense cap (n ≤ 2000: the n-tangent `jax.hessian` of n = 1088 already needs ~0.3 GB and
    seconds); `quick()`: n ≤ 10⁴.
    """

    hidden_sizes: tuple[int, ...] = (1, 7, 36, 144, 485)
    repeats: tuple[int, ...] = (3, 3, 3, 2, 1)
    batch: int = 16
    sequence_length: int = 28
    input_size: int = 28
    num_classes: int = 10
    slq_steps: int = 90
    num_probes: int = 1
    lanczos_steps: int = 30
    dense_cap: int = 2000
    seed: int = 0

    def __post_init__(self):
        check_fields(self)
        if not self.hidden_sizes or len(self.repeats) != len(self.hidden_sizes):
            raise ValueError("hidden_sizes must be non-empty and repeats must match it in length")
        for size, repeats in zip(self.hidden_sizes, self.repeats, strict=True):
            check_positive("hidden_size", size)
            check_positive("repeats", repeats)
        for field in ("batch", "sequence_length", "input_size", "num_classes", "num_probes"):
            check_positive(field, getattr(self, field))
        for field in ("slq_steps", "lanczos_steps", "dense_cap"):
            check_positive(field, getattr(self, field))
        smallest = min(self.parameters(h) for h in self.hidden_sizes)
        if max(self.slq_steps, self.lanczos_steps) > smallest:
            raise ValueError(f"Lanczos steps must be <= the smallest n = {smallest}")

    def parameters(self, hidden_size: int) -> int:
        return parameter_count(self.input_size, hidden_size, self.num_classes)

    def quick(self) -> Config:
        return dataclasses.replace(self, hidden_sizes=(1, 7, 36), repeats=(2, 2, 2))


class CrossEntropy(eqx.Module):
    """Mean cross-entropy of a `SequenceClassifier` on a fixed batch (a pytree loss: its arrays
    are traced, so one compilation serves every call)."""

    xs: Float[Array, "batch time features"]
    labels: Int[Array, " batch"]
    state: eqx.nn.State

    def __call__(self, model: SequenceClassifier) -> Float[Array, ""]:
        logits, _ = model(self.xs, self.state)
        log_probabilities = jax.nn.log_softmax(logits)
        return -jnp.mean(jnp.take_along_axis(log_probabilities, self.labels[:, None], axis=1))


# --- peak memory -------------------------------------------------------------------------------


def _status_kib(field: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) if match else None


def _reset_peak_rss() -> int | None:
    """Reset the resident-set peak to the current resident set; that resident set in bytes."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return None
    rss = _status_kib("VmRSS")
    return None if rss is None else 1024 * rss


class _Tracked:
    """`call`, keeping its latest result (`last`, so checks reuse the timed runs' outputs) and
    storing the resident-set peak of its second invocation (the first steady-state one under
    `measure`) in `memory["rss_peak_delta_bytes"]` (`None` off Linux)."""

    def __init__(self, call: Callable[[], Any], wait: Callable[[Any], Any], memory: dict):
        self.call, self.wait, self.memory = call, wait, memory
        self.count = 0
        self.last = None

    def __call__(self):
        self.count += 1
        if self.count != 2:
            self.last = self.call()
            return self.last
        before = _reset_peak_rss()
        self.last = self.call()
        self.wait(self.last)
        peak = _status_kib("VmHWM")
        self.memory["rss_peak_delta_bytes"] = (
            None if before is None or peak is None else max(0, 1024 * peak - before)
        )
        return self.last


def _xla_bytes(compiled: Any) -> int | None:
    stats = compiled.compiled.memory_analysis()  # eqx.filter_jit wraps jax.stages.Compiled
    if stats is None:
        return None
    return int(
        stats.argument_size_in_bytes
        + stats.output_size_in_bytes
        + stats.temp_size_in_bytes
        - stats.alias_size_in_bytes
    )


def _time_jax(function, args, repeats: int) -> tuple[Timing, dict[str, Any], Any]:
    """Time `function(*args)` (an `eqx.filter_jit`: the first call compiles); its memory and its
    last result."""
    memory: dict[str, Any] = {}
    call = _Tracked(lambda: function(*args), jax.block_until_ready, memory)
    timing = measure(call, repeats=repeats)
    memory["xla_bytes"] = _xla_bytes(function.lower(*args).compile())  # cached compilation
    return timing, memory, call.last


def _time_torch(call, wait, repeats: int) -> tuple[Timing, dict[str, Any], Any]:
    memory: dict[str, Any] = {}
    tracked = _Tracked(call, wait, memory)
    return measure(tracked, repeats=repeats, wait=wait), memory, tracked.last


# --- the PyTorch peer --------------------------------------------------------------------------


class TorchClassifier:
    """`torch.nn.LSTM` + `torch.nn.Linear` with a JAX classifier's weights, its loss on the same
    batch, and HVPs on the flat parameter vector (in `memdyn.parameter_vector`'s order)."""

    def __init__(self, torch: ModuleType, model: SequenceClassifier, loss: CrossEntropy):
        self.torch = torch
        self.device = device = torch_device(torch)
        cell = model.cell
        hidden = cell.hidden_size
        self.lstm = torch.nn.LSTM(cell.input_size, hidden, batch_first=True).to(device)
        self.head = torch.nn.Linear(hidden, model.head.weight.shape[0]).to(device)
        lstm = self.lstm

        def tensor(array):
            return torch.tensor(np.asarray(array), device=device)

        with torch.no_grad():
            lstm.weight_ih_l0.copy_(tensor(cell.weight_input))
            lstm.weight_hh_l0.copy_(tensor(cell.weight_recurrent))
            lstm.bias_ih_l0.copy_(tensor(cell.bias))
            lstm.bias_hh_l0.zero_()
            self.head.weight.copy_(tensor(model.head.weight))
            self.head.bias.copy_(tensor(model.head.bias))
        lstm.bias_hh_l0.requires_grad_(False)  # a constant: ours is the sum of the two biases
        self.params = [
            lstm.weight_ih_l0,
            lstm.weight_hh_l0,
            lstm.bias_ih_l0,
            self.head.weight,
            self.head.bias,
        ]
        leaves = jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))
        shapes = [tuple(leaf.shape) for leaf in leaves]
        if shapes != [tuple(p.shape) for p in self.params]:
            raise ValueError(f"parameter order differs from the JAX model's {shapes}")
        self.sizes = [p.numel() for p in self.params]
        self.xs = tensor(loss.xs)
        self.labels = torch.tensor(np.asarray(loss.labels), dtype=torch.long, device=device)

    def loss(self):
        logits = self.head(self.lstm(self.xs)[0][:, -1])
        return self.torch.nn.functional.cross_entropy(logits, self.labels)

    def gradient_graph(self):
        """g = ∇J with its graph kept (`create_graph=True`), for double backward."""
        return self.torch.autograd.grad(self.loss(), self.params, create_graph=True)

    def matvec(self, gradient, retain: bool) -> Callable[[Any], Any]:
        """v ↦ ∇(g · v) on the flat vector: PyHessian's Hessian-vector product."""
        torch = self.torch

        def product(vector):
            pieces = torch.split(vector, self.sizes)
            dot = sum(torch.sum(g * v.view_as(g)) for g, v in zip(gradient, pieces, strict=True))
            hv = torch.autograd.grad(dot, self.params, retain_graph=retain)
            return torch.cat([h.reshape(-1) for h in hv])

        return product

    def hvp(self, vector):
        """One whole HVP: forward, gradient with its graph, gradient of g · v."""
        return self.matvec(self.gradient_graph(), retain=False)(vector)


def torch_lanczos(torch: ModuleType, matvec, start, num_iter: int):
    """`memdyn.lanczos_tridiagonal` in PyTorch, step for step: α, β (k each) and the basis."""
    n = start.numel()
    dtype = start.dtype
    tiny = 100 * torch.finfo(dtype).eps
    basis = torch.zeros(num_iter, n, dtype=dtype, device=start.device)
    alphas = torch.zeros(num_iter, dtype=dtype)
    betas = torch.zeros(num_iter, dtype=dtype)

    def project_out(w):
        return w - basis.T @ (basis @ w)

    q = start / torch.linalg.norm(start)
    q_prev = torch.zeros_like(q)
    beta_prev = 0.0
    scale = 0.0
    for i in range(num_iter):
        basis[i] = q
        w = matvec(q)
        alpha = torch.dot(q, w)
        w = w - alpha * q - beta_prev * q_prev
        once = project_out(w)
        if torch.linalg.norm(once) < math.sqrt(0.5) * torch.linalg.norm(w):
            once = project_out(once)
        w = once
        beta = torch.linalg.norm(w).item()
        scale = max(scale, abs(alpha.item()), beta)
        if not beta > tiny * scale:  # breakdown: restart from the least covered coordinate
            j = int(torch.argmin(torch.sum(basis**2, dim=0)))
            unit = torch.zeros(n, dtype=dtype, device=start.device)
            unit[j] = 1
            w = project_out(unit - basis.T @ basis[:, j])
            beta = 0.0
        norm = torch.linalg.norm(w)
        q_prev, q = q, w / (norm if norm > 0 else 1)
        alphas[i], betas[i] = alpha.item(), beta
        beta_prev = beta
    return alphas, betas, basis


def torch_slq(torch: ModuleType, peer: TorchClassifier, start, num_iter: int):
    """One SLQ probe: Lanczos on PyHessian's HVP (graph built once), `eigh` of T: nodes, weights."""
    matvec = peer.matvec(peer.gradient_graph(), retain=True)
    alphas, betas, _ = torch_lanczos(torch, matvec, start, num_iter)
    off = betas[:-1]
    tridiagonal = torch.diag(alphas) + torch.diag(off, 1) + torch.diag(off, -1)
    values, vectors = torch.linalg.eigh(tridiagonal)
    return values, vectors[0] ** 2


# --- the JAX side ------------------------------------------------------------------------------


@eqx.filter_jit
def _hvp(loss: CrossEntropy, model: SequenceClassifier, vector: Float[Array, " n"]):
    return memdyn.hessian_matvec(loss, model)(vector)


@eqx.filter_jit
def _hvp_reverse_over_reverse(loss: CrossEntropy, model: SequenceClassifier, vector):
    flat, rebuild = memdyn.parameter_vector(model)
    gradient = jax.grad(lambda p: loss(rebuild(p)))
    return jax.grad(lambda p: jnp.vdot(gradient(p), vector))(flat)


@eqx.filter_jit
def _dense(loss: CrossEntropy, model: SequenceClassifier):
    return jnp.linalg.eigh(memdyn.hessian(loss, model))


# Step and probe counts are Python ints: `eqx.filter_jit` treats them as static.
@eqx.filter_jit
def _extremes(loss: CrossEntropy, model: SequenceClassifier, key: PRNGKeyArray, steps: int):
    return memdyn.hessian_extremes(loss, model, steps, key=key)


@eqx.filter_jit
def _slq(loss: CrossEntropy, model, key: PRNGKeyArray, steps: int, probes: int):
    return memdyn.hessian_spectral_density(loss, model, num_iter=steps, num_probes=probes, key=key)


def _problem(config: Config, hidden_size: int, key: PRNGKeyArray):
    model_key, data_key, label_key = jax.random.split(key, 3)
    model, state = eqx.nn.make_with_state(SequenceClassifier)(
        cell=LSTMCell,
        input_size=config.input_size,
        hidden_size=hidden_size,
        num_classes=config.num_classes,
        sequence_length=config.sequence_length,
        init=PyTorchInit(),
        key=model_key,
    )
    shape = (config.batch, config.sequence_length, config.input_size)
    xs = jax.random.normal(data_key, shape, jnp.float32)
    labels = jax.random.randint(label_key, (config.batch,), 0, config.num_classes)
    return model, CrossEntropy(xs, labels, state)


def _case(name: str, method: str, shape: dict[str, Any], timings, memory, **extra):
    case = {"case": name, "method": method, "shape": shape, "dtype": "float32"}
    case.update(compare(timings), peak_memory=memory, **extra)
    return case


def _megabytes(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 2**20:.0f} MB"


def _summarise(case: dict[str, Any]) -> str:
    memory = ", ".join(
        f"{name} RSS +{_megabytes(m.get('rss_peak_delta_bytes'))}"
        + (f" XLA {_megabytes(m['xla_bytes'])}" if "xla_bytes" in m else "")
        for name, m in case["peak_memory"].items()
    )
    text = f"n={case['shape']['parameters']}; peak {memory}"
    if "per_hvp_s" in case:
        text += "; per HVP " + ", ".join(
            f"{k} {v * 1e3:.1f} ms" for k, v in case["per_hvp_s"].items()
        )
    if "agreement" in case:
        verdict = "agree" if case["agreement"]["within_tolerance"] else "MISMATCH"
        text += f"; torch vs jax {verdict}"
    return text


def measure_width(config: Config, hidden_size: int, repeats: int, key: PRNGKeyArray):
    """Every method at one width: the cases of the record (dense only while n ≤ the cap)."""
    n = config.parameters(hidden_size)
    shape = {
        "hidden_size": hidden_size,
        "parameters": n,
        "batch": config.batch,
        "time": config.sequence_length,
        "input_size": config.input_size,
        "num_classes": config.num_classes,
    }
    problem_key, vector_key, probe_key = jax.random.split(key, 3)
    model, loss = _problem(config, hidden_size, problem_key)
    flat, _ = memdyn.parameter_vector(model)
    if flat.shape != (n,):
        raise ValueError(f"the classifier has {flat.shape[0]} parameters, expected {n}")
    vector = jax.random.normal(vector_key, (n,), jnp.float32)
    torch, reason = import_torch()
    peer = None if torch is None else TorchClassifier(torch, model, loss)
    cases = []

    # One HVP, both ways in JAX, whole and retained-graph in PyTorch.
    timings: dict[str, Timing | str] = {}
    memory: dict[str, Any] = {}
    timings["jax"], memory["jax"], expected = _time_jax(_hvp, (loss, model, vector), repeats)
    timings["jax_rr"], memory["jax_rr"], reverse = _time_jax(
        _hvp_reverse_over_reverse, (loss, model, vector), repeats
    )
    agreement = None
    if peer is None:
        timings["torch"] = timings["torch_r"] = reason
    else:
        wait = torch_wait(torch, peer.device)
        v = torch.tensor(np.asarray(vector), device=peer.device)
        timings["torch"], memory["torch"], got = _time_torch(lambda: peer.hvp(v), wait, repeats)
        retained = peer.matvec(peer.gradient_graph(), retain=True)
        timings["torch_r"], memory["torch_r"], _ = _time_torch(lambda: retained(v), wait, repeats)
        del retained
        expected, reverse, got = np.asarray(expected), np.asarray(reverse), got.cpu().numpy()
        scale = float(np.max(np.abs(expected)))
        loss_diff = abs(peer.loss().item() - float(loss(model)))
        hvp_diff = float(np.max(np.abs(got - expected)))
        agreement = {
            "max_abs_diff_loss": loss_diff,
            "max_abs_diff_hvp": hvp_diff,
            "hvp_scale": scale,
            "max_abs_diff_hvp_jax_rr": float(np.max(np.abs(reverse - expected))),
            "loss_tolerance": LOSS_TOLERANCE,
            "hvp_tolerance_relative": HVP_TOLERANCE,
            "within_tolerance": loss_diff <= LOSS_TOLERANCE and hvp_diff <= HVP_TOLERANCE * scale,
        }
    extra = {} if agreement is None else {"agreement": agreement}
    cases.append(_case(f"hvp n={n}", "hvp", shape, timings, memory, **extra))

    # Dense Hessian and eigh, JAX only, below the cap.
    top = {}
    if n <= config.dense_cap:
        timing, dense_memory, (eigenvalues, _) = _time_jax(_dense, (loss, model), repeats)
        top["dense"] = float(eigenvalues[-1])
        cases.append(_case(f"dense n={n}", "dense", shape, {"jax": timing}, {"jax": dense_memory}))

    # Lanczos extremes, JAX only (the torch Lanczos is timed under slq, at its steps).
    args = (loss, model, probe_key, config.lanczos_steps)
    timing, lanczos_memory, ritz = _time_jax(_extremes, args, repeats)
    top["lanczos"] = float(ritz[-1])
    cases.append(
        _case(
            f"lanczos{config.lanczos_steps} n={n}",
            "lanczos",
            shape,
            {"jax": timing},
            {"jax": lanczos_memory},
            steps=config.lanczos_steps,
            per_hvp_s={"jax": timing.median_s / config.lanczos_steps},
        )
    )

    # SLQ, JAX and the same Lanczos in PyTorch from the same start.
    args = (loss, model, probe_key, config.slq_steps, config.num_probes)
    timings, memory = {}, {}
    timings["jax"], memory["jax"], density = _time_jax(_slq, args, repeats)
    top["slq"] = float(jnp.max(density.nodes))
    slq_extra: dict[str, Any] = {"steps": config.slq_steps, "probes": config.num_probes}
    if peer is None:
        timings["torch"] = reason
    else:
        if config.num_probes != 1:
            raise ValueError("the PyTorch SLQ peer runs one probe; set num_probes=1")
        start_key = jax.random.split(probe_key, 1)[0]  # spectral_density's first probe
        start = torch.tensor(np.asarray(jax.random.normal(start_key, (n,), jnp.float32)))
        timings["torch"], memory["torch"], (nodes, weights) = _time_torch(
            lambda: torch_slq(torch, peer, start, config.slq_steps), wait, repeats
        )
        jax_nodes = np.asarray(density.nodes[0])
        ritz_diff = abs(float(nodes[-1]) - float(jax_nodes[-1])) / abs(float(jax_nodes[-1]))
        slq_extra["agreement"] = {
            "jax_ritz_extremes": [float(jax_nodes[0]), float(jax_nodes[-1])],
            "torch_ritz_extremes": [float(nodes[0]), float(nodes[-1])],
            "relative_diff_largest_ritz_value": ritz_diff,
            "abs_diff_moment_2": abs(
                float(torch.sum(weights * nodes**2)) - float(density.moment(2)[()])
            ),
            "ritz_tolerance_relative": RITZ_TOLERANCE,
            "within_tolerance": ritz_diff <= RITZ_TOLERANCE,
        }
    per_hvp = {
        k: t.median_s / config.slq_steps for k, t in timings.items() if isinstance(t, Timing)
    }
    slq_extra["per_hvp_s"] = per_hvp
    slq_extra["largest_eigenvalue_estimates"] = top
    cases.append(_case(f"slq n={n}", "slq", shape, timings, memory, **slq_extra))
    for case in cases:
        case["summary"] = _summarise(case)
    return cases


def targets(cases: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's targets against the largest SLQ case: under 60 s at 10⁶ parameters, and the
    PyTorch peer at least 2× slower (at every size, and at the largest)."""
    slq = [case for case in cases if case["method"] == "slq"]
    largest = max(slq, key=lambda case: case["shape"]["parameters"])
    seconds = largest["implementations"]["jax"]["median_s"]
    ratios = {case["shape"]["parameters"]: case["median_ratio"].get("torch") for case in slq}
    big_enough = largest["shape"]["parameters"] >= SLQ_TARGET_PARAMETERS
    return {
        "slq_seconds": {
            "target": f"SLQ ({largest['steps']} steps, {largest['probes']} probe) of a "
            f">= {SLQ_TARGET_PARAMETERS}-parameter loss in < {SLQ_TARGET_S} s",
            "parameters": largest["shape"]["parameters"],
            "jax_median_s": seconds,
            "met": bool(big_enough and seconds < SLQ_TARGET_S),
        },
        "torch_ratio": {
            "target": f"torch SLQ median / jax SLQ median >= {RATIO_TARGET} at equal steps, size",
            "ratio_by_parameters": ratios,
            "met_at_largest": (ratios[largest["shape"]["parameters"]] or 0) >= RATIO_TARGET,
            "met_at_every_size": all((r or 0) >= RATIO_TARGET for r in ratios.values()),
        },
    }


def run(config: Config) -> dict[str, Any]:
    """Every width, each with its key folded from the seed; the targets; how memory is measured."""
    key = jax.random.key(config.seed)
    cases = []
    with strict_float32():
        for index, (size, repeats) in enumerate(
            zip(config.hidden_sizes, config.repeats, strict=True)
        ):
            cases += measure_width(config, size, repeats, jax.random.fold_in(key, index))
    return {
        "cases": cases,
        "dense_cap_parameters": config.dense_cap,
        "peak_memory_note": PEAK_MEMORY_NOTE,
        "targets": targets(cases),
    }


def plot(record: dict[str, Any], out_dir: str | Path) -> Path:
    """`out_dir/spectra.png`: median time against n (log-log) per method and implementation,
    and the PyTorch peer's median over JAX's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (times, ratios) = plt.subplots(1, 2, figsize=(12, 4.5))
    series: dict[tuple[str, str], list[tuple[int, float]]] = {}
    ratio_series: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for case in record["cases"]:
        n = case["shape"]["parameters"]
        for name, timing in case["implementations"].items():
            if "skipped" not in timing:
                series.setdefault((case["method"], name), []).append((n, timing["median_s"]))
        for name, ratio in case["median_ratio"].items():
            ratio_series.setdefault((case["method"], name), []).append((n, ratio))
    for (method, name), points in sorted(series.items()):
        style = "-o" if name == "jax" else "--s" if name.startswith("torch") else ":^"
        times.plot(*zip(*points, strict=True), style, label=f"{method} {name}")
    times.axhline(SLQ_TARGET_S, color="grey", lw=0.8, ls=":", label=f"{SLQ_TARGET_S:.0f} s target")
    times.set(xscale="log", yscale="log", xlabel="parameters n", ylabel="median time (s)")
    times.set_title("Hessian spectra of an LSTM classifier")
    times.legend(fontsize=7, ncol=2)
    for (method, name), points in sorted(ratio_series.items()):
        ratios.plot(*zip(*points, strict=True), "-o", label=f"{method}: {name} / jax")
    ratios.axhline(1, color="grey", lw=0.8)
    ratios.axhline(RATIO_TARGET, color="grey", lw=0.8, ls=":", label=f"{RATIO_TARGET:g}x target")
    ratios.set(xscale="log", yscale="log", xlabel="parameters n", ylabel="median / jax median")
    load = ", ".join(f"{x:.1f}" for x in record["environment"]["load_average_1_5_15_min"])
    threads = record["environment"]["torch"].get("num_threads")
    ratios.set_title(
        f"peer / JAX (load average before the run {load}; torch threads {threads})", fontsize=9
    )
    ratios.legend(fontsize=7)
    return save_figure(fig, Path(out_dir) / "spectra.png")


if __name__ == "__main__":
    from benchmarks.cli import main

    raise SystemExit(main(only=("spectra",)))
