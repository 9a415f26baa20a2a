"""The daemon's commands: ``serve``, ``dags`` (what a DAG folder holds) and ``schedules``
(list, pause, unpause, backfill)."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

from .. import logs
from ..errors import ConfigError
from ..printable import printable
from . import remote
from .common import (
    DB_HELP,
    EXIT_INVALID,
    EXIT_OK,
    EXIT_REFUSED,
    _connections,
    _error,
    _parse_params,
    _positive_int,
    _say,
    _seconds,
)
from .running import _hosted

DAGS_HELP = "the folder of DAG files (.py and .json, read recursively)"
TOKENS_HELP = "the API's tokens file (default: tokens.json beside the default database)"


def cmd_serve(args: argparse.Namespace) -> int:
    from ..daemon.service import Daemon, DaemonConfig

    logs.configure(args.log_level or "info", json=True)
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port}: expected 0 to 65535")
    config = DaemonConfig(
        dags=Path(args.dags),
        connections=_connections(args.connections),
        db=args.db,
        host=args.host,
        port=args.port,
        grace=args.grace,
        tokens=Path(args.tokens) if args.tokens else _default_tokens(),
        public_url=args.public_url,
    )
    anyio.run(Daemon(config).serve)
    return EXIT_OK


def _default_tokens() -> Path:
    from ..store.open import default_db_path

    return default_db_path().parent / "tokens.json"


def cmd_tokens(args: argparse.Namespace) -> int:
    from ..daemon.api.auth import create_token

    path = Path(args.tokens) if args.tokens else _default_tokens()
    secret, record = create_token(path, args.role)
    _say(secret, sys.stdout)
    _say(
        f"a {record.role} token ({record.id}), stored hashed in {path}: it is shown only now; "
        "a running daemon reads it at its next start",
        sys.stderr,
    )
    return EXIT_OK


def _catalog(folder: str) -> Any:
    from ..daemon.catalog import DagCatalog

    logs.configure("error", json=False)
    catalog = DagCatalog(folder)
    catalog.reload()
    return catalog


def cmd_dags(args: argparse.Namespace) -> int:
    base = remote.server(args)
    if args.dags is None and base is not None:
        return _remote_dags(base, args)
    if args.dags is None:
        _error("dags: give --dags DIR (a folder) or --server URL (a running daemon)")
        return EXIT_INVALID
    catalog = _catalog(args.dags)
    rows = []
    for name, dag in sorted(catalog.dags.items()):
        schedule = dag.schedule or {}
        rows.append(
            {
                "dag": name,
                "jobs": len(dag),
                "file": str(catalog.source_of(name)),
                "cron": schedule.get("cron"),
                "timezone": schedule.get("timezone", "UTC") if schedule.get("cron") else None,
            }
        )
    errors = [{"file": str(e.path), "error": e.message} for e in catalog.errors]
    if args.json:
        _say(json.dumps({"dags": rows, "errors": errors}), sys.stdout)
    else:
        for row in rows:
            when = f"{row['cron']} ({row['timezone']})" if row["cron"] else "not scheduled"
            _say(f"{printable(row['dag'])}\t{row['jobs']} jobs\t{when}\t{row['file']}", sys.stdout)
        for error in errors:
            _say(f"error: {printable(error['error'])}", sys.stderr)
    return EXIT_INVALID if errors else EXIT_OK


def _remote_dags(base: str, args: argparse.Namespace) -> int:
    logs.configure("warning")
    try:
        _, answer = remote.call(base, "GET", "/dags")
    except remote.RemoteError as exc:
        _error(str(exc))
        return EXIT_INVALID
    if args.json:
        _say(json.dumps(answer), sys.stdout)
    else:
        for dag in answer["data"]:
            cron = (dag["schedule"] or {}).get("cron")
            zone = (dag["schedule"] or {}).get("timezone", "UTC")
            when = f"{cron} ({zone})" if cron else "not scheduled"
            line = f"{printable(dag['name'])}\t{dag['jobs']} jobs\t{when}\t{dag['file']}"
            _say(line, sys.stdout)
        for error in answer["errors"]:
            _say(f"error: {printable(error['message'])}", sys.stderr)
    return EXIT_INVALID if answer["errors"] else EXIT_OK


def cmd_trigger(args: argparse.Namespace) -> int:
    """Start a run of a daemon's DAG through its API."""
    logs.configure("warning")
    base = remote.server(args)
    if base is None:
        _error(f"trigger: give --server URL (or ${remote.SERVER_ENV}): a running daemon")
        return EXIT_INVALID
    params = _parse_params(args.param)
    headers = {"Idempotency-Key": args.idempotency_key} if args.idempotency_key else {}
    path = f"/dags/{urllib.parse.quote(args.dag, safe='')}/runs"
    try:
        status, group = remote.call(base, "POST", path, body={"params": params}, headers=headers)
    except remote.RemoteError as exc:
        _error(str(exc))
        return EXIT_REFUSED if exc.status == 409 else EXIT_INVALID
    if args.json:
        _say(json.dumps(group), sys.stdout)
    else:
        again = " (started before, with this idempotency key)" if status == 200 else ""
        _say(f"run {group['id']} of {printable(args.dag)}{again}", sys.stdout)
    return EXIT_OK


