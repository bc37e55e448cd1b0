"""The testproject, driven through ``manage.py`` as a user would run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import django
import pytest

from .buckets import Bucket, kinds
from .conftest import read_tree
from .servers.s3 import S3Server

PROJECT = Path(__file__).resolve().parents[1] / "testproject"


def manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CSP_")}
    clean.pop("DJANGO_SETTINGS_MODULE", None)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def summary(count: int, root: Path | None, post_processed: int = 0) -> str:
    where = f" to '{root}'" if root else ""
    line = f"{count} static files copied{where}"
    if post_processed:
        line += f", {post_processed} post-processed"
    if django.VERSION >= (6, 0):
        line += ", 1 skipped due to conflict"
    return line + "."


@pytest.mark.parametrize("parallel", [[], ["--parallel"], ["--parallel", "3"]])
def test_local_default_collects_every_file(tmp_path: Path, parallel: list[str]) -> None:
    root = tmp_path / "root"
    result = manage("collectstatic", "--noinput", *parallel, CSP_STATIC_ROOT=str(root))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    tree = read_tree(root)
    assert result.stdout.splitlines()[-1] == summary(len(tree), root)
    # The deliberate duplicate: the first app listed wins.
    assert (
        tree["common/css/print.css"]
        == (PROJECT / "shop/static/common/css/print.css").read_bytes()
    )


def test_manifest_parallel_equals_serial(tmp_path: Path) -> None:
    trees = []
    for name, parallel in (("serial", []), ("parallel", ["--parallel", "8"])):
        root = tmp_path / name
        result = manage(
            "collectstatic",
            "--noinput",
            *parallel,
            CSP_STATIC_ROOT=str(root),
            CSP_MANIFEST="1",
        )
        assert result.returncode == 0, result.stderr
        tree = read_tree(root)
        originals = len(json.loads(tree["staticfiles.json"])["paths"])
        assert result.stdout.splitlines()[-1] == summary(originals, root, originals)
        trees.append(tree)
    assert trees[1] == trees[0]
    assert "staticfiles.json" in trees[1]


def test_manifest_rerun_in_a_new_process_skips_post_processing(
    tmp_path: Path,
) -> None:
    """The skip key must not depend on anything that differs between
    processes (Django 6.x's storage patterns hold a lazily compiled regex
    whose repr is a memory address)."""
    root = tmp_path / "root"
    env = {"CSP_STATIC_ROOT": str(root), "CSP_MANIFEST": "1"}
    first = manage("collectstatic", "--noinput", **env)
    assert first.returncode == 0, first.stderr
    before = read_tree(root)
    again = manage("collectstatic", "--noinput", **env)
    assert again.returncode == 0, again.stderr
    lines = again.stdout.splitlines()
    assert "Post-processing up to date." in lines
    assert "post-processed" not in lines[-1]
    assert read_tree(root) == before


def test_s3_through_environment_switch(tmp_path: Path, s3_server: S3Server) -> None:
    local = tmp_path / "local"
    assert (
        manage("collectstatic", "--noinput", CSP_STATIC_ROOT=str(local)).returncode == 0
    )
    bucket = Bucket(s3_server)
    s3_server.reset_requests()
    result = manage(
        "collectstatic",
        "--noinput",
        "--parallel",
        "16",
        CSP_STORAGE="s3",
        CSP_S3_ENDPOINT_URL=s3_server.endpoint_url,
        CSP_S3_BUCKET=bucket.name,
    )
    assert result.returncode == 0, result.stderr
    counts = kinds(s3_server.requests())
    local_tree = read_tree(local)
    assert result.stdout.splitlines()[-1] == summary(len(local_tree), None)
    # Take the lease, read the record (absent), list once, a PUT per file +
    # record, give the lease back.
    files = len(local_tree)
    assert counts == {"GET": 1, "LIST": 1, "PUT": 1 + files + 1, "DELETE": 1}
    assert bucket.contents() == local_tree


def test_bad_parallel_value_is_a_one_line_error() -> None:
    result = manage("collectstatic", "--noinput", "--parallel", "zero")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == (
        "manage.py collectstatic: error: argument --parallel: must be a positive "
        "whole number of workers, not 'zero'"
    )
