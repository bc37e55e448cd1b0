"""Django settings for benchmark runs, configured by environment variables.

BENCH_TREE           the folder to collect (the only STATICFILES_DIRS entry)
BENCH_STORAGE        "local" (default) or "s3"
BENCH_STATIC_ROOT    STATIC_ROOT for local storage
BENCH_S3_ENDPOINT    S3 endpoint URL, e.g. the latency proxy in front of moto
BENCH_S3_BUCKET      bucket name
BENCH_MANIFEST=1     use the manifest (hashed names) variant of the storage
BENCH_WHITENOISE=1   local: WhiteNoise's CompressedManifestStaticFilesStorage
BENCH_CACHE_DIR      ours: the build cache (COLLECTSTATIC_PLUS["CACHE_DIR"])
BENCH_STOCK=1        leave collectstatic_plus out: Django's own collectstatic
"""

from __future__ import annotations

import os
from typing import Any

SECRET_KEY = "benchmarks-only"
DEBUG = False
USE_TZ = True
STATIC_URL = "/static/"
DATABASES: dict[str, Any] = {}

INSTALLED_APPS = ["collectstatic_plus", "django.contrib.staticfiles"]
if os.environ.get("BENCH_STOCK") == "1":
    INSTALLED_APPS.remove("collectstatic_plus")

STATICFILES_DIRS = [os.environ["BENCH_TREE"]] if os.environ.get("BENCH_TREE") else []

_storage = os.environ.get("BENCH_STORAGE", "local")
_manifest = os.environ.get("BENCH_MANIFEST") == "1"

if _storage == "local":
    STATIC_ROOT = os.environ.get("BENCH_STATIC_ROOT")
    _static: dict[str, Any] = {
        "BACKEND": "django.contrib.staticfiles.storage."
        + ("ManifestStaticFilesStorage" if _manifest else "StaticFilesStorage"),
    }
    if os.environ.get("BENCH_WHITENOISE") == "1":
        _static = {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"}
elif _storage == "s3":
    _static = {
        "BACKEND": "storages.backends.s3."
        + ("S3ManifestStaticStorage" if _manifest else "S3Storage"),
        "OPTIONS": {
            "endpoint_url": os.environ["BENCH_S3_ENDPOINT"],
            "bucket_name": os.environ["BENCH_S3_BUCKET"],
            "access_key": "testing",
            "secret_key": "testing",
            "region_name": "us-east-1",
            "querystring_auth": False,
        },
    }
else:
    raise ValueError(f"BENCH_STORAGE must be 'local' or 's3', not {_storage!r}")

if os.environ.get("BENCH_CACHE_DIR"):
    COLLECTSTATIC_PLUS = {"CACHE_DIR": os.environ["BENCH_CACHE_DIR"]}

STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": _static,
}
