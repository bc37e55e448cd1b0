"""Prepare an extracted copy of Django's ``tests/`` for scripts/django_suite.sh.

Subcommands (TESTS_DIR is the extracted ``tests`` directory of a Django sdist):

``patch TESTS_DIR``
    Put ``"collectstatic_plus"`` right in front of every staticfiles app entry
    in the INSTALLED_APPS lists that the staticfiles tests use (runtests.py and
    staticfiles_tests/*.py), and add a test module that checks the override is
    live. Exits non-zero when a required file has nothing to patch.

``requirements TESTS_DIR``
    Print the lines of ``requirements/py3.txt`` whose packages are imported by
    the staticfiles tests (following imports of other test packages), one per
    line (Django's own dependencies, such as asgiref, may show up too).
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TypeGuard

APP = "collectstatic_plus"
STATICFILES = "django.contrib.staticfiles"
# AppConfig paths that stand in for django.contrib.staticfiles in a test's
# INSTALLED_APPS (StaticFilesConfig and the test suite's own subclass of it).
STATICFILES_CONFIG_PREFIXES = (
    "django.contrib.staticfiles.apps.",
    "staticfiles_tests.apps.staticfiles_config.",
)
# Keyword arguments whose value is a list of apps: override_settings() and
# modify_settings(), plus AdminScriptTestCase.write_settings(apps=...), which
# writes the INSTALLED_APPS of a settings module used by a manage.py subprocess.
APP_LIST_KEYWORDS = {"INSTALLED_APPS", "apps"}
# Files that must contain at least one entry to patch.
REQUIRED = ("runtests.py", "staticfiles_tests/settings.py")
EXTRA_MODULE = "staticfiles_tests/test_collectstatic_plus_in_front.py"

EXTRA_MODULE_SOURCE = '''\
"""Written by collectstatic-plus's scripts/django_suite/patch_tests.py.

Checks that, with "collectstatic_plus" listed before "django.contrib.staticfiles"
(as the rest of this patched copy of the suite has it), ``collectstatic`` is
collectstatic_plus's command, so the other tests here exercise it.
"""

from django.conf import settings
from django.contrib.staticfiles.management.commands import collectstatic
from django.core.management import get_commands, load_command_class
from django.test import SimpleTestCase, override_settings

from .settings import TEST_SETTINGS


@override_settings(**TEST_SETTINGS)
class CollectstaticPlusInFrontTests(SimpleTestCase):
    def setUp(self):
        # INSTALLED_APPS changes clear this cache already; be explicit anyway.
        get_commands.cache_clear()
        self.addCleanup(get_commands.cache_clear)

    def test_app_is_listed_before_staticfiles(self):
        apps = list(settings.INSTALLED_APPS)
        self.assertIn("collectstatic_plus", apps)
        self.assertLess(
            apps.index("collectstatic_plus"),
            apps.index("django.contrib.staticfiles"),
        )

    def test_collectstatic_comes_from_collectstatic_plus(self):
        self.assertEqual(get_commands().get("collectstatic"), "collectstatic_plus")

    def test_command_subclasses_staticfiles_collectstatic(self):
        try:
            command = load_command_class("collectstatic_plus", "collectstatic")
        except ImportError as exc:
            self.fail(
                "collectstatic_plus.management.commands.collectstatic "
                f"cannot be imported: {exc!r}"
            )
        self.assertTrue(
            issubclass(type(command), collectstatic.Command),
            f"{type(command)!r} does not subclass {collectstatic.Command!r}",
        )
'''


def is_staticfiles_entry(node: ast.AST) -> TypeGuard[ast.Constant]:
    if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
        return False
    value = node.value
    return value == STATICFILES or value.startswith(STATICFILES_CONFIG_PREFIXES)


def is_app_constant(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and node.value == APP


def app_list_values(tree: ast.AST) -> Iterator[ast.AST]:
    """Yield the expressions that are given as a list of installed apps."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            if any(name.endswith("INSTALLED_APPS") for name in names):
                yield node.value
        elif isinstance(node, ast.AnnAssign):
            target = node.target
            name = target.id if isinstance(target, ast.Name) else ""
            if name.endswith("INSTALLED_APPS") and node.value:
                yield node.value
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "INSTALLED_APPS":
                    yield value
        elif isinstance(node, ast.Call):
            for keyword in node.keywords:
                if keyword.arg in APP_LIST_KEYWORDS:
                    yield keyword.value


