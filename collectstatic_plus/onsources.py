"""Maps by destination path whose values live in the sources' own slots.

A run holds one Source per collected file. What it learns per path (the
previous record's entry, the destination listing's entry) and the next
record's entries are kept in slots of that Source, not in dicts of their own:
a dict costs 40 to 50 bytes per entry, a slot 8, and the path string is the
source's. Paths that are not collected go in an ordinary dict, ``others``.

Each map is a ``MutableMapping``, so code that reads a record or a listing
does not know the difference.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import Generic, TypeVar

from .backends import Remote
from .record import Entry
from .sources import Source, State

V = TypeVar("V")


class OnSources(MutableMapping[str, V], Generic[V]):
    """Values of collected paths held on their Source; others in a dict."""

    def __init__(self, sources: Mapping[str, Source]) -> None:
        self.sources = sources
        self.others: dict[str, V] = {}

    def has(self, source: Source) -> bool:
        """Whether ``source`` holds a value for this map."""
        return self.held(source) is not None

    def held(self, source: Source) -> V | None:
        """The value ``source`` holds for this map, if any."""
        raise NotImplementedError

    def hold(self, source: Source, value: V | None) -> None:
        raise NotImplementedError

    def __getitem__(self, path: str) -> V:
        source = self.sources.get(path)
        if source is None:
            return self.others[path]
        value = self.held(source)
        if value is None:
            raise KeyError(path)
        return value

    def __contains__(self, path: object) -> bool:
        source = self.sources.get(path)  # type: ignore[call-overload]
        if source is None:
            return path in self.others
        return self.has(source)

    def __setitem__(self, path: str, value: V) -> None:
        source = self.sources.get(path)
        if source is None:
            self.others[path] = value
        else:
            self.hold(source, value)

    def __delitem__(self, path: str) -> None:
        source = self.sources.get(path)
        if source is None:
            del self.others[path]
        elif not self.has(source):
            raise KeyError(path)
        else:
            self.hold(source, None)

    def __iter__(self) -> Iterator[str]:
        has = self.has
        for path, source in self.sources.items():
            if has(source):
                yield path
        yield from self.others

    def __len__(self) -> int:
        has = self.has
        return len(self.others) + sum(has(source) for source in self.sources.values())

    def __bool__(self) -> bool:
        """Without counting every entry (``__len__`` would)."""
        return bool(self.others) or any(map(self.has, self.sources.values()))

    def clear(self) -> None:
        for source in self.sources.values():
            self.hold(source, None)
        self.others.clear()


class Recorded(OnSources[Entry]):
    """The previous sync record's entries (``Source.recorded``)."""

    def has(self, source: Source) -> bool:
        return source.recorded is not None

    def held(self, source: Source) -> Entry | None:
        return source.recorded

    def hold(self, source: Source, value: Entry | None) -> None:
        source.recorded = value


class Listed(OnSources[Remote]):
    """The destination's listing, read before collecting (``Source.listed``)."""

    def has(self, source: Source) -> bool:
        return source.listed is not None

    def held(self, source: Source) -> Remote | None:
        return source.listed

    def hold(self, source: Source, value: Remote | None) -> None:
        source.listed = value


#: The states in which the destination holds a source's content.
ON_DESTINATION = (State.KEPT, State.WRITTEN)


class Settled(OnSources[Entry]):
    """The next record's entries: those of the sources the destination holds
    (kept or written).

    Each is the source's content, which the collector made an Entry, or which
    ``settle`` makes one of each time it is asked (a file written to a
    backend that :attr:`~.backends.Backend.sees_later`: nothing is held for it).
    """

    def __init__(
        self, sources: Mapping[str, Source], settle: Callable[[Source], Entry]
    ) -> None:
        super().__init__(sources)
        self.settle = settle

    def has(self, source: Source) -> bool:
        return source.state in ON_DESTINATION and source.content is not None

    def held(self, source: Source) -> Entry | None:
        if not self.has(source):
            return None
        content = source.content
        return content if isinstance(content, Entry) else self.settle(source)

    def hold(self, source: Source, value: Entry | None) -> None:
        raise TypeError("the next record's entries are the sources' own")
