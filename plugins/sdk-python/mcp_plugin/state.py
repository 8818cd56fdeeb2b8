"""State a plugin keeps between calls: the key-value buckets its policy
grants (``[keyvalue.NAME]`` in ``policies/<plugin>.toml``)::

    from mcp_plugin.state import Bucket

    notes = Bucket.open("notes")
    notes.set_json("note-1", {"text": "..."})
    count = notes.increment("count")

A tool writes only when it declares ``effects=["write-state"]`` and the
policy grants the bucket read-write; otherwise a write raises
``StateError`` with the host's refusal.

Outside a component (a plugin's logic tested natively) every bucket is a
dict in memory, so the same code runs in unit tests.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterable

try:
    from componentize_py_types import Err
    from wit_world.imports import atomics as _atomics
    from wit_world.imports import batch as _batch
    from wit_world.imports import store as _store
except ImportError:  # natively, outside a component
    _store = None

__all__ = ["Bucket", "StateError"]


class StateError(Exception):
    """A bucket operation that failed, in the host's words."""


def _cut(name: str) -> str:
    return name if len(name) <= 64 else name[:64] + "…"


def _described(name: str, error: Any) -> StateError:
    kind = type(error).__name__
    if kind.endswith("NoSuchStore"):
        return StateError(f"no bucket {_cut(name)!r} is granted to this plugin "
                          f"(add [keyvalue.{_cut(name)}] to its policy)")
    if kind.endswith("AccessDenied"):
        return StateError(f"the bucket {_cut(name)} refused this: it is read-only here (granted read-only, "
                          "or the tool does not declare write-state), or per user with no user calling")
    return StateError(str(getattr(error, "value", error)))


_MEMORY: dict[str, dict[str, bytes]] = {}


class Bucket:
    """An open bucket."""

    def __init__(self, name: str, inner: Any):
        self.name = name
        self._inner = inner

    @classmethod
    def open(cls, name: str) -> "Bucket":
        """The bucket the policy grants as ``name``."""
        if _store is None:
            return cls(name, _MEMORY.setdefault(name, {}))
        try:
            return cls(name, _store.open(name))
        except Err as error:
            raise _described(name, error.value) from None

    def _call(self, operation: Callable[[], Any]) -> Any:
        try:
            return operation()
        except Err as error:
            raise _described(self.name, error.value) from None

    def get(self, key: str) -> bytes | None:
        if _store is None:
            return self._inner.get(key)
        return self._call(lambda: self._inner.get(key))

    def set(self, key: str, value: bytes) -> None:
        """Sets ``key``; durable when it returns."""
        if _store is None:
            self._inner[key] = bytes(value)
            return
        self._call(lambda: self._inner.set(key, bytes(value)))

    def delete(self, key: str) -> None:
        if _store is None:
            self._inner.pop(key, None)
            return
        self._call(lambda: self._inner.delete(key))

    def exists(self, key: str) -> bool:
        if _store is None:
            return key in self._inner
        return self._call(lambda: self._inner.exists(key))

    def keys(self) -> list[str]:
        """Every key, in key order."""
        if _store is None:
            return sorted(self._inner)
        keys: list[str] = []
        cursor = None
        while True:
            page = self._call(lambda: self._inner.list_keys(cursor))
            keys.extend(page.keys)
            if page.cursor is None:
                return keys
            cursor = page.cursor

    def get_json(self, key: str) -> Any:
        """The JSON value of ``key``, or ``None``."""
        raw = self.get(key)
        return None if raw is None else json.loads(raw)

    def set_json(self, key: str, value: Any) -> None:
        self.set(key, json.dumps(value, separators=(",", ":")).encode())

    def get_many(self, keys: Iterable[str]) -> list[bytes | None]:
        keys = list(keys)
        if _store is None:
            return [self._inner.get(k) for k in keys]
        found = self._call(lambda: _batch.get_many(self._inner, keys))
        return [None if pair is None else pair[1] for pair in found]

    def set_many(self, pairs: dict[str, bytes]) -> None:
        """Sets every key of ``pairs`` together: all or none."""
        if _store is None:
            self._inner.update({k: bytes(v) for k, v in pairs.items()})
            return
        items = [(k, bytes(v)) for k, v in pairs.items()]
        self._call(lambda: _batch.set_many(self._inner, items))

    def increment(self, key: str, delta: int = 1) -> int:
        """Adds ``delta`` to the integer ``key`` holds (0 when absent)."""
        if _store is None:
            total = int(self._inner.get(key, b"0")) + delta
            self._inner[key] = str(total).encode()
            return total
        return self._call(lambda: _atomics.increment(self._inner, key, delta))

    def update_json(self, key: str, change: Callable[[Any], Any]) -> Any:
        """Changes the JSON value of ``key`` with ``change`` (given ``None``
        when absent), retrying when another call changed it in between."""
        if _store is None:
            value = change(self.get_json(key))
            self.set_json(key, value)
            return value
        cas = self._call(lambda: _atomics.Cas.new(self._inner, key))
        for _ in range(100):
            raw = self._call(cas.current)
            value = change(None if raw is None else json.loads(raw))
            encoded = json.dumps(value, separators=(",", ":")).encode()
            try:
                _atomics.swap(cas, encoded)
                return value
            except Err as error:
                failed = error.value
                if type(failed).__name__.endswith("CasFailed"):
                    cas = failed.value
                    continue
                raise _described(self.name, failed.value) from None
        raise StateError(f"{key!r} kept changing under 100 attempts to update it")
