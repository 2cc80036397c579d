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


def _http_numbers(source: str, filename: str) -> list[str]:
    """Places in ``source`` where a status code is written: ``status=<int>``, ``CommandRejected(<int>, ...)``,
    a ``status: int`` field or argument, or ``.status`` compared with a number in the HTTP range."""
    import ast

    def is_code(node: ast.AST) -> bool:
        return isinstance(node, ast.Constant) and type(node.value) is int and 100 <= node.value <= 599

    def is_int(annotation: ast.AST | None) -> bool:
        return isinstance(annotation, ast.Name) and annotation.id == "int"

    found = []
    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Call):
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            if name == "CommandRejected" and node.args and is_code(node.args[0]):
                found.append(f"{where} CommandRejected({node.args[0].value})")  # type: ignore[attr-defined]
            found += [f"{where} status={kw.value.value}" for kw in node.keywords  # type: ignore[attr-defined]
                      if kw.arg == "status" and is_code(kw.value)]
        elif isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "status" and is_int(node.annotation):
            found.append(f"{where} status: int")
        elif isinstance(node, ast.arg) and node.arg == "status" and is_int(node.annotation):
            found.append(f"{where} argument status: int")
        elif isinstance(node, ast.Compare) and any(is_code(side) for side in [node.left, *node.comparators]) \
                and any(getattr(side, "attr", "") == "status" for side in [node.left, *node.comparators]):
            found.append(f"{where} .status compared with a status code")
    return found


def test_the_detector_sees_each_way_of_writing_a_status_code() -> None:
    snippet = ("raise CommandRejected(409, 'x')\nOutcome(state=s, reply=None, status=204)\n"
               "class R:\n    status: int\ndef f(status: int = 200): ...\nif outcome.status >= 400: pass\n")
    assert len(_http_numbers(snippet, "snippet.py")) == 5


def test_no_http_status_code_in_the_domain() -> None:
    """Domain outcomes say what happened (``Result``/``Refusal``); only the edges (``actors.bridge.STATUS``)
    know the numbers."""
    offenders = [hit for path in sorted((ROOT / "domain").rglob("*.py"))
                 for hit in _http_numbers(path.read_text(), str(path.relative_to(ROOT)))]
    assert offenders == []


def test_every_result_and_refusal_has_its_status_at_the_edge() -> None:
    from actors.bridge import STATUS
    from messages.errors import Refusal, Result

    assert set(STATUS) == set(Result) | set(Refusal)
