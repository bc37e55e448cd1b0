"""The "server ceiling": upload a tree with plain boto3 and a thread pool.

``python -m benchmarks.ceiling --tree T --endpoint URL --bucket B --workers N``
puts every file of T (the same keys, bytes and guessed Content-Type that
collectstatic with S3Storage would write) with ``put_object`` from N threads
sharing one client, and nothing else: no existence checks, no Django. The time
this takes shows how fast the server (moto behind the latency proxy) lets any
client go; run.py times it as a fresh process, like collectstatic.
"""

from __future__ import annotations

import argparse
import mimetypes
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
REGION = "us-east-1"


def static_files(tree: Path) -> Iterator[tuple[str, Path]]:
    """(key, path) for each file collectstatic would find in ``tree``.

    Skips what Django ignores by default: names starting with "." or ending
    with "~", and "CVS".
    """
    for folder, dirs, files in os.walk(tree):
        dirs[:] = sorted(d for d in dirs if not ignored(d))
        for name in sorted(files):
            if not ignored(name):
                path = Path(folder, name)
                yield path.relative_to(tree).as_posix(), path


def ignored(name: str) -> bool:
    return name.startswith(".") or name.endswith("~") or name == "CVS"


def content_type(key: str) -> str:
    """The Content-Type S3Storage sends for ``key``."""
    guessed, _ = mimetypes.guess_type(key)
    return guessed or "application/octet-stream"


def upload(tree: Path, endpoint: str, bucket: str, workers: int) -> int:
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        config=Config(max_pool_connections=workers),
        aws_access_key_id=CREDENTIALS["aws_access_key_id"],
        aws_secret_access_key=CREDENTIALS["aws_secret_access_key"],
    )

    def put(item: tuple[str, Path]) -> None:
        key, path = item
        client.put_object(
            Bucket=bucket,
            Key=key,
            Body=path.read_bytes(),
            ContentType=content_type(key),
        )

    with ThreadPoolExecutor(workers) as pool:
        return sum(1 for _ in pool.map(put, static_files(tree)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tree", type=Path, required=True)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()
    upload(args.tree, args.endpoint, args.bucket, args.workers)


if __name__ == "__main__":
    main()
