"""The name → cell class map of the command line, the one place a cell's name is spelled.

Configs hold names (`--cells lstm decay`, `--models mnist/decay/32`); an experiment's `run`
resolves them here. A new cell is one `AbstractGatedCell` subclass and one line in `CELLS`.
"""

from __future__ import annotations

from decaynet._cells import AbstractGatedCell, DecayCell, LSTMCell
from memdyn.internal import check_in

CELLS: dict[str, type[AbstractGatedCell]] = {"lstm": LSTMCell, "decay": DecayCell}
PAPER_CELLS = ("lstm", "decay")  # the paper's comparison, the experiments' default


def resolve_cell(name: str, field: str = "cell") -> type[AbstractGatedCell]:
    """The cell class called `name`; a `ValueError` naming `field` and the choices otherwise."""
    check_in(field, name, CELLS)
    return CELLS[name]
