"""Build the documentation site with `mkdocs build --strict` (any warning fails the build) and
check that it documents exactly the public API and renders the notebooks without running them."""

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mkdocs", reason="the docs extra (mkdocs) is not installed")
pytest.importorskip("mkdocstrings_handlers.python", reason="the docs extra is not installed")
pytest.importorskip("mkdocs_jupyter", reason="the docs extra (mkdocs-jupyter) is not installed")

ROOT = Path(__file__).resolve().parents[2]

# A few public names per reference page: each is in its package's `__all__`.
PUBLIC_NAMES = {
    "memdyn": ["hessian_eigenvalues", "gradient_flow", "train", "plateau_intervals"],
    "memdyn.internal": ["check_fields", "write_json"],
    "memlab": ["Experiment", "execute", "figure_style"],
    "curse": ["white_noise_loss", "memory_target"],
    "decaynet": ["LSTMCell", "DecayCell"],
}


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    site_dir = tmp_path_factory.mktemp("site")
    environment = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site_dir)],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    # Not --quiet: it hides warnings from --strict, which then passes a build that warns.
    assert build.returncode == 0, f"mkdocs build --strict failed:\n{build.stdout}\n{build.stderr}"
    assert "WARNING" not in build.stderr, build.stderr
    return site_dir


@pytest.mark.parametrize("package", sorted(PUBLIC_NAMES))
def test_api_reference_is_the_public_api(site, package):
    """Each package's reference (one page, or memdyn's pages by concept) documents exactly its
    `__all__`, each name once."""
    pages = sorted((site / "api" / package).glob("**/index.html"))
    found = [
        name
        for page in pages
        for name in re.findall(rf'id="{re.escape(package)}\.(\w+)"', page.read_text("utf-8"))
    ]
    documented = set(found)
    assert set(PUBLIC_NAMES[package]) <= documented
    assert documented == set(importlib.import_module(package).__all__)
    assert len(found) == len(documented), sorted(n for n in documented if found.count(n) > 1)


@pytest.mark.parametrize(
    "name, title",
    [
        ("curse_of_memory", "On the Curse of Memory in RNNs"),
        ("decaynet_cell_states", "DecayNet: a study of the cell states of LSTMs"),
        ("bring_your_own_model", "Bring your own model"),
        ("what_does_my_model_remember", "What does my model remember?"),
    ],
)
def test_notebooks_are_rendered_unexecuted(site, name, title):
    page = (site / "notebooks" / name / "index.html").read_text(encoding="utf-8")
    assert f"<title>{title} - memdyn</title>" in page
    assert "jp-CodeCell" in page, f"{name} was not rendered as a notebook"
    assert 'class="jp-OutputArea' not in page, f"{name} was rendered with outputs"


def test_getting_started_example_runs():
    """The page's Python example runs as written (in a fresh interpreter: it enables x64)."""
    page = (ROOT / "docs" / "getting-started.md").read_text(encoding="utf-8")
    (example,) = re.findall(r"```python\n(.*?)```", page, re.DOTALL)
    run = subprocess.run(
        [sys.executable, "-c", example], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("1.83"), run.stdout