def entries_to_patch(value: ast.AST) -> Iterator[tuple[ast.Constant, bool]]:
    """Yield (entry, already_patched) for the staticfiles entries in ``value``.

    ``value`` is a list/tuple of apps, or a modify_settings() dict whose values
    are lists or single app names.
    """
    if isinstance(value, ast.List | ast.Tuple):
        previous = None
        for element in value.elts:
            if is_staticfiles_entry(element):
                yield element, is_app_constant(previous)
            previous = element
    elif isinstance(value, ast.Dict):
        for item in value.values:
            if is_staticfiles_entry(item):
                # A lone name (modify_settings(append="...")): never patched.
                yield item, False
            else:
                yield from entries_to_patch(item)


def patch_source(source: str) -> tuple[str, list[int], list[int]]:
    """Return (new source, patched line numbers, already-patched line numbers)."""
    tree = ast.parse(source)
    lines = source.encode().splitlines(keepends=True)
    # (line, start col, end col) of an entry -> (text before it, text after it)
    edits: dict[tuple[int, int, int], tuple[bytes, bytes]] = {}
    patched: list[int] = []
    already: list[int] = []
    for value in app_list_values(tree):
        for entry, done in entries_to_patch(value):
            if done:
                already.append(entry.lineno)
                continue
            if entry.end_lineno != entry.lineno or entry.end_col_offset is None:
                raise SystemExit(f"line {entry.lineno}: multi-line app name literal")
            pos = (entry.lineno, entry.col_offset, entry.end_col_offset)
            if pos in edits:
                continue
            line = lines[entry.lineno - 1]
            before = line[: entry.col_offset]
            literal = line[entry.col_offset : entry.end_col_offset]
            quote = b"'" if literal.startswith(b"'") else b'"'
            app = quote + APP.encode() + quote
            in_sequence = not _is_dict_value(value, entry)
            if in_sequence and not before.strip():
                # One entry per line: keep it that way.
                insert = app + b",\n" + before
            elif in_sequence:
                insert = app + b", "
            else:
                # modify_settings(INSTALLED_APPS={"append": "...staticfiles"})
                edits[pos] = (b"[" + app + b", ", b"]")
                patched.append(entry.lineno)
                continue
            edits[pos] = (insert, b"")
            patched.append(entry.lineno)
    # Apply from the end so earlier offsets stay valid.
    for (lineno, col, end), (prefix, suffix) in sorted(edits.items(), reverse=True):
        line = lines[lineno - 1]
        lines[lineno - 1] = line[:col] + prefix + line[col:end] + suffix + line[end:]
    return b"".join(lines).decode(), sorted(patched), sorted(already)


def _is_dict_value(value: ast.AST, entry: ast.AST) -> bool:
    return isinstance(value, ast.Dict) and any(v is entry for v in value.values)


def stray_mentions(source: str, patched_lines: set[int]) -> list[int]:
    """Lines that name django.contrib.staticfiles as a bare string but were
    not patched (worth a look when Django's tests change)."""
    tree = ast.parse(source)
    found = []
    for node in ast.walk(tree):
        if is_staticfiles_entry(node) and node.lineno not in patched_lines:
            found.append(node.lineno)
    return sorted(set(found))


