"""``orchestrator runs`` and ``orchestrator webhooks``: what the store holds."""

from __future__ import annotations

import argparse
import json
import time
import urllib.parse
from typing import Any

import anyio

from .. import logs
from ..errors import ConfigError, StoreError
from ..model.states import JobState, RunState
from ..printable import printable
from ..views import delivery_view, read_run_view, run_summary
from . import remote
from .common import (
    EXIT_FAILED,
    EXIT_INVALID,
    EXIT_OK,
    EXIT_REFUSED,
    _error,
    _find_run_id,
    _known_secrets,
)


# -- runs list / show / cancel ----------------------------------------------------------------
def cmd_runs(args: argparse.Namespace) -> int:
    logs.configure("warning")
    base = remote.server(args)
    if base is not None:
        return _remote_runs(base, args)
    return anyio.run(_runs, args)


def _print_runs(summaries: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print(json.dumps(summaries))
        return
    print(f"{'RUN':32}  {'DAG':20}  {'STATUS':10}  {'TRIGGER':8}  CREATED")
    for r in summaries:
        run_id, dag, trigger = printable(r["id"]), printable(r["dag"]), printable(r["trigger"])
        print(f"{run_id:32}  {dag:20}  {r['status']:10}  {trigger:8}  {r['createdAt']}")


def _print_run(detail: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(detail, default=str))
        return
    print(f"run {printable(detail['id'])}  {printable(detail['dag'])}  {detail['status']}")
    if detail["reason"]:
        print(f"  reason: {printable(detail['reason'])}")
    for j in detail["jobs"]["data"]:
        err = f"  {printable(j['error'])}" if j["error"] else ""
        print(f"  {printable(j['id']):24} {j['status']:16} attempts={j['attempts']}{err}")
    print(f"  {len(detail['attempts'])} attempts, {detail['events']} events")


def _remote_runs(base: str, args: argparse.Namespace) -> int:
    """``runs`` against a daemon's API."""
    try:
        if args.runs_command == "list":
            query = {"dag": args.dag, "state": args.status, "limit": min(args.limit, 1000)}
            _, page = remote.call(base, "GET", "/runs", query=query)
            _print_runs(page["data"], args.json)
            return EXIT_OK
        path = f"/runs/{urllib.parse.quote(args.run_id, safe='')}"
        if args.runs_command == "cancel" and args.job is not None:
            job_path = f"{path}/jobs/{urllib.parse.quote(args.job, safe='')}/cancel"
            status, answer = remote.call(base, "POST", job_path)
            word = "cancel requested" if status == 202 else answer["status"]
            print(f"job {answer['id']} of run {answer['run']}: {word}")
            return EXIT_OK
        if args.runs_command == "cancel":
            status, answer = remote.call(base, "POST", f"{path}/cancel")
            word = "cancel requested" if status == 202 else answer["status"]
            print(f"run {answer['id']}: {word}")
            return EXIT_OK
        _, detail = remote.call(base, "GET", path)
        _print_run(detail, args.json)
        return EXIT_OK
    except remote.RemoteError as exc:
        _error(str(exc))
        return EXIT_REFUSED if exc.status == 409 else EXIT_INVALID


async def _runs(args: argparse.Namespace) -> int:
    from ..store.open import open_store

    try:
        store = await open_store(args.db)
    except StoreError as exc:
        _error(str(exc))
        return EXIT_INVALID
    try:
        if args.runs_command == "list":
            states = None
            if args.status:
                try:
                    states = [RunState(args.status)]
                except ValueError:
                    _error(f"--status: unknown run state {args.status!r}")
                    return EXIT_INVALID
            records = await store.list_runs(dag=args.dag, states=states, limit=args.limit)
            _print_runs([run_summary(r) for r in records], args.json)
            return EXIT_OK
        try:
            run_id = await _find_run_id(store, args.run_id)
        except ConfigError as exc:
            _error(str(exc))
            return EXIT_INVALID
        if args.runs_command == "cancel" and args.job is not None:
            return await _cancel_job(store, run_id, args.job, args.reason)
        if args.runs_command == "cancel":
            return await _cancel(store, run_id, args.reason)
        detail = await read_run_view(store, run_id)
        assert detail is not None
        _known_secrets()
        _print_run(logs.redact(detail), args.json)  # a run stored before its secrets were masked
        return EXIT_OK
    finally:
        with anyio.CancelScope(shield=True):
            await store.aclose()


async def _cancel(store: Any, run_id: str, reason: str | None) -> int:
    """Ask the run's owner, whichever process runs it, to cancel it (and its remote jobs)."""
    reason = reason or "cancelled from the command line"
    if not await store.request_cancel(run_id, reason, time.time()):
        return await _not_active(store, run_id)
    print(f"run {run_id}: cancel requested; its owner cancels it within a few seconds")
    return EXIT_OK


async def _not_active(store: Any, run_id: str) -> int:
    record = await store.get_run(run_id)
    state = record.state.value if record is not None else "unknown"
    _error(f"run {run_id} is not active ({state}): nothing to cancel")
    return EXIT_REFUSED


async def _cancel_job(store: Any, run_id: str, job_id: str, reason: str | None) -> int:
    """Ask the run's owner, whichever process runs it, to cancel one of its jobs."""
    reason = reason or "cancelled from the command line"
    if await store.request_job_cancel(run_id, job_id, reason, time.time()):
        print(f"job {job_id} of run {run_id}: cancel requested; its run's owner cancels it")
        return EXIT_OK
    job = (await store.get_jobs(run_id)).get(job_id)
    if job is None:
        _error(f"run {run_id} has no job {job_id!r}")
        return EXIT_INVALID
    if job.state is JobState.CANCELLED:
        print(f"job {job_id} of run {run_id}: cancelled")
        return EXIT_OK
    if job.state.terminal:
        _error(f"job {job_id} of run {run_id} ended ({job.state.value}): nothing to cancel")
        return EXIT_REFUSED
    return await _not_active(store, run_id)


# -- webhooks ---------------------------------------------------------------------------------
def cmd_webhooks(args: argparse.Namespace) -> int:
    logs.configure(getattr(args, "log_level", None) or "warning")
    return anyio.run(_webhooks, args)


async def _webhooks(args: argparse.Namespace) -> int:
    from ..store.open import open_store
    from ..webhooks.deliver import Deliverer

    try:
        store = await open_store(args.db)
    except StoreError as exc:
        _error(str(exc))
        return EXIT_INVALID
    try:
        if args.webhooks_command == "list":
            try:
                run_id = args.run and await _find_run_id(store, args.run)
            except ConfigError as exc:
                _error(str(exc))
                return EXIT_INVALID
            rows = await store.list_deliveries(run_id)
            data = [delivery_view(d, attempts) for d, attempts in rows]
            if args.json:
                print(json.dumps(data))
            else:
                for row in data:
                    where = printable(f"{row['run'][:12]}/{row['job'] or '(run)'}")
                    print(
                        f"{row['id']}  {row['status']:9}  {row['event']:12}  "
                        f"{printable(row['webhook'])}  {where}  {printable(row['url'])}"
                    )
                    for a in row["attempts"]:
                        outcome = a["httpStatus"] if a["httpStatus"] is not None else a["error"]
                        print(f"    #{a['number']} {a['at']}  {printable(outcome)}")
            return EXIT_OK
        before = {d.id: d.attempts for d, _ in await store.list_deliveries()}
        if args.delivery_id not in before or not await store.redeliver(
            args.delivery_id, time.time()
        ):
            _error(f"no webhook delivery {args.delivery_id!r}")
            return EXIT_INVALID
        async with Deliverer(store) as deliverer:
            deliverer.notify()
            with anyio.move_on_after(args.wait):
                while True:  # until one more attempt is recorded
                    now = {d.id: d.attempts for d, _ in await store.list_deliveries()}
                    if now[args.delivery_id] > before[args.delivery_id]:
                        break
                    await anyio.sleep(0.05)
        ((delivery, attempts),) = [
            pair for pair in await store.list_deliveries() if pair[0].id == args.delivery_id
        ]
        last = attempts[-1] if attempts else None
        outcome = (last.status or last.error) if last else "not attempted"
        print(f"{delivery.id}: {delivery.state} ({printable(outcome)})")
        return EXIT_OK if delivery.state == "delivered" else EXIT_FAILED
    finally:
        with anyio.CancelScope(shield=True):
            await store.aclose()
