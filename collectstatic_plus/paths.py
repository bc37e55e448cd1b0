"""Path safety: which names may be written or deleted in a destination.

A leaf module: it imports nothing from the package.
"""

from __future__ import annotations

import re

#: Longest path accepted from a sync record or a setting (PATH_MAX on Linux;
#: S3, Azure and GCS names are shorter).
MAX_PATH = 4096

#: A relative path of non-empty parts, none "." or "..", without backslashes
#: or NUL bytes.
SAFE_PATH = re.compile(r"(?!/)(?:(?!\.\.?(?:/|\Z))[^/\\\x00]+/)*(?!\.\.?\Z)[^/\\\x00]+")


def is_safe_path(path: object) -> bool:
    """A relative, normalised, forward-slash path inside the destination."""
    return (
        isinstance(path, str)
        and len(path) <= MAX_PATH
        and SAFE_PATH.fullmatch(path) is not None
    )
