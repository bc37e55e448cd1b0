"""Pick the backend for a storage (the contract is in :mod:`.base`).

One module of this package per kind of storage we know, each exposing
``BACKEND``. It is imported only when a storage of its kind is in use: an
instance of a django-storages class means that class's module (and its SDK)
is loaded already, so a run on local disk imports no backend of a cloud.
"""

from __future__ import annotations

import importlib
import sys

from django.core.files.storage import Storage

from .base import Backend

#: (the module defining the storages a backend handles, our module for them),
#: most specific first.
KNOWN = (
    ("storages.backends.s3", "s3"),
    ("storages.backends.azure_storage", "azure"),
    ("storages.backends.gcloud", "gcs"),
    ("django.core.files.storage", "local"),
)


def backend_for(storage: Storage) -> Backend:
    """The most specific backend we know for ``storage``; the generic one else."""
    for storage_module, ours in KNOWN:
        if storage_module in sys.modules:
            backend: type[Backend] = importlib.import_module(
                f"{__name__}.{ours}"
            ).BACKEND
            if backend.handles(storage):
                return backend(storage)
    return Backend(storage)
