"""The name → cell class maps of the command line, the one place a cell's name is spelled.

Configs hold names (`--cells lstm decay`, `--models mnist/gru/32`); an experiment's `run`
resolves them here. `CELLS` are the gated cells, which every experiment takes (they run in the
fused `scan_cell`, and the experiments that read cell states, forget gates or cobwebs need them);
`CLASSIFIER_CELLS` adds the cells of memdyn's recurrent interface that a classifier runs with
`memdyn.unroll` (Table 2's rows). A new gated cell is one `AbstractGatedCell` subclass and one
line in `CELLS`; a new cell of any other kind is one `memdyn.AbstractCell` subclass and one line
in `CLASSIFIER_CELLS`.
"""

from __future__ import annotations

from decaynet._cells import AbstractGatedCell, DecayCell, LSTMCell
from memdyn import AbstractCell, GRUCell, LRUCell
from memdyn.internal import check_in

CELLS: dict[str, type[AbstractGatedCell]] = {"lstm": LSTMCell, "decay": DecayCell}
PAPER_CELLS = ("lstm", "decay")  # the paper's comparison, the experiments' default
CLASSIFIER_CELLS: dict[str, type[AbstractGatedCell] | type[AbstractCell]] = {
    **CELLS,
    "gru": GRUCell,
    "lru": LRUCell,
}


def resolve_cell(
    name: str,
    field: str = "cell",
    cells: dict[str, type[AbstractGatedCell] | type[AbstractCell]] = CELLS,
) -> type[AbstractGatedCell] | type[AbstractCell]:
    """The cell class called `name` in `cells` (default: the gated cells); a `ValueError` naming
    `field` and the choices otherwise."""
    check_in(field, name, cells)
    return cells[name]
