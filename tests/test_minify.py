"""Minification with rcssmin/rjsmin: safe by default, before hashing."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import django
import pytest
import rjsmin
import tinycss2
from django.core.files import File
from django.core.management.base import CommandError

from collectstatic_plus.jsscan import ESCAPED_NAME, MISREAD_REGEX, js_trouble
from collectstatic_plus.minify import (
    LONG_LINE,
    Minifier,
    MinifyingStorage,
    MinifySettings,
    Outcome,
)

from .conftest import (
    RECORD,
    read_tree,
    record_files,
    run_collectstatic,
    run_stock,
    write_tree,
)

REPO = Path(__file__).resolve().parents[1]
ADMIN = Path(django.__file__).parent / "contrib" / "admin" / "static"
MANIFEST = "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"
NPM_PACKAGES = ["normalize.css@8.0.1", "bootstrap@5.3.3", "htmx.org@1.9.12"]
ON = Minifier(MinifySettings(enabled=True))


def test_nested_template_literals_are_detected() -> None:
    assert js_trouble(b"const a = `x ${y} z`;") == ""
    nested = b'const a = `x ${ b ? `<i class="a">` : "" } z`;'
    assert js_trouble(nested) == "nested template literals"
    assert js_trouble(b'var s = "}`"; var t = `${ {a: 1}.a }`;') == ""
    broken = b"var broken = `unterminated ${ x "
    assert js_trouble(broken) == "template literals it cannot follow"


@pytest.mark.parametrize(
    "data",
    [
        b"var a = `x ${ '`' }  y   z`;\n",
        b'var a = `x ${ "`" }  y   z`;\n',
        b"var a = `x ${ /`/.source }  y   z`;\n",
        b"var a = `x ${ /* ` */ 1 }  y   z`;\n",
        b"var a = `x ${ 1 // `\n }  y   z`;\n",
    ],
)
def test_a_backtick_in_a_string_regex_or_comment_inside_a_template_is_left_alone(
    data: bytes,
) -> None:
    output, outcome = ON.apply("a.js", data)
    assert output == data
    assert not outcome.minified
    assert outcome.reason == "a backtick in a string, comment or regex inside ${...}"


@pytest.mark.parametrize(
    ("data", "mangled", "reason"),
    [
        (
            b"const isBlank = s => /^ *$/.test(s);\n",
            "const isBlank=s=>/^*$/.test(s);",
            MISREAD_REGEX,
        ),
        (
            b"const img = f => /^image\\//.test(f.type);\n",
            "const img=f=>/^image\\",
            MISREAD_REGEX,
        ),
        (b"function* g() { yield / a/; }\n", "function*g(){yield/a/;}", MISREAD_REGEX),
        (b"x = a % / b/.source.length;\n", "x=a%/b/.source.length;", MISREAD_REGEX),
        (
            b"function* g() { yield /* sep */ /, +and/; }\n",
            "function*g(){yield/,+and/;}",
            MISREAD_REGEX,
        ),
        (b"var \\u0061bc = 1;\n", "var\\u0061bc=1;", ESCAPED_NAME),
    ],
)
def test_js_that_rjsmin_would_mangle_is_left_alone(
    data: bytes, mangled: str, reason: str
) -> None:
    assert rjsmin.jsmin(data.decode(), keep_bang_comments=True) == mangled
    output, outcome = ON.apply("a.js", data)
    assert (output, outcome) == (data, Outcome(False, len(data), len(data), reason))


@pytest.mark.parametrize(
    ("data", "minified"),
    [
        (b"f( // a comment\n  /a b/, 1);\n", b"f(/a b/,1);"),
        (b"f(x => /^\\d+$/.test(x));\n", b"f(x=>/^\\d+$/.test(x));"),
        (b"x = i++ / 2;\ny = a.yield / 2 / b;\n", b"x=i++/2;y=a.yield/2/b;"),
        (
            b"function t(s) { return /a b/.test(s); }\n",
            b"function t(s){return/a b/.test(s);}",
        ),
        (
            b'var r = /a b/, s = "a\\tb";\nx = (y) / 2 / z;\n',
            b'var r=/a b/,s="a\\tb";x=(y)/2/z;',
        ),
    ],
)
def test_regexes_and_escapes_rjsmin_reads_right_are_minified(
    data: bytes, minified: bytes
) -> None:
    output, outcome = ON.apply("a.js", data)
    assert outcome.minified
    assert output == minified


def test_backticks_in_strings_outside_templates_do_not_stop_minifying() -> None:
    output, outcome = ON.apply("a.js", b'var s = "`";  var t = `a  ${ b }  c`;\n')
    assert outcome.minified
    assert output == b'var s="`";var t=`a  ${ b }  c`;'


@pytest.mark.parametrize(
    ("path", "data", "reason"),
    [
        ("a.min.js", b"var  a = 1;\n", "already minified (name)"),
        ("a.js", b"var a=1;" * 400, "already minified (content)"),
        (
            "a.js",
            b"var a = 1;\n//# sourceMappingURL=a.js.map\n",
            "references a source map",
        ),
        (
            "a.css",
            b"a { }\n/*# sourceMappingURL=a.css.map */",
            "references a source map",
        ),
        ("a.js", b'x = `${ `<a title="t">` }`;\n', "nested template literals"),
        ("a.css", b"a { content: '\xff' }\n", "not UTF-8"),
        (
            "a.css",
            b'a { background: url("hero banner.png") }\n',
            "would change a url()",
        ),
        ("a.css", b"a { background: url( 'x y.png' ) }\n", "would change a url()"),
        (
            "a.css",
            b'a { b: url("x y.png") }\n/* url("xy.png") */\n',
            "would change a url()",
        ),
        ("a.css", b'a { b: url("a\\" b.png") }\n', "would change a url()"),
        ("a.txt", b"a   b\n", ""),
    ],
)
def test_files_left_unminified_say_why(path: str, data: bytes, reason: str) -> None:
    output, outcome = ON.apply(path, data)
    assert output == data
    assert not outcome.minified
    assert outcome.reason == reason


def test_css_urls_that_survive_minifying_do_not_stop_it() -> None:
    data = (
        b"a { background : url( 'x.png' ) }\n/* url(old.png) */\nb { c: url(y.png) }\n"
    )
    output, outcome = ON.apply("a.css", data)
    assert output == b"a{background:url('x.png')}b{c:url(y.png)}"
    assert outcome.minified


def test_bang_comments_are_kept_and_others_dropped() -> None:
    data = b"/*! MIT licence */\n/* note */\nbody  {\n  color : red ;\n}\n"
    output, outcome = ON.apply("site.css", data)
    assert output == b"/*! MIT licence */body{color:red}"
    assert outcome.minified and outcome.before == len(data)


def test_include_and_exclude_patterns() -> None:
    minifier = Minifier(
        MinifySettings(enabled=True, include=("*.css",), exclude=("vendor/*",))
    )
    assert minifier.applies_to("css/site.css")
    assert not minifier.applies_to("vendor/lib.css")
    assert not minifier.applies_to("js/app.js")


def test_source_mapped_files_can_be_minified_on_request() -> None:
    minifier = Minifier(MinifySettings(enabled=True, source_mapped=True))
    output, outcome = minifier.apply(
        "a.js", b"var  a = 1;\n//# sourceMappingURL=a.map\n"
    )
    assert outcome.minified
    assert output == b"var a=1;"


def css_parses(data: bytes) -> list[str]:
    rules, _encoding = tinycss2.parse_stylesheet_bytes(data)
    errors = [r for r in rules if r.type == "error"]
    for rule in rules:
        if rule.type == "qualified-rule":
            errors += [
                d
                for d in tinycss2.parse_declaration_list(rule.content)
                if d.type == "error"
            ]
    return [e.message for e in errors]


def js_parses(paths: list[Path]) -> list[str]:
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI"):
            pytest.fail("node is needed to check minified JS and is missing on CI")
        pytest.skip("LOUD SKIP: node not found, minified JS not syntax-checked")
    failed = []
    for path in paths:
        result = subprocess.run([node, "--check", str(path)], capture_output=True)
        if result.returncode != 0:
            failed.append(f"{path}: {result.stderr.decode()[:300]}")
    return failed


@pytest.fixture
def admin_only(settings: Any, static_root: Path) -> Path:
    settings.STATICFILES_DIRS = [str(ADMIN)]
    return ADMIN


def collected_css_js(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix in (".css", ".js"))


def test_django_admin_minifies_to_valid_css_and_js(
    admin_only: Path, static_root: Path
) -> None:
    before = read_tree(admin_only)
    stderr = io.StringIO()
    run_collectstatic(minify=True, parallel=4, stderr=stderr)
    assert read_tree(admin_only) == before  # sources untouched
    assert stderr.getvalue() == ""
    out = read_tree(static_root)
    originals = {name: data for name, data in before.items() if name in out}
    minified = [n for n in out if out[n] != originals[n]]
    assert len(minified) >= 30
    for path in collected_css_js(static_root):
        if path.suffix == ".css":
            assert css_parses(path.read_bytes()) == [], path
    assert (
        js_parses([p for p in collected_css_js(static_root) if p.suffix == ".js"]) == []
    )
    jquery = "admin/js/vendor/jquery/jquery.js"
    assert out[jquery].startswith(b"/*!")
    assert len(out[jquery]) < len(originals[jquery])
    assert (
        out["admin/js/vendor/jquery/jquery.min.js"]
        == originals["admin/js/vendor/jquery/jquery.min.js"]
    )


def test_manifest_hashes_the_minified_bytes(
    admin_only: Path, static_root: Path, settings: Any
) -> None:
    settings.STORAGES = {**settings.STORAGES, "staticfiles": {"BACKEND": MANIFEST}}
    run_collectstatic(minify=True)
    paths = json.loads((static_root / "staticfiles.json").read_bytes())["paths"]
    for original in ("admin/css/forms.css", "admin/js/core.js"):
        hashed = (static_root / paths[original]).read_bytes()
        # The name is the hash of the bytes served, and those are minified.
        assert paths[original].split(".")[-2] == hashlib.md5(hashed).hexdigest()[:12]
        source = (admin_only / original).read_bytes()
        assert (static_root / original).read_bytes() == ON.apply(original, source)[0]
        assert len(hashed) < len(source)


@pytest.fixture(scope="session")
def npm_assets() -> Path:
    """Unminified dist files of a few npm packages, fetched once."""
    target = REPO / ".cache" / "npm-assets"
    if not (target / "node_modules" / "bootstrap").exists():
        npm = shutil.which("npm")
        if npm is None:
            if os.environ.get("CI"):
                pytest.fail("npm is needed to fetch test assets and is missing on CI")
            pytest.skip("LOUD SKIP: npm not found, npm packages not minified")
        subprocess.run(
            [
                npm,
                "install",
                "--no-save",
                "--no-package-lock",
                "--ignore-scripts",
                "--prefix",
                str(target),
                *NPM_PACKAGES,
            ],
            check=True,
            capture_output=True,
            timeout=600,
        )
    return target / "node_modules"


def test_npm_packages_minify_to_valid_output(
    npm_assets: Path, tmp_path: Path, settings: Any, static_root: Path
) -> None:
    picks = {
        "normalize.css": npm_assets / "normalize.css" / "normalize.css",
        "bootstrap.css": npm_assets / "bootstrap/dist/css/bootstrap.css",
        "bootstrap.js": npm_assets / "bootstrap/dist/js/bootstrap.js",
        "htmx.js": npm_assets / "htmx.org/dist/htmx.js",
    }
    source = tmp_path / "npm"
    source.mkdir()
    for name, path in picks.items():
        shutil.copyfile(path, source / name)
    settings.STATICFILES_DIRS = [str(source)]
    settings.COLLECTSTATIC_PLUS = {"MINIFY": True, "MINIFY_SOURCE_MAPPED": True}
    report = tmp_path / "report.json"
    run_collectstatic(report=str(report))
    out = read_tree(static_root)
    for name in picks:
        before = (source / name).read_bytes()
        assert len(out[name]) < len(before), name
        if before.startswith(b"/*!"):
            assert out[name].startswith(b"/*!"), name
    for name in ("normalize.css", "bootstrap.css"):
        assert css_parses(out[name]) == []
    assert js_parses([static_root / "bootstrap.js", static_root / "htmx.js"]) == []
    entries = {e["path"]: e for e in json.loads(report.read_text())["files"]}
    assert all(entries[name]["minify"]["minified"] for name in picks)


def test_source_mapped_npm_files_are_left_alone_by_default(
    npm_assets: Path, tmp_path: Path, settings: Any, static_root: Path
) -> None:
    source = tmp_path / "npm"
    source.mkdir()
    shutil.copyfile(npm_assets / "bootstrap/dist/css/bootstrap.css", source / "b.css")
    settings.STATICFILES_DIRS = [str(source)]
    run_collectstatic(minify=True)
    assert (static_root / "b.css").read_bytes() == (source / "b.css").read_bytes()


def test_incremental_with_minification(
    tmp_path: Path, settings: Any, static_root: Path
) -> None:
    source = write_tree(
        tmp_path / "src",
        {
            "css/a.css": "a  {  color : red ;  }\n",
            "js/b.js": "var  b  =  1 ;\n",
            "js/c.js": "var  c  =  2 ;\n",
        },
    )
    settings.STATICFILES_DIRS = [str(source)]
    settings.COLLECTSTATIC_PLUS = {"MINIFY": True}
    run_collectstatic()
    assert (static_root / "js/b.js").read_bytes() == b"var b=1;"
    assert "3 unmodified" in run_collectstatic().stdout
    settings.COLLECTSTATIC_PLUS = {"MINIFY": True, "MINIFY_EXCLUDE": ["c.js"]}
    result = run_collectstatic(verbosity=2)
    assert "Copying" in result.stdout and result.stdout.count("Copying") == 1
    assert (static_root / "js/c.js").read_bytes() == b"var  c  =  2 ;\n"
    record = json.loads((static_root / RECORD).read_bytes())
    assert (
        record_files(record)["js/b.js"]["md5"] == hashlib.md5(b"var b=1;").hexdigest()
    )


def test_bad_file_is_copied_as_is_with_a_warning(
    tmp_path: Path, settings: Any, static_root: Path
) -> None:
    source = write_tree(tmp_path / "src", {"bad.css": b"a { content: '\xff' }\n"})
    settings.STATICFILES_DIRS = [str(source)]
    stderr = io.StringIO()
    run_collectstatic(minify=True, stderr=stderr)
    assert stderr.getvalue() == "Not minified 'bad.css' (not UTF-8); left as it is.\n"
    assert (static_root / "bad.css").read_bytes() == b"a { content: '\xff' }\n"


def test_dry_run_reports_minification(
    tmp_path: Path, settings: Any, static_root: Path
) -> None:
    source = write_tree(
        tmp_path / "src", {"a.css": "a  {  color : red ;  }\n", "b.min.js": "var b;"}
    )
    settings.STATICFILES_DIRS = [str(source)]
    result = run_collectstatic(minify=True, dry_run=True)
    assert "minified: 1 file(s), 23 -> 12 bytes; 1 left as they are" in result.stdout
    assert not static_root.exists() or not any(static_root.iterdir())


def test_minify_with_link_is_refused(tmp_path: Path, settings: Any) -> None:
    settings.STATICFILES_DIRS = [str(write_tree(tmp_path / "src", {"a.css": "a{}"}))]
    with pytest.raises(CommandError) as raised:
        run_collectstatic(minify=True, link=True)
    assert str(raised.value).startswith("--link cannot be combined with minification")


def test_a_source_that_cannot_be_read_fails_and_the_minified_others_are_copied(
    tmp_path: Path, settings: Any
) -> None:
    source = write_tree(
        tmp_path / "src", {"a.css": "a { color: red; }\n", "b.css": "b"}
    )
    settings.STATICFILES_DIRS = [str(source)]
    settings.STATIC_ROOT = str(tmp_path / "root")
    run_collectstatic(minify=True)
    (source / "a.css").write_text("a { color: blue; }\n")  # read again, minified
    (source / "b.css").unlink()
    (source / "b.css").symlink_to(tmp_path / "nowhere")  # cannot be read
    report = tmp_path / "report.json"
    with pytest.raises(CommandError) as raised:
        run_collectstatic(minify=True, report=str(report))

    assert str(raised.value) == "1 static file could not be collected: b.css."
    files = json.loads(report.read_text())["files"]
    assert [(entry["path"], entry["action"]) for entry in files] == [
        ("a.css", "changed"),
        ("b.css", "failed"),
    ]
    assert (tmp_path / "root" / "a.css").read_text() == "a{color:blue}"


@pytest.mark.parametrize(
    "backend",
    [
        "tests.storages.JSModuleManifestStorage",
        "tests.storages.JSModuleWhiteNoiseStorage",
    ],
)
@pytest.mark.parametrize("export", ["export * from", "export * as ns from"])
def test_an_export_the_storage_would_no_longer_rewrite_is_not_minified(
    tmp_path: Path, settings: Any, static_root: Path, backend: str, export: str
) -> None:
    main = f'// the module\n{export} "./c.js";\n'
    source = write_tree(
        tmp_path / "src", {"js/main.js": main, "js/c.js": "export  const  c = 2;\n"}
    )
    settings.STATICFILES_DIRS = [str(source)]
    settings.STORAGES = {**settings.STORAGES, "staticfiles": {"BACKEND": backend}}
    stderr = io.StringIO()
    run_collectstatic(minify=True, stderr=stderr)
    paths = json.loads((static_root / "staticfiles.json").read_bytes())["paths"]
    served = (static_root / paths["js/main.js"]).read_text()
    assert served == main.replace("c.js", paths["js/c.js"].split("/")[-1])
    assert stderr.getvalue() == (
        "Not minified 'js/main.js' (would change a reference the storage "
        "rewrites); left as it is.\n"
    )
    assert (static_root / paths["js/c.js"]).read_text() == "export const c=2;"


def test_a_storage_that_starts_rewriting_a_reference_gets_the_file_unminified(
    tmp_path: Path, settings: Any, static_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from .storages import JSModuleManifestStorage

    agg = 'export * from "./lib.js";\nexport   const   z = 1;\n'
    lib = "export function f() {\n    return 42;\n}\n"
    source = write_tree(tmp_path / "src", {"js/agg.js": agg, "js/lib.js": lib})
    settings.STATICFILES_DIRS = [str(source)]
    storages = {"BACKEND": "tests.storages.JSModuleManifestStorage"}
    aggregates = "support_js_module_import_aggregation"
    monkeypatch.setattr(JSModuleManifestStorage, aggregates, False)
    settings.STORAGES = {**settings.STORAGES, "staticfiles": storages}
    run_collectstatic(minify=True)
    assert (
        static_root / "js/agg.js"
    ).read_text() == 'export*from"./lib.js";export const z=1;'
    monkeypatch.setattr(
        JSModuleManifestStorage, aggregates, True
    )  # (as an upgrade may)
    settings.STORAGES = {**settings.STORAGES, "staticfiles": storages}
    stderr = io.StringIO()
    run_collectstatic(minify=True, stderr=stderr)
    assert (static_root / "js/agg.js").read_text() == agg  # as a clean run leaves it
    assert stderr.getvalue() == (
        "Not minified 'js/agg.js' (would change a reference the storage "
        "rewrites); left as it is.\n"
    )


def test_minifying_without_rcssmin_or_rjsmin_is_one_line(
    static_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "rjsmin", None)  # (an import of it fails)
    monkeypatch.delitem(sys.modules, "collectstatic_plus.minify")
    with pytest.raises(CommandError) as raised:
        run_collectstatic(minify=True)
    halted = "import of rjsmin halted; None in sys.modules"
    assert str(raised.value) == f"--minify needs rcssmin and rjsmin: {halted}"


def test_imports_the_storage_still_rewrites_are_minified(settings: Any) -> None:
    from .storages import JSModuleManifestStorage

    settings.STATIC_ROOT = "/nowhere"
    minifier = Minifier(MinifySettings(enabled=True), JSModuleManifestStorage())
    data = b'import { a } from "./a.js";\n// a comment\nvar  b  =  a;\n'
    output, outcome = minifier.apply("js/b.js", data)
    assert outcome.minified
    assert output == b'import{a}from"./a.js";var b=a;'


class ReadOnlyInChunks(io.BytesIO):
    def read(self, size: int | None = -1) -> bytes:
        assert size is not None and size >= 0, "read whole"
        return super().read(size)


class ChunkedStorage:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def open(self, path: str, mode: str = "rb") -> File:
        return File(ReadOnlyInChunks(self.data), name=path)


def test_a_file_named_minified_is_streamed_as_it_is_not_read_whole() -> None:
    data = b"var  a = 1;\n" * 10_000
    notes: list[tuple[str, Outcome]] = []
    storage = MinifyingStorage(
        ChunkedStorage(data),  # type: ignore[arg-type]
        "js/a.min.js",
        ON,
        lambda path, outcome: notes.append((path, outcome)),
    )
    with storage.open("js/a.min.js") as handle:
        assert b"".join(handle.chunks()) == data
    outcome = Outcome(False, len(data), len(data), "already minified (name)")
    assert notes == [("js/a.min.js", outcome)]


class Unsplittable(bytes):
    def splitlines(self, keepends: bool = False) -> list[bytes]:
        raise AssertionError("a copy of every line")


@pytest.mark.parametrize(
    ("data", "minified"),
    [
        (b"", False),
        (b"a" * (LONG_LINE - 1) + b"\n" + b"b\n" * 20, False),
        (b"b\n" * 20 + b"a" * LONG_LINE, True),
        (b"b\r" * 20 + b"a" * LONG_LINE + b"\r\n", True),
        (b"a" * 297 + b"\r\n" + b"b" * 297 + b"\r\n", False),
        (b"a" * 299 + b"\n" + b"b" * 301, True),
    ],
)
def test_content_that_looks_minified_is_found_without_copying_its_lines(
    data: bytes, minified: bool
) -> None:
    lines = data.splitlines() or [b""]  # what "a line" and "on average" mean
    longest = max(len(line) for line in lines)
    assert (longest >= LONG_LINE or len(data) / len(lines) >= 300) is minified
    _output, outcome = ON.apply("a.js", Unsplittable(data))
    assert (outcome.reason == "already minified (content)") is minified


def test_minifying_over_what_stock_collected_where_nothing_can_be_listed_copies(
    tmp_path: Path, settings: Any
) -> None:
    source = write_tree(tmp_path / "src", {"a.css": "body  {  color : red ;  }\n"})
    settings.STATICFILES_DIRS = [str(source)]
    settings.STATIC_ROOT = str(tmp_path / "root")
    backend = {"BACKEND": "tests.storages.RemoteLikeStorage"}
    settings.STORAGES = {**settings.STORAGES, "staticfiles": backend}
    run_stock(verbosity=0)  # newer than the source: stock's rule keeps it

    assert run_collectstatic(minify=True).stdout.strip().startswith("1 static file")
    assert (tmp_path / "root" / "a.css").read_bytes() == b"body{color:red}"
    assert "0 static files copied" in run_collectstatic(minify=True).stdout