# -- schedules ---------------------------------------------------------------------------------
def _time(text: str) -> datetime:
    """An ISO 8601 time; without a zone it is UTC."""
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO 8601 time such as 2026-01-31T06:00, got {text!r}"
        ) from None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def cmd_schedules(args: argparse.Namespace) -> int:
    handler = {
        "list": _schedules_list,
        "pause": _pause,
        "unpause": _pause,
        "backfill": _backfill,
    }[args.schedules_command]
    return int(anyio.run(handler, args))


async def _open(args: argparse.Namespace) -> Any:
    from ..store.open import open_store

    return await open_store(args.db)


async def _schedules_list(args: argparse.Namespace) -> int:
    from ..model.schedule import Schedule, next_fires

    catalog = _catalog(args.dags)
    store = await _open(args)
    try:
        pauses = await store.schedule_pauses()
        out = []
        now = datetime.now(UTC)
        for name, dag in sorted(catalog.dags.items()):
            if not (dag.schedule or {}).get("cron"):
                continue
            schedule = Schedule.from_json(dag.schedule or {})
            last = await store.last_tick(name)
            fires = next_fires(schedule, now, 5)
            out.append(
                {
                    "dag": name,
                    "cron": schedule.cron,
                    "timezone": schedule.timezone,
                    "paused": pauses.get(name, schedule.paused),
                    "next": [
                        {"utc": f.astimezone(UTC).isoformat(), "local": f.isoformat()}
                        for f in fires
                    ],
                    "last_tick": None
                    if last is None
                    else {
                        "nominal": datetime.fromtimestamp(last.nominal, UTC).isoformat(),
                        "run": last.run_id,
                        "skipped": last.skipped,
                    },
                }
            )
    finally:
        await store.aclose()
    if args.json:
        _say(json.dumps(out), sys.stdout)
        return EXIT_OK
    for row in out:
        state = "paused" if row["paused"] else "active"
        _say(f"{printable(row['dag'])}  {row['cron']} ({row['timezone']})  {state}", sys.stdout)
        last = row["last_tick"]
        if last is not None:
            outcome = f"run {last['run']}" if last["run"] else f"skipped: {last['skipped']}"
            _say(f"  last tick  {last['nominal']}  {outcome}", sys.stdout)
        for fire in row["next"]:
            _say(f"  next       {fire['utc']}  ({fire['local']})", sys.stdout)
    return EXIT_OK


async def _pause(args: argparse.Namespace) -> int:
    import time

    paused = args.schedules_command == "pause"
    store = await _open(args)
    try:
        await store.set_paused(args.dag, paused, time.time())
    finally:
        await store.aclose()
    word = "paused" if paused else "unpaused"
    _say(
        f"{printable(args.dag)}: {word} (a running daemon applies it before its next tick)",
        sys.stdout,
    )
    return EXIT_OK


async def _backfill(args: argparse.Namespace) -> int:
    from ..runtime.backfill import backfill

    catalog = _catalog(args.dags)
    dag = catalog.dags.get(args.dag)
    if dag is None:
        _error(f"no DAG {args.dag!r} in {args.dags} (it has: {', '.join(sorted(catalog.dags))})")
        return EXIT_INVALID
    if args.start > args.end:
        _error("backfill: --from is after --to")
        return EXIT_INVALID
    logs.configure(args.log_level or "info", json=True)
    conns = _connections(args.connections)
    store = await _open(args)
    try:
        async with _hosted(store, conns) as (host, _):
            report = await backfill(
                host, dag, args.start, args.end, overlap=args.overlap, limit=args.limit
            )
    finally:
        with anyio.CancelScope(shield=True):
            await store.aclose()
    for line in report.lines():
        _say(line, sys.stdout)
    return report.exit_code


