"""What memdyn adds to `XLA_FLAGS` when it is imported, before JAX's CPU backend starts: the
XLA:CPU workaround, and one host device per core.

## The workaround

XLA:CPU in jaxlib 0.8.0 up to at least 0.10.2 miscompiles `jax.vmap(jax.grad(f))` of a
`lax.scan` recurrence on processors with AVX-512: in float64 at small odd sizes (batch 4, time 6,
hidden 5) the mapped gradients differ from the per-member ones by 0.06, while the losses agree
(issue 22; `memdyn.doctor` runs the reproduction as a canary). On an AMD EPYC with AVX2 alone the
same program is exact. Capping XLA's code generation at AVX2 (`--xla_cpu_max_isa=AVX2`) gives the
exact gradients again and, measured on an AVX-512 Xeon with memdyn's benchmarks (README, "Tested
stack"), costs less than the other workaround, turning fusion emitters off.

XLA reads `XLA_FLAGS` once, when the CPU backend starts (the first computation, not `import
jax`), so this module runs first in `memdyn/__init__.py`: `import memdyn` before any JAX
computation and the flag is in force. It only ever adds to `XLA_FLAGS`, and not at all where

- `MEMDYN_XLA_WORKAROUND=0` is set (the user's opt-out),
- the user's `XLA_FLAGS` already choose `--xla_cpu_max_isa` or `--xla_cpu_use_fusion_emitters`,
- the processor is not x86-64, or is one without AVX-512 (Linux tells by `/proc/cpuinfo`),
- jaxlib is older than 0.8, which compiles this correctly,
- or JAX's backends have already started: then the flag could no longer take effect, and a
  warning says to import memdyn first (`memdyn.doctor()` then shows whether the stack is wrong).

`WORKAROUND` records what was decided and why; `memdyn.doctor()` and every record report it.

## One host device per core
XLA:CPU offers one device, and one device runs a compiled program's loop on one core; a second
core helps only where oneDNN or Eigen split a large operation. Work split over devices uses them
all: seeds over `memdyn.sweep_mesh()`, batches over `memdyn.batch_mesh()`. So memdyn asks for as
many host devices as this process has physical cores (`--xla_force_host_platform_device_count`;
cores counted among the CPUs it may run on, so `taskset -c 0` gives one). A program on one
device runs as before: measured on this project's 2-core Xeon, one LSTM step costs the same with
one host device or two (4.4-5.2 ms either way). It leaves the count alone where

- `MEMDYN_HOST_DEVICES` is set: a number is the count to use, `0` leaves JAX's default (one),
- the user's `XLA_FLAGS` already set `--xla_force_host_platform_device_count`,
- or JAX's backends have already started.

`HOST_DEVICES` records what was decided and why.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import os
import platform
import re
import sys
import warnings

FLAG = "--xla_cpu_max_isa=AVX2"
OPT_OUT = "MEMDYN_XLA_WORKAROUND"
DEVICES_FLAG = "--xla_force_host_platform_device_count"
DEVICES = "MEMDYN_HOST_DEVICES"
# Flags with which a user has already chosen how XLA:CPU generates code: memdyn leaves them be.
_USER_CHOICES = ("--xla_cpu_max_isa", "--xla_cpu_use_fusion_emitters")
_FIRST_BAD_JAXLIB = (0, 8)


@dataclasses.dataclass(frozen=True)
class Processor:
    """The CPU that XLA:CPU compiles for: its model name, architecture and whether it has AVX-512
    (`None` where the operating system does not say)."""

    model: str
    machine: str
    avx512: bool | None


@functools.cache
def _cpuinfo() -> str | None:
    """The text of `/proc/cpuinfo` (`None` where there is none), read once per process."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def processor() -> Processor:
    """The model name and AVX-512 support of this machine's CPU (Linux: `/proc/cpuinfo`)."""
    machine = platform.machine()
    model, avx512 = platform.processor() or machine, None
    text = _cpuinfo()
    if text is None:
        return Processor(model=model, machine=machine, avx512=avx512)
    name = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    flags = re.search(r"^flags\s*:\s*(.+)$", text, re.MULTILINE)
    if name:
        model = name.group(1).strip()
    if flags:
        avx512 = "avx512f" in flags.group(1).split()
    return Processor(model=model, machine=machine, avx512=avx512)


def _version(name: str) -> tuple[int, ...] | None:
    try:
        text = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def _backends_started() -> bool:
    """Whether JAX has already started its backends (after which XLA_FLAGS are not read again)."""
    bridge = sys.modules.get("jax._src.xla_bridge")
    if bridge is None:
        return False
    started = getattr(bridge, "backends_are_initialized", None)
    if callable(started):
        return bool(started())
    return bool(getattr(bridge, "_backends", {}))


