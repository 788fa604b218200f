"""The robustness page (docs/robustness.md) names tests that exist: every `file::name` in its
tables is a test function in that file, so a renamed or deleted test cannot leave a row unproven."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "robustness.md"


def _references() -> list[tuple[str, str]]:
    """(test file, function) for every reference; `::name` alone means the previous file."""
    references, current = [], None
    for cell in re.findall(r"\|([^|\n]*::[^|\n]*)\|?\s*$", PAGE.read_text(), flags=re.M):
        for item in cell.split(","):
            item = item.strip()
            path, _, name = item.partition("::")
            current = path or current
            references.append((current, name))
    return references


def test_every_row_names_an_existing_test():
    references = _references()
    assert len(references) > 50
    missing = []
    for path, name in references:
        source = ROOT / "tests" / path
        if not source.is_file() or not re.search(rf"^def {name}\(", source.read_text(), re.M):
            missing.append(f"{path}::{name}")
    assert not missing, f"robustness.md names tests that do not exist: {missing}"


def test_no_row_is_marked_silent():
    rows = [line for line in PAGE.read_text().splitlines() if line.startswith("|")]
    behaviours = [row.split("|")[3].lower() for row in rows if row.count("|") >= 5]
    assert behaviours and not [b for b in behaviours if "silent" in b or "nothing happens" in b]
