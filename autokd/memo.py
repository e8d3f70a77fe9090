"""Per-process memos with an owner: each has a name, a bound on its size and a place in one registry, so that what a
process keeps between calls (loaded datasets, teacher functions) is visible, bounded and cleared in one call
(`clear_all`: tests, and a library user who changes files under a running process)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Hashable

_REGISTRY: dict[str, "Memo"] = {}


class Memo:
    """Least-recently-used memo of at most `max_items` values, made by `get(key, make)` on a miss."""

    def __init__(self, name: str, max_items: int) -> None:
        if name in _REGISTRY:
            raise ValueError(f"a memo named {name!r} exists already")
        self.name, self.max_items = name, max_items
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        _REGISTRY[name] = self

    def get(self, key: Hashable, make: Callable[[], Any]) -> Any:
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        while len(self._items) >= self.max_items:
            self._items.popitem(last=False)  # evicted before the new value is made: one big item at a time
        value = make()
        self._items[key] = value
        return value

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


def clear_all() -> None:
    """Empty every memo of this process."""
    for memo in _REGISTRY.values():
        memo.clear()


def memos() -> dict[str, Memo]:
    return dict(_REGISTRY)
