"""Registries: a name -> implementation table, declared once, read by everything that names entries.

A table (the GAN losses, ...) is a `Registry`. Each entry has a name (what a config value or a
command-line option takes), a one-line description with its source, and its implementation,
given either as an object or as "module:attribute", imported on first use, so that declaring
a table imports nothing heavy: config validation and `--help` read the names and descriptions
without importing torch.

Config validation, `--help` texts and the tests all read the table, so adding an entry is one
`register` call; a test can register an entry of its own and use it through the CLI.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    target: Any  # the implementation, or "module:attribute" naming it
    doc: str = ""

    def load(self) -> T:
        if not isinstance(self.target, str):
            return self.target
        module, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(module), attr)


class Registry(Generic[T]):
    """An ordered table of named entries of one kind (`kind` names it in messages)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, target: Any, doc: str = "") -> Entry[T]:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        entry: Entry[T] = Entry(name, target, doc)
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> None:
        """Remove an entry (for tests that register one of their own)."""
        self._entries.pop(name, None)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def entry(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}; use one of {', '.join(self._entries)}") from None

    def load(self, name: str) -> T:
        return self.entry(name).load()

    def help(self) -> str:
        """'name (doc) | name (doc) | ...': the table as one line for --help and the docs."""
        return " | ".join(f"{e.name} ({e.doc})" if e.doc else e.name for e in self._entries.values())