def add_parsers(sub: Any) -> None:
    serve = sub.add_parser("serve", help="the daemon: run the schedules of a DAG folder")
    serve.add_argument("--dags", required=True, help=DAGS_HELP)
    serve.add_argument("--connections", help="connections file (default $ORCHESTRATOR_CONNECTIONS)")
    serve.add_argument("--db", help=DB_HELP)
    serve.add_argument("--host", default="127.0.0.1", help="address to serve on (127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port of /healthz, /readyz, /metrics")
    serve.add_argument(
        "--grace",
        type=_seconds,
        default=30.0,
        help="seconds a SIGTERM waits for runs to be let go before exiting (default 30)",
    )
    serve.add_argument("--log-level", choices=sorted(logs.LEVELS))
    serve.add_argument("--tokens", help=TOKENS_HELP)
    serve.add_argument(
        "--public-url",
        help="the daemon's address as remote APIs reach it (http(s)://host:port): remotes that "
        "can call back (trifacta.jobGroup) then push their jobs' ends to "
        "/api/v1/callbacks/{token} under it, and polling slows to a fallback",
    )
    serve.set_defaults(func=cmd_serve)

    tokens = sub.add_parser("tokens", help="API tokens of the daemon")
    tokens_sub = tokens.add_subparsers(dest="tokens_command", required=True)
    create = tokens_sub.add_parser("create", help="a new token, printed once")
    create.add_argument("--role", required=True, choices=("read", "operate"))
    create.add_argument("--tokens", help=TOKENS_HELP)
    tokens.set_defaults(func=cmd_tokens)

    dags = sub.add_parser("dags", help="the DAGs of a folder, and the files that failed to load")
    dags.add_argument("--dags", help=DAGS_HELP)
    dags.add_argument("--server", help=remote.SERVER_HELP)
    dags.add_argument("--json", action="store_true")
    dags.set_defaults(func=cmd_dags)

    trigger = sub.add_parser("trigger", help="start a run of a running daemon's DAG")
    trigger.add_argument("dag")
    trigger.add_argument("--param", action="append", default=[], metavar="K=V")
    trigger.add_argument("--idempotency-key", help="the same key starts one run only")
    trigger.add_argument("--json", action="store_true", help="print the API's answer")
    trigger.add_argument("--server", help=remote.SERVER_HELP)
    trigger.set_defaults(func=cmd_trigger)

    schedules = sub.add_parser("schedules", help="list, pause, unpause and backfill schedules")
    schedules_sub = schedules.add_subparsers(dest="schedules_command", required=True)
    listing = schedules_sub.add_parser("list", help="next fire times, last tick, paused")
    listing.add_argument("--dags", required=True, help=DAGS_HELP)
    listing.add_argument("--db", help=DB_HELP)
    listing.add_argument("--json", action="store_true")
    for name in ("pause", "unpause"):
        each = schedules_sub.add_parser(name, help=f"{name} a DAG's schedule (kept in the store)")
        each.add_argument("dag")
        each.add_argument("--db", help=DB_HELP)
    fill = schedules_sub.add_parser("backfill", help="run the ticks of a past time range")
    fill.add_argument("dag")
    fill.add_argument("--dags", required=True, help=DAGS_HELP)
    fill.add_argument("--from", dest="start", type=_time, required=True, help="ISO time (UTC)")
    fill.add_argument("--to", dest="end", type=_time, required=True, help="ISO time, included")
    fill.add_argument(
        "--overlap",
        choices=("queue_all", "allow"),
        default="queue_all",
        help="queue_all: one run after another, in order (default); allow: all at once",
    )
    fill.add_argument("--limit", type=_positive_int, default=1000, help="at most this many runs")
    fill.add_argument("--connections")
    fill.add_argument("--db", help=DB_HELP)
    fill.add_argument("--log-level", choices=sorted(logs.LEVELS))
    schedules.set_defaults(func=cmd_schedules)
