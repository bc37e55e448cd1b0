"""The package's shape: imports flow one way, modules stay small, and
installing the app costs a project nothing until collectstatic runs."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "collectstatic_plus"
#: The largest a module may grow, and the command module.
MAX_LINES = 400
MAX_COMMAND_LINES = 220


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports, type-only imports included."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([node.module] if node.module else [])])
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in known else base)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {module for module in found if module in known} - {name}


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle in ``graph``, if there is any."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (found := visit(target)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


def test_the_package_has_no_import_cycle_type_only_imports_included() -> None:
    known = modules()
    graph = {name: imports_of(name, path, known) for name, path in known.items()}
    assert cycle(graph) is None
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_leaf_modules_import_nothing_from_the_package() -> None:
    known = modules()
    for leaf in ("digest", "paths", "retry", "progress", "jsscan"):
        name = f"collectstatic_plus.{leaf}"
        assert imports_of(name, known[name], known) == set(), leaf


def test_no_module_is_over_400_lines_and_the_command_over_220() -> None:
    sizes = {
        name: len(path.read_text().splitlines()) for name, path in modules().items()
    }
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}
    command = "collectstatic_plus.management.commands.collectstatic"
    assert sizes[command] <= MAX_COMMAND_LINES


def test_installing_the_app_loads_only_the_checks_and_the_settings_table() -> None:
    probe = (
        "import django, json, sys\n"
        "django.setup()\n"
        "from django.core import checks\n"
        "checks.run_checks(tags=['staticfiles'])\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    loaded = json.loads(result.stdout)
    ours = [name for name in loaded if name.startswith("collectstatic_plus")]
    assert ours == [
        "collectstatic_plus",
        "collectstatic_plus.apps",
        "collectstatic_plus.checks",
        "collectstatic_plus.conf",
        "collectstatic_plus.paths",
    ]
    sdks = ("boto3", "botocore", "azure", "google", "storages", "rcssmin", "rjsmin")
    assert [name for name in loaded if name.split(".")[0] in sdks] == []
