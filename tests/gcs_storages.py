"""Storages for the Google Cloud Storage tests (they import the Google SDK)."""

from __future__ import annotations

import os
from typing import Any

from django.contrib.staticfiles.storage import ManifestFilesMixin
from storages.backends.gcloud import GoogleCloudStorage


class GCSManifestStorage(ManifestFilesMixin, GoogleCloudStorage):  # type: ignore[misc]
    """Hashed names and a manifest on GCS (django-storages ships none)."""


class ObservedGCSStorage(GoogleCloudStorage):  # type: ignore[misc]
    """Records, for each upload, the client and the session's pool size."""

    seen: list[tuple[int, int]] = []

    def _save(self, name: str, content: Any) -> str:
        if not name.startswith(".collectstatic-plus"):
            adapter = self.client._http.get_adapter("http://127.0.0.1/")
            type(self).seen.append((id(self.client), adapter._pool_maxsize))
        return super()._save(name, content)  # type: ignore[no-any-return]


class FailingGCSStorage(GoogleCloudStorage):  # type: ignore[misc]
    """Fails to upload any file whose name contains ``FAIL_ON`` (an env var)."""

    def _save(self, name: str, content: Any) -> str:
        if os.environ.get("FAIL_ON", "\0") in name:
            raise OSError(f"simulated failure writing {name}")
        return super()._save(name, content)  # type: ignore[no-any-return]


def quick_sdk_retries(seconds: float = 3.0) -> None:
    """google-api-core retries a refused connection for 120 s (its default
    Retry object, shared by every call's signature): seconds instead."""
    from google.cloud.storage.retry import DEFAULT_RETRY

    DEFAULT_RETRY._timeout = DEFAULT_RETRY._deadline = seconds
