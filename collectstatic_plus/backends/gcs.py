"""Google Cloud Storage (django-storages' GoogleCloudStorage): not written yet."""

from __future__ import annotations

from django.core.files.storage import Storage

from . import Backend


class _Unsupported(Backend):
    @staticmethod
    def handles(storage: Storage) -> bool:
        return False


BACKEND = _Unsupported
