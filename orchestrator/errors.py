"""The error tree, split by who must react.

OrchestratorError
├── DagError                    the DAG definition is wrong (exit code 2)
│   └── DagValidationError      one or more problems, each naming file, job and field
├── ConfigError                 connections, parameters, command-line input (exit code 2)
├── ConnectorError              raised by connectors; never an aiohttp exception
│   ├── TransientError          worth retrying inside the call (connect errors, 5xx, 429)
│   ├── PermanentError          retrying the same request will not help (4xx, bad body)
│   │   ├── AuthError           credentials refused
│   │   └── NotFoundError       the remote does not know the id
│   └── RemoteJobFailed         the remote job ran and reported failure
└── StoreError                  the state store could not be read or written
    └── RunHalted               ... in the middle of a run: it stopped where it was (exit 75)
"""

from __future__ import annotations

from collections.abc import Sequence


class OrchestratorError(Exception):
    """Root of every error the orchestrator raises on purpose."""


class DagError(OrchestratorError):
    """A DAG cannot be loaded or is not valid."""


class DagValidationError(DagError):
    """One or more problems found before anything runs."""

    SHOWN = 50  # problems its message lists; a DAG of thousands of bad jobs would bury the rest

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        shown = self.problems[: self.SHOWN]
        if len(self.problems) > self.SHOWN:
            more = len(self.problems) - self.SHOWN
            shown.append(f"... and {more} more problems ({len(self.problems)} in all)")
        super().__init__("\n".join(shown))


class ConfigError(OrchestratorError):
    """Bad configuration or command-line input."""


class ConnectorError(OrchestratorError):
    """A connector could not do what was asked."""

    def __init__(self, message: str, *, status: int | None = None, detail: object = None) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail  # the remote's error document (parsed JSON) when there was one


class TransientError(ConnectorError):
    """A fault that may pass: connect error, reset, 5xx, 429."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        detail: object = None,
        retry_after: float | None = None,
        ambiguous: bool = False,
    ) -> None:
        super().__init__(message, status=status, detail=detail)
        self.retry_after = retry_after
        # True when a request that creates something may have reached the remote (a reset or
        # timeout after sending): the remote job may exist.
        self.ambiguous = ambiguous


class PermanentError(ConnectorError):
    """The remote refused the request; sending it again will not help."""


class AuthError(PermanentError):
    """The remote refused the credentials."""


class NotFoundError(PermanentError):
    """The remote does not know the resource."""


class RemoteJobFailed(ConnectorError):
    """The remote job ran and ended in failure."""


class StoreError(OrchestratorError):
    """The state store could not be read or written."""


class RunHalted(StoreError):
    """The store failed in the middle of a run (a full disk, a lost database): nothing more
    could be recorded, so the run stopped where the store shows it, its remote jobs left
    running, for ``orchestrator resume`` to continue once the store works again."""

    def __init__(self, message: str, run_id: str) -> None:
        super().__init__(message)
        self.run_id = run_id
