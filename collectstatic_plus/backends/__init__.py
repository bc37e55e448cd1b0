"""Pick the backend for a storage (the contract is in :mod:`.base`).

One module per backend we know, each exposing ``BACKEND``. A backend module
imports its SDK only when its storage is in use: a storage instance of a
django-storages class means that class's module (and SDK) is already loaded.
"""

from __future__ import annotations

import importlib

from django.core.files.storage import Storage

from .base import Backend

#: Backend modules, most specific first.
MODULES = ("s3", "azure", "gcs", "local")


def backend_for(storage: Storage) -> Backend:
    """The most specific backend we know for ``storage``; the generic one else."""
    for name in MODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        backend: type[Backend] = module.BACKEND
        if backend.handles(storage):
            return backend(storage)
    return Backend(storage)
