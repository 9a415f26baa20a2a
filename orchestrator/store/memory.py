"""A ``Store`` in memory: the reference semantics of the protocol, for tests and for runs
started with ``--db memory:`` (nothing survives the process)."""

from __future__ import annotations

import copy
import itertools
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from ..model.states import JOB_REACHABLE, RUN_TRANSITIONS, AttemptState, JobState, RunState
from .base import (
    ActiveRunExists,
    AttemptRecord,
    AttemptRow,
    Changes,
    CreateRun,
    DeliveryAttempt,
    DeliveryRecord,
    EnqueueDelivery,
    Event,
    JobEvent,
    JobRecord,
    JobRow,
    Lease,
    LeaseLost,
    Operation,
    Receipt,
    RecordTick,
    RunExists,
    RunRecord,
    RunTransition,
    StaleWrite,
    TickExists,
    TickRecord,
    event_data,
    handle_json,
    json_text,
)


class MemoryStore:
    def __init__(self) -> None:
        self.runs: dict[str, RunRecord] = {}
        self.jobs: dict[str, dict[str, JobRecord]] = {}
        self.attempts: dict[tuple[str, str, int], AttemptRecord] = {}
        self.keys: set[str] = set()  # the attempts' idempotency keys
        self.events: list[Event] = []
        self.dags: dict[str, dict[str, Any]] = {}
        self.deliveries: dict[str, DeliveryRecord] = {}
        self.delivery_attempts: dict[str, list[DeliveryAttempt]] = {}
        self.disabled: dict[str, set[str]] = {}
        self.ticks: dict[tuple[str, float], TickRecord] = {}  # by (dag, nominal)
        self.pauses: dict[str, bool] = {}
        self.resumed: dict[str, float] = {}  # when each DAG's schedule was last resumed
        self.commits = 0
        self.run_keys: dict[str, str] = {}  # idempotency key -> run id
        self.cancels: dict[str, str] = {}  # run id -> the reason its cancel was asked for
        self.job_cancels: dict[str, dict[str, str]] = {}  # run id -> job id -> its reason

    async def apply(self, ops: Sequence[Operation]) -> None:
        # write into overlays of what the batch touches: all or nothing
        runs = _Overlay(self.runs)
        jobs = _JobsOverlay(self.jobs)
        attempts = _Overlay(self.attempts)
        deliveries: dict[str, DeliveryRecord] = {}
        dags: dict[str, dict[str, Any]] = {}
        ticks: dict[tuple[str, float], TickRecord] = {}
        keys: set[str] = set()  # idempotency keys inserted by this batch
        run_keys: dict[str, str] = {}  # runs' idempotency keys inserted by this batch
        events: list[Event] = []
        seq = len(self.events)
        for op in ops:
            if isinstance(op, CreateRun):
                if op.run.id in runs:
                    raise StaleWrite(f"run {op.run.id} exists")
                run_key = op.idempotency_key
                if run_key is not None:
                    taken = self.run_keys.get(run_key) or run_keys.get(run_key)
                    if taken is not None:
                        raise RunExists(taken)
                    run_keys[run_key] = op.run.id
                if op.exclusive:
                    for other in runs.values():
                        if other.dag == op.run.dag and not other.state.terminal:
                            raise ActiveRunExists(other.id)
                runs[op.run.id] = copy.copy(op.run)
                jobs[op.run.id] = {j: JobRecord(op.run.id, j, JobState.PENDING) for j in op.job_ids}
                if op.run.dag_hash not in self.dags:
                    dags.setdefault(op.run.dag_hash, op.dag_definition)
                seq += 1
                events.append(
                    Event(seq, op.run.id, None, "run", None, op.run.state.value, op.run.created_at)
                )
            elif isinstance(op, RunTransition):
                _check_lease(runs.get(op.run_id), op.run_id, op.lease)
                run = runs.get(op.run_id)
                if (
                    run is None
                    or run.state is not op.expected
                    or op.new not in RUN_TRANSITIONS[run.state]
                ):
                    raise StaleWrite(f"run {op.run_id}: expected {op.expected.value}")
                run = runs[op.run_id] = copy.copy(run)
                run.state = op.new
                if op.error is not None:
                    run.error = op.error
                if op.new is RunState.RUNNING and run.started_at is None:
                    run.started_at = op.at
                if op.new.terminal:
                    run.ended_at = op.at
                seq += 1
                events.append(
                    Event(seq, op.run_id, None, "run", op.expected.value, op.new.value, op.at)
                )
            elif isinstance(op, Changes):
                _check_lease(runs.get(op.run_id), op.run_id, op.lease)
                for job_id in op.new_jobs:
                    if job_id in jobs.get(op.run_id, {}):
                        raise StaleWrite(f"run {op.run_id}: job {job_id} exists")
                    jobs[op.run_id][job_id] = JobRecord(op.run_id, job_id, JobState.PENDING)
                for row in op.jobs:
                    job = jobs.get(row.run_id, {}).get(row.job_id)
                    if (
                        job is None
                        or job.state != row.expected
                        or (row.expected, row.state) not in JOB_REACHABLE
                    ):
                        raise StaleWrite(f"job {row.run_id}/{row.job_id}: expected {row.expected}")
                    jobs[row.run_id][row.job_id] = _job_record(row)
                for a in op.attempts:
                    key = (a.run_id, a.job_id, a.attempt)
                    current = attempts.get(key)
                    if a.expected is None:  # an insert
                        if current is not None:
                            raise StaleWrite(f"attempt {key} exists")
                        if a.key in keys or a.key in self.keys:
                            raise StaleWrite(f"attempt {key}: idempotency key {a.key!r} is taken")
                        keys.add(a.key)
                        attempts[key] = _attempt_record(a, None)
                    elif current is None:
                        raise StaleWrite(f"attempt {key} does not exist")
                    elif not current.state.live:
                        raise StaleWrite(f"attempt {key} already ended ({current.state})")
                    elif current.state != a.expected:
                        raise StaleWrite(f"attempt {key}: expected {a.expected}")
                    else:
                        attempts[key] = _attempt_record(a, current)
                for e in op.events:
                    seq += 1
                    kind = "job" if type(e) is JobEvent else "attempt"
                    old = e.old.value if e.old is not None else None
                    data = _copy(event_data(e), op.run_id, e.job_id)
                    events.append(
                        Event(seq, op.run_id, e.job_id, kind, old, e.new.value, e.at, data)
                    )
            elif isinstance(op, EnqueueDelivery):
                d = copy.copy(op.delivery)
                if d.id in self.deliveries or d.id in deliveries:
                    raise StaleWrite(f"delivery {d.id} exists")
                if d.webhook in self.disabled.get(d.dag, set()):
                    d.state = "disabled"
                deliveries[d.id] = d
            elif isinstance(op, RecordTick):
                tick = op.tick
                if (tick.dag, tick.nominal) in self.ticks or (tick.dag, tick.nominal) in ticks:
                    raise TickExists(tick.dag, tick.nominal)
                ticks[tick.dag, tick.nominal] = tick
        runs.commit()
        jobs.commit()
        attempts.commit()
        self.deliveries.update(deliveries)
        self.dags.update(dags)
        self.ticks.update(ticks)
        self.keys |= keys
        self.run_keys.update(run_keys)
        self.events.extend(events)
        self.commits += 1

    def submit(self, ops: Sequence[Operation]) -> Receipt:
        receipt = Receipt()
        coro = self.apply(ops)
        try:
            coro.send(None)  # apply never suspends: it runs to its end here
        except StopIteration:
            receipt.settle()
        except Exception as exc:
            receipt.settle(exc)
        else:  # pragma: no cover - apply suspended, which it never does
            coro.close()
            raise RuntimeError("MemoryStore.apply suspended")
        return receipt

    async def get_run(self, run_id: str) -> RunRecord | None:
        run = self.runs.get(run_id)
        return copy.copy(run) if run else None

    async def find_run_ids(self, prefix: str, limit: int = 10) -> list[str]:
        return sorted(run_id for run_id in self.runs if run_id.startswith(prefix))[:limit]

    async def list_runs(
        self,
        *,
        dag: str | None = None,
        states: Sequence[RunState] | None = None,
        limit: int = 100,
        trigger: str | None = None,
        created_after: float | None = None,
        created_before: float | None = None,
        after: tuple[float, str] | None = None,
    ) -> list[RunRecord]:
        found = [
            copy.copy(r)
            for r in self.runs.values()
            if (dag is None or r.dag == dag)
            and (states is None or r.state in states)
            and (trigger is None or r.trigger == trigger)
            and (created_after is None or r.created_at >= created_after)
            and (created_before is None or r.created_at < created_before)
            and (after is None or (r.created_at, r.id) < after)
        ]
        found.sort(key=lambda r: (r.created_at, r.id), reverse=True)
        return found[: max(limit, 0)]

    async def get_jobs(self, run_id: str) -> dict[str, JobRecord]:
        return {j: copy.deepcopy(r) for j, r in self.jobs.get(run_id, {}).items()}

    async def get_attempts(self, run_id: str) -> list[AttemptRecord]:
        return sorted(
            (copy.deepcopy(a) for k, a in self.attempts.items() if k[0] == run_id),
            key=lambda a: (a.job_id, a.attempt),
        )

    async def get_events(self, run_id: str) -> list[Event]:
        return [e for e in self.events if e.run_id == run_id]

    async def events_since(self, run_id: str, seq: int, limit: int = 1000) -> list[Event]:
        # seq n is self.events[n - 1]: the events after seq start there
        later = (e for e in self.events[max(seq, 0) :] if e.run_id == run_id)
        return list(itertools.islice(later, max(limit, 0)))

    async def events_after(self, seq: int, limit: int = 1000) -> list[Event]:
        start = max(seq, 0)
        return self.events[start : start + max(limit, 0)]

    async def last_event_seq(self) -> int:
        return len(self.events)

    async def get_dag_definition(self, dag_hash: str) -> dict[str, Any] | None:
        return self.dags.get(dag_hash)

    async def claim_run(
        self,
        run_id: str,
        owner: str,
        *,
        expected_owner: str | None,
        at: float,
        expired_after: float | None = None,
    ) -> int:
        run = self.runs.get(run_id)
        if run is None or run.owner != expected_owner:
            raise StaleWrite(f"run {run_id} is owned by {run.owner if run else None}")
        last = run.heartbeat_at if run.heartbeat_at is not None else run.created_at
        if expired_after is not None and at - last < expired_after:  # this store's clock: at
            raise StaleWrite(f"run {run_id}: the lease of {run.owner} has not expired")
        run.owner = owner
        run.epoch += 1
        run.heartbeat_at = at
        return run.epoch

    async def heartbeat(self, leases: Mapping[str, Lease], at: float) -> list[str]:
        lost = []
        for run_id, lease in leases.items():
            run = self.runs.get(run_id)
            if run is not None and (run.owner, run.epoch) == lease:
                run.heartbeat_at = at
            else:
                lost.append(run_id)
        return lost

    async def request_cancel(self, run_id: str, reason: str, at: float) -> bool:
        run = self.runs.get(run_id)
        if run is None or run.state.terminal:
            return False
        self.cancels[run_id] = reason
        return True

    async def cancel_requests(self, run_ids: Sequence[str]) -> dict[str, str]:
        return {
            run_id: self.cancels[run_id]
            for run_id in run_ids
            if run_id in self.cancels and not self.runs[run_id].state.terminal
        }

    async def request_job_cancel(self, run_id: str, job_id: str, reason: str, at: float) -> bool:
        run = self.runs.get(run_id)
        job = self.jobs.get(run_id, {}).get(job_id)
        if run is None or run.state.terminal or job is None or job.state.terminal:
            return False
        self.job_cancels.setdefault(run_id, {})[job_id] = reason
        return True

    async def job_cancel_requests(self, run_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        found: dict[str, dict[str, str]] = {}
        for run_id in run_ids:
            run = self.runs.get(run_id)
            if run is None or run.state.terminal:
                continue
            jobs = self.jobs.get(run_id, {})
            asked = {
                job_id: reason
                for job_id, reason in self.job_cancels.get(run_id, {}).items()
                if not jobs[job_id].state.terminal
            }
            if asked:
                found[run_id] = asked
        return found

    async def due_deliveries(self, now: float, limit: int = 100) -> list[DeliveryRecord]:
        due = [
            copy.copy(d)
            for d in self.deliveries.values()
            if d.state == "pending" and (d.next_at is None or d.next_at <= now)
        ]
        due.sort(key=lambda d: (d.next_at or 0.0, d.created_at))
        return due[:limit]

    async def record_delivery(
        self, attempt: DeliveryAttempt, *, state: str, next_at: float | None
    ) -> None:
        d = self.deliveries[attempt.delivery_id]
        d.attempts = max(d.attempts, attempt.number)
        d.state = state
        d.next_at = next_at
        d.last_status = attempt.status
        d.last_error = attempt.error
        if state == "delivered":
            d.delivered_at = attempt.at
        self.delivery_attempts.setdefault(d.id, []).append(attempt)

    async def list_deliveries(
        self, run_id: str | None = None
    ) -> list[tuple[DeliveryRecord, list[DeliveryAttempt]]]:
        found = [
            (copy.copy(d), list(self.delivery_attempts.get(d.id, [])))
            for d in self.deliveries.values()
            if run_id is None or d.run_id == run_id
        ]
        found.sort(key=lambda pair: pair[0].created_at)
        return found

    async def redeliver(self, delivery_id: str, now: float) -> bool:
        d = self.deliveries.get(delivery_id)
        if d is None:
            return False
        d.state = "pending"
        d.next_at = now
        return True

    async def disable_webhook(self, dag: str, webhook: str, reason: str, at: float) -> None:
        self.disabled.setdefault(dag, set()).add(webhook)
        for d in self.deliveries.values():
            if d.dag == dag and d.webhook == webhook and d.state == "pending":
                d.state = "disabled"
                d.last_error = reason

    async def disabled_webhooks(self, dag: str) -> set[str]:
        return set(self.disabled.get(dag, set()))

    async def last_tick(self, dag: str) -> TickRecord | None:
        ticks = [t for t in self.ticks.values() if t.dag == dag and not t.backfill]
        return max(ticks, key=lambda t: t.nominal, default=None)

    async def list_ticks(self, dag: str | None = None, *, limit: int = 100) -> list[TickRecord]:
        ticks = [t for t in self.ticks.values() if dag is None or t.dag == dag]
        ticks.sort(key=lambda t: (-t.nominal, t.dag))
        return ticks[: max(limit, 0)]

    async def skipped_ticks(self) -> dict[tuple[str, str], int]:
        return dict(Counter((t.dag, t.skipped) for t in self.ticks.values() if t.skipped))

    async def set_paused(self, dag: str, paused: bool, at: float) -> None:
        self.pauses[dag] = paused
        if paused:
            self.resumed.pop(dag, None)
        else:
            self.resumed[dag] = at

    async def schedule_pauses(self) -> dict[str, bool]:
        return dict(self.pauses)

    async def schedule_resumed(self) -> dict[str, float]:
        return dict(self.resumed)

    async def aclose(self) -> None:
        return None


class _Overlay(dict[Any, Any]):
    """Reads fall through to ``base``; writes stay here until :meth:`commit`."""

    def __init__(self, base: dict[Any, Any]) -> None:
        super().__init__()
        self.base = base

    def __missing__(self, key: Any) -> Any:
        return self.base[key]

    def get(self, key: Any, default: Any = None) -> Any:
        if dict.__contains__(self, key):
            return dict.__getitem__(self, key)
        return self.base.get(key, default)

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, key) or key in self.base

    def values(self) -> Any:
        merged = dict(self.base)
        merged.update(self.items())
        return merged.values()

    def commit(self) -> None:
        self.base.update(self.items())


