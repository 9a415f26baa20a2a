"""Backfill: the runs of a schedule's ticks in a past time range, each recorded under its tick's
key (DAG, nominal time) as a backfill, so that a tick that already ran is not run again."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import anyio

from ..clock import iso
from ..engine.durable import send_new_run
from ..errors import ConfigError
from ..model.dag import DAG
from ..model.schedule import Schedule, fire_times
from ..model.states import RunState
from ..store.base import Lease, TickExists, TickRecord
from .host import RunHost
from .prepare import prepare_run
from .runs import execute


@dataclass
class BackfillReport:
    dag: str
    runs: list[tuple[float, str, RunState]] = field(default_factory=list)  # nominal, id, state
    recorded: list[float] = field(default_factory=list)  # ticks recorded before: not run again

    def lines(self) -> list[str]:
        out = [
            f"{iso(nominal)}  run {run_id}  {state.value}" for nominal, run_id, state in self.runs
        ]
        out += [f"{iso(nominal)}  recorded already: not run again" for nominal in self.recorded]
        ran = len(self.runs)
        out.append(f"{self.dag}: {ran} runs, {len(self.recorded)} ticks recorded before")
        return out

    @property
    def exit_code(self) -> int:
        if any(state is RunState.CANCELLED for *_, state in self.runs):
            return 3
        return 1 if any(state is not RunState.SUCCEEDED for *_, state in self.runs) else 0


def ticks_between(dag: DAG, start: datetime, end: datetime, limit: int) -> list[datetime]:
    """The nominal times of ``dag``'s schedule from ``start`` to ``end``, both included."""
    if not (dag.schedule or {}).get("cron"):
        raise ConfigError(f"DAG {dag.name!r} has no schedule.cron to backfill")
    schedule = Schedule.from_json(dag.schedule or {})
    out: list[datetime] = []
    for fire in fire_times(schedule, start - timedelta(microseconds=1)):
        if fire > end:
            break
        if len(out) == limit:
            raise ConfigError(
                f"backfill of {dag.name!r}: more than {limit} ticks from {start.isoformat()} to "
                f"{end.isoformat()} (raise --limit, or narrow the range)"
            )
        out.append(fire)
    return out


async def backfill(
    host: RunHost,
    dag: DAG,
    start: datetime,
    end: datetime,
    *,
    overlap: str = "queue_all",
    limit: int = 1000,
) -> BackfillReport:
    """Run the ticks of ``dag`` from ``start`` to ``end``: one after another (``queue_all``) or
    all at once (``allow``)."""
    store = host.store
    if store is None:
        raise ConfigError("a backfill needs a store")
    report = BackfillReport(dag.name)

    async def one(nominal: float) -> None:
        run = prepare_run(dag, connections=host.connections, trigger="backfill")
        now = time.time()
        tick = TickRecord(dag.name, nominal, now, run.id, None, backfill=True)
        try:
            await send_new_run(
                store, run, owner=host.owner, at=now, exclusive=False, tick=tick
            ).wait()
        except TickExists:
            report.recorded.append(nominal)
            return
        await execute(host, run, lease=Lease(host.owner, 0))
        report.runs.append((nominal, run.id, run.state))

    nominals = [t.timestamp() for t in ticks_between(dag, start, end, limit)]
    if overlap == "allow":
        async with anyio.create_task_group() as tg:
            for nominal in nominals:
                tg.start_soon(one, nominal)
    else:
        for nominal in nominals:
            await one(nominal)
    report.runs.sort()
    return report
