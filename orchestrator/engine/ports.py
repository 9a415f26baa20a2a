"""What the engine needs from around it, as Protocols: the run host (or a test) provides them."""

from __future__ import annotations

from typing import Protocol

from ..connectors.base import Connector, JobType


class ConnectorProvider(Protocol):
    """The connector for a job type and connection, open for the run's whole life."""

    def get(self, job_type: JobType, connection: str | None) -> Connector: ...
