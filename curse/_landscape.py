"""Coincided critical affine spaces of the white-noise loss (Li et al., App. D, Def. D.1, Thm D.1,
Thm D.3, Prop. D.1).

Let (b, v) be a non-degenerate global minimiser of the width-k loss J_k. For a partition of
{0..m−1} into k labelled groups G_1..G_k (group j gets the rate v_j), the affine space

    {(a, w): w_i = v_j for i ∈ G_j, Σ_{i∈G_j} a_i = b_j}

of dimension m − k consists of critical points of the width-m loss J_m: ∂J/∂a_i depends on a only
through the group sums, and ∂J/∂w_i = (a_i / b_j) ∂J_k/∂v_j. Labelled partitions into k non-empty
groups are the surjections {0..m−1} → {0..k−1}: there are k!·S(m, k) of them (S = Stirling
number of the second kind). On each space the Hessian has at least m − k zero eigenvalues.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int


def stirling2(m: int, k: int) -> int:
    """S(m, k), exact Python integer, by S(n, j) = j S(n−1, j) + S(n−1, j−1)."""
    if not isinstance(m, int) or not isinstance(k, int) or m < 0 or k < 0:
        raise ValueError(f"m and k must be non-negative ints; got m={m!r}, k={k!r}")
    row = [1] + [0] * k  # S(0, j)
    for _ in range(m):
        row = [0] + [j * row[j] + row[j - 1] for j in range(1, k + 1)]
    return row[k]


def count_coincided_spaces(m: int, k: int) -> int:
    """k!·S(m, k): the number of k-coincided critical affine spaces built from one width-k
    minimiser (Thm D.1) — labelled partitions of m units into k non-empty groups."""
    return stirling2(m, k) * int(np.prod(np.arange(1, k + 1), dtype=object) if k else 1)


def labelled_partitions(m: int, k: int) -> list[tuple[int, ...]]:
    """All surjective labellings g: {0..m−1} → {0..k−1} (g[i] = group of unit i), enumerated."""
    if not isinstance(m, int) or not isinstance(k, int) or not (1 <= k <= m):
        raise ValueError(f"need ints 1 <= k <= m; got m={m!r}, k={k!r}")
    return [g for g in itertools.product(range(k), repeat=m) if len(set(g)) == k]


class CoincidedSpace(NamedTuple):
    """A point (a, w) of the space and an orthonormal basis (m − k rows, in (a, w) coordinates
    of length 2m) of its direction space."""

    a: Float[Array, " m"]
    w: Float[Array, " m"]
    basis: Float[Array, "dim twice_m"]


def coincided_space(
    b: Float[Array, " k"], v: Float[Array, " k"], groups: Int[Array, " m"] | tuple[int, ...]
) -> CoincidedSpace:
    """The k-coincided affine space of Def. D.1 for the labelling `groups` (unit i → group
    groups[i]): base point a_i = b_j/|G_j|, w_i = v_j, and the directions that move a inside each
    group with zero group sum."""
    b, v = jnp.asarray(b), jnp.asarray(v)
    groups = np.asarray(groups, dtype=int)
    if b.ndim != 1 or v.shape != b.shape:
        raise ValueError(f"b and v must be 1-d of equal length; got {b.shape}, {v.shape}")
    k, m = b.shape[0], groups.shape[0]
    if sorted(set(groups.tolist())) != list(range(k)):
        raise ValueError(f"groups must label every unit with all of 0..{k - 1}; got {groups}")
    sizes = np.bincount(groups, minlength=k)
    a = b[groups] / sizes[groups]
    w = v[groups]
    directions = []
    for j in range(k):
        members = np.flatnonzero(groups == j)
        for i in members[1:]:
            d = np.zeros(2 * m)
            d[members[0]], d[i] = 1.0, -1.0
            directions.append(d)
    if directions:
        basis = np.linalg.qr(np.array(directions).T)[0].T
    else:
        basis = np.zeros((0, 2 * m))
    return CoincidedSpace(a, w, jnp.asarray(basis, dtype=a.dtype))


def zero_eigenvalue_count(
    eigenvalues: Float[Array, " n"], *, relative_tolerance: float = 1e-8
) -> int:
    """Number of eigenvalues with |λ| ≤ relative_tolerance · max|λ| (numerically zero)."""
    eigenvalues = np.asarray(eigenvalues)
    return int(np.sum(np.abs(eigenvalues) <= relative_tolerance * np.max(np.abs(eigenvalues))))
