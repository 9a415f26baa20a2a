"""Named connections: where and how to reach one remote API.

Loaded from a TOML file (``--connections FILE`` or ``$ORCHESTRATOR_CONNECTIONS``), one table per
connection. Secrets come from ``${ENV_VAR}`` interpolation and never appear in ``repr``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Connection:
    name: str
    type: str
    base_url: str
    credentials: Mapping[str, str] = field(default_factory=dict, repr=False)
    verify_tls: bool = True
    ca_file: str | None = None
    timeout: float = 30.0  # deadline of one HTTP request, seconds
    connect_timeout: float = 10.0
    rate: float | None = None  # requests per second, submits and polls alike
    burst: int = 1
    concurrency: int | None = None  # jobs running at once on this connection
    max_connections: int = 32  # bounded pool of the connection's HTTP session
    options: Mapping[str, Any] = field(default_factory=dict)  # type-specific settings

    def __repr__(self) -> str:
        secrets = ", ".join(f"{k}=***" for k in sorted(self.credentials))
        return f"Connection(name={self.name!r}, type={self.type!r}, base_url={self.base_url!r}, credentials=[{secrets}])"
