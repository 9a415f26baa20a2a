"""The public API is what `orchestrator/__init__.py` exports; pinned so changes are deliberate."""

import orchestrator

EXPECTED = [
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


def test_exported_members() -> None:
    assert orchestrator.__all__ == EXPECTED
    assert orchestrator.__all__ == sorted(orchestrator.__all__, key=lambda n: (not n.isupper(), n))
    for name in orchestrator.__all__:
        member = getattr(orchestrator, name)
        assert getattr(member, "__module__", "orchestrator").startswith("orchestrator"), name
