"""The documentation of a config dataclass's fields, read from its docstring.

A field is documented in its class's Google-style `Attributes:` section,

    Attributes:
        seeds: networks trained at once (one `vmap`).
        train.learning_rate: Adam's step size (paper: 0.01).

in the docstring of the class or of any dataclass it derives from (the nearest one wins); one
entry may name several fields (`rtol, atol: ...`). A dotted entry documents a field of a nested
config as this config uses it, in place of the nested class's own entry. `memdyn._schema` puts
each entry into its field's description (`ConfigField.doc`), which the CLI's help shows.
"""

from __future__ import annotations

import dataclasses
import inspect
import re

_SECTION = re.compile(r"^(\s*)Attributes:\s*$")
_ENTRY = re.compile(r"^([\w.]+(?:\s*,\s*[\w.]+)*)(?:\s*\([^)]*\))?:\s*(.*)$")


def attributes_section(doc: str) -> dict[str, str]:
    """Parse the `Attributes:` section of one docstring into {name: one-paragraph text}."""
    lines = inspect.cleandoc(doc).splitlines()
    entries: dict[str, str] = {}
    inside, indent, current = False, None, []
    for line in lines:
        if not inside:
            inside = bool(_SECTION.match(line))
            continue
        if not line.strip():
            continue
        width = len(line) - len(line.lstrip())
        if indent is None:
            indent = width
        if width < indent or (width == 0 and line.rstrip().endswith(":")):
            break  # the next section (or the end of this one)
        match = _ENTRY.match(line.strip())
        if width == indent and match:
            current = [name.strip() for name in match.group(1).split(",")]
            for name in current:
                entries[name] = match.group(2).strip()
        else:
            for name in current:
                entries[name] = f"{entries[name]} {line.strip()}".strip()
    return entries


def field_docs(config_cls: type) -> dict[str, str]:
    """{name: its documentation} for every entry of the `Attributes:` sections of a dataclass
    (and its bases) that names one of its fields, or a dotted path into one (`train.epochs`)."""
    docs: dict[str, str] = {}
    for cls in reversed(config_cls.__mro__):
        if cls.__doc__ and dataclasses.is_dataclass(cls):
            docs.update(attributes_section(cls.__doc__))
    names = {f.name for f in dataclasses.fields(config_cls)}
    return {name: text for name, text in docs.items() if name.partition(".")[0] in names}
