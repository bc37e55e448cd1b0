"""Hooks on a storage's own methods while an incremental post-process runs.

See :mod:`.incremental` for why a subset gives a complete run's result; this
module makes the storage resolve references to files outside the subset to
their recorded names, note every reference it follows, and write every
file's name to the manifest; and it makes WhiteNoise compress each content
once.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import threading
from collections import ChainMap
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote, urlsplit

from .incremental import full_order
from .record import Processed
from .staging import Staging
from .vouch import vouch


class NotSettled(Exception):
    """An incremental run found that a complete run would not settle."""


class Hooks:
    """Instance attributes on the storage while its ``post_process`` runs.

    ``_stored_name`` resolves a reference to a file outside the subset to its
    recorded name, and notes every reference; ``url_converter`` tells it which
    file is being rewritten; ``save_manifest`` first calls ``before_manifest``
    (the caller's last word on the run), then writes every file's name, in a
    complete run's order. WhiteNoise's ``delete_files`` (with
    WHITENOISE_KEEP_ONLY_HASHED_FILES) spares the hashed files of the files
    outside the subset: a complete run keeps them, as its own output; its
    ``compress_files`` gets each hashed copy beside its original (a set
    before), so that its compressor can reuse one's output for the other, and
    in an incremental run not the names whose variants the last run left
    (:meth:`_kept`), which it yields as its own, not written again.

    For a storage whose code we know, ``_post_process`` goes one file at a
    time, in its own order, and skips a file that still has the name its last
    rewrite gave it and whose every reference resolves to the name it did
    then: its output would be the same bytes, and the pass says what its own
    code would (the name it has, processed, no substitution). So Django's
    last pass, which only confirms that nothing moved, reads and rewrites
    nothing.
    """

    def __init__(
        self,
        storage: Any,
        outside: dict[str, str],
        manifest_order: list[str] | None,
        before_manifest: Callable[[], None] = lambda: None,
        staging: Staging | None = None,
        last: Mapping[str, Processed] | None = None,
        copied: set[str] | None = None,
    ) -> None:
        self.storage = storage
        #: A simulated run's: the storage's own writes (WhiteNoise unlinks and
        #: compresses by path) are dry, and with --verify its compressor puts
        #: the variants it finds with other bytes in ``staging.altered``.
        self.staging = staging
        self.simulate = staging is not None and staging.simulate
        self.outside = outside
        self.manifest_order = manifest_order
        self.before_manifest = before_manifest
        self.refs: dict[str, set[str]] = {}
        self.rewriting: str | None = None
        #: Per path rewritten without error: the name it got, and each
        #: reference it resolved with the name that came back.
        self.rewrites: dict[str, tuple[str, list[tuple[str, str]]]] = {}
        #: The references of the file being rewritten now, as they resolve.
        self.resolving: list[tuple[str, str]] | None = None
        #: The last complete run's rows, the files collected this run, and
        #: the variants left as they were (:meth:`_kept`: there, not written).
        self.last = last or {}
        self.copied = copied or set()
        self.kept: set[str] = set()

    @contextmanager
    def installed(self) -> Iterator[None]:
        storage, names = (
            self.storage,
            (
                "_post_process",
                "_stored_name",
                "url_converter",
                "save_manifest",
                "delete_files",
                "compress_files",
                "create_compressor",
            ),
        )
        original = {name: getattr(storage, name, None) for name in names}
        try:
            if original["_stored_name"] is not None:
                storage._stored_name = self._wrap_stored_name(original["_stored_name"])
                converter = original["url_converter"]
                assert converter is not None
                storage.url_converter = self._wrap_url_converter(converter)
            if original["_post_process"] is not None and vouch(storage) is None:
                storage._post_process = self._wrap_post_process(
                    original["_post_process"], original["_stored_name"]
                )
            if original["save_manifest"] is not None:
                storage.save_manifest = self._wrap_save_manifest(
                    original["save_manifest"]
                )
            if original["delete_files"] is not None and self.simulate:
                storage.delete_files = lambda names: None  # it unlinks: not dry
            elif original["delete_files"] is not None:
                delete_files = original["delete_files"]
                storage.delete_files = lambda names: self._delete_files(
                    delete_files, set(names) - set(self.outside.values())
                )
            if original["compress_files"] is not None:
                compress_files = original["compress_files"]
                storage.compress_files = lambda names: self._compress_files(
                    compress_files, list(names)
                )
            if original["create_compressor"] is not None:
                create = original["create_compressor"]
                storage.create_compressor = lambda **kw: self._compressor(create(**kw))
            yield
        finally:
            for name in names:
                storage.__dict__.pop(name, None)

    def _delete_files(
        self, delete_files: Callable[[set[str]], None], names: set[str]
    ) -> None:
        """WhiteNoise's, which unlinks (not through the storage): what this
        run wrote there is not written, in the end. If it fails, all are
        still written (a failed attempt removes what it wrote)."""
        delete_files(names)
        if self.staging is not None:
            self.staging.unlinked(names)

    def _compressor(self, compressor: Any) -> Any:
        compressor = once_per_content(compressor)
        if self.staging is None or not self.simulate:
            return compressor
        altered = self.staging.altered if self.staging.verify else None
        return dry_compressor(compressor, self.storage, altered)

    def _compress_files(
        self, compress_files: Callable[[list[str]], Iterable[Any]], names: list[str]
    ) -> Iterator[Any]:
        """WhiteNoise's, over the names whose variants are not kept: those
        are yielded as it yields them (the record keeps them as outputs)."""
        kept = self._kept(names)
        for name, variants in sorted(kept.items()):
            for variant in variants:
                self.kept.add(variant)
                yield name, variant
        yield from compress_files(self._paired(n for n in names if n not in kept))

    def _kept(self, names: list[str]) -> dict[str, list[str]]:
        """Of an incremental run's ``names``, those a dry run would call alike
        (Staging.note_variant: nothing new, collected, written or forced),
        with the variants the last complete run recorded, all there: the
        same input (an unchanged original's MD5, a hashed name), so the same
        bytes (gzip without a timestamp and Brotli depend on the input
        alone). A full run, like stock, compresses them all."""
        staging, rows = self.staging, self.last
        if staging is None or staging.simulate or self.manifest_order is None:
            return {}
        listing = staging.listing
        if listing is None or staging.force or staging.resave:
            return {}
        source_of = {row.hashed: path for path, row in rows.items() if row.hashed}
        # Collected, saved or deleted by this run: not as the last run left it.
        new = self.copied | set(staging.queue) | set(staging.written) | staging.deleted
        kept: dict[str, list[str]] = {}
        for name in names:
            path = name if name in rows else source_of.get(name)
            row = rows.get(path or "")
            source = staging.sources.get(name)
            digest = source.digest if source is not None else None
            if row is None or (name == path and getattr(digest, "md5", 0) != row.md5):
                continue  # unknown, or another content
            suffixed = (f"{name}.gz", f"{name}.br")
            variants = [output for output in row.outputs if output in suffixed]
            if not {name, *variants} & new and all(v in listing for v in variants):
                kept[name] = variants
        return kept

    def _paired(self, names: Iterable[str]) -> list[str]:
        """``names`` with each hashed copy next to its original."""
        hashed_files = getattr(self.storage, "hashed_files", {})
        original = {hashed: name for name, hashed in hashed_files.items()}
        return sorted(names, key=lambda name: (original.get(name, name), name))

    def _wrap_post_process(
        self, post_process: Callable[..., Iterator[Any]], stored_name: Any
    ) -> Callable[..., Iterator[Any]]:
        def settled(name: str, key: str, hashed_files: dict[str, str]) -> bool:
            last = self.rewrites.get(name)
            if last is None or hashed_files.get(key) != last[0]:
                return False
            names = ChainMap(hashed_files, self.outside)
            try:
                return all(stored_name(ref, names) == to for ref, to in last[1])
            except ValueError:  # gone: Django's own code says so, as it would
                return False

        def each(paths: dict[str, Any], adjustable: Any, hashed_files: Any) -> Any:
            rewritable = set(adjustable)
            for name in full_order(list(paths)):  # Django's own order
                key = self.storage.hash_key(self.storage.clean_name(name))
                if settled(name, key, hashed_files):
                    yield name, hashed_files[key], True, False
                    continue
                self.rewriting = self.storage.clean_name(name)
                resolved: list[tuple[str, str]] = []
                self.resolving = resolved
                failed = False
                try:
                    for result in post_process(
                        {name: paths[name]}, adjustable, hashed_files
                    ):
                        failed = failed or isinstance(result[2], Exception)
                        yield result
                finally:
                    self.resolving = None
                if failed or name not in rewritable or key not in hashed_files:
                    self.rewrites.pop(name, None)
                else:
                    self.rewrites[name] = (hashed_files[key], resolved)

        return each

    def _wrap_stored_name(self, stored_name: Callable[..., str]) -> Callable[..., str]:
        def resolve(name: str, hashed_files: dict[str, str]) -> str:
            names = ChainMap(hashed_files, self.outside)
            result = stored_name(name, names)
            if self.rewriting is not None:
                self.refs.setdefault(self.rewriting, set()).add(
                    self._target(name, names)
                )
            if self.resolving is not None:
                self.resolving.append((name, result))
            return result

        return resolve

    def _target(self, name: str, names: Mapping[str, str]) -> str:
        """The file a reference names: the one ``_stored_name`` finds by its
        key, else the one ``hashed_name()`` reads (no query, unquoted)."""
        clean = self.storage.clean_name
        key = self.storage.hash_key(clean(posixpath.normpath(name)))
        if key in names:
            return str(key)
        return str(clean(urlsplit(unquote(posixpath.normpath(name))).path.strip()))

    def _wrap_url_converter(
        self, url_converter: Callable[..., Any]
    ) -> Callable[..., Any]:
        def converter_for(name: str, *args: Any, **kwargs: Any) -> Any:
            self.rewriting = self.storage.clean_name(name)
            return url_converter(name, *args, **kwargs)

        return converter_for

    def _wrap_save_manifest(
        self, save_manifest: Callable[[], None]
    ) -> Callable[[], None]:
        def save() -> None:
            self.before_manifest()
            if self.manifest_order is not None:
                done = self.storage.hashed_files
                self.storage.hashed_files = {
                    path: done[path] if path in done else self.outside[path]
                    for path in self.manifest_order
                    if path in done or path in self.outside
                }
            save_manifest()

        return save


#: Compressed outputs kept for a second file of the same content, at most.
KEPT_OUTPUTS = 256


def once_per_content(compressor: Any) -> Any:
    """WhiteNoise's compressor, compressing each distinct content once.

    WhiteNoise compresses every original and every hashed copy, and most
    hashed copies have their original's content (all but the rewritten CSS
    and JS): the second of the two gets the first's output, byte for byte
    (gzip without a timestamp and Brotli depend on the bytes alone). The two
    come one after the other (:meth:`Hooks._paired`) to WhiteNoise's threads,
    so the second waits while the first is compressed. An output is dropped
    once reused, and at most ``KEPT_OUTPUTS`` are kept (bounded memory).
    """
    lock = threading.Lock()
    for method in ("compress_gzip", "compress_brotli"):
        compress = getattr(compressor, method, None)
        if compress is None:
            continue
        done: dict[bytes, bytes] = {}
        running: dict[bytes, threading.Event] = {}

        def once(
            data: bytes,
            compress: Callable[[bytes], bytes] = compress,
            done: dict[bytes, bytes] = done,
            running: dict[bytes, threading.Event] = running,
        ) -> bytes:
            key = hashlib.md5(data, usedforsecurity=False).digest()
            with lock:
                if key in done:
                    return done.pop(key)
                first = running.get(key)
                if first is None:
                    running[key] = started = threading.Event()
            if first is not None:  # being compressed: wait for it
                first.wait()
                with lock:
                    if key in done:
                        return done.pop(key)
                return compress(data)  # it failed, or this is a third copy
            try:
                output = compress(data)
                with lock:
                    done[key] = output
                    if len(done) > KEPT_OUTPUTS:  # never reused
                        del done[next(iter(done))]
            finally:
                with lock:
                    del running[key]
                started.set()
            return output

        setattr(compressor, method, once)
    return compressor


def dry_compressor(
    compressor: Any, storage: Any, altered: set[str] | None = None
) -> Any:
    """WhiteNoise's compressor for a dry run: it reads what post-processing
    staged (through the storage, not from disk) and writes nothing, naming
    the variants its ``compress`` would write (whitenoise 5-6: Brotli first,
    gzip only where Brotli paid off, each kept if it is effective).

    Given ``altered`` (--verify), it reads each of those variants where
    WhiteNoise writes it (on disk, by path) and adds the name of one that
    holds other bytes (edited by hand: gzip without a timestamp and Brotli
    depend on the input alone) or is missing."""

    def compress(path: str) -> list[str]:
        name = os.path.relpath(path, storage.path("")).replace(os.sep, "/")
        with storage.open(name) as handle:
            data = handle.read()
        outputs: list[tuple[str, bytes]] = []
        effective = compressor.is_compressed_effectively
        if compressor.use_brotli:
            brotli = compressor.compress_brotli(data)
            if not effective("Brotli", path, len(data), brotli):
                return []
            outputs.append((".br", brotli))
        gzip = compressor.use_gzip and compressor.compress_gzip(data)
        if gzip and effective("Gzip", path, len(data), gzip):
            outputs.append((".gz", gzip))
        if altered is not None:
            for suffix, output in outputs:
                if not same_bytes(path + suffix, output):
                    altered.add(name + suffix)  # (atomic: WhiteNoise's threads)
        return [path + suffix for suffix, _output in outputs]

    compressor.compress = compress
    return compressor


def same_bytes(path: str, data: bytes) -> bool:
    """Whether the file at ``path`` holds ``data`` (False if it is missing)."""
    try:
        with open(path, "rb") as handle:
            return handle.read() == data
    except FileNotFoundError:
        return False