class _JobsOverlay(_Overlay):
    """Per-run job tables: a touched run's table is copied once."""

    def __getitem__(self, run_id: Any) -> Any:
        if not dict.__contains__(self, run_id):
            dict.__setitem__(self, run_id, dict(self.base[run_id]))
        return dict.__getitem__(self, run_id)

    def get(self, key: Any, default: Any = None) -> Any:
        if key in self.base or dict.__contains__(self, key):
            return self[key]
        return default


def _job_record(row: JobRow) -> JobRecord:
    return JobRecord(
        row.run_id,
        row.job_id,
        JobState(row.state),
        row.attempts,
        row.error,
        row.remote_status,
        json.loads(json_text(row.outputs)) if row.outputs else {},
        row.log_tail,
        list(row.notes) if row.notes else [],
        row.started_at,
        row.ended_at,
        row.retry_at,
    )


def _attempt_record(row: AttemptRow, stored: AttemptRecord | None) -> AttemptRecord:
    """The attempt as stored after ``row`` (``stored`` None: an insert): its key and
    submission time never change, a missing handle, acceptance time or error keeps the
    stored one."""
    record = AttemptRecord(
        row.run_id,
        row.job_id,
        row.attempt,
        row.key,
        AttemptState(row.state),
        _copy(row.handle, row.run_id, row.job_id) if row.handle is not None else None,
        row.submitted_at,
        row.accepted_at,
        row.ended_at,
        row.error,
    )
    if stored is not None:
        record.key, record.submitted_at = stored.key, stored.submitted_at
        for name in ("handle", "accepted_at", "error"):
            if getattr(record, name) is None:
                setattr(record, name, getattr(stored, name))
    return record


def _copy(value: Any, run_id: str, job_id: str) -> Any:
    """Plain JSON as the store keeps it: a copy, refused (StoreError) as SQLite refuses it."""
    return json.loads(handle_json(run_id, job_id, value))


def _check_lease(run: RunRecord | None, run_id: str, lease: Lease | None) -> None:
    if lease is not None and (run is None or (run.owner, run.epoch) != lease):
        now = f"{run.owner}, epoch {run.epoch}" if run is not None else "no such run"
        raise LeaseLost(
            f"run {run_id}: its lease was lost ({now}; this writer holds {lease[0]}, epoch "
            f"{lease[1]})"
        )
