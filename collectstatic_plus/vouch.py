"""What we vouch for: which storages' post-processing can be redone for a
subset of files (or skipped), and the key a post-process is reused under.

:func:`vouch` says whether a storage's code is code we know (Django's hashing
mixins, WhiteNoise's storages); :func:`settings_key` hashes everything but the
sources that post-processing depends on, so that a record or a build cache
entry made under other settings, versions or code is never reused.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import marshal
import re
import sys
import zlib
from typing import Any

import django
from django.conf import settings
from django.contrib.staticfiles.storage import HashedFilesMixin, ManifestFilesMixin
from django.core.files.storage import FileSystemStorage, Storage

from . import __version__

#: Packages whose code the versions in the key stand for; a class from any
#: other (a project's own subclass, a mixin) is keyed by its code.
VERSIONED = (
    "builtins",
    "abc",
    "typing",
    "django",
    "whitenoise",
    "storages",
    "collectstatic_plus",
)

#: Storage attributes that change what HashedFilesMixin produces.
HASHING_ATTRIBUTES = (
    "manifest_name",
    "manifest_strict",
    "max_post_process_passes",
    "keep_intermediate_files",
    "support_js_module_import_aggregation",
    "patterns",
)
#: WhiteNoise settings that change what its storages produce.
WHITENOISE_SETTINGS = (
    "WHITENOISE_KEEP_ONLY_HASHED_FILES",
    "WHITENOISE_SKIP_COMPRESS_EXTENSIONS",
    "WHITENOISE_MANIFEST_STRICT",
)
#: The methods whose code decides names and contents. A storage we vouch for
#: has, for each, the code we know (Django's, or WhiteNoise's override).
DECIDING = (
    "post_process",
    "_post_process",
    "hashed_name",
    "file_hash",
    "url_converter",
    "_stored_name",
    "_url",
    "save_manifest",
    "hash_key",
    "clean_name",
    "get_ignored_blocks",
    "is_in_ignored_block",
)


#: A name as Django hashes it: the original's, 12 hex digits before its extension.
HASHED = re.compile(r"(.*)\.[0-9a-f]{12}(\.[^./]*)?")


def unhashed(name: str) -> str | None:
    """The name ``name`` was hashed from, if it looks hashed."""
    match = HASHED.fullmatch(name)
    return None if match is None else match[1] + (match[2] or "")


def _known() -> dict[str, set[Any]]:
    """For each deciding method, the functions we know."""
    known: dict[str, set[Any]] = {
        name: {
            getattr(cls, name)
            for cls in (HashedFilesMixin, ManifestFilesMixin)
            if hasattr(cls, name)
        }
        for name in DECIDING
    }
    whitenoise = sys.modules.get("whitenoise.storage")
    if whitenoise is not None:
        cls = whitenoise.CompressedManifestStaticFilesStorage
        known["post_process"].add(cls.post_process)
        known["hashed_name"].add(cls.hashed_name)
    return known


def compressing(storage: Storage) -> bool:
    """WhiteNoise's CompressedStaticFilesStorage, whose only work is compressing."""
    whitenoise = sys.modules.get("whitenoise.storage")
    post_process = getattr(type(storage), "post_process", None)
    return whitenoise is not None and (
        post_process is whitenoise.CompressedStaticFilesStorage.post_process
    )


def vouch(storage: Storage) -> str | None:
    """None if post-processing a subset gives a complete run's result; else why
    a complete run is needed."""
    cls = type(storage)
    if compressing(storage):
        return None
    if not isinstance(storage, ManifestFilesMixin):
        return f"{cls.__qualname__} is not a manifest storage we know"
    known = _known()
    for name in DECIDING:
        found = getattr(cls, name, None)
        if found is None and not known[name]:
            continue  # not in this Django (get_ignored_blocks is newer than 5.2)
        if found not in known[name]:
            return f"{cls.__qualname__} overrides {name}()"
    if storage.keep_intermediate_files:
        return "the storage keeps intermediate files"
    return None


