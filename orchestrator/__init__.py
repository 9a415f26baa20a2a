"""orchestrator: an asyncio engine that runs DAGs of jobs on remote job APIs.

DAG authors need only what this module exports.
"""

from .connectors.local import JobContext
from .connectors.registry import job_types as _job_types
from .engine.records import JobRun, Run
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
from .runtime.runs import run_dag

_validation.use_job_types(_job_types)  # DAGs are checked against every registered job type

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
