"""orchestrator: an asyncio engine that runs DAGs of jobs on remote job APIs.

DAG authors need only what this module exports. The engine's part of it (``run_dag``, ``Run``,
``JobRun``, ``JobContext``) is imported when first used, so that ``import orchestrator`` (and
every command that only reads a DAG or the store) starts quickly.
"""

import importlib
from typing import TYPE_CHECKING, Any

from .connectors.registry import job_types as _job_types
from .errors import (
    ConfigError,
    ConnectorError,
    DagError,
    DagValidationError,
    OrchestratorError,
)
from .model import validation as _validation
from .model.dag import DAG, Job
from .model.loader import load_path
from .model.refs import item
from .model.retry import Outcome, RetryPolicy
from .model.states import JobState, RunState
from .model.trigger_rules import TriggerRule

if TYPE_CHECKING:
    from .connectors.local import JobContext
    from .engine.records import JobRun, Run
    from .runtime.runs import run_dag

_validation.use_job_types(_job_types)  # DAGs are checked against every registered job type

_LAZY = {
    "JobContext": ".connectors.local",
    "JobRun": ".engine.records",
    "Run": ".engine.records",
    "run_dag": ".runtime.runs",
}


def __getattr__(name: str) -> Any:
    """The engine's exports, imported on first use (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "DAG",
    "ConfigError",
    "ConnectorError",
    "DagError",
    "DagValidationError",
    "Job",
    "JobContext",
    "JobRun",
    "JobState",
    "OrchestratorError",
    "Outcome",
    "RetryPolicy",
    "Run",
    "RunState",
    "TriggerRule",
    "item",
    "load_path",
    "run_dag",
]
__version__ = "0.1.0"
