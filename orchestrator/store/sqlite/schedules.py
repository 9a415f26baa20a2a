"""The SQLite store's reads and writes of schedules: ticks, pauses (a part of
:class:`~.store.SQLiteStore`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ..base import TickRecord
from .rows import TICK_COLUMNS, tick_record

T = TypeVar("T")


class ScheduleReads:
    """Ticks and pauses; the store's ``_query`` (a read on its connection) and ``_call`` (an
    operation of its writer) do the work."""

    if TYPE_CHECKING:

        async def _query(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

        async def _call(self, kind: str, *args: Any) -> Any: ...

    async def last_tick(self, dag: str) -> TickRecord | None:
        sql = (
            f"SELECT {TICK_COLUMNS} FROM ticks WHERE dag = ? AND backfill = 0 "
            "ORDER BY nominal DESC LIMIT 1"
        )
        row = await self._query(lambda c: c.execute(sql, (dag,)).fetchone())
        return tick_record(row) if row else None

    async def list_ticks(self, dag: str | None = None, *, limit: int = 100) -> list[TickRecord]:
        sql = f"SELECT {TICK_COLUMNS} FROM ticks"
        args: tuple[Any, ...] = ()
        if dag is not None:
            sql += " WHERE dag = ?"
            args = (dag,)
        sql += " ORDER BY nominal DESC, dag LIMIT ?"
        args += (max(limit, 0),)
        return await self._query(lambda c: [tick_record(r) for r in c.execute(sql, args)])

    async def skipped_ticks(self) -> dict[tuple[str, str], int]:
        rows = await self._query(
            lambda c: c.execute(
                "SELECT dag, skipped, COUNT(*) FROM ticks WHERE skipped IS NOT NULL "
                "GROUP BY dag, skipped"
            ).fetchall()
        )
        return {(dag, reason): n for dag, reason, n in rows}

    async def set_paused(self, dag: str, paused: bool, at: float) -> None:
        await self._call("set_paused", dag, paused, at)

    async def schedule_pauses(self) -> dict[str, bool]:
        rows = await self._query(
            lambda c: c.execute("SELECT dag, paused FROM schedule_pauses").fetchall()
        )
        return {dag: bool(paused) for dag, paused in rows}

    async def schedule_resumed(self) -> dict[str, float]:
        rows = await self._query(
            lambda c: c.execute("SELECT dag, at FROM schedule_pauses WHERE paused = 0").fetchall()
        )
        return {dag: float(at) for dag, at in rows}
