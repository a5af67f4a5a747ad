"""Imports run one way: core at the bottom, then settings_app, characters, chats, and the wiring on top.

docs/development.md draws the layers. Operational tooling (`tools`) may import anything and nothing
but tests imports it; no app imports the wiring package (`rpchat`); no view module imports another.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Lowest first: a package may import its own layer and those below it, never one above.
LAYERS = ["core", "settings_app", "characters", "chats", "rpchat", "tools"]


def _modules():
    for package in LAYERS:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            yield package, path


def _imported(path: Path) -> list[tuple[int, str]]:
    """(line, dotted name) of every absolute import in the file, in functions too."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level and node.module is None:
            found += [(node.lineno, f".{alias.name}") for alias in node.names]
    return found


def _where(path: Path, line: int) -> str:
    return f"{path.relative_to(ROOT)}:{line}"


def test_no_import_runs_uphill():
    uphill = []
    for package, path in _modules():
        rank = LAYERS.index(package)
        for line, name in _imported(path):
            target = name.split(".")[0]
            if target not in LAYERS or target == package:
                continue
            if target == "rpchat" and name.startswith("rpchat.settings"):
                continue  # what the tooling passes to Django as DJANGO_SETTINGS_MODULE
            if LAYERS.index(target) > rank:
                uphill.append(f"{_where(path, line)}: {package} imports {name}")
    assert uphill == []


def test_nothing_but_tests_imports_the_tooling_and_no_app_imports_the_wiring():
    wrong = [
        f"{_where(path, line)}: {name}"
        for package, path in _modules()
        if package not in ("tools", "rpchat")
        for line, name in _imported(path)
        if name.split(".")[0] in ("tools", "rpchat")
    ]
    assert wrong == []


def test_no_view_imports_another_view_module():
    wrong = []
    for _package, path in _modules():
        if path.name != "views.py" and path.parent.name != "views":
            continue
        for line, name in _imported(path):
            parts = name.split(".")
            ours = parts[0] in LAYERS or name.startswith(".")
            if (ours and "views" in parts[:-1]) or (ours and parts[-1] == "views"):
                wrong.append(f"{_where(path, line)}: {name}")
    assert wrong == []
