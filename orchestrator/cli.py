"""The ``orchestrator`` command.

Exit codes: 0 succeeded, 1 failed, 2 invalid input (bad DAG, bad parameters, bad connections),
3 cancelled (Ctrl-C, SIGTERM), 4 refused because a run of the DAG is active.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

import anyio
import structlog

from . import logs
from .errors import ConfigError, DagError, OrchestratorError
from .states import RunState

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_CANCELLED, EXIT_REFUSED = 0, 1, 2, 3, 4
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


def _connections(path: str | None) -> dict[str, Any]:
    from .connections import connection_secrets, load_connections

    conns = load_connections(path)
    logs.add_secrets(connection_secrets(conns))
    return conns


def _error(message: str) -> None:
    print(f"orchestrator: {logs.redact_text(message)}", file=sys.stderr)


# -- run ----------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    from .loader import load_one

    interactive = sys.stderr.isatty() and not args.no_progress
    if args.log_file:
        log_stream = open(args.log_file, "a", encoding="utf-8")  # noqa: SIM115 - closed at exit
        logs.configure(args.log_level or "info", stream=log_stream, json=True)
    elif interactive:
        logs.configure(args.log_level or "error", json=False)
    else:
        logs.configure(args.log_level or "info", json=True)
    try:
        dag = load_one(args.path, args.dag)
        params = _parse_params(args.param)
        conns = _connections(args.connections)
    except (DagError, ConfigError) as exc:
        _error(str(exc))
        return EXIT_INVALID
    try:
        return anyio.run(_run, dag, params, conns, args, interactive)
    except (DagError, ConfigError) as exc:
        _error(str(exc))
        return EXIT_INVALID


async def _run(
    dag: Any,
    params: dict[str, Any],
    conns: dict[str, Any],
    args: argparse.Namespace,
    interactive: bool,
) -> int:
    from .engine.connectors import ConnectorSet
    from .engine.executor import RunExecutor
    from .engine.runner import prepare_run
    from .progress import Progress

    run = prepare_run(dag, params=params, connections=conns)
    structlog.contextvars.bind_contextvars(dag=dag.name, run=run.id)
    progress = Progress(run) if interactive else None
    limits = {c.name: c.concurrency for c in conns.values() if c.concurrency}
    async with ConnectorSet(dag, conns) as connectors:
        executor = RunExecutor(
            run,
            connectors,
            concurrency=args.concurrency,
            connection_limits=limits,
            observers=[progress.observe] if progress else None,
        )
        async with anyio.create_task_group() as tg:

            async def on_signals() -> None:
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for signum in signals:
                        name = signal.Signals(signum).name
                        structlog.get_logger("orchestrator").warning("run.signal", signal=name)
                        executor.cancel(f"cancelled by {name}")

            tg.start_soon(on_signals)
            if progress:
                tg.start_soon(progress.show)
            await executor.execute()
            tg.cancel_scope.cancel()
    if args.json:
        print(json.dumps(run.to_json(), default=str))
    elif progress is None:
        pass
    else:
        print(
            f"run {run.id}: {run.state.value}" + (f" ({run.error})" if run.error else ""),
            file=sys.stderr,
        )
    return _RUN_EXIT[run.state]


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


# -- simulate ------------------------------------------------------------------------------
def cmd_simulate(args: argparse.Namespace) -> int:
    from .testing.simulators.serve import serve

    logs.configure(args.log_level or "info")
    try:
        anyio.run(serve, args.host, args.port)
    except KeyboardInterrupt:
        pass
    return EXIT_OK


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
        "--concurrency", type=int, help="jobs running at once (default: the DAG's, else 64)"
    )
    run.add_argument(
        "--log-level", choices=sorted(logs.LEVELS), help="default: info, or error on a terminal"
    )
    run.add_argument("--log-file", help="write JSON log lines to this file")
    run.add_argument("--no-progress", action="store_true", help="no live progress on a terminal")
    run.set_defaults(func=cmd_run)

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
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
    except OrchestratorError as exc:
        _error(str(exc))
        code = EXIT_INVALID
    sys.exit(code)


if __name__ == "__main__":
    main()
