"""MkDocs hook: serve the jupytext notebooks of `notebooks/` as pages under `notebooks/`.

They stay where the tests execute them; mkdocs-jupyter renders them without running them.
"""

from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File


@event_priority(100)  # before mkdocs-jupyter turns notebook files into pages
def on_files(files, config):
    root = Path(config.config_file_path).parent
    for notebook in sorted((root / "notebooks").glob("*.py")):
        uri = notebook.relative_to(root).as_posix()
        files.append(File(uri, str(root), config.site_dir, config.use_directory_urls))
    return files
