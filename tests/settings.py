"""Settings for the collectstatic-plus test suite. Tests override STORAGES,
STATIC_ROOT and STATICFILES_DIRS per test with real temporary directories."""

SECRET_KEY = "collectstatic-plus-tests"
DEBUG = False
USE_TZ = True
INSTALLED_APPS = [
    "collectstatic_plus",
    "django.contrib.staticfiles",
]
DATABASES: dict[str, dict[str, str]] = {}
STATIC_URL = "/static/"
STATIC_ROOT = None
STATICFILES_DIRS: list[str] = []
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
