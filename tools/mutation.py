"""A small AST mutation runner for memdyn's numerical core (`make mutation`; not part of CI).

Why not mutmut: mutmut 3 runs the tests once in its parent and forks a child per mutant; JAX's
`jit` caches inherited by those children hold traces of the *original* code, so a mutant inside a
jitted function survives falsely. Here the parent imports only third-party libraries (no project
module, no computation, no XLA backend), writes one mutant to disk, and forks a child that imports
the project afresh and runs that module's tests with `pytest -x`; a child that runs past the
timeout is killed and counted as killed (timeout). Bytecode caching is off so a mutant of the same
size written within the same second cannot be shadowed by a stale `.pyc`.

Mutation operators (one mutant per site): arithmetic `+ - * / // % **` swapped, comparisons
`< <= > >= == != in is` weakened or negated, `and`/`or` swapped, unary `-`/`not` dropped, numeric
constants `n -> n + 1`, `True`/`False` swapped, `return x -> return None`. Not mutated: docstrings,
other strings, annotations, decorators and everything inside a `raise` statement (error messages).

    python tools/mutation.py --root /tmp/snapshot [--module curse/_losses.py] [--out FILE]
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import random
import shutil
import signal
import sys
import time
from pathlib import Path

# Module -> its own test selection, fastest and most discriminating first (pytest -x stops at the
# first failure). Files named here that do not exist in the tree under test are left out.
SELECTIONS = {
    "curse/_losses.py": [
        "tests/curse/test_losses.py::test_white_noise_loss_equals_quadrature",
        "tests/curse/test_losses.py::test_gradient_eq19_matches_autodiff_and_finite_differences",
        "tests/curse/test_losses.py::test_loss_vanishes_at_exact_exponential_fit",
        "tests/curse/test_losses.py::test_lyapunov_loss_reduces_to_diagonal_loss",
        "tests/curse/test_losses.py::test_lyapunov_model_norm_equals_expm_quadrature",
        "tests/curse/test_losses.py::test_bad_input_raises_a_clear_error",
        "tests/curse/test_losses_exact.py",
    ],
    "memdyn/_plateau.py": ["tests/curse/test_plateau.py", "tests/memdyn/test_plateau_exact.py"],
    "decaynet/_cells.py": [
        "tests/decaynet/test_cells.py::test_forget_polar_activation_piecewise",
        "tests/decaynet/test_cells.py::test_forget_gate_starts_at_one_and_decrements_exactly",
        "tests/decaynet/test_cells.py::test_scan_equals_the_step_looped_in_python",
        "tests/decaynet/test_cells.py::test_decay_cell_has_exactly_the_lstm_parameters",
        "tests/decaynet/test_cells.py::test_initialisations",
        "tests/decaynet/test_cells.py::test_clipped_decrement_forget_gate_never_increases",
        "tests/decaynet/test_cells.py::test_paper_decrement_monotone_for_preactivations_in_range",
        "tests/decaynet/test_cells.py::test_bad_arguments_raise_named_errors",
    ],
    "decaynet/_normalisation.py": [
        "tests/decaynet/test_normalisation.py",
        "tests/decaynet/test_batchnorm.py::test_initial_scales",
        "tests/decaynet/test_batchnorm.py::test_bad_momentum",
        "tests/decaynet/test_batchnorm.py::test_training_mode_uses_batch_statistics",
        "tests/decaynet/test_batchnorm.py::test_eval_mode_uses_running_statistics",
    ],
    "memdyn/_checkpoint.py": [
        "tests/memlab/test_records.py",
        "tests/memlab/test_integrity.py",
    ],
    "memdyn/_epochs.py": [
        "tests/decaynet/test_train.py::test_bad_inputs",
        "tests/decaynet/test_train.py::test_vmapped_seeds_equal_seeds_trained_one_by_one",
        "tests/decaynet/test_train.py::test_resume_from_checkpoint_is_bitwise_identical",
        "tests/decaynet/test_train.py::test_checkpoints_keep_their_cadence_across_epochs",
        "tests/decaynet/test_train.py::test_stop_at_must_be_a_chunk_boundary",
        "tests/decaynet/test_train.py::test_evaluate_counts_correct_predictions_with_padding",
    ],
}

_BINARY = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
    ast.FloorDiv: ast.Div,
    ast.Mod: ast.FloorDiv,
    ast.Pow: ast.Mult,
}
_COMPARE = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
}


def _skipped(tree: ast.Module) -> set[int]:
    """ids of the nodes never mutated: docstrings, annotations, decorators, raise statements."""
    skip: set[int] = set()

    def mark(node):
        skip.update(id(n) for n in ast.walk(node))

    for node in ast.walk(tree):
        if isinstance(node, ast.Raise | ast.JoinedStr):
            mark(node)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Module):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                mark(body[0])
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            for decorator in node.decorator_list:
                mark(decorator)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns:
            mark(node.returns)
        if isinstance(node, ast.arg) and node.annotation:
            mark(node.annotation)
        if isinstance(node, ast.AnnAssign):
            mark(node.annotation)
        if isinstance(node, ast.ImportFrom | ast.Import):
            mark(node)
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            mark(node)
    return skip


def sites(tree: ast.Module) -> list[tuple[int, str]]:
    """(index in `ast.walk` order, description) of every mutation site."""
    skip = _skipped(tree)
    found = []
    for index, node in enumerate(ast.walk(tree)):
        if id(node) in skip:
            continue
        for description in _describe(node):
            found.append((index, description))
    return found


def _describe(node) -> list[str]:
    line = getattr(node, "lineno", "?")
    if isinstance(node, ast.BinOp | ast.AugAssign) and type(node.op) in _BINARY:
        new = _BINARY[type(node.op)]
        return [f"L{line}: {type(node.op).__name__} -> {new.__name__}"]
    if isinstance(node, ast.Compare):
        return [
            f"L{line}: {type(op).__name__} -> {_COMPARE[type(op)].__name__} (#{k})"
            for k, op in enumerate(node.ops)
            if type(op) in _COMPARE
        ]
    if isinstance(node, ast.BoolOp):
        swapped = "Or" if isinstance(node.op, ast.And) else "And"
        return [f"L{line}: {type(node.op).__name__} -> {swapped}"]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.Not):
        return [f"L{line}: drop unary {type(node.op).__name__}"]
    if isinstance(node, ast.Constant) and isinstance(node.value, bool):
        return [f"L{line}: {node.value} -> {not node.value}"]
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return [f"L{line}: {node.value!r} -> {node.value + 1!r}"]
    if isinstance(node, ast.Return) and node.value is not None:
        if not (isinstance(node.value, ast.Constant) and node.value.value is None):
            return [f"L{line}: return ... -> return None"]
    return []


def mutate(source: str, index: int, description: str) -> str:
    """The source with the mutation `description` applied to the `index`-th node of `ast.walk`."""
    tree = ast.parse(source)
    node = list(ast.walk(tree))[index]
    replacement = None
    if isinstance(node, ast.BinOp | ast.AugAssign):
        node.op = _BINARY[type(node.op)]()
    elif isinstance(node, ast.Compare):
        k = int(description.rsplit("#", 1)[1].rstrip(")"))
        node.ops[k] = _COMPARE[type(node.ops[k])]()
    elif isinstance(node, ast.BoolOp):
        node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
    elif isinstance(node, ast.UnaryOp):
        replacement = node.operand
    elif isinstance(node, ast.Constant) and isinstance(node.value, bool):
        node.value = not node.value
    elif isinstance(node, ast.Constant):
        node.value = node.value + 1
    elif isinstance(node, ast.Return):
        node.value = ast.Constant(None)
    if replacement is not None:
        for parent in ast.walk(tree):
            for field, value in ast.iter_fields(parent):
                if value is node:
                    setattr(parent, field, replacement)
                elif isinstance(value, list):
                    for i, item in enumerate(value):
                        if item is node:
                            value[i] = replacement
    return ast.unparse(ast.fix_missing_locations(tree)) + "\n"


def _preimport() -> None:
    """Third-party imports only, so each child skips their cost but traces nothing inherited."""
    import equinox  # noqa: F401
    import hypothesis  # noqa: F401
    import jax
    import jax.numpy  # noqa: F401
    import jaxtyping  # noqa: F401
    import numpy  # noqa: F401
    import optax  # noqa: F401
    import pytest  # noqa: F401
    import scipy.integrate  # noqa: F401
    import scipy.linalg  # noqa: F401
    import scipy.stats  # noqa: F401
    from jax._src import xla_bridge

    assert not xla_bridge._backends, "an import initialised XLA before the fork"
    del jax


def run_tests(root: Path, tests: list[str], timeout: float, log: Path) -> str:
    """'killed', 'survived' or 'timeout' for the tree as it is on disk now, in a forked child."""
    pid = os.fork()
    if pid == 0:
        try:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            import pytest

            args = ["-x", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "-W", "ignore"]
            code = pytest.main([*args, *tests])
        except BaseException:  # noqa: BLE001 - any failure in the child kills the mutant
            code = 99
        os._exit(int(code))
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return "survived" if os.waitstatus_to_exitcode(status) == 0 else "killed"
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "timeout"
        time.sleep(0.05)


def _clear_bytecode(root: Path) -> None:
    for cache in root.rglob("__pycache__"):
        shutil.rmtree(cache, ignore_errors=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="a snapshot of the repository")
    parser.add_argument("--module", action="append", help="module path(s); default: all")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per mutant")
    parser.add_argument("--out", type=Path, default=Path("results/mutation/mutation.json"))
    parser.add_argument("--list", action="store_true", help="only count the mutants")
    parser.add_argument("--sample", type=int, help="a seeded random subset of N mutants per module")
    parser.add_argument("--seed", type=int, default=0, help="seed of --sample")
    parser.add_argument("--match", help="only the mutants whose description contains this")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    sys.dont_write_bytecode = True
    os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
    os.chdir(root)
    sys.path.insert(0, str(root))
    modules = args.module or list(SELECTIONS)
    report = {"root": str(root), "timeout_s": args.timeout, "modules": {}}
    if not args.list:
        _preimport()
        _clear_bytecode(root)
    log = Path("/tmp") / f"mutation-{os.getpid()}.log"
    for module in modules:
        path = root / module
        original = path.read_text()
        tests = [t for t in SELECTIONS[module] if (root / t.split("::")[0]).exists()]
        found = sites(ast.parse(original))
        total = len(found)
        if args.match:
            found = [site for site in found if args.match in site[1]]
        if args.sample and args.sample < len(found):
            rng = random.Random(f"{args.seed}:{module}")
            found = sorted(rng.sample(found, args.sample))
        print(f"{module}: {len(found)} of {total} mutants; tests {tests}", flush=True)
        if args.list:
            continue
        results = []
        start = time.monotonic()
        try:
            path.write_text(ast.unparse(ast.parse(original)) + "\n")
            baseline = run_tests(root, tests, 10 * args.timeout, log)
            print(f"  baseline {baseline} in {time.monotonic() - start:.0f} s", flush=True)
            if baseline != "survived":
                print(f"  baseline fails ({baseline}); see {log}", flush=True)
                report["modules"][module] = {"baseline": baseline}
                continue
            for index, description in found:
                path.write_text(mutate(original, index, description))
                t0 = time.monotonic()
                outcome = run_tests(root, tests, args.timeout, log)
                results.append(
                    {
                        "mutant": description,
                        "outcome": outcome,
                        "s": round(time.monotonic() - t0, 1),
                    }
                )
                print(f"  {outcome:8s} {description}", flush=True)
        finally:
            path.write_text(original)
        killed = sum(r["outcome"] != "survived" for r in results)
        report["modules"][module] = {
            "tests": tests,
            "sites": total,
            "mutants": len(results),
            "killed": killed,
            "score": killed / len(results) if results else None,
            "seconds": round(time.monotonic() - start),
            "results": results,
        }
        print(f"  score {killed}/{len(results)}", flush=True)
    if not args.list:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
