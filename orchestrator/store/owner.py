"""Who owns a run: this process, named ``host:pid:start``, and whether an owner is still alive.

A run started from the CLI is owned by its process. On the same host an owner is alive while
its pid exists with the same start time (a reused pid is not mistaken for it); an owner on
another host is alive while its lease holds, which the store decides on its own clock when the
run is claimed (``claim_run(..., expired_after=LEASE)``). Either way the claim bumps the run's
epoch, so that writes of the previous owner are refused (see ``LeaseLost``).
"""

from __future__ import annotations

import os
import socket
from functools import cache

LEASE = 30.0  # seconds without a heartbeat after which an owner on another host counts as dead
HEARTBEAT = LEASE / 3


def _start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
    except OSError:
        return None
    # the process name may contain spaces and parentheses: fields follow the last ')'
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


@cache
def this_owner() -> str:
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_time(pid) or '0'}"


def local_owner_alive(owner: str | None) -> bool | None:
    """Whether ``owner``, a process of this host, is alive (its pid with the same start time);
    None for an owner on another host (or none): then only its lease, which the store judges
    on its own clock, can tell."""
    if not owner:
        return None
    host, _, rest = owner.partition(":")
    if host != socket.gethostname():
        return None
    pid_text, _, start = rest.partition(":")
    try:
        pid = int(pid_text)
    except ValueError:
        return False
    current = _start_time(pid)
    return current is not None and (start in ("0", current))