@dataclasses.dataclass(frozen=True)
class Workaround:
    """What `apply_workaround` decided: whether memdyn added `flag` to `XLA_FLAGS`, and why."""

    applied: bool
    reason: str
    flag: str = FLAG


def decide(
    environ: dict[str, str], cpu: Processor, jaxlib: tuple[int, ...] | None, started: bool
) -> Workaround:
    """The decision of `apply_workaround`, as a pure function of what it reads."""
    flags = environ.get("XLA_FLAGS", "")
    if environ.get(OPT_OUT, "1").strip().lower() in ("0", "false", "no", "off"):
        return Workaround(False, f"{OPT_OUT}={environ[OPT_OUT]} turned it off")
    if any(choice in flags for choice in _USER_CHOICES):
        return Workaround(False, "XLA_FLAGS already choose the CPU code generation; left as set")
    if cpu.machine.lower() not in ("x86_64", "amd64"):
        return Workaround(False, f"not needed on {cpu.machine} (the bug is in x86 AVX-512 code)")
    if cpu.avx512 is False:
        return Workaround(False, "not needed: this CPU has no AVX-512")
    if jaxlib is not None and jaxlib < _FIRST_BAD_JAXLIB:
        return Workaround(False, "not needed: jaxlib < 0.8 compiles vmap(grad) correctly")
    if started:
        return Workaround(
            False,
            "JAX's backends started before memdyn was imported, so XLA_FLAGS are no longer read: "
            f"import memdyn first, or start Python with XLA_FLAGS={FLAG}",
        )
    return Workaround(True, f"added {FLAG} to XLA_FLAGS (AVX-512 CPU, jaxlib >= 0.8)")


def apply_workaround() -> Workaround:
    """Add `FLAG` to `XLA_FLAGS` where `decide` says so; warns where it is needed but too late."""
    decision = decide(dict(os.environ), processor(), _version("jaxlib"), _backends_started())
    if decision.applied:
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {FLAG}".strip()
    elif decision.reason.startswith("JAX's backends started"):
        warnings.warn(f"memdyn: {decision.reason}", RuntimeWarning, stacklevel=3)
    return decision


WORKAROUND: Workaround = apply_workaround()


def physical_cores(cpuinfo: str, allowed: set[int]) -> int:
    """The physical cores among the logical CPUs `allowed` (hyperthreads of one core count once),
    read from the text of `/proc/cpuinfo`; `len(allowed)` where it does not say."""
    cores = set()
    for block in cpuinfo.strip().split("\n\n"):
        fields = dict(
            (key.strip(), value.strip())
            for key, _, value in (line.partition(":") for line in block.splitlines())
        )
        if "processor" not in fields or "core id" not in fields:
            return len(allowed)
        if int(fields["processor"]) in allowed:
            cores.add((fields.get("physical id", "0"), fields["core id"]))
    return len(cores) or len(allowed)


@dataclasses.dataclass(frozen=True)
class HostDevices:
    """What `apply_host_devices` decided: how many host devices memdyn asked for (`None`: it left
    XLA's count alone), and why."""

    count: int | None
    reason: str


def decide_devices(environ: dict[str, str], cores: int, started: bool) -> HostDevices:
    """The decision of `apply_host_devices`, as a pure function of what it reads."""
    chosen = environ.get(DEVICES, "").strip()
    if DEVICES_FLAG in environ.get("XLA_FLAGS", ""):
        return HostDevices(None, f"XLA_FLAGS already set {DEVICES_FLAG}; left as set")
    if chosen and not (chosen.isdigit() and 0 <= int(chosen) <= 4096):
        raise ValueError(
            f"{DEVICES} must be a whole number of host devices (0: leave JAX's default); got "
            f"{chosen!r}"
        )
    if chosen == "0" or (not chosen and cores <= 1):
        why = f"{DEVICES}=0" if chosen else "one core"
        return HostDevices(None, f"{why}: JAX's default, one host device")
    count = int(chosen) if chosen else cores
    if started:
        return HostDevices(
            None,
            f"JAX's backends started before memdyn was imported: one host device, not {count}; "
            "import memdyn first",
        )
    source = f"{DEVICES}={chosen}" if chosen else f"one per physical core, {cores} cores"
    return HostDevices(count, f"{count} host devices ({source})")


def apply_host_devices() -> HostDevices:
    """Add `DEVICES_FLAG` to `XLA_FLAGS` where `decide_devices` says so."""
    cpuinfo = _cpuinfo() or ""
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    if allowed is None:
        cores = os.cpu_count() or 1
    else:
        cores = physical_cores(cpuinfo, set(allowed))
    decision = decide_devices(dict(os.environ), cores, _backends_started())
    if decision.count is not None:
        flag = f"{DEVICES_FLAG}={decision.count}"
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip()
    return decision


HOST_DEVICES: HostDevices = apply_host_devices()
