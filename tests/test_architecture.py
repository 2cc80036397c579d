"""The layer order of the design and the complexity budget are checked on every run."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ["cli", "actors", "messages", "storage", "domain", "transport", "config", "daemon.py"]


def test_import_layers_hold() -> None:
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint, "import-linter is a dev dependency"
    result = subprocess.run([lint], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_nothing_imports_the_composition_root() -> None:
    """``daemon.py`` is the top layer; import-linter only takes packages, so this one is checked here."""
    offenders = [str(p.relative_to(ROOT)) for source in SOURCES if not source.endswith(".py")
                 for p in (ROOT / source).rglob("*.py")
                 if any(line.startswith(("import daemon", "from daemon ")) for line in p.read_text().splitlines())]
    assert offenders == []


def test_no_function_worse_than_radon_grade_b() -> None:
    from radon.complexity import cc_rank, cc_visit

    worst = []
    for source in SOURCES:
        paths = [ROOT / source] if source.endswith(".py") else (ROOT / source).rglob("*.py")
        for path in paths:
            for block in cc_visit(path.read_text()):
                if cc_rank(block.complexity) not in ("A", "B"):
                    worst.append(f"{path.relative_to(ROOT)}:{block.lineno} {block.name} {block.complexity}")
    assert worst == []
