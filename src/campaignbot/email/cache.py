"""A bounded cache for the renderer's per-send-run values."""

from __future__ import annotations

from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    """A dict that forgets everything when it is full (a send run's working set is
    small, so an LRU's bookkeeping would cost more than the rare refill)."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._data: dict[K, V] = {}

    def get(self, key: K) -> V | None:
        return self._data.get(key)

    def put(self, key: K, value: V) -> V:
        if len(self._data) >= self._limit:
            self._data.clear()
        self._data[key] = value
        return value

    def __len__(self) -> int:
        return len(self._data)

    def items(self) -> list[tuple[K, V]]:
        return list(self._data.items())