#: Django's settings for the modes of the files and folders it saves.
MODES = ("FILE_UPLOAD_PERMISSIONS", "FILE_UPLOAD_DIRECTORY_PERMISSIONS")


def settings_key(storage: Storage) -> str:
    """Everything but the sources that post-processing depends on, as a hash
    (after the part of it that says how files are saved, and a "-"):
    the storage's class, options and hashing attributes, STATIC_URL, the
    versions of Python, zlib, Django and this package (and, for WhiteNoise's
    storages, of WhiteNoise and Brotli), WhiteNoise's settings, and the code
    of every class of the storage's from another package (a project's own
    subclass: an edit to it may change what post-processing writes)."""
    cls = storage.__class__
    # WhiteNoise's and Brotli's versions matter to WhiteNoise's storages only
    # (and reading them loads importlib.metadata: 1.3 MB).
    whitenoise = any(_module_of(c) == "whitenoise" for c in cls.__mro__)
    storages = any(_module_of(c) == "storages" for c in cls.__mro__)
    files = isinstance(storage, FileSystemStorage)
    deconstruct = getattr(storage, "deconstruct", None)
    options = deconstruct()[1:] if callable(deconstruct) else ()
    # What decides how a file is saved (headers, an ACL, gzip, its mode): a
    # change there resaves every output (incremental.Plan.resaves).
    saving = {
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "options": stable(options),
        "attributes": {
            a: stable(getattr(storage, a, None)) for a in HASHING_ATTRIBUTES
        },
        "static_url": str(settings.STATIC_URL),
        # (Read only by WhiteNoise's storages, and by FileSystemStorage's saves:
        # None for others, so that changing them changes nothing here.)
        "whitenoise_settings": {
            name: stable(getattr(settings, name, None)) if whitenoise else None
            for name in WHITENOISE_SETTINGS
        },
        "modes": [
            stable(getattr(settings, name, None)) if files else None for name in MODES
        ],
    }
    inputs = {
        **saving,
        "django": django.get_version(),
        "collectstatic_plus": __version__,
        "whitenoise": _version_of("whitenoise") if whitenoise else None,
        "brotli": _version_of("brotli") if whitenoise else None,
        "django_storages": _version_of("django-storages") if storages else None,
        "python": list(sys.version_info[:3]),
        "zlib": zlib.ZLIB_RUNTIME_VERSION,
        "code": [_code_of(c) for c in cls.__mro__ if _module_of(c) not in VERSIONED],
    }
    saved = hashlib.sha256(json.dumps(saving, sort_keys=True).encode()).hexdigest()
    text = json.dumps(inputs, sort_keys=True)
    return f"{saved[:16]}-{hashlib.sha256(text.encode()).hexdigest()}"


def _module_of(cls: type) -> str:
    """The top-level package a class comes from."""
    return str(getattr(cls, "__module__", "")).partition(".")[0]


def _code_of(cls: type) -> str:
    """A hash of a class's source, or where there is none, of its functions'
    compiled code."""
    try:
        text = inspect.getsource(cls).encode()
    except (OSError, TypeError):
        functions = [v for v in vars(cls).values() if hasattr(v, "__code__")]
        text = b"".join(marshal.dumps(v.__code__) for v in functions)
    return hashlib.sha256(text).hexdigest()


def _version_of(package: str) -> str | None:
    from importlib import metadata  # here: 1.3 MB, for WhiteNoise's storages

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def stable(value: Any) -> Any:
    """``value`` as plain data that is the same in every process.

    Objects such as credentials are reduced to their class: their repr holds
    a memory address that would change the key on every run.
    """
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list | tuple):
        return [stable(item) for item in value]
    if isinstance(value, dict):
        return {str(key): stable(item) for key, item in sorted(value.items())}
    pattern = getattr(value, "pattern", None)  # a (lazily) compiled regex
    if isinstance(pattern, str | bytes) and hasattr(value, "flags"):
        return {"pattern": stable(pattern), "flags": value.flags}
    return f"<{type(value).__module__}.{type(value).__qualname__}>"
