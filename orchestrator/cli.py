"""The ``orchestrator`` command.

Exit codes: 0 succeeded, 1 failed, 2 invalid input (bad DAG, bad parameters, bad connections),
3 cancelled (Ctrl-C, SIGTERM), 4 refused because a run of the DAG is active, 75 the store failed
in the middle of the run (a full disk): it stopped where it was, and ``resume`` continues it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anyio
import structlog

from . import crash, logs
from .durations import MAX_DURATION
from .errors import ConfigError, DagError, OrchestratorError, RunHalted, StoreError
from .printable import printable
from .states import RunState
from .views import read_run_view, run_summary

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_CANCELLED, EXIT_REFUSED = 0, 1, 2, 3, 4
EXIT_HALTED = 75  # EX_TEMPFAIL: the store failed mid-run; `resume` continues the run
DB_HELP = (
    "state store: a SQLite path or sqlite:///path, or memory: "
    "(default: $ORCHESTRATOR_HOME/orchestrator.db)"
)
_RUN_EXIT = {
    RunState.SUCCEEDED: EXIT_OK,
    RunState.FAILED: EXIT_FAILED,
    RunState.CANCELLED: EXIT_CANCELLED,
}


def _parse_params(pairs: Sequence[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise ConfigError(f"--param {pair!r}: expected NAME=VALUE")
        try:
            params[name] = json.loads(raw)
        except ValueError:
            params[name] = raw
    return params


def _positive_int(text: str) -> int:
    """An argument that counts something at least once (``--concurrency``, ``--limit``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value


def _seconds(text: str) -> float:
    """An argument in seconds: finite and not negative (``--wait``, ``--webhook-wait``)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= MAX_DURATION:
        raise argparse.ArgumentTypeError(
            f"expected a number of seconds from 0 to {int(MAX_DURATION)} (30 days), got {text!r}"
        )
    return value


def _connections(path: str | None) -> dict[str, Any]:
    from .connections import connection_secrets, load_connections

    conns = load_connections(path)
    logs.add_secrets(connection_secrets(conns))
    return conns


def _known_secrets() -> None:
    """For commands that only read the store: register the secrets of the connections file
    named by ``$ORCHESTRATOR_CONNECTIONS``, if it loads, so that they are masked too."""
    try:
        _connections(None)
    except ConfigError:
        pass


def _say(text: str, stream: Any) -> None:
    """Print ``text`` as a line; a closed or full ``stream`` (``| head -1``, ``2>&-``,
    ``/dev/full``) loses the line, never the run that printed it."""
    try:
        print(text, file=stream, flush=True)
    except (OSError, ValueError, AttributeError):  # AttributeError: a closed fd makes it None
        pass


def _error(message: str) -> None:
    _say(f"orchestrator: {printable(logs.redact_text(message), keep_newlines=True)}", sys.stderr)


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (OSError, ValueError, AttributeError):
        return False


def _warn_webhooks(dag: Any) -> None:
    """A line per webhook whose literal address its deliveries will be refused (a bad
    ``$ORCHESTRATOR_WEBHOOK_ALLOW`` raises ConfigError)."""
    from .validation import webhook_warnings

    for warning in webhook_warnings(dag):
        _say(f"orchestrator: warning: {printable(warning)}", sys.stderr)


RUN_ID_PREFIX = 4  # the fewest characters of a run id that name it, as git's short ids
RUN_IDS_SHOWN = 5  # the runs an ambiguous prefix lists


async def _find_run_id(store: Any, given: str) -> str:
    """The run id ``given`` names: a whole id, or a unique prefix of at least
    :data:`RUN_ID_PREFIX` characters (progress and ``webhooks list`` show 12). Raises
    ConfigError, one line, when it names no run or several."""
    if not given.isprintable():  # a control character, or bytes argv could not decode
        raise ConfigError(f"no run {given!r} in the store")
    if await store.get_run(given) is not None:
        return given
    found = await store.find_run_ids(given, limit=RUN_IDS_SHOWN + 1) if given else []
    if len(given) < RUN_ID_PREFIX or not found:
        short = f" (a prefix has at least {RUN_ID_PREFIX} characters)" if found else ""
        raise ConfigError(f"no run {given!r} in the store{short}")
    if len(found) > 1:
        shown = ", ".join(found[:RUN_IDS_SHOWN]) + (", ..." if len(found) > RUN_IDS_SHOWN else "")
        raise ConfigError(f"run id prefix {given!r} matches several runs: {shown}")
    return str(found[0])


# -- run / resume -----------------------------------------------------------------------
def _configure_logs(args: argparse.Namespace) -> bool:
    """Logs as the run command wants them; returns whether to show live progress."""
    interactive = _isatty(sys.stderr) and not getattr(args, "no_progress", False)
    if args.log_file:
        try:
            log_stream = open(args.log_file, "a", encoding="utf-8")  # noqa: SIM115 - at exit
        except OSError as exc:
            raise ConfigError(f"--log-file {args.log_file}: {exc.strerror or exc}") from None
        logs.configure(args.log_level or "info", stream=log_stream, json=True)
    elif interactive:
        logs.configure(args.log_level or "error", json=False)
    else:
        logs.configure(args.log_level or "info", json=True)
    return interactive


async def _view(store: Any, run: Any, args: argparse.Namespace) -> dict[str, Any] | None:
    """The run as ``--json`` prints it (the view ``runs show --json`` prints), read back from the
    store while it is open."""
    return await read_run_view(store, run.id) if args.json else None


def _report(
    run: Any, args: argparse.Namespace, interactive: bool, view: dict[str, Any] | None = None
) -> int:
    if args.json:
        _say(json.dumps(logs.redact(view or run.to_json()), default=str), sys.stdout)
    elif interactive:
        reason = f" ({printable(logs.redact_text(run.error))})" if run.error else ""
        _say(f"run {run.id}: {run.state.value}{reason}", sys.stderr)
    return _RUN_EXIT[run.state]


def cmd_run(args: argparse.Namespace) -> int:
    from .engine.durable import overlap_policy
    from .loader import load_one

    try:
        interactive = _configure_logs(args)
        dag = load_one(args.path, args.dag)
        params = _parse_params(args.param)
        overlap = overlap_policy(dag, args.overlap)
        _warn_webhooks(dag)
    except (DagError, ConfigError) as exc:
        _error(str(exc))
        return EXIT_INVALID
    return anyio.run(
        _run_simulated if args.simulate else _run, dag, params, overlap, args, interactive
    )


async def _run_simulated(
    dag: Any, params: dict[str, Any], overlap: str, args: argparse.Namespace, interactive: bool
) -> int:
    """``--simulate``: serve every API simulator in this process on a free port, published as
    ``$SIMULATOR_URL`` for the connections file, for the length of the run."""
    from aiohttp import web

    from .testing.simulators.serve import build_app

    runner = web.AppRunner(build_app(), handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        os.environ["SIMULATOR_URL"] = f"http://127.0.0.1:{runner.addresses[0][1]}"
        return await _run(dag, params, overlap, args, interactive)
    finally:
        with anyio.CancelScope(shield=True):
            await runner.cleanup()


@contextlib.asynccontextmanager
async def _hosted(store: Any, conns: dict[str, Any]) -> AsyncIterator[tuple[Any, list[str]]]:
    """A run host for this command, with the process's signals: SIGINT and SIGTERM cancel its
    runs (their remote jobs too); one that comes while no run executes (waiting for its turn
    under ``queue``, say) ends the command. The list names the signals received."""
    from .runtime.host import RunHost

    received: list[str] = []
    async with RunHost(store, conns) as host:
        body = anyio.CancelScope()

        async def on_signals() -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for signum in signals:
                    name = signal.Signals(signum).name
                    structlog.get_logger("orchestrator").warning(
                        "run.signal", signal=name, runs=host.active
                    )
                    received.append(name)
                    host.cancel_all(f"cancelled by {name}")
                    if not host.active:
                        body.cancel()

        host.start_service(on_signals)
        with body:
            yield host, received


async def _run(
    dag: Any,
    params: dict[str, Any],
    overlap: str,
    args: argparse.Namespace,
    interactive: bool,
) -> int:
    from .progress import Progress
    from .runtime import runs
    from .store.open import open_store

    try:
        conns = _connections(args.connections)
    except ConfigError as exc:
        _error(str(exc))
        return EXIT_INVALID

    try:
        store = await open_store(args.db)
    except StoreError as exc:
        _error(str(exc))
        return EXIT_INVALID
    run = None
    try:
        async with _hosted(store, conns) as (host, received):
            run = await runs.run_new(
                host,
                dag,
                params,
                overlap=overlap,
                concurrency=args.concurrency,
                view_for=Progress if interactive else None,
            )
        view = await _view(store, run, args) if run is not None else None
    except runs.RunRefused as exc:
        _error(str(exc))
        return EXIT_REFUSED
    except RunHalted as exc:
        _error(str(exc))
        return EXIT_HALTED
    except (DagError, ConfigError, StoreError) as exc:
        _error(str(exc))
        return EXIT_INVALID
    finally:
        with anyio.CancelScope(shield=True):
            await store.aclose()
    if run is None:
        _error(f"cancelled by {received[0]} before the run started")
        return EXIT_CANCELLED
    return _report(run, args, interactive, view)


def cmd_resume(args: argparse.Namespace) -> int:
    if bool(args.run_id) == bool(args.all):
        _error("resume: give a RUN_ID or --all")
        return EXIT_INVALID
    try:
        interactive = _configure_logs(args)
        conns = _connections(args.connections)
    except ConfigError as exc:
        _error(str(exc))
        return EXIT_INVALID
    return anyio.run(_resume, conns, args, interactive)


async def _resume(conns: dict[str, Any], args: argparse.Namespace, interactive: bool) -> int:
    from .progress import Progress
    from .runtime import runs
    from .store.open import open_store

    try:
        store = await open_store(args.db)
    except StoreError as exc:
        _error(str(exc))
        return EXIT_INVALID
    codes = []
    try:
        if args.all:
            records = await store.list_runs(
                states=[RunState.QUEUED, RunState.RUNNING], limit=10_000
            )
        else:
            try:
                record = await store.get_run(await _find_run_id(store, args.run_id))
            except ConfigError as exc:
                _error(str(exc))
                return EXIT_INVALID
            assert record is not None
            records = [record]
        async with _hosted(store, conns) as (host, received):
            for record in reversed(records):  # oldest first
                if record.state.terminal:
                    _say(f"run {record.id}: already {record.state.value}", sys.stderr)
                    codes.append(_RUN_EXIT[record.state])
                    continue
                if received:
                    break
                try:
                    run = await runs.resume(
                        host,
                        record,
                        concurrency=getattr(args, "concurrency", None),
                        view_for=Progress if interactive else None,
                    )
                except runs.RunRefused as exc:
                    _error(str(exc))
                    codes.append(EXIT_REFUSED)
                    continue
                except RunHalted as exc:  # the store fails: the next would fail the same way
                    _error(str(exc))
                    codes.append(EXIT_HALTED)
                    break
                except (DagError, StoreError) as exc:
                    _error(str(exc))
                    codes.append(EXIT_INVALID)
                    continue
                codes.append(_report(run, args, interactive, await _view(store, run, args)))
            if EXIT_HALTED in codes:
                return EXIT_HALTED
            if received:
                codes.append(EXIT_CANCELLED)
            else:  # deliveries left in the outbox by processes that stopped go out now
                left = await host.deliverer.drain_due(args.webhook_wait)
                if left:
                    _say(f"{left} webhook deliveries still pending (retried later)", sys.stderr)
    finally:
        with anyio.CancelScope(shield=True):
            await store.aclose()
    return max(codes, default=EXIT_OK)


# -- runs list / show ------------------------------------------------------------------------
def cmd_runs(args: argparse.Namespace) -> int:
    logs.configure("warning")
    return anyio.run(_runs, args)


async def _runs(args: argparse.Namespace) -> int:
    from .engine.records import iso
    from .store.open import open_store

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
            if args.json:
                print(json.dumps([run_summary(r) for r in records]))
            else:
                print(f"{'RUN':32}  {'DAG':20}  {'STATUS':10}  {'TRIGGER':8}  CREATED")
                for r in records:
                    created = iso(r.created_at)
                    run_id, dag, trigger = printable(r.id), printable(r.dag), printable(r.trigger)
                    print(f"{run_id:32}  {dag:20}  {r.state.value:10}  {trigger:8}  {created}")
            return EXIT_OK
        try:
            record = await store.get_run(await _find_run_id(store, args.run_id))
        except ConfigError as exc:
            _error(str(exc))
            return EXIT_INVALID
        assert record is not None
        detail = await read_run_view(store, record.id)
        assert detail is not None
        _known_secrets()
        detail = logs.redact(detail)  # a run stored before its secrets were masked
        if args.json:
            print(json.dumps(detail, default=str))
        else:
            print(f"run {printable(record.id)}  {printable(record.dag)}  {record.state.value}")
            if record.error:
                print(f"  reason: {printable(logs.redact_text(record.error))}")
            for j in detail["jobs"]["data"]:
                err = f"  {printable(j['error'])}" if j["error"] else ""
                print(f"  {printable(j['id']):24} {j['status']:16} attempts={j['attempts']}{err}")
            print(f"  {len(detail['attempts'])} attempts, {detail['events']} events")
        return EXIT_OK
    finally:
        with anyio.CancelScope(shield=True):
            await store.aclose()


# -- webhooks ---------------------------------------------------------------------------------
def cmd_webhooks(args: argparse.Namespace) -> int:
    logs.configure(getattr(args, "log_level", None) or "warning")
    return anyio.run(_webhooks, args)


async def _webhooks(args: argparse.Namespace) -> int:
    import time

    from .engine.records import iso
    from .store.open import open_store
    from .webhooks.deliver import Deliverer

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
            data: list[dict[str, Any]] = [
                {
                    "id": d.id,
                    "run": d.run_id,
                    "job": d.job_id,
                    "dag": d.dag,
                    "webhook": d.webhook,
                    "event": d.event,
                    "url": d.url,
                    "status": d.state,
                    "attempts": [
                        {
                            "number": a.number,
                            "at": iso(a.at),
                            "httpStatus": a.status,
                            "error": a.error,
                            "seconds": round(a.duration, 3),
                        }
                        for a in attempts
                    ],
                    "nextAt": iso(d.next_at) if d.state == "pending" else None,
                }
                for d, attempts in rows
            ]
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


# -- validate / graph ----------------------------------------------------------------------
def cmd_validate(args: argparse.Namespace) -> int:
    from .engine.connectors import check_connections
    from .loader import load_path

    status = EXIT_OK
    conns = None
    if args.connections or os.environ.get("ORCHESTRATOR_CONNECTIONS"):
        try:
            conns = _connections(args.connections)
        except ConfigError as exc:
            _error(str(exc))
            return EXIT_INVALID
    for path in args.paths:
        try:
            dags = load_path(path)
            problems = (
                [p for d in dags for p in check_connections(d, conns)] if conns is not None else []
            )
            if problems:
                raise DagError("\n".join(problems))
        except DagError as exc:
            _error(str(exc))
            status = EXIT_INVALID
            continue
        for dag in dags:
            _warn_webhooks(dag)
            print(f"ok: {path}: {dag.name} ({len(dag)} jobs, {dag.graph.number_of_edges()} edges)")
    return status


def cmd_graph(args: argparse.Namespace) -> int:
    from .formats import render
    from .loader import load_one

    try:
        dag = load_one(args.path, args.dag)
    except DagError as exc:
        _error(str(exc))
        return EXIT_INVALID
    sys.stdout.write(render(dag, args.format))
    return EXIT_OK


# -- simulate / receive ----------------------------------------------------------------------
def _serve(serve: Any, args: argparse.Namespace, *extra: Any) -> int:
    """Serve until Ctrl-C; a port that cannot be listened on is a one-line error."""
    if not 0 <= args.port <= 65535:
        _error(f"--port {args.port}: expected a port number from 0 to 65535")
        return EXIT_INVALID
    try:
        anyio.run(serve, args.host, args.port, *extra)
    except KeyboardInterrupt:
        pass
    except OSError as exc:  # in use, not permitted, an unknown host
        # asyncio words a bind error at length; the errno's own words are enough
        why = os.strerror(exc.errno) if exc.errno and exc.errno > 0 else exc.strerror or str(exc)
        _error(f"cannot listen on {args.host}:{args.port}: {why}")
        return EXIT_INVALID
    return EXIT_OK


def cmd_simulate(args: argparse.Namespace) -> int:
    from .testing.simulators.serve import serve

    logs.configure(args.log_level or "info")
    return _serve(serve, args)


def cmd_receive(args: argparse.Namespace) -> int:
    from .testing.receiver import serve as receive

    return _serve(receive, args, args.secret or os.environ.get("WEBHOOK_SECRET"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orchestrator", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run one DAG to its end in this process")
    run.add_argument("path", help="a DAG file (.json or .py)")
    run.add_argument("--dag", help="the DAG to run when the file defines several")
    run.add_argument("--param", action="append", default=[], metavar="K=V", help="a run parameter")
    run.add_argument("--json", action="store_true", help="print the finished run as JSON on stdout")
    run.add_argument("--connections", help="connections file (default $ORCHESTRATOR_CONNECTIONS)")
    run.add_argument(
        "--concurrency",
        type=_positive_int,
        help="jobs running at once (default: the DAG's, else 64)",
    )
    run.add_argument(
        "--log-level", choices=sorted(logs.LEVELS), help="default: info, or error on a terminal"
    )
    run.add_argument("--log-file", help="write JSON log lines to this file")
    run.add_argument("--no-progress", action="store_true", help="no live progress on a terminal")
    run.add_argument("--db", help=DB_HELP)
    run.add_argument(
        "--simulate",
        action="store_true",
        help="serve the API simulators in this process and publish their URL as $SIMULATOR_URL",
    )
    run.add_argument(
        "--overlap",
        choices=("skip", "queue", "allow"),
        help="when a run of this DAG is active: skip (exit 4), queue, allow (default: the DAG's "
        "schedule.overlap, else skip)",
    )
    run.set_defaults(func=cmd_run)

    resume = sub.add_parser("resume", help="continue runs that did not end (after a crash)")
    resume.add_argument("run_id", nargs="?", help="a run id, or a unique prefix of one")
    resume.add_argument("--all", action="store_true", help="every run that did not end")
    resume.add_argument("--db", help=DB_HELP)
    resume.add_argument("--connections")
    resume.add_argument("--json", action="store_true")
    resume.add_argument("--log-level", choices=sorted(logs.LEVELS))
    resume.add_argument("--log-file")
    resume.add_argument("--no-progress", action="store_true")
    resume.add_argument(
        "--webhook-wait",
        type=_seconds,
        default=10.0,
        help="seconds to spend delivering pending webhooks (default 10)",
    )
    resume.set_defaults(func=cmd_resume)

    runs = sub.add_parser("runs", help="read runs from the store")
    runs_sub = runs.add_subparsers(dest="runs_command", required=True)
    runs_list = runs_sub.add_parser("list")
    runs_list.add_argument("--dag")
    runs_list.add_argument("--status")
    runs_list.add_argument("--limit", type=_positive_int, default=50)
    runs_list.add_argument("--json", action="store_true")
    runs_list.add_argument("--db", help=DB_HELP)
    runs_show = runs_sub.add_parser("show")
    runs_show.add_argument("run_id", help="a run id, or a unique prefix of one")
    runs_show.add_argument("--json", action="store_true")
    runs_show.add_argument("--db", help=DB_HELP)
    runs.set_defaults(func=cmd_runs)

    hooks = sub.add_parser("webhooks", help="webhook deliveries and their attempts")
    hooks_sub = hooks.add_subparsers(dest="webhooks_command", required=True)
    hooks_list = hooks_sub.add_parser("list", help="every delivery and its attempts")
    hooks_list.add_argument("--run", help="only this run's deliveries (an id or a prefix)")
    hooks_list.add_argument("--json", action="store_true")
    hooks_list.add_argument("--db", help=DB_HELP)
    hooks_redeliver = hooks_sub.add_parser("redeliver", help="send one delivery again, now")
    hooks_redeliver.add_argument("delivery_id")
    hooks_redeliver.add_argument(
        "--wait", type=_seconds, default=35.0, help="seconds to wait for it"
    )
    hooks_redeliver.add_argument("--db", help=DB_HELP)
    hooks.set_defaults(func=cmd_webhooks)

    validate = sub.add_parser("validate", help="check DAG files; exit 0 if all are valid, else 2")
    validate.add_argument("paths", nargs="+")
    validate.add_argument("--connections", help="also check the connections the DAGs name")
    validate.set_defaults(func=cmd_validate)

    graph = sub.add_parser("graph", help="write a DAG as JSON, Graphviz dot or Mermaid")
    graph.add_argument("path")
    graph.add_argument("--dag")
    graph.add_argument("--format", choices=("json", "dot", "mermaid"), default="json")
    graph.set_defaults(func=cmd_graph)

    simulate = sub.add_parser("simulate", help="serve every remote API simulator on one port")
    simulate.add_argument("--host", default="127.0.0.1")
    simulate.add_argument("--port", type=int, default=8765)
    simulate.add_argument("--log-level", choices=sorted(logs.LEVELS))
    simulate.set_defaults(func=cmd_simulate)

    receive = sub.add_parser("receive", help="print the webhooks sent to this port (for trying)")
    receive.add_argument("--host", default="127.0.0.1")
    receive.add_argument("--port", type=int, default=9000)
    receive.add_argument("--secret", help="check signatures with this secret (or $WEBHOOK_SECRET)")
    receive.set_defaults(func=cmd_receive)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        crash.check()
        code = args.func(args)
    except OrchestratorError as exc:
        _error(str(exc))
        code = EXIT_INVALID
    except BrokenPipeError:  # `orchestrator runs list | head -1`: the reader has had enough
        code = EXIT_OK
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or full: what it holds goes nowhere, quietly
            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())
            except (OSError, ValueError):
                pass
        except AttributeError:  # a stream closed before the process started (None)
            pass
    sys.exit(code)


if __name__ == "__main__":
    main()
