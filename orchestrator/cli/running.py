"""``orchestrator run`` and ``orchestrator resume``: runs on a run host, signals, the report."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import anyio
import structlog

from .. import logs
from ..errors import ConfigError, DagError, RunHalted, StoreError
from ..model.states import RunState
from ..printable import printable
from ..views import read_run_view
from .common import (
    _RUN_EXIT,
    EXIT_CANCELLED,
    EXIT_HALTED,
    EXIT_INVALID,
    EXIT_OK,
    EXIT_REFUSED,
    _connections,
    _error,
    _find_run_id,
    _isatty,
    _parse_params,
    _say,
    _warn_webhooks,
)


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
    from ..engine.durable import overlap_policy
    from ..model.loader import load_one

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

    from ..testing.simulators.serve import build_app

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
    from ..runtime.host import RunHost

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
    from ..store.open import open_store

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
    # imported once the store is open: the SQLite store's writer process starts meanwhile
    from ..runtime import runs
    from .progress import Progress

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
    from ..runtime import runs
    from ..store.open import open_store
    from .progress import Progress

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
