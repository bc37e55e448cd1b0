"""Azure storages used by the tests (django-storages has no manifest one)."""

from __future__ import annotations

from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from django.contrib.staticfiles.storage import ManifestFilesMixin
from storages.backends.azure_storage import AzureStorage

from collectstatic_plus.backends.azure import client_session


class AzureManifestStorage(ManifestFilesMixin, AzureStorage):  # type: ignore[misc]
    """Hashed names and a manifest, kept in the container.

    A missing blob only fails when its file is read (``ResourceNotFoundError``,
    not ``FileNotFoundError``), so a first run must be told there is no
    manifest yet.
    """

    def read_manifest(self) -> Any:
        try:
            return super().read_manifest()
        except ResourceNotFoundError:
            return None


class ObservedAzureStorage(AzureStorage):  # type: ignore[misc]
    """Records the client settings each upload runs with."""

    seen: list[tuple[int, int, int]] = []

    def _save(self, name: str, content: Any) -> str:
        if not name.endswith("collectstatic-plus.json"):
            session = client_session(self.client)
            adapter = session.get_adapter(self.client.url)
            type(self).seen.append(
                (self.upload_max_conn, adapter._pool_maxsize, id(self.client))
            )
        return super()._save(name, content)  # type: ignore[no-any-return]


class QuickRetries:
    """The SDK's own retries of a refused connection in seconds, not 80 s:
    django-storages passes no client options with a connection string."""

    connection_string: str

    def _get_service_client(self, **kwargs: Any) -> Any:  # 1.14.3: use_custom_domain
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(
            self.connection_string,
            retry_total=3,
            initial_backoff=1,
            increment_base=1,
        )


class QuickRetryAzureStorage(QuickRetries, AzureStorage):  # type: ignore[misc]
    pass


class QuickRetryAzureManifestStorage(QuickRetries, AzureManifestStorage):
    pass


class AzureBlockManifestStorage(AzureManifestStorage):
    """Every blob over 64 bytes put in blocks (as any over the SDK's
    ``max_single_put_size`` is): the service keeps no Content-MD5 for it."""

    connection_string: str

    def _get_service_client(self, **kwargs: Any) -> Any:
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(
            self.connection_string, max_single_put_size=64, max_block_size=64
        )
