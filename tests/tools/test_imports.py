"""The tools are the only modules that import pyarrow (with the emulator) and plot the only one
that imports matplotlib: the download path and the CLI's start never load either."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import asyncdl

PACKAGE = Path(asyncdl.__file__).parent
# Where each heavy import may be written, relative to the package.
ALLOWED = {"pyarrow": ("tools/", "emulator/"), "matplotlib": ("tools/plot.py",)}


def imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            roots.add(node.module.split(".")[0])
    return roots


def test_heavy_imports_are_written_only_in_the_tools() -> None:
    misplaced = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        for root in imported_roots(path) & ALLOWED.keys():
            if not relative.startswith(ALLOWED[root]):
                misplaced.append(f"{relative} imports {root}")
    assert misplaced == []


def test_the_download_path_never_loads_pyarrow() -> None:
    """In a fresh isolated interpreter (no PYTHONPATH, no user site), importing the pipeline and
    every command module loads neither pyarrow nor matplotlib nor the tools themselves."""
    script = (
        "import sys\n"
        "import asyncdl.pipeline, asyncdl.cli\n"
        "roots = ('pyarrow', 'matplotlib', 'numpy', 'asyncdl.tools')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in roots or"
        " m.startswith('asyncdl.tools')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
