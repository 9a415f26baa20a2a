"""The ``orchestrator`` command.

Exit codes: 0 succeeded, 1 failed, 2 invalid input (bad DAG, bad parameters, bad connections),
3 cancelled (Ctrl-C, SIGTERM), 4 refused because a run of the DAG is active, 75 the store failed
in the middle of the run (a full disk): it stopped where it was, and ``resume`` continues it."""

from __future__ import annotations

import argparse
import gc
import os
import sys
from collections.abc import Sequence
from typing import Any

import anyio

from .. import crash, logs
from ..errors import ConfigError, DagError, OrchestratorError
from .common import (
    DB_HELP,
    EXIT_INVALID,
    EXIT_OK,
    _connections,
    _error,
    _positive_int,
    _seconds,
    _warn_webhooks,
)
from .daemon import add_parsers as add_daemon_parsers
from .reading import cmd_runs, cmd_webhooks
from .remote import SERVER_HELP
from .running import cmd_resume, cmd_run


# -- validate / graph ----------------------------------------------------------------------
def cmd_validate(args: argparse.Namespace) -> int:
    from ..model.loader import load_path
    from ..runtime.connectors import check_connections

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
            print(f"ok: {path}: {dag.name} ({len(dag)} jobs, {len(dag.edges)} edges)")
    return status


def cmd_graph(args: argparse.Namespace) -> int:
    from ..model.formats import render
    from ..model.loader import load_one

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
    from ..testing.simulators.serve import serve

    logs.configure(args.log_level or "info")
    return _serve(serve, args)


def cmd_receive(args: argparse.Namespace) -> int:
    from ..testing.receiver import serve as receive

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
        choices=("skip", "queue", "queue_all", "cancel_previous", "allow"),
        help="when a run of this DAG is active: skip (exit 4), queue or queue_all (wait for it), "
        "cancel_previous (cancel it wherever it runs, then start), allow (default: the DAG's "
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
    runs_list.add_argument("--server", help=SERVER_HELP)
    runs_show = runs_sub.add_parser("show")
    runs_show.add_argument("run_id", help="a run id, or a unique prefix of one")
    runs_show.add_argument("--json", action="store_true")
    runs_show.add_argument("--db", help=DB_HELP)
    runs_show.add_argument("--server", help=SERVER_HELP)
    runs_cancel = runs_sub.add_parser(
        "cancel", help="cancel an active run, wherever it runs (its owner reads the request)"
    )
    runs_cancel.add_argument("run_id", help="a run id, or a unique prefix of one")
    runs_cancel.add_argument(
        "--job", help="cancel this job of the run only (its remote job too); the run goes on"
    )
    runs_cancel.add_argument("--reason", help="recorded as the run's (or the job's) reason")
    runs_cancel.add_argument("--db", help=DB_HELP)
    runs_cancel.add_argument("--server", help=SERVER_HELP)
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
    add_daemon_parsers(sub)
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
    if argv is None:  # the process's own command line: the process ends here
        # what it holds is all garbage now: no collection of it on the way out (the
        # interpreter's last collection of a run's heap cost 30-90 ms of the exit here); what
        # the run opened is closed by then, and the modules are still torn down as usual
        gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    main()
