"""Limits on how many jobs run at once under a name (a DAG's pool, a connection's
``concurrency``), shared by every run that is handed the same :class:`Slots`: a run host hands
one to all its runs, so that a connection's limit holds across them.

A run whose job finds a pool full parks the job and is woken (``wake(pool)``) when a slot of
that pool is given back, by any run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping


class Slots:
    __slots__ = ("_waiting", "limits", "used")

    def __init__(self, limits: Mapping[str, int] | None = None) -> None:
        self.limits: dict[str, int] = dict(limits or {})
        self.used: Counter[str] = Counter()
        self._waiting: dict[str, list[Callable[[str], None]]] = {}

    def limit(self, pool: str, size: int) -> None:
        """Set ``pool``'s size, unless it has one already (the first to name it decides)."""
        self.limits.setdefault(pool, size)

    def full(self, pool: str) -> bool:
        return self.used[pool] >= self.limits[pool]

    def take(self, pools: Iterable[str]) -> None:
        for pool in pools:
            self.used[pool] += 1

    def give_back(self, pools: Iterable[str]) -> None:
        for pool in pools:
            self.used[pool] -= 1
            waiting = self._waiting.pop(pool, None)
            if waiting:
                for wake in waiting:
                    wake(pool)

    def wait(self, pool: str, wake: Callable[[str], None]) -> None:
        """Call ``wake(pool)`` once, when a slot of ``pool`` is next given back."""
        waiting = self._waiting.setdefault(pool, [])
        if wake not in waiting:
            waiting.append(wake)