def cmd_patch(tests_dir: Path) -> int:
    targets = [tests_dir / "runtests.py"]
    targets += sorted((tests_dir / "staticfiles_tests").glob("*.py"))
    missing = [name for name in REQUIRED if not (tests_dir / name).is_file()]
    if missing:
        print(f"patch_tests: missing {', '.join(missing)} in {tests_dir}")
        return 1
    total = 0
    per_file: dict[str, int] = {}
    for path in targets:
        rel = path.relative_to(tests_dir).as_posix()
        if rel == EXTRA_MODULE:
            continue
        source = path.read_text(encoding="utf-8")
        new_source, patched, already = patch_source(source)
        # The patched file must still parse and every entry must now have the
        # app right before it.
        compile(new_source, str(path), "exec")
        _, left, now_done = patch_source(new_source)
        if left or len(now_done) != len(patched) + len(already):
            print(f"patch_tests: {rel}: verification failed")
            return 1
        if patched:
            path.write_text(new_source, encoding="utf-8")
        count = len(patched) + len(already)
        per_file[rel] = count
        total += count
        for lineno in patched:
            print(f"  patched {rel}:{lineno}")
        for lineno in already:
            print(f"  already patched {rel}:{lineno}")
        for lineno in stray_mentions(source, set(patched) | set(already)):
            print(f"  note: {rel}:{lineno} names staticfiles outside an app list")
    empty = [name for name in REQUIRED if not per_file.get(name)]
    if empty or not total:
        print(
            "patch_tests: nothing to patch in "
            + ", ".join(empty or REQUIRED)
            + f": Django's test layout changed? ({tests_dir})"
        )
        return 1
    (tests_dir / EXTRA_MODULE).write_text(EXTRA_MODULE_SOURCE, encoding="utf-8")
    print(
        f"patch_tests: {APP} inserted in {total} place(s) "
        f"across {sum(1 for c in per_file.values() if c)} file(s); "
        f"added {EXTRA_MODULE}"
    )
    return 0


# Requirement names whose import name differs from the distribution name.
IMPORT_NAMES = {
    "argon2-cffi": "argon2",
    "pillow": "PIL",
    "pyyaml": "yaml",
    "pylibmc": "pylibmc",
    "colorama": "colorama",
}


def imported_top_levels(path: Path, everywhere: bool) -> Iterator[tuple[str, str]]:
    """Yield (top-level name, full dotted name) for absolute imports.

    With ``everywhere`` false, imports inside functions and classes and those
    guarded by ``try`` are left out (they only matter to code that the
    staticfiles tests do not run).
    """
    tree = ast.parse(path.read_text(encoding="utf-8"))
    if everywhere:
        nodes: Iterator[ast.AST] = ast.walk(tree)
    else:
        nodes = _module_level(tree.body)
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split(".")[0], alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0], node.module


def _module_level(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    for node in body:
        yield node
        if isinstance(node, ast.If):
            yield from _module_level(node.body)
            yield from _module_level(node.orelse)


def local_module_file(tests_dir: Path, dotted: str) -> list[Path]:
    parts = dotted.split(".")
    files = []
    for i in range(1, len(parts) + 1):
        base = tests_dir.joinpath(*parts[:i])
        for candidate in (base / "__init__.py", base.with_suffix(".py")):
            if candidate.is_file():
                files.append(candidate)
    return files


def cmd_requirements(tests_dir: Path) -> int:
    suite = tests_dir / "staticfiles_tests"
    todo = [tests_dir / "runtests.py", *sorted(suite.rglob("*.py"))]
    seen: set[Path] = set()
    imported: set[str] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        # Every import in the suite's own modules counts (any test may run
        # it); elsewhere only what importing the module runs.
        everywhere = suite in path.parents
        for top, dotted in imported_top_levels(path, everywhere):
            local = local_module_file(tests_dir, dotted)
            if local:
                todo.extend(local)
            else:
                imported.add(top.lower())
    req_file = tests_dir / "requirements" / "py3.txt"
    if not req_file.is_file():
        print(f"patch_tests: {req_file} not found", file=sys.stderr)
        return 1
    for raw in req_file.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", line)
        if not match:
            continue
        name = match.group(0).lower().replace("_", "-")
        module = IMPORT_NAMES.get(name, name.replace("-", "_")).lower()
        if module in imported:
            print(line)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["patch", "requirements"])
    parser.add_argument("tests_dir", type=Path)
    args = parser.parse_args(argv)
    if args.command == "patch":
        return cmd_patch(args.tests_dir)
    return cmd_requirements(args.tests_dir)


if __name__ == "__main__":
    sys.exit(main())
