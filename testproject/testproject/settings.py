"""Settings for the collectstatic-plus test project.

The project exists to give ``collectstatic`` something realistic to chew on:
the admin's static files, three local apps, a plain ``STATICFILES_DIRS``
folder and a prefixed one. Nothing here needs a running service or a
database; ``manage.py collectstatic --noinput`` works out of the box.

Which storage receives the collected files is chosen with environment
variables (all optional):

``CSP_STORAGE``
    ``local`` (default) writes to ``STATIC_ROOT`` on disk; ``s3`` sends the
    files to an S3-compatible bucket through django-storages.
``CSP_MANIFEST``
    ``1`` switches to the hashed-name flavour of the chosen storage:
    ``ManifestStaticFilesStorage`` locally, ``S3ManifestStaticStorage`` on S3.
    Any other value (or unset) keeps plain names.
``CSP_STATIC_ROOT``
    Overrides ``STATIC_ROOT`` (default: ``<testproject>/static_root``).
``CSP_S3_ENDPOINT_URL``
    Endpoint of the S3 server, e.g. ``http://127.0.0.1:5000`` for moto.
    Unset means AWS itself.
``CSP_S3_BUCKET``
    Bucket name (default ``static``). The bucket must already exist.
``CSP_S3_LOCATION``
    Key prefix inside the bucket (default: empty, i.e. the bucket root).
``CSP_S3_REGION``
    Region name (default ``us-east-1``).
``CSP_S3_ACCESS_KEY_ID`` / ``CSP_S3_SECRET_ACCESS_KEY``
    Credentials (default ``testing`` / ``testing``, what moto accepts).

Examples, from the ``testproject/`` folder::

    ../.venv/bin/python manage.py collectstatic --noinput
    CSP_MANIFEST=1 CSP_STATIC_ROOT=/tmp/out ../.venv/bin/python manage.py \\
        collectstatic --noinput
    CSP_STORAGE=s3 CSP_S3_ENDPOINT_URL=http://127.0.0.1:5000 \\
        ../.venv/bin/python manage.py collectstatic --noinput
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


def _env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


SECRET_KEY = "testproject-not-secret-only-for-local-runs"
DEBUG = True
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]"]

INSTALLED_APPS = [
    # collectstatic_plus must come before django.contrib.staticfiles so that
    # its collectstatic command shadows the stock one.
    "collectstatic_plus",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # Local apps, each with a static/<app>/ tree. Order matters: shop and
    # blog both ship common/css/print.css, and shop (listed first) wins.
    "shop",
    "blog",
    "dashboard",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "testproject.urls"
WSGI_APPLICATION = "testproject.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# collectstatic never touches the database; this is only here so that the
# admin and runserver work if someone pokes at the project.
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": BASE_DIR / "db.sqlite3",
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Static files -----------------------------------------------------------

STATIC_URL = "static/"
STATIC_ROOT = Path(_env("CSP_STATIC_ROOT") or BASE_DIR / "static_root")

STATICFILES_DIRS = [
    # Project-wide assets, collected under their own relative paths.
    BASE_DIR / "assets",
    # Third-party bundles, collected under a "vendor/" prefix.
    ("vendor", BASE_DIR / "third_party"),
]

STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
]

MEDIA_URL = "media/"
MEDIA_ROOT = BASE_DIR / "media"

_manifest = _env("CSP_MANIFEST") == "1"
_storage = _env("CSP_STORAGE", "local").strip().lower() or "local"

if _storage == "s3":
    _staticfiles_storage = {
        "BACKEND": (
            "storages.backends.s3.S3ManifestStaticStorage"
            if _manifest
            else "storages.backends.s3.S3Storage"
        ),
        "OPTIONS": {
            "bucket_name": _env("CSP_S3_BUCKET", "static"),
            "location": _env("CSP_S3_LOCATION"),
            "endpoint_url": _env("CSP_S3_ENDPOINT_URL") or None,
            "region_name": _env("CSP_S3_REGION", "us-east-1"),
            "access_key": _env("CSP_S3_ACCESS_KEY_ID", "testing"),
            "secret_key": _env("CSP_S3_SECRET_ACCESS_KEY", "testing"),
            "querystring_auth": False,
        },
    }
elif _storage == "local":
    _staticfiles_storage = {
        "BACKEND": (
            "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"
            if _manifest
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        ),
    }
else:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        f"CSP_STORAGE must be 'local' or 's3', not {_env('CSP_STORAGE')!r}"
    )

STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": _staticfiles_storage,
}

# Settings for collectstatic_plus go here once the app defines them. Left empty
# on purpose so the project runs with the app's defaults.
COLLECTSTATIC_PLUS: dict[str, object] = {}
