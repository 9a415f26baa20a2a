"""What the ``orchestrator`` command's subcommands share: exit codes, argument types, printing
that survives a closed stream, run ids by prefix."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from typing import Any

from .. import logs
from ..errors import ConfigError
from ..model.durations import MAX_DURATION
from ..model.states import RunState
from ..printable import printable

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
    from ..connections import connection_secrets, load_connections

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
    from ..webhooks.guard import webhook_warnings

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
